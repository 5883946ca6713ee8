//! The explicit storage form: every partition, array, LUKS volume, volume group and
//! filesystem of a document, each with the place in the document it came from.

use super::model::{Erase, Filesystem, Luks, Partition, Raid, Storage, VolumeGroup};
use super::types::Name;
use crate::kinds::WipePolicy;

/// Where an item of the explicit form came from, so an error points at what the operator wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The item's path: `storage.partitions[2]`, or the layout entry that produced it.
    pub path: String,
    /// Whether the item's field names exist at `path` (false for what a layout derives
    /// from `mirror`/`disk`, whose fields the operator never wrote).
    pub fields: bool,
}

impl Origin {
    /// An item the operator wrote at `path`.
    pub(super) fn explicit(path: String) -> Origin {
        Origin { path, fields: true }
    }
    /// An item a layout derived; `path` is the layout entry that produced it.
    pub(super) fn derived(path: &str) -> Origin {
        Origin {
            path: path.to_string(),
            fields: false,
        }
    }
    /// The path of `field` of this item, or the item's own path when the operator did not write that field.
    pub fn field(&self, field: &str) -> String {
        if self.fields {
            format!("{}.{field}", self.path)
        } else {
            self.path.clone()
        }
    }
    /// True when the item came from `storage.layout`.
    pub fn is_layout(&self) -> bool {
        self.path.starts_with("storage.layout")
    }
}

/// The explicit storage of a document (layout expanded first, then the explicit items),
/// each item with its [`Origin`].
#[derive(Debug, Clone, Default)]
pub struct ExplicitStorage {
    pub wipe: WipePolicy,
    /// `storage.erase`: what a `secure` wipe may fall back to.
    pub erase: Option<Erase>,
    pub partitions: Vec<(Partition, Origin)>,
    pub raid: Vec<(Raid, Origin)>,
    pub luks: Vec<(Luks, Origin)>,
    /// Each volume group with its origin and one origin per volume.
    pub lvm: Vec<(VolumeGroup, Origin, Vec<Origin>)>,
    pub filesystems: Vec<(Filesystem, Origin)>,
    /// The disks the layout took.
    pub layout_disks: Vec<Name>,
}

impl ExplicitStorage {
    /// The explicit form as a document would write it.
    pub fn to_storage(&self) -> Storage {
        Storage {
            wipe: self.wipe,
            erase: self.erase.clone(),
            layout: None,
            partitions: self.partitions.iter().map(|(p, _)| p.clone()).collect(),
            raid: self.raid.iter().map(|(r, _)| r.clone()).collect(),
            luks: self.luks.iter().map(|(l, _)| l.clone()).collect(),
            lvm: self.lvm.iter().map(|(v, _, _)| v.clone()).collect(),
            filesystems: self.filesystems.iter().map(|(f, _)| f.clone()).collect(),
        }
    }
}
