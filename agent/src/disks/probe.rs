//! libblkid probing: every signature in a byte range of a device (filesystems, RAID
//! and LUKS superblocks, partition tables), erasing them, and reading partition tables
//! the kernel may not know.

use super::blkid::Probe;
use super::Signature;
use std::fs::File;
use std::path::Path;

/// No device carries more signatures than this; the bound keeps a confused probe finite.
const MAX_SIGNATURES: usize = 64;

/// A byte range of a device to probe: the whole device, or a partition by its offset.
#[derive(Debug, Clone, Copy)]
pub struct Area {
    /// Start of the range on the device, in bytes.
    pub offset: u64,
    /// None: to the end of the device.
    pub size: Option<u64>,
}

impl Area {
    /// The whole device.
    pub const WHOLE: Area = Area {
        offset: 0,
        size: None,
    };
}

/// A partition found in an on-disk table: number, start and length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TablePartition {
    /// Partition number in the table.
    pub number: u32,
    /// Start on the disk, in bytes.
    pub start_bytes: u64,
    /// Length in bytes.
    pub len_bytes: u64,
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// A prober over `area` of the open `file`, with every chain that finds signatures.
fn prober<'f>(file: &'f File, path: &Path, area: Area) -> Result<Probe<'f>, String> {
    Probe::on_file(file, area.offset, area.size)
        .and_then(Probe::with_signature_chains)
        .map_err(|e| err(path, "setting up libblkid on", e))
}

/// The signature the prober currently stands on; offsets are absolute on the device.
fn current(p: &Probe, area: Area) -> Signature {
    let get = |k: &str| p.value(k).filter(|v| !v.is_empty());
    let kind = get("TYPE")
        .or_else(|| get("PTTYPE"))
        .unwrap_or_else(|| "unknown".into());
    let offset = get("SBMAGIC_OFFSET")
        .or_else(|| get("PTMAGIC_OFFSET"))
        .and_then(|o| o.parse::<u64>().ok());
    Signature {
        kind,
        label: get("LABEL"),
        uuid: get("UUID").or_else(|| get("PTUUID")),
        offset: offset.map(|o| o + area.offset),
    }
}

/// Every signature libblkid finds in `area` of `file` (opened from `path`).
pub fn signatures(file: &File, path: &Path, area: Area) -> Result<Vec<Signature>, String> {
    let mut p = prober(file, path, area)?;
    let mut out = Vec::new();
    while out.len() < MAX_SIGNATURES && p.next().map_err(|e| err(path, "probing", e))? {
        out.push(current(&p, area));
    }
    Ok(out)
}

/// Erases every signature libblkid finds in `area` (repeating until none is left, bounded)
/// and returns what it erased. `file` must be open read-write.
pub fn wipe_signatures(file: &File, path: &Path, area: Area) -> Result<Vec<Signature>, String> {
    let mut erased = Vec::new();
    // wipe_current steps the probe back, so one pass erases stacked signatures at one place;
    // a fresh pass catches what the erasure uncovered (a GPT's backup once the primary is gone).
    for _pass in 0..8 {
        let mut p = prober(file, path, area)?;
        let before = erased.len();
        while erased.len() < MAX_SIGNATURES && p.next().map_err(|e| err(path, "probing", e))? {
            let sig = current(&p, area);
            p.wipe_current()
                .map_err(|e| err(path, &format!("erasing the {} signature on", sig.kind), e))?;
            erased.push(sig);
        }
        if erased.len() == before {
            return Ok(erased);
        }
    }
    let left = signatures(file, path, area)?;
    if left.is_empty() {
        Ok(erased)
    } else {
        Err(err(
            path,
            "signatures keep reappearing on",
            left.iter()
                .map(|s| s.kind.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ))
    }
}

/// The partitions of the table libblkid reads on the whole device (empty without a table).
pub fn table_partitions(file: &File, path: &Path) -> Result<Vec<TablePartition>, String> {
    let mut p =
        Probe::on_file(file, 0, None).map_err(|e| err(path, "setting up libblkid on", e))?;
    let mut out = Vec::new();
    for part in p
        .table()
        .map_err(|e| err(path, "reading the partition table of", e))?
    {
        // libblkid counts in 512-byte units whatever the sector size.
        if part.partno <= 0 || part.start < 0 || part.size <= 0 || part.extended {
            continue;
        }
        out.push(TablePartition {
            number: part.partno as u32,
            start_bytes: part.start as u64 * 512,
            len_bytes: part.size as u64 * 512,
        });
    }
    Ok(out)
}
