//! GPT partitioning: placing partitions (1 MiB alignment, sizes, `rest`),
//! writing the table, and the fix-ups after a whole-disk image.

use crate::plan::PartitionPlan;
use crate::units::SizeSpec;
use std::path::Path;

/// One partition as the document asks for it, before placement.
#[derive(Debug, Clone)]
pub struct PartitionRequest {
    pub name: String,
    pub label: String,
    /// Canonical upper-case type GUID (see [`type_guid`]).
    pub type_guid: String,
    pub size: SizeSpec,
}

/// Why partitions could not be placed or written.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("{0}")]
    Layout(String),
    #[error("{0}")]
    Io(String),
}

/// Resolves a type alias (`esp`, `bios-boot`, `linux`, `swap`, `raid`, `luks`, `lvm`,
/// `xbootldr`) or a GUID to the canonical upper-case GUID.
pub fn type_guid(alias_or_guid: &str) -> Option<String> {
    let _ = alias_or_guid;
    todo!("partition::type_guid")
}

/// Places `reqs` on a disk of `disk_bytes` bytes with `logical_sector`-byte sectors:
/// 1 MiB alignment, at most one `rest`, partition node names derived from `disk_path`.
pub fn place(
    disk_path: &Path,
    disk_bytes: u64,
    logical_sector: u64,
    reqs: &[PartitionRequest],
) -> Result<Vec<PartitionPlan>, PartitionError> {
    let _ = (disk_path, disk_bytes, logical_sector, reqs);
    todo!("partition::place")
}
