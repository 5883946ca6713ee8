//! Disk inventory (sysfs + libblkid) and selection by hints.

use crate::units::Bytes;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One block device with the attributes hints match on.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Disk {
    /// `/dev/sda`, `/dev/nvme0n1`, `/dev/loop3`.
    pub path: PathBuf,
    pub size_bytes: u64,
    pub logical_sector: u64,
    pub physical_sector: u64,
    pub rotational: bool,
    pub removable: bool,
    pub read_only: bool,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    /// `/dev/disk/by-path/…` names (empty when udev is absent and none can be derived).
    pub by_path: Vec<String>,
    pub partitions: Vec<PartitionInfo>,
    /// Signatures libblkid finds on the whole device.
    pub signatures: Vec<Signature>,
    /// Kernel holders (`md127`, `dm-0`) of the disk or its partitions.
    pub holders: Vec<String>,
    /// Mount points of the disk or its partitions.
    pub mounts: Vec<String>,
}

/// A partition the kernel knows about.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PartitionInfo {
    pub path: PathBuf,
    pub number: u32,
    pub start_sector: u64,
    pub size_bytes: u64,
    pub signatures: Vec<Signature>,
}

/// A signature found by libblkid (filesystem, RAID member, LUKS, partition table).
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct Signature {
    /// `ext4`, `crypto_LUKS`, `linux_raid_member`, `LVM2_member`, `gpt`, …
    pub kind: String,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub offset: Option<u64>,
}

/// Hints selecting one disk. Every given hint must match.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hints {
    /// Device path, e.g. `/dev/sda` (symlinks such as `/dev/disk/by-id/…` are resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A `/dev/disk/by-path` name, with or without that prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotational: Option<bool>,
    /// Of the disks matching every other hint, take the smallest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smallest: bool,
}

/// Why selection failed; the message lists every candidate and why it did or did not match.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no disk matches {hints}:\n{candidates}")]
    NoMatch { hints: String, candidates: String },
    #[error("{count} disks match {hints}; add a hint that tells them apart (serial, wwn, by_path):\n{candidates}")]
    Ambiguous { hints: String, count: usize, candidates: String },
}

/// Errors reading the inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("reading {path}: {source}")]
    Sysfs { path: String, source: std::io::Error },
    #[error("probing {path} with libblkid: {msg}")]
    Probe { path: String, msg: String },
}

/// Lists the block devices this machine has (whole disks; no partitions, ram, zram,
/// dm or md devices; loop devices only when they have a backing file).
pub fn inventory() -> Result<Vec<Disk>, InventoryError> {
    todo!("disks::inventory")
}

/// Selects exactly one disk from `disks` by `hints`.
pub fn select<'a>(hints: &Hints, disks: &'a [Disk]) -> Result<&'a Disk, SelectError> {
    let _ = (hints, disks);
    todo!("disks::select")
}
