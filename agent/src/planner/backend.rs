//! Disk selection and partition placement as the planner needs them, behind a trait so
//! the planner can be tested without real disks.

use crate::disks::{Disk, Hints};
use crate::plan::PartitionPlan;
use crate::storage::partition::PartitionRequest;
use std::path::Path;

/// Disk selection and partition placement, as the planner needs them.
pub trait Backend {
    /// Chooses exactly one disk; the error lists the candidates.
    fn select<'a>(&self, hints: &Hints, disks: &'a [Disk]) -> Result<&'a Disk, String>;
    /// Places partitions (1 MiB alignment, one `rest`) on a disk.
    fn place(
        &self,
        disk_path: &Path,
        disk_bytes: u64,
        logical_sector: u64,
        reqs: &[PartitionRequest],
    ) -> Result<Vec<PartitionPlan>, String>;
}

/// The real [`Backend`]: [`crate::disks::select`] and [`crate::storage::partition::place`].
pub struct System;

impl Backend for System {
    fn select<'a>(&self, hints: &Hints, disks: &'a [Disk]) -> Result<&'a Disk, String> {
        crate::disks::select(hints, disks).map_err(|e| e.to_string())
    }
    fn place(
        &self,
        disk_path: &Path,
        disk_bytes: u64,
        logical_sector: u64,
        reqs: &[PartitionRequest],
    ) -> Result<Vec<PartitionPlan>, String> {
        crate::storage::partition::place(disk_path, disk_bytes, logical_sector, reqs)
            .map_err(|e| e.to_string())
    }
}
