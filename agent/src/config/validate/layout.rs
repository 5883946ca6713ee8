//! The short form's own fields: which disks, root or lvm, volumes that say what they hold.

use super::checker::Checker;
use crate::config::layout::layout_disks;
use crate::config::model::{Document, Layout};
use crate::kinds::FsType;

const P: &str = "storage.layout";

/// Checks `layout`'s fields; the expansion assumes they hold.
pub(super) fn check(c: &mut Checker, doc: &Document, layout: &Layout) {
    disks(c, doc, layout);
    volumes(c, layout);
}

/// One disk, or a mirror of two distinct ones, all declared.
fn disks(c: &mut Checker, doc: &Document, layout: &Layout) {
    let p = P;
    if let Some(m) = &layout.mirror {
        if layout.disk.is_some() {
            c.err(
                format!("{p}.disk"),
                "give either disk (one disk) or mirror (two disks), not both",
            );
        }
        if m.len() != 2 {
            c.err(
                format!("{p}.mirror"),
                format!("a mirror needs exactly two disks, got {}", m.len()),
            );
        }
        for (i, d) in m.iter().enumerate() {
            if m[..i].contains(d) {
                c.err(
                    format!("{p}.mirror[{i}]"),
                    format!(
                        "disk {:?} is listed twice; a mirror needs two distinct disks",
                        d.as_str()
                    ),
                );
            } else {
                c.disk_ref(doc, format!("{p}.mirror[{i}]"), d);
            }
        }
    } else if let Some(d) = &layout.disk {
        c.disk_ref(doc, format!("{p}.disk"), d);
    } else if let Err(e) = layout_disks(doc, layout) {
        c.errors.push(e);
    }
}

/// Root or lvm, not both; a root ext4 or xfs; each volume says what it holds.
fn volumes(c: &mut Checker, layout: &Layout) {
    let p = P;
    let lvm = layout.lvm.as_deref().unwrap_or(&[]);
    if layout.root.is_some() && !lvm.is_empty() {
        c.err(
            format!("{p}.root"),
            "with lvm, the root filesystem is the lvm entry mounted at /; remove root",
        );
    }
    if layout.lvm.as_ref().is_some_and(|l| l.is_empty()) {
        c.err(
            format!("{p}.lvm"),
            "is empty; list at least one volume, or remove lvm for a single root filesystem",
        );
    }
    if layout
        .root
        .as_ref()
        .is_some_and(|r| r.fstype == Some(FsType::Swap) || r.fstype == Some(FsType::Vfat))
    {
        c.err(
            format!("{p}.root.type"),
            "the root filesystem must be ext4 or xfs",
        );
    }
    for (i, v) in lvm.iter().enumerate() {
        let at = format!("{p}.lvm[{i}]");
        if v.swap && v.mount.is_some() {
            c.err(
                format!("{at}.mount"),
                "a swap volume is not mounted; remove mount or swap",
            );
        }
        if v.swap && v.fstype.is_some_and(|t| t != FsType::Swap) {
            c.err(
                format!("{at}.type"),
                "a swap volume has no filesystem type; remove type or swap",
            );
        }
        if !v.swap && v.fstype == Some(FsType::Swap) {
            c.err(format!("{at}.type"), "write swap: true for a swap volume");
        }
        if v.mount.is_none() && !v.swap && v.name.is_none() {
            c.err(
                at,
                "give a mount point, swap: true, or a name for an unmounted volume",
            );
        }
    }
}
