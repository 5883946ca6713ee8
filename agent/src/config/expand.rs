//! Expansion into the explicit form: the layout's items first (see [`super::layout`]),
//! then the ones the document lists, each with its origin.

use super::error::DocError;
use super::explicit::{ExplicitStorage, Origin};
use super::layout::expand_layout;
use super::model::Document;

/// Expands `doc.storage` (layout first, then explicit items, in document order).
/// Assumes the layout's own fields were checked (see `validate`); errors only when the
/// layout's disk cannot be determined.
pub fn expand_storage(doc: &Document) -> Result<ExplicitStorage, DocError> {
    let mut out = ExplicitStorage::default();
    let Some(storage) = &doc.storage else {
        return Ok(out);
    };
    out.wipe = storage.wipe;
    out.erase = storage.erase.clone();
    if let Some(layout) = &storage.layout {
        expand_layout(doc, layout, &mut out)?;
    }
    let ex = |kind: &str, i: usize| Origin::explicit(format!("storage.{kind}[{i}]"));
    out.partitions.extend(
        storage
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), ex("partitions", i))),
    );
    out.raid.extend(
        storage
            .raid
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), ex("raid", i))),
    );
    out.luks.extend(
        storage
            .luks
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), ex("luks", i))),
    );
    for (g, vg) in storage.lvm.iter().enumerate() {
        let vols = (0..vg.volumes.len())
            .map(|i| Origin::explicit(format!("storage.lvm[{g}].volumes[{i}]")))
            .collect();
        out.lvm.push((vg.clone(), ex("lvm", g), vols));
    }
    out.filesystems.extend(
        storage
            .filesystems
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), ex("filesystems", i))),
    );
    Ok(out)
}
