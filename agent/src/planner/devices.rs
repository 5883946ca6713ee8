//! What the planner knows about the named block devices as it plans each layer: their
//! paths and sizes, which disks they sit on, and which filesystems get mounted.

use crate::config::{ExplicitStorage, Filesystem, Origin};
use std::collections::HashMap;
use std::path::PathBuf;

/// What the planner knows about every named device.
#[derive(Default)]
pub(super) struct Devices {
    /// Device node, or a stand-in for a partition added after a disk image.
    pub path: HashMap<String, PathBuf>,
    /// Usable bytes (an estimate below md and LUKS).
    pub size: HashMap<String, u64>,
}

impl Devices {
    /// Records device `name` at `path` with `size` usable bytes.
    pub fn insert(&mut self, name: &str, path: PathBuf, size: u64) {
        self.path.insert(name.to_string(), path);
        self.size.insert(name.to_string(), size);
    }
}

/// The mounted filesystems (swap excluded), parents first.
pub(super) type Mounted<'a> = [&'a (Filesystem, Origin)];

/// Every disk `name` sits on (all members of an array), in document order.
pub(super) fn disks_of(st: &ExplicitStorage, name: &str) -> Vec<String> {
    if let Some((p, _)) = st.partitions.iter().find(|(p, _)| p.name.as_str() == name) {
        return vec![p.disk.to_string()];
    }
    let mut out: Vec<String> = Vec::new();
    for d in below(st, name).iter().flat_map(|b| disks_of(st, b)) {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// The document disk a device ends up on (the first, for md and LVM).
pub(super) fn disk_of(st: &ExplicitStorage, name: &str) -> Option<String> {
    if let Some((p, _)) = st.partitions.iter().find(|(p, _)| p.name.as_str() == name) {
        return Some(p.disk.to_string());
    }
    disk_of(st, below(st, name).first()?)
}

/// The devices directly below `name`: an array's members, a LUKS volume's device, a
/// logical volume's physical volumes; none for a partition or an unknown name.
fn below(st: &ExplicitStorage, name: &str) -> Vec<String> {
    if let Some((r, _)) = st.raid.iter().find(|(r, _)| r.name.as_str() == name) {
        r.members.iter().map(|m| m.to_string()).collect()
    } else if let Some((l, _)) = st.luks.iter().find(|(l, _)| l.name.as_str() == name) {
        vec![l.device.to_string()]
    } else if let Some((vg, _, _)) = st
        .lvm
        .iter()
        .find(|(g, _, _)| g.volumes.iter().any(|v| v.name.as_str() == name))
    {
        vg.pvs.iter().map(|p| p.to_string()).collect()
    } else {
        Vec::new()
    }
}
