//! One disk reached by two paths (a dual-ported SAS disk, an FC or iSCSI LUN seen
//! through two HBAs, one image given to a VM twice): recognised by its WWN, else by
//! serial and size, and listed once with every path. Writing through one path while
//! the other is live is how two hosts' views of a disk go apart, so a document that
//! chooses such a disk is refused (`refusal`) rather than written.

use super::{normalize_wwn, Disk};

/// What two paths to one disk share: `wwn …`, else `serial … and size …`; None when
/// the disk has neither a WWN nor a serial (a loop device) and cannot be told apart.
pub fn identity(d: &Disk) -> Option<String> {
    if let Some(w) = d
        .wwn
        .as_deref()
        .map(normalize_wwn)
        .filter(|w| !w.is_empty())
    {
        return Some(format!("wwn {w}"));
    }
    let serial = d
        .serial
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())?;
    Some(format!("serial {serial} and size {} bytes", d.size_bytes))
}

/// Folds every disk that shares an identity with an earlier one into it: the first
/// path stays `path`, the others go to `other_paths`, their holders and mounts join.
pub fn group_paths(disks: Vec<Disk>) -> Vec<Disk> {
    let mut out: Vec<Disk> = Vec::new();
    for d in disks {
        let key = identity(&d);
        let first = key
            .as_ref()
            .and_then(|k| out.iter_mut().find(|o| identity(o).as_ref() == Some(k)));
        match first {
            Some(first) => {
                first.other_paths.push(d.path);
                first.holders.extend(d.holders);
                first.mounts.extend(d.mounts);
                first.problems.extend(d.problems);
            }
            None => out.push(d),
        }
    }
    out
}

/// Why a disk reached by several paths is not written, naming every path and what to do;
/// None for a disk with one path.
pub fn refusal(d: &Disk) -> Option<String> {
    if d.other_paths.is_empty() {
        return None;
    }
    let others: Vec<String> = d
        .other_paths
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Some(format!(
        "{} and {} are two paths to one disk ({}), and imprint does not write through \
         multipath: set up dm-multipath and give the /dev/mapper device, or disconnect \
         all paths but one",
        d.path.display(),
        others.join(" and "),
        identity(d).unwrap_or_else(|| "the same identity".into())
    ))
}
