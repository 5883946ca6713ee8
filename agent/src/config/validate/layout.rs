//! The short form's own fields: which disks (one, a mirror, an array at a level), root or
//! lvm, volumes that say what they hold.

use super::checker::Checker;
use super::stack::{chunk_problem, member_count};
use crate::config::layout::layout_disks;
use crate::config::model::{Document, Layout, LayoutRaid};
use crate::config::types::Name;
use crate::kinds::FsType;

const P: &str = "storage.layout";

/// Checks `layout`'s fields; the expansion assumes they hold.
pub(super) fn check(c: &mut Checker, doc: &Document, layout: &Layout) {
    disks(c, doc, layout);
    volumes(c, layout);
}

/// One disk, a mirror of two distinct ones, or an array of distinct ones; all declared.
fn disks(c: &mut Checker, doc: &Document, layout: &Layout) {
    let p = P;
    if let Some(m) = &layout.mirror {
        if layout.raid.is_some() {
            c.err(
                format!("{p}.raid"),
                "give either mirror (RAID1 of two disks) or raid (a level and its disks), not both; mirror: [a, b] is raid: { level: 1, disks: [a, b] }",
            );
        }
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
        distinct_disks(
            c,
            doc,
            &format!("{p}.mirror"),
            m,
            "a mirror needs two distinct disks",
        );
    } else if let Some(r) = &layout.raid {
        raid(c, doc, layout, r);
    } else if let Some(d) = &layout.disk {
        c.disk_ref(doc, format!("{p}.disk"), d);
    } else if let Err(e) = layout_disks(doc, layout) {
        c.errors.push(e);
    }
}

/// `raid`: enough disks for the level, each once, all declared; a chunk only where
/// the level stripes.
fn raid(c: &mut Checker, doc: &Document, layout: &Layout, r: &LayoutRaid) {
    let at = format!("{P}.raid");
    if layout.disk.is_some() {
        c.err(
            format!("{P}.disk"),
            "give either disk (one disk) or raid (an array of disks), not both",
        );
    }
    if let Some(m) = member_count(r.level, r.disks.len(), "disks") {
        c.err(format!("{at}.disks"), m);
    }
    if let Some(m) = r.chunk.and_then(|ch| chunk_problem(r.level, ch)) {
        c.err(format!("{at}.chunk"), m);
    }
    let why = format!("the disks of a {} array must be distinct", r.level);
    distinct_disks(c, doc, &format!("{at}.disks"), &r.disks, &why);
}

/// Each of `disks` (at `at`) declared and listed once.
fn distinct_disks(c: &mut Checker, doc: &Document, at: &str, disks: &[Name], why: &str) {
    for (i, d) in disks.iter().enumerate() {
        if disks[..i].contains(d) {
            c.err(
                format!("{at}[{i}]"),
                format!("disk {:?} is listed twice; {why}", d.as_str()),
            );
        } else {
            c.disk_ref(doc, format!("{at}[{i}]"), d);
        }
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
