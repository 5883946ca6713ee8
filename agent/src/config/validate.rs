//! Checks that span fields: references resolve, names are unique, each device has one
//! use, thresholds fit the pins, the image has somewhere to go. Runs before anything is touched.

use super::expand::{expand_storage, layout_disks, ExplicitStorage, Origin};
use super::model::*;
use super::types::Name;
use super::DocError;
use crate::units::{SizeSpec, MIB};
use std::collections::HashMap;

/// Validates a parsed document; the first error found.
pub fn validate(doc: &Document) -> Result<(), DocError> {
    match validate_all(doc).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Validates a parsed document; every error found, in document order.
pub fn validate_all(doc: &Document) -> Vec<DocError> {
    let mut c = Checker { errors: Vec::new() };
    c.disks(doc);
    c.host_and_configdrive(doc);
    c.boot_and_report(doc);
    if let Some(layout) = doc.storage.as_ref().and_then(|s| s.layout.as_ref()) {
        c.layout(doc, layout);
    }
    if !c.errors.is_empty() {
        return c.errors;
    }
    let storage = match expand_storage(doc) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    c.storage(doc, &storage);
    c.image(doc, &storage);
    c.errors
}

/// What a name in the block-device namespace is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Partition { disk: String },
    Raid,
    Luks,
    Volume,
}

impl Kind {
    fn word(&self) -> &'static str {
        match self {
            Kind::Partition { .. } => "a partition",
            Kind::Raid => "an md array",
            Kind::Luks => "a LUKS volume",
            Kind::Volume => "a logical volume",
        }
    }
}

pub(super) struct Checker {
    errors: Vec<DocError>,
}

pub(super) fn known(names: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = names.collect();
    if v.is_empty() {
        "none are declared".into()
    } else {
        format!("known: {}", v.join(", "))
    }
}

/// Where an item came from, in words, for "already used by …".
pub(super) fn by(o: &Origin) -> String {
    if o.fields {
        o.path.clone()
    } else {
        format!("the layout ({})", o.path)
    }
}

impl Checker {
    pub(super) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(DocError::new(path, message));
    }

    fn disks(&mut self, doc: &Document) {
        if doc.disks.is_empty() {
            self.err(
                "disks",
                "list at least one disk, e.g. - { name: root, match: { smallest: true } }",
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, d) in doc.disks.iter().enumerate() {
            if let Some(j) = seen.insert(d.name.as_str(), i) {
                self.err(
                    format!("disks[{i}].name"),
                    format!(
                        "disk name {:?} is used twice (also disks[{j}])",
                        d.name.as_str()
                    ),
                );
            }
            if let (Some(lo), Some(hi)) = (d.hints.min_size, d.hints.max_size) {
                if lo > hi {
                    self.err(
                        format!("disks[{i}].match.max_size"),
                        format!("max_size {hi} is below min_size {lo}; no disk can match"),
                    );
                }
            }
        }
    }

    fn disk_ref(&mut self, doc: &Document, path: String, n: &Name) -> bool {
        if doc.disks.iter().any(|d| d.name == *n) {
            return true;
        }
        let names = known(doc.disks.iter().map(|d| d.name.to_string()));
        self.err(path, format!("unknown disk {:?}; {names}", n.as_str()));
        false
    }

    fn host_and_configdrive(&mut self, doc: &Document) {
        if doc
            .host
            .instance_id
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            self.err(
                "host.instance_id",
                "is empty; remove it to have one derived, or give a value",
            );
        }
        let Some(cd) = &doc.configdrive else { return };
        if let Some(d) = &cd.disk {
            self.disk_ref(doc, "configdrive.disk".into(), d);
        }
        if cd.size.0 < MIB {
            self.err(
                "configdrive.size",
                format!(
                    "{} is too small for a vfat configdrive; give at least 1MiB",
                    cd.size
                ),
            );
        }
        let md = cd.meta_data.as_ref();
        match md.and_then(|m| m.get("instance-id")) {
            Some(serde_json::Value::String(id)) => {
                if let Some(hid) = doc.host.instance_id.as_ref().filter(|h| *h != id) {
                    self.err(
                        "configdrive.meta_data.instance-id",
                        format!("{id:?} differs from host.instance_id {hid:?}; give the instance id once"),
                    );
                }
            }
            Some(other) => self.err(
                "configdrive.meta_data.instance-id",
                format!("expected a string, got {other}"),
            ),
            None => {}
        }
        match md.and_then(|m| m.get("local-hostname")) {
            Some(serde_json::Value::String(h)) if h != doc.host.hostname.as_str() => self.err(
                "configdrive.meta_data.local-hostname",
                format!(
                    "{h:?} differs from host.hostname {:?}; give the host name once",
                    doc.host.hostname.as_str()
                ),
            ),
            Some(serde_json::Value::String(_)) | None => {}
            Some(other) => self.err(
                "configdrive.meta_data.local-hostname",
                format!("expected a string, got {other}"),
            ),
        }
    }

    fn boot_and_report(&mut self, doc: &Document) {
        if let Some(boot) = &doc.boot {
            for (i, argv) in boot.finalize.iter().enumerate() {
                if argv.first().is_none_or(|p| p.is_empty()) {
                    self.err(format!("boot.finalize[{i}]"), "a command needs at least the program to run, e.g. [grub-install, /dev/sda]");
                }
            }
        }
        if doc.report.as_ref().is_some_and(|r| r.heartbeat == 0) {
            self.err(
                "report.heartbeat",
                "must be at least 1 (seconds between progress events)",
            );
        }
    }

    fn layout(&mut self, doc: &Document, layout: &Layout) {
        let p = "storage.layout";
        if let Some(m) = &layout.mirror {
            if layout.disk.is_some() {
                self.err(
                    format!("{p}.disk"),
                    "give either disk (one disk) or mirror (two disks), not both",
                );
            }
            if m.len() != 2 {
                self.err(
                    format!("{p}.mirror"),
                    format!("a mirror needs exactly two disks, got {}", m.len()),
                );
            }
            for (i, d) in m.iter().enumerate() {
                if m[..i].contains(d) {
                    self.err(
                        format!("{p}.mirror[{i}]"),
                        format!(
                            "disk {:?} is listed twice; a mirror needs two distinct disks",
                            d.as_str()
                        ),
                    );
                } else {
                    self.disk_ref(doc, format!("{p}.mirror[{i}]"), d);
                }
            }
        } else if let Some(d) = &layout.disk {
            self.disk_ref(doc, format!("{p}.disk"), d);
        } else if let Err(e) = layout_disks(doc, layout) {
            self.errors.push(e);
        }
        let lvm = layout.lvm.as_deref().unwrap_or(&[]);
        if layout.root.is_some() && !lvm.is_empty() {
            self.err(
                format!("{p}.root"),
                "with lvm, the root filesystem is the lvm entry mounted at /; remove root",
            );
        }
        if layout.lvm.as_ref().is_some_and(|l| l.is_empty()) {
            self.err(
                format!("{p}.lvm"),
                "is empty; list at least one volume, or remove lvm for a single root filesystem",
            );
        }
        if layout
            .root
            .as_ref()
            .is_some_and(|r| r.fstype == Some(FsType::Swap) || r.fstype == Some(FsType::Vfat))
        {
            self.err(
                format!("{p}.root.type"),
                "the root filesystem must be ext4 or xfs",
            );
        }
        for (i, v) in lvm.iter().enumerate() {
            let at = format!("{p}.lvm[{i}]");
            if v.swap && v.mount.is_some() {
                self.err(
                    format!("{at}.mount"),
                    "a swap volume is not mounted; remove mount or swap",
                );
            }
            if v.swap && v.fstype.is_some_and(|t| t != FsType::Swap) {
                self.err(
                    format!("{at}.type"),
                    "a swap volume has no filesystem type; remove type or swap",
                );
            }
            if !v.swap && v.fstype == Some(FsType::Swap) {
                self.err(format!("{at}.type"), "write swap: true for a swap volume");
            }
            if v.mount.is_none() && !v.swap && v.name.is_none() {
                self.err(
                    at,
                    "give a mount point, swap: true, or a name for an unmounted volume",
                );
            }
        }
    }

    fn storage(&mut self, doc: &Document, st: &ExplicitStorage) {
        // One namespace of block-device names.
        let mut names: HashMap<String, (Kind, Origin)> = HashMap::new();
        let mut add = |c: &mut Checker, n: &Name, kind: Kind, o: &Origin| {
            if let Some((k, other)) = names.get(n.as_str()) {
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
                names.insert(n.to_string(), (kind, o.clone()));
            }
        };
        for (p, o) in &st.partitions {
            add(
                self,
                &p.name,
                Kind::Partition {
                    disk: p.disk.to_string(),
                },
                o,
            );
        }
        for (r, o) in &st.raid {
            add(self, &r.name, Kind::Raid, o);
        }
        for (l, o) in &st.luks {
            add(self, &l.name, Kind::Luks, o);
        }
        for (vg, _, vos) in &st.lvm {
            for (v, o) in vg.volumes.iter().zip(vos) {
                add(self, &v.name, Kind::Volume, o);
            }
        }
        let all_names = || {
            let mut v: Vec<String> = names.keys().cloned().collect();
            v.sort();
            known(v.into_iter())
        };
        let resolve = |c: &mut Checker,
                       path: String,
                       n: &Name,
                       allowed: &[&str],
                       what: &str|
         -> Option<Kind> {
            match names.get(n.as_str()) {
                None => {
                    c.err(
                        path,
                        format!("unknown device {:?}; {}", n.as_str(), all_names()),
                    );
                    None
                }
                Some((k, _)) if !allowed.contains(&k.word()) => {
                    c.err(path, format!("{:?} is {}; {what}", n.as_str(), k.word()));
                    None
                }
                Some((k, _)) => Some(k.clone()),
            }
        };
        const PART: &str = "a partition";
        const MD: &str = "an md array";
        const LUKS: &str = "a LUKS volume";
        const LV: &str = "a logical volume";
        // Each device has at most one consumer.
        let mut used: HashMap<String, String> = HashMap::new();
        let mut consume = |c: &mut Checker, path: String, n: &Name| {
            if let Some(other) = used.get(n.as_str()) {
                c.err(
                    path,
                    format!(
                        "{:?} is already used by {other}; a device can hold only one thing",
                        n.as_str()
                    ),
                );
            } else {
                used.insert(n.to_string(), path);
            }
        };

        let mut rest_on_disk: HashMap<String, String> = HashMap::new();
        for (p, o) in &st.partitions {
            if o.fields
                && self.disk_ref(doc, o.field("disk"), &p.disk)
                && st.layout_disks.contains(&p.disk)
            {
                self.err(
                    o.field("disk"),
                    format!("disk {:?} is laid out by storage.layout; put explicit partitions on another disk", p.disk.as_str()),
                );
            }
            match p.size {
                SizeSpec::Rest => {
                    if let Some(other) = rest_on_disk.insert(p.disk.to_string(), o.path.clone()) {
                        self.err(
                            o.field("size"),
                            format!("only one partition per disk can take the rest; {other} already does on disk {:?}", p.disk.as_str()),
                        );
                    }
                }
                SizeSpec::Bytes(b) if b.0 == 0 => {
                    self.err(o.field("size"), "a partition needs a size above zero")
                }
                SizeSpec::Bytes(_) => {}
            }
            let label = p.label.as_deref().unwrap_or(p.name.as_str());
            if label.encode_utf16().count() > 36 {
                self.err(
                    o.field("label"),
                    format!("GPT partition names hold at most 36 characters, {label:?} has more"),
                );
            }
        }
        for (r, o) in &st.raid {
            if r.members.len() < 2 {
                self.err(
                    o.field("members"),
                    format!(
                        "a RAID1 mirror needs at least two members, got {}",
                        r.members.len()
                    ),
                );
            }
            let mut disks: Vec<(String, &Name)> = Vec::new();
            for (i, m) in r.members.iter().enumerate() {
                let path = o.field(&format!("members[{i}]"));
                if let Some(Kind::Partition { disk }) = resolve(
                    self,
                    path.clone(),
                    m,
                    &[PART],
                    "md members must be partitions",
                ) {
                    if let Some((_, other)) = disks.iter().find(|(d, _)| *d == disk) {
                        self.err(
                            path.clone(),
                            format!(
                                "{:?} and {:?} are both on disk {disk:?}; a mirror needs two distinct disks",
                                other.as_str(),
                                m.as_str()
                            ),
                        );
                    }
                    disks.push((disk, m));
                }
                consume(self, path, m);
            }
        }
        for (l, o) in &st.luks {
            if o.is_layout() {
                consume(self, o.path.clone(), &l.device);
            } else if resolve(
                self,
                o.field("device"),
                &l.device,
                &[PART, MD],
                "LUKS goes on a partition or an md array",
            )
            .is_some()
            {
                consume(self, o.field("device"), &l.device);
            }
            self.luks(o, l);
        }
        let mut vgs: HashMap<String, String> = HashMap::new();
        for (vg, o, vos) in &st.lvm {
            if let Some(other) = vgs.insert(vg.vg.to_string(), o.path.clone()) {
                self.err(
                    o.field("vg"),
                    format!(
                        "volume group {:?} is already declared by {other}",
                        vg.vg.as_str()
                    ),
                );
            }
            if vg.pvs.is_empty() {
                self.err(
                    o.field("pvs"),
                    "a volume group needs at least one physical volume",
                );
            }
            for (i, pv) in vg.pvs.iter().enumerate() {
                let path = o.field(&format!("pvs[{i}]"));
                if resolve(
                    self,
                    path.clone(),
                    pv,
                    &[PART, MD, LUKS],
                    "physical volumes are partitions, md arrays or LUKS volumes",
                )
                .is_some()
                {
                    consume(self, path, pv);
                }
            }
            let mut rest: Option<&Origin> = None;
            for (v, vo) in vg.volumes.iter().zip(vos) {
                match v.size {
                    SizeSpec::Rest => {
                        if let Some(first) = rest {
                            self.err(
                                vo.field("size"),
                                format!("only one volume per volume group can take the rest; {} already does", first.path),
                            );
                        } else {
                            rest = Some(vo);
                        }
                    }
                    SizeSpec::Bytes(b) if b.0 == 0 => {
                        self.err(vo.field("size"), "a volume needs a size above zero")
                    }
                    SizeSpec::Bytes(_) => {}
                }
            }
        }
        let mut mounts: HashMap<String, String> = HashMap::new();
        for (f, o) in &st.filesystems {
            let path = o.field("device");
            if resolve(self, path.clone(), &f.device, &[PART, MD, LUKS, LV], "").is_some() {
                consume(self, path, &f.device);
            }
            if let Some(m) = &f.mount {
                if f.fstype == FsType::Swap {
                    self.err(o.field("mount"), "swap is not mounted; remove mount");
                } else if let Some(other) = mounts.insert(m.to_string(), o.path.clone()) {
                    self.err(
                        o.field("mount"),
                        format!("mount point {m} is already used by {other}"),
                    );
                }
            }
            if let Some(label) = &f.label {
                if label.len() > f.fstype.max_label() {
                    self.err(
                        o.field("label"),
                        format!(
                            "{} labels hold at most {} characters, {label:?} has {}",
                            f.fstype.as_str(),
                            f.fstype.max_label(),
                            label.len()
                        ),
                    );
                }
            }
            for (i, opt) in f.options.iter().enumerate() {
                if opt.is_empty() || opt.contains(',') || opt.chars().any(char::is_whitespace) {
                    self.err(o.field(&format!("options[{i}]")), format!("{opt:?}: give one mount option per list entry, without commas or spaces"));
                }
            }
        }
    }
}
