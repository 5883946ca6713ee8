//! Wiping a disk: every signature libblkid finds on it and its partitions,
//! the MBR and both GPT headers.
//!
//! Signatures are erased where libblkid finds them rather than by zeroing fixed
//! ranges: md 1.0 superblocks live at the end of a member, LUKS2 keeps a second
//! header at 16 KiB, and partitions the kernel never parsed (this host's kernel
//! parses no GPT) are found through the table libblkid reads.

use crate::blockdev::{self, BlockError};
use crate::disks::probe::{self, Area};
use crate::disks::{self, Disk};
use crate::units::MIB;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How thoroughly to wipe (declared with the document's other shared kinds).
pub use crate::kinds::WipePolicy as Policy;

/// One erased signature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Erased {
    /// The device it was on: the disk, or the partition (node name, even if the kernel had none).
    pub device: PathBuf,
    /// `ext4`, `crypto_LUKS`, `gpt`, `PMBR`, …
    pub kind: String,
    /// Byte offset of the magic on the disk.
    pub offset: Option<u64>,
}

/// What a wipe did.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
pub struct WipeReport {
    /// The wiped disk.
    pub disk: PathBuf,
    /// Every signature erased, partitions first, in order.
    pub erased: Vec<Erased>,
    /// Byte ranges zeroed explicitly (start, length): the first and last MiB, or everything.
    pub zeroed: Vec<(u64, u64)>,
    /// Whether the whole disk was discarded.
    pub discarded: bool,
    /// Partitions the kernel was told to forget (stale ones past the end included).
    pub forgot_partitions: Vec<u32>,
    /// Regions libblkid could not read, so their signatures may be left: a damaged
    /// disk is still wiped, and what the wipe could not look at is said here.
    pub unreadable: Vec<Unreadable>,
}

/// A region of the disk the wipe could not probe.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Unreadable {
    /// The partition node or the disk whose region it is.
    pub device: PathBuf,
    /// Start of the region on the disk, in bytes.
    pub offset: u64,
    /// Length of the region, in bytes.
    pub len: u64,
    /// What failed, as libblkid said it.
    pub error: String,
}

/// Why a wipe failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum WipeError {
    #[error("refusing to wipe {disk}: {reasons}; stop what uses it first, or force the wipe")]
    Busy { disk: String, reasons: String },
    #[error("wiping {disk}: {source}")]
    Io {
        disk: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(transparent)]
    Inventory(#[from] disks::InventoryError),
}

/// What makes a disk unsafe to wipe: mounts (swap included) and holders of it or its partitions.
pub fn busy_reasons(d: &Disk) -> Vec<String> {
    let mut r = Vec::new();
    if !d.mounts.is_empty() {
        r.push(format!("mounted at {}", d.mounts.join(", ")));
    }
    if !d.holders.is_empty() {
        r.push(format!("held by {}", d.holders.join(", ")));
    }
    r
}

/// Refuses a mounted or held disk, or warns that it is wiped anyway (`force`).
pub fn refuse_if_busy(disk: &Path, name: &str, force: bool) -> Result<(), WipeError> {
    let inv = disks::inventory_paths(&[disk.to_path_buf()])?;
    let reasons = inv.first().map(busy_reasons).unwrap_or_default();
    if reasons.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(WipeError::Busy {
            disk: name.to_string(),
            reasons: reasons.join("; "),
        });
    }
    crate::runner::log::warn(&format!(
        "wiping {name} although it is {} (forced)",
        reasons.join("; ")
    ));
    Ok(())
}

/// (number, start, length) of every partition: those the kernel knows, then those only
/// in the table on the disk.
fn partition_areas(
    file: &File,
    disk: &Path,
    is_block: bool,
    size: u64,
    unreadable: &mut Vec<Unreadable>,
) -> Result<Vec<(u32, u64, u64)>, WipeError> {
    let mut areas: Vec<(u32, u64, u64)> = Vec::new();
    if is_block {
        areas.extend(
            blockdev::kernel_partitions(disk)?
                .iter()
                .map(|p| (p.number, p.start_bytes, p.len_bytes)),
        );
    }
    let table = match probe::table_partitions(file, disk) {
        Ok(t) => t,
        Err(error) => {
            unreadable.push(Unreadable {
                device: disk.to_path_buf(),
                offset: 0,
                len: size,
                error,
            });
            Vec::new()
        }
    };
    for t in table {
        if !areas
            .iter()
            .any(|a| a.1 == t.start_bytes && a.2 == t.len_bytes)
        {
            areas.push((t.number, t.start_bytes, t.len_bytes));
        }
    }
    Ok(areas)
}

/// Wipes `disk`: every signature on every partition (kernel-known or only in the table),
/// then on the disk, then the first and last MiB; then the `policy` extra; then the
/// kernel forgets the partitions. Refuses a mounted or held disk unless `force`.
pub fn wipe_disk(disk: &Path, policy: Policy, force: bool) -> Result<WipeReport, WipeError> {
    let name = disk.display().to_string();
    let is_block = blockdev::is_block_device(disk);
    if is_block {
        refuse_if_busy(disk, &name, force)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(|source| WipeError::Io {
            disk: name.clone(),
            source,
        })?;
    let size = blockdev::size_bytes(&file)?;
    let mut report = WipeReport {
        disk: disk.to_path_buf(),
        ..WipeReport::default()
    };

    // Every partition area, read before anything is erased: the table goes last.
    let areas = partition_areas(&file, disk, is_block, size, &mut report.unreadable)?;
    for (number, start, len) in areas {
        if start >= size {
            continue;
        }
        let area = Area {
            offset: start,
            size: Some(len.min(size - start)),
        };
        let device = blockdev::partition_node(disk, number);
        erase_in(&file, &mut report, &device, area, size);
    }
    erase_in(&file, &mut report, disk, Area::WHOLE, size);

    // MBR, primary GPT and backup GPT, whatever libblkid made of them.
    let edge = MIB.min(size / 2);
    for start in [0, size - edge] {
        zero_range(&file, &name, start, edge)?;
        report.zeroed.push((start, edge));
    }
    match policy {
        Policy::Signatures => {}
        Policy::Discard => match blockdev::discard(&file, 0, size) {
            Ok(()) => report.discarded = true,
            Err(BlockError::Unsupported { .. } | BlockError::NotBlock { .. }) => {
                crate::runner::log::info(&format!(
                    "{name} does not support discard; signatures are wiped"
                ))
            }
            Err(e) => return Err(e.into()),
        },
        Policy::Zero => {
            blockdev::zero_out(&file, 0, size)?;
            report.zeroed = vec![(0, size)];
        }
        // The whole disk was erased before (storage::erase), with its own report.
        Policy::Secure => {}
    }
    blockdev::flush(&file)?;
    drop(file);

    if is_block {
        let f = File::open(disk).map_err(|source| WipeError::Io {
            disk: name.clone(),
            source,
        })?;
        for p in blockdev::kernel_partitions(disk)? {
            blockdev::delete_partition(&f, p.number)?;
            report.forgot_partitions.push(p.number);
        }
    }
    Ok(report)
}

/// Erases every signature in `area` of the disk (`device` names it in the report); a
/// region libblkid cannot read is reported as unreadable and the wipe goes on.
fn erase_in(file: &File, report: &mut WipeReport, device: &Path, area: Area, size: u64) {
    match probe::wipe_signatures(file, &report.disk, area) {
        Ok(found) => report.erased.extend(found.into_iter().map(|s| Erased {
            device: device.to_path_buf(),
            kind: s.kind,
            offset: s.offset,
        })),
        Err(error) => {
            crate::runner::log::warn(&format!(
                "wiping {}: {error}; carrying on (the region is in the report)",
                report.disk.display()
            ));
            report.unreadable.push(Unreadable {
                device: device.to_path_buf(),
                offset: area.offset,
                len: area.size.unwrap_or(size - area.offset),
                error,
            });
        }
    }
}

/// Writes zeros over `len` bytes at `start` in 1 MiB pieces.
fn zero_range(f: &File, name: &str, start: u64, len: u64) -> Result<(), WipeError> {
    let zeros = vec![0u8; MIB as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(MIB);
        f.write_all_at(&zeros[..n as usize], start + done)
            .map_err(|source| WipeError::Io {
                disk: name.to_string(),
                source,
            })?;
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
