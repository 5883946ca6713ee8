//! The partition layer: each on a disk the layout leaves alone, one `rest` per disk,
//! sizes above zero, GPT names that fit.

use super::checker::Checker;
use crate::config::explicit::ExplicitStorage;
use crate::config::model::Document;
use crate::units::SizeSpec;
use std::collections::HashMap;

/// Checks every partition of `st`.
pub(super) fn check(c: &mut Checker, doc: &Document, st: &ExplicitStorage) {
    let mut rest_on_disk: HashMap<String, String> = HashMap::new();
    for (p, o) in &st.partitions {
        if o.fields
            && c.disk_ref(doc, o.field("disk"), &p.disk)
            && st.layout_disks.contains(&p.disk)
        {
            c.err(
                o.field("disk"),
                format!("disk {:?} is laid out by storage.layout; put explicit partitions on another disk", p.disk.as_str()),
            );
        }
        match p.size {
            SizeSpec::Rest => {
                if let Some(other) = rest_on_disk.insert(p.disk.to_string(), o.path.clone()) {
                    c.err(
                        o.field("size"),
                        format!("only one partition per disk can take the rest; {other} already does on disk {:?}", p.disk.as_str()),
                    );
                }
            }
            SizeSpec::Bytes(b) if b.0 == 0 => {
                c.err(o.field("size"), "a partition needs a size above zero")
            }
            SizeSpec::Bytes(_) => {}
        }
        let label = p.label.as_deref().unwrap_or(p.name.as_str());
        if label.encode_utf16().count() > 36 {
            c.err(
                o.field("label"),
                format!("GPT partition names hold at most 36 characters, {label:?} has more"),
            );
        }
    }
}
