//! The disks the document named, the inventory disks chosen for them, and what the
//! plan says about each: why it was chosen, what it holds now.

use crate::disks::{Disk, Hints, Signature};
use crate::plan::DiskPlan;
use crate::units::Bytes;

/// A disk the document named, and the inventory disk chosen for it.
pub(super) struct Chosen<'a> {
    /// The document's name for the disk.
    pub name: String,
    /// The inventory disk the hints chose.
    pub disk: &'a Disk,
}

/// The inventory disk chosen for document disk `name`.
pub(super) fn disk<'a>(chosen: &[Chosen<'a>], name: &str) -> &'a Disk {
    chosen
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.disk)
        .expect("validated disk reference")
}

/// A chosen disk as the plan shows it: why it was chosen, what will be destroyed.
pub(super) fn disk_plan(name: &str, disk: &Disk, hints: &Hints) -> DiskPlan {
    DiskPlan {
        name: name.to_string(),
        path: disk.path.clone(),
        size_bytes: disk.size_bytes,
        logical_sector: disk.logical_sector,
        serial: disk.serial.clone(),
        model: disk.model.clone(),
        chosen_because: why(hints, disk),
        destroys: destroys(disk),
    }
}

fn why(h: &Hints, d: &Disk) -> String {
    let mut r = Vec::new();
    if let Some(p) = &h.path {
        r.push(format!("path is {}", p.display()));
    }
    if let Some(p) = &h.by_path {
        r.push(format!("by-path name is {p}"));
    }
    for (what, hint) in [
        ("serial", &h.serial),
        ("wwn", &h.wwn),
        ("model", &h.model),
        ("vendor", &h.vendor),
    ] {
        if let Some(v) = hint {
            r.push(format!("{what} is {v:?}"));
        }
    }
    let size = Bytes(d.size_bytes).human();
    match (h.min_size, h.max_size) {
        (Some(lo), Some(hi)) => r.push(format!("size {size} is between {lo} and {hi}")),
        (Some(lo), None) => r.push(format!("size {size} is at least {lo}")),
        (None, Some(hi)) => r.push(format!("size {size} is at most {hi}")),
        (None, None) => {}
    }
    if let Some(rot) = h.rotational {
        r.push(if rot {
            "it is rotational".into()
        } else {
            "it is not rotational".into()
        });
    }
    if h.smallest {
        r.push("it is the smallest such disk".into());
    }
    if r.is_empty() {
        "the document gives no hints and it is the only candidate".into()
    } else {
        r.join("; ")
    }
}

fn signature_words(s: &Signature) -> String {
    let mut w = format!("{} signature", s.kind);
    if let Some(l) = &s.label {
        w.push_str(&format!(" labelled {l:?}"));
    }
    if let Some(u) = &s.uuid {
        w.push_str(&format!(" (UUID {u})"));
    }
    w
}

fn destroys(d: &Disk) -> Vec<String> {
    let mut out: Vec<String> = d.signatures.iter().map(signature_words).collect();
    for p in &d.partitions {
        let what = if p.signatures.is_empty() {
            "no signature found".to_string()
        } else {
            p.signatures
                .iter()
                .map(signature_words)
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(format!(
            "partition {} ({}, {}): {what}",
            p.number,
            p.path.display(),
            Bytes(p.size_bytes).human()
        ));
    }
    out.extend(
        d.holders
            .iter()
            .map(|h| format!("in use by {h} (stopped before wiping)")),
    );
    out.extend(d.mounts.iter().map(|m| format!("mounted at {m}")));
    out
}
