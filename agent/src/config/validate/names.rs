//! One namespace of block-device names (partitions, md arrays, LUKS volumes, logical
//! volumes): each declared once, each reference resolving to the right kind, each
//! device holding one thing.

use super::checker::{by, known, Checker};
use crate::config::explicit::{ExplicitStorage, Origin};
use crate::config::types::Name;
use std::collections::HashMap;

/// What a name in the block-device namespace is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Partition { disk: String },
    Raid,
    Luks,
    Volume,
}

/// [`Kind::word`] of a partition.
pub(super) const PART: &str = "a partition";
/// [`Kind::word`] of an md array.
pub(super) const MD: &str = "an md array";
/// [`Kind::word`] of a LUKS volume.
pub(super) const LUKS: &str = "a LUKS volume";
/// [`Kind::word`] of a logical volume.
pub(super) const LV: &str = "a logical volume";

impl Kind {
    /// The kind in words, as errors say it.
    pub fn word(&self) -> &'static str {
        match self {
            Kind::Partition { .. } => PART,
            Kind::Raid => MD,
            Kind::Luks => LUKS,
            Kind::Volume => LV,
        }
    }
}

/// The declared names, and which of them something already uses.
pub(super) struct Namespace {
    names: HashMap<String, (Kind, Origin)>,
    /// Device name → the path of what uses it.
    used: HashMap<String, String>,
}

impl Namespace {
    /// Declares every name of `st`, layer by layer; a name declared twice is an error.
    pub fn declare(c: &mut Checker, st: &ExplicitStorage) -> Namespace {
        let mut ns = Namespace {
            names: HashMap::new(),
            used: HashMap::new(),
        };
        for (p, o) in &st.partitions {
            let disk = p.disk.to_string();
            ns.add(c, &p.name, Kind::Partition { disk }, o);
        }
        for (r, o) in &st.raid {
            ns.add(c, &r.name, Kind::Raid, o);
        }
        for (l, o) in &st.luks {
            ns.add(c, &l.name, Kind::Luks, o);
        }
        for (vg, _, vos) in &st.lvm {
            for (v, o) in vg.volumes.iter().zip(vos) {
                ns.add(c, &v.name, Kind::Volume, o);
            }
        }
        ns
    }

    fn add(&mut self, c: &mut Checker, n: &Name, kind: Kind, o: &Origin) {
        if let Some((k, other)) = self.names.get(n.as_str()) {
            c.err(
                o.field("name"),
                format!(
                    "name {:?} is already used by {} ({}); partitions, md arrays, LUKS volumes and logical volumes share one namespace",
                    n.as_str(),
                    by(other),
                    k.word()
                ),
            );
        } else {
            self.names.insert(n.to_string(), (kind, o.clone()));
        }
    }

    /// The kind of `n` if it is declared and one of `allowed` (words of [`Kind`]);
    /// otherwise an error at `path`, ending in `what`.
    pub fn resolve(
        &self,
        c: &mut Checker,
        path: String,
        n: &Name,
        allowed: &[&str],
        what: &str,
    ) -> Option<Kind> {
        match self.names.get(n.as_str()) {
            None => {
                let mut v: Vec<String> = self.names.keys().cloned().collect();
                v.sort();
                c.err(
                    path,
                    format!("unknown device {:?}; {}", n.as_str(), known(v.into_iter())),
                );
                None
            }
            Some((k, _)) if !allowed.contains(&k.word()) => {
                c.err(path, format!("{:?} is {}; {what}", n.as_str(), k.word()));
                None
            }
            Some((k, _)) => Some(k.clone()),
        }
    }

    /// Records that `path` uses device `n`; a second user is an error.
    pub fn consume(&mut self, c: &mut Checker, path: String, n: &Name) {
        if let Some(other) = self.used.get(n.as_str()) {
            c.err(
                path,
                format!(
                    "{:?} is already used by {other}; a device can hold only one thing",
                    n.as_str()
                ),
            );
        } else {
            self.used.insert(n.to_string(), path);
        }
    }
}
