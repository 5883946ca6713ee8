//! The filesystem layer: each on a declared device it alone uses, one filesystem per
//! mount point, labels and options the filesystem takes.

use super::checker::Checker;
use super::names::{Namespace, LUKS, LV, MD, PART};
use crate::config::explicit::ExplicitStorage;
use crate::kinds::FsType;
use std::collections::HashMap;

/// Checks every filesystem of `st`.
pub(super) fn check(c: &mut Checker, st: &ExplicitStorage, ns: &mut Namespace) {
    let mut mounts: HashMap<String, String> = HashMap::new();
    for (f, o) in &st.filesystems {
        let path = o.field("device");
        if ns
            .resolve(c, path.clone(), &f.device, &[PART, MD, LUKS, LV], "")
            .is_some()
        {
            ns.consume(c, path, &f.device);
        }
        if let Some(m) = &f.mount {
            if f.fstype == FsType::Swap {
                c.err(o.field("mount"), "swap is not mounted; remove mount");
            } else if let Some(other) = mounts.insert(m.to_string(), o.path.clone()) {
                c.err(
                    o.field("mount"),
                    format!("mount point {m} is already used by {other}"),
                );
            }
        }
        if let Some(label) = &f.label {
            if label.len() > f.fstype.max_label() {
                c.err(
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
                c.err(
                    o.field(&format!("options[{i}]")),
                    format!(
                        "{opt:?}: give one mount option per list entry, without commas or spaces"
                    ),
                );
            }
        }
    }
}
