//! Choosing one disk by hints, and saying why every other disk was not chosen.

use super::nvme::parse_id;
use super::{normalize_wwn, Disk, Hints, SelectError};
use crate::units::Bytes;
use std::path::{Path, PathBuf};

/// What one hint says about one disk.
struct Verdict {
    ok: Vec<String>,
    bad: Vec<String>,
}

fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn strip_by_path(s: &str) -> &str {
    s.trim()
        .strip_prefix("/dev/disk/by-path/")
        .unwrap_or(s.trim())
}

/// Compares an optional disk attribute with a hint; `fold` compares case-insensitively.
fn attr(
    v: &mut Verdict,
    what: &str,
    want: &Option<String>,
    have: &Option<String>,
    eq: impl Fn(&str, &str) -> bool,
) {
    let Some(want) = want else { return };
    match have {
        Some(h) if eq(h.trim(), want.trim()) => v.ok.push(format!("{what} {}", h.trim())),
        Some(h) => v.bad.push(format!("{what} {} ≠ {}", h.trim(), want.trim())),
        None => v.bad.push(format!("no {what} (want {})", want.trim())),
    }
}

/// The `wwn` hint: the disk's WWN, or one of its NVMe namespace's identities.
fn wwn(v: &mut Verdict, h: &Hints, d: &Disk) {
    let Some(want) = &h.wwn else { return };
    let nvme = d.nvme.as_ref().map(|n| n.all()).unwrap_or_default();
    let wanted = parse_id(want);
    if let Some((k, id)) = nvme.iter().find(|(_, id)| wanted.as_deref() == Some(*id)) {
        v.ok.push(format!("nvme {k} {id}"));
        return;
    }
    attr(v, "wwn", &h.wwn, &d.wwn, |a, b| {
        normalize_wwn(a) == normalize_wwn(b)
    });
    if !nvme.is_empty() && v.bad.last().is_some_and(|b| b.starts_with("wwn")) {
        let ids: Vec<String> = nvme.iter().map(|(k, id)| format!("{k} {id}")).collect();
        let last = v.bad.len() - 1;
        v.bad[last] += &format!(" (nor nvme {})", ids.join(", "));
    }
}

/// Every hint except `smallest`, checked against one disk.
fn check(h: &Hints, d: &Disk) -> Verdict {
    let mut v = Verdict {
        ok: Vec::new(),
        bad: Vec::new(),
    };
    if let Some(p) = &h.path {
        if canon(p) == canon(&d.path) {
            v.ok.push(format!("path {}", p.display()));
        } else {
            v.bad
                .push(format!("path {} ≠ {}", d.path.display(), p.display()));
        }
    }
    if let Some(bp) = &h.by_path {
        let want = strip_by_path(bp);
        if d.by_path.iter().any(|x| strip_by_path(x) == want) {
            v.ok.push(format!("by_path {want}"));
        } else if d.by_path.is_empty() {
            v.bad.push(format!("no by_path name (want {want})"));
        } else {
            v.bad
                .push(format!("by_path {} ≠ {want}", d.by_path.join(",")));
        }
    }
    attr(&mut v, "serial", &h.serial, &d.serial, |a, b| a == b);
    wwn(&mut v, h, d);
    attr(&mut v, "model", &h.model, &d.model, |a, b| {
        a.eq_ignore_ascii_case(b)
    });
    attr(&mut v, "vendor", &h.vendor, &d.vendor, |a, b| {
        a.eq_ignore_ascii_case(b)
    });
    let size = Bytes(d.size_bytes);
    if let Some(min) = h.min_size {
        if size >= min {
            v.ok.push(format!("size {} ≥ {min}", size.human()));
        } else {
            v.bad
                .push(format!("size {} < min_size {min}", size.human()));
        }
    }
    if let Some(max) = h.max_size {
        if size <= max {
            v.ok.push(format!("size {} ≤ {max}", size.human()));
        } else {
            v.bad
                .push(format!("size {} > max_size {max}", size.human()));
        }
    }
    if let Some(rot) = h.rotational {
        let word = |r: bool| if r { "rotational" } else { "non-rotational" };
        if d.rotational == rot {
            v.ok.push(word(rot).into());
        } else {
            v.bad
                .push(format!("{} (want {})", word(d.rotational), word(rot)));
        }
    }
    v
}

/// The hints as the user wrote them, e.g. `{serial: SN-A, min_size: 4GiB}`.
fn describe(h: &Hints) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &h.path {
        parts.push(format!("path: {}", p.display()));
    }
    for (k, v) in [
        ("by_path", &h.by_path),
        ("serial", &h.serial),
        ("wwn", &h.wwn),
        ("model", &h.model),
        ("vendor", &h.vendor),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}: {v}"));
        }
    }
    if let Some(b) = h.min_size {
        parts.push(format!("min_size: {b}"));
    }
    if let Some(b) = h.max_size {
        parts.push(format!("max_size: {b}"));
    }
    if let Some(r) = h.rotational {
        parts.push(format!("rotational: {r}"));
    }
    if h.smallest {
        parts.push("smallest: true".into());
    }
    format!("{{{}}}", parts.join(", "))
}

/// Why the hints chose `disk`, in words (for the plan's `chosen_because`).
pub fn explain(hints: &Hints, disk: &Disk) -> String {
    let mut ok = check(hints, disk).ok;
    if hints.smallest {
        ok.push("the smallest such disk".into());
    }
    if ok.is_empty() {
        "the only disk (no hints given)".into()
    } else {
        ok.join(", ")
    }
}

/// Selects exactly one disk from `disks` by `hints`.
pub fn select<'a>(hints: &Hints, disks: &'a [Disk]) -> Result<&'a Disk, SelectError> {
    let verdicts: Vec<Verdict> = disks.iter().map(|d| check(hints, d)).collect();
    let mut reasons: Vec<String> = verdicts
        .iter()
        .map(|v| {
            if v.bad.is_empty() {
                format!("matches ({})", v.ok.join(", "))
            } else {
                v.bad.join("; ")
            }
        })
        .collect();
    let mut matching: Vec<usize> = (0..disks.len())
        .filter(|&i| verdicts[i].bad.is_empty())
        .collect();
    if hints.smallest && !matching.is_empty() {
        let min = matching
            .iter()
            .map(|&i| disks[i].size_bytes)
            .min()
            .unwrap_or(0);
        for &i in &matching {
            if disks[i].size_bytes > min {
                reasons[i] = format!(
                    "matches, but is not the smallest ({} > {})",
                    Bytes(disks[i].size_bytes).human(),
                    Bytes(min).human()
                );
            }
        }
        matching.retain(|&i| disks[i].size_bytes == min);
    }
    let candidates = if disks.is_empty() {
        "  (no disks found)".to_string()
    } else {
        disks
            .iter()
            .zip(&reasons)
            .map(|(d, r)| format!("  {}: {r}", d.summary()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match matching.as_slice() {
        [i] => Ok(&disks[*i]),
        [] => Err(SelectError::NoMatch {
            hints: describe(hints),
            candidates,
        }),
        many => Err(SelectError::Ambiguous {
            hints: describe(hints),
            count: many.len(),
            candidates,
        }),
    }
}
