//! The on-disk GPT: writing a planned table, reading one back, and the fix-ups a
//! whole-disk image needs (backup header at the real end, grow, append).

use super::{Geometry, PartitionError, PartitionRequest, ALIGN_BYTES};
use crate::blockdev;
use crate::plan::PartitionPlan;
use crate::units::MIB;
use crate::units::{Bytes, SizeSpec};
use gpt::disk::LogicalBlockSize;
use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::partition_types::{OperatingSystem, Type};
use gpt::{GptConfig, GptDisk};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// The disk GUID of a GPT.
pub type DiskGuid = uuid::Uuid;

/// How long a partition node may take to appear after the kernel was told.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

fn io_err(what: &str, disk: &Path, e: impl std::fmt::Display) -> PartitionError {
    PartitionError::Io(format!("{what} {}: {e}", disk.display()))
}

/// Opens `disk` read-write and returns it with its size and logical sector size.
fn open_disk(disk: &Path) -> Result<(File, u64, u64), PartitionError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(|e| io_err("opening", disk, e))?;
    let size = blockdev::size_bytes(&f).map_err(|e| PartitionError::Io(e.to_string()))?;
    let sector = blockdev::logical_sector(&f).map_err(|e| PartitionError::Io(e.to_string()))?;
    Ok((f, size, sector))
}

fn lb_size(disk: &Path, sector: u64) -> Result<LogicalBlockSize, PartitionError> {
    LogicalBlockSize::try_from(sector)
        .map_err(|e| io_err("sector size of", disk, format!("{sector}: {e}")))
}

fn gpt_type(guid: &str) -> Result<Type, PartitionError> {
    let guid = uuid::Uuid::parse_str(guid).map_err(|e| {
        PartitionError::Layout(format!("partition type {guid:?} is not a GUID: {e}"))
    })?;
    Ok(Type {
        guid,
        os: OperatingSystem::None,
    })
}

/// The protective MBR for a disk of `total_lba` sectors (capped as the spec says).
fn protective_mbr(total_lba: u64) -> ProtectiveMBR {
    ProtectiveMBR::with_lb_size(u32::try_from(total_lba - 1).unwrap_or(u32::MAX))
}

/// Tells the kernel the table in `parts` and waits for every partition node.
fn publish(disk: &Path, sector: u64, parts: &[PartitionPlan]) -> Result<(), PartitionError> {
    let ranges: Vec<(u32, u64, u64)> = parts
        .iter()
        .map(|p| {
            (
                p.number,
                p.first_lba * sector,
                (p.last_lba - p.first_lba + 1) * sector,
            )
        })
        .collect();
    blockdev::sync_partitions(disk, &ranges).map_err(|e| PartitionError::Io(e.to_string()))?;
    for p in parts {
        blockdev::wait_for_node(&p.path, NODE_TIMEOUT)
            .map_err(|e| PartitionError::Io(e.to_string()))?;
    }
    Ok(())
}

fn plan_of(disk: &Path, number: u32, p: &Partition) -> PartitionPlan {
    PartitionPlan {
        name: if p.name.is_empty() {
            format!("part{number}")
        } else {
            p.name.clone()
        },
        number,
        label: p.name.clone(),
        type_guid: p
            .part_type_guid
            .guid
            .hyphenated()
            .to_string()
            .to_ascii_uppercase(),
        first_lba: p.first_lba,
        last_lba: p.last_lba,
        path: blockdev::partition_node(disk, number),
    }
}

/// Writes a new GPT (protective MBR, primary and backup headers and entries) holding
/// exactly `parts`, then tells the kernel and waits for the partition nodes.
pub fn write_table(
    disk: &Path,
    logical_sector: u64,
    parts: &[PartitionPlan],
) -> Result<DiskGuid, PartitionError> {
    let (mut f, size, sector) = open_disk(disk)?;
    if sector != logical_sector {
        return Err(PartitionError::Layout(format!(
            "{} has {sector}-byte logical sectors, but the plan was made for {logical_sector}; plan again",
            disk.display()
        )));
    }
    let geo = Geometry::new(size, sector)?;
    let lb = lb_size(disk, sector)?;
    let dup = f.try_clone().map_err(|e| io_err("opening", disk, e))?;
    let mut gpt = GptConfig::new()
        .writable(true)
        .logical_block_size(lb)
        .create_from_device(dup, None)
        .map_err(|e| io_err("creating a GPT on", disk, e))?;
    for p in parts {
        if p.first_lba < geo.first_usable
            || p.last_lba > geo.last_usable
            || p.last_lba < p.first_lba
        {
            return Err(PartitionError::Layout(format!(
                "partition {} ({}) spans LBA {}..{}, outside the usable {}..{} of {}",
                p.number,
                p.name,
                p.first_lba,
                p.last_lba,
                geo.first_usable,
                geo.last_usable,
                disk.display()
            )));
        }
        gpt.add_partition_at(
            &p.label,
            p.number,
            p.first_lba,
            p.last_lba - p.first_lba + 1,
            gpt_type(&p.type_guid)?,
            0,
        )
        .map_err(|e| {
            io_err(
                &format!("adding partition {} ({}) to", p.number, p.name),
                disk,
                e,
            )
        })?;
    }
    let guid = *gpt.guid();
    protective_mbr(size / sector)
        .overwrite_lba0(&mut f)
        .map_err(|e| io_err("writing the protective MBR of", disk, e))?;
    gpt.write_inplace()
        .map_err(|e| io_err("writing the GPT of", disk, e))?;
    blockdev::flush(&f).map_err(|e| PartitionError::Io(e.to_string()))?;
    drop(gpt);
    drop(f);
    publish(disk, sector, parts)?;
    Ok(guid)
}

/// Opens the GPT of `disk` (primary header, or the backup if the primary is damaged).
/// An opened GPT with the disk file, its size in bytes and its logical sector size.
type OpenGpt = (GptDisk<File>, File, u64, u64);

/// What the gpt crate cannot take: it asserts 128-byte partition entries (the UEFI spec
/// allows 128·2^n) and reads `num_parts` entries one by one (up to 2^32 of them). The
/// header it will use (the primary if its CRC holds, else the backup at the last LBA,
/// checked as it checks them) must have 128-byte entries and at most `MAX_ENTRIES`.
fn check_gpt_header(f: &File, disk: &Path, size: u64, sector: u64) -> Result<(), PartitionError> {
    const MAX_ENTRIES: u32 = 16384;
    let valid_at = |offset: u64| -> Option<[u8; 92]> {
        let mut h = [0u8; 92];
        f.read_exact_at(&mut h, offset).ok()?;
        if &h[..8] != b"EFI PART" {
            return None;
        }
        let stored = u32::from_le_bytes(h[16..20].try_into().ok()?);
        let mut zeroed = h;
        zeroed[16..20].fill(0);
        let mut crc = flate2::Crc::new();
        crc.update(&zeroed);
        (crc.sum() == stored).then_some(h)
    };
    let backup = (size >= 3 * sector).then(|| (size - sector) / sector * sector);
    let Some(h) = valid_at(sector).or_else(|| backup.and_then(valid_at)) else {
        return Ok(());
    };
    let entries = u32::from_le_bytes([h[80], h[81], h[82], h[83]]);
    let entry_size = u32::from_le_bytes([h[84], h[85], h[86], h[87]]);
    if entry_size != 128 {
        return Err(PartitionError::Io(format!(
            "the GPT of {} has {entry_size}-byte partition entries; imprint reads only 128-byte entries",
            disk.display()
        )));
    }
    if entries > MAX_ENTRIES {
        return Err(PartitionError::Io(format!(
            "the GPT of {} claims {entries} partition entries; imprint reads at most {MAX_ENTRIES}",
            disk.display()
        )));
    }
    Ok(())
}

fn open_gpt(disk: &Path) -> Result<Option<OpenGpt>, PartitionError> {
    let (f, size, sector) = open_disk(disk)?;
    check_gpt_header(&f, disk, size, sector)?;
    let lb = lb_size(disk, sector)?;
    let dup = f.try_clone().map_err(|e| io_err("opening", disk, e))?;
    match GptConfig::new()
        .writable(true)
        .logical_block_size(lb)
        .open_from_device(dup)
    {
        Ok(g) => Ok(Some((g, f, size, sector))),
        Err(gpt::GptError::Header(_)) => Ok(None),
        Err(e) => Err(io_err("reading the GPT of", disk, e)),
    }
}

/// The used partitions of a GPT by entry slot (gaps kept: see [`entries`]).
fn used(g: &GptDisk<File>) -> BTreeMap<u32, Partition> {
    g.partitions()
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(k, p)| (*k, p.clone()))
        .collect()
}

/// Writes `parts` back as the GPT of `disk`, every partition in its slot, both headers
/// recomputed for the disk's real size; flushes.
fn rewrite(
    disk: &Path,
    g: GptDisk<File>,
    f: &File,
    parts: BTreeMap<u32, Partition>,
) -> Result<(), PartitionError> {
    let (size, sector) = (
        blockdev::size_bytes(f).map_err(|e| PartitionError::Io(e.to_string()))?,
        blockdev::logical_sector(f).map_err(|e| PartitionError::Io(e.to_string()))?,
    );
    entries::write(f, size, sector, g.header(), &parts)
        .map_err(|e| io_err("rewriting the GPT of", disk, e))?;
    blockdev::flush(f).map_err(|e| PartitionError::Io(e.to_string()))
}

/// The lowest free entry slot (1-based): where sgdisk, too, puts a new partition.
fn free_slot(parts: &BTreeMap<u32, Partition>) -> u32 {
    (1..)
        .find(|n| !parts.contains_key(n))
        .expect("a free number")
}

/// Reads the GPT of `disk` as placed partitions (name = label, or `partN`).
pub fn read_table(disk: &Path) -> Result<Vec<PartitionPlan>, PartitionError> {
    let Some((g, _, _, _)) = open_gpt(disk)? else {
        return Err(PartitionError::Io(format!("{} has no GPT", disk.display())));
    };
    Ok(g.partitions()
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(n, p)| plan_of(disk, *n, p))
        .collect())
}

/// A used GPT entry with what firmware addresses a partition by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    /// 1-based entry number.
    pub number: u32,
    pub type_guid: uuid::Uuid,
    /// The partition's own GUID (`PARTUUID`).
    pub unique_guid: uuid::Uuid,
    /// First and last LBA, inclusive, in the disk's logical sectors.
    pub first_lba: u64,
    pub last_lba: u64,
    /// Its device node.
    pub path: std::path::PathBuf,
}

/// The used entries of the GPT of `disk` (empty when it has none).
pub fn gpt_entries(disk: &Path) -> Result<Vec<GptEntry>, PartitionError> {
    let Some((g, _, _, _)) = open_gpt(disk)? else {
        return Ok(Vec::new());
    };
    Ok(used(&g)
        .into_iter()
        .map(|(number, p)| GptEntry {
            number,
            type_guid: p.part_type_guid.guid,
            unique_guid: p.part_guid,
            first_lba: p.first_lba,
            last_lba: p.last_lba,
            path: blockdev::partition_node(disk, number),
        })
        .collect())
}

/// After a whole-disk image: moves the backup header and entries to the real end of
/// the disk and raises last_usable_lba. Ok(false) if the disk has no GPT or it is
/// already in place.
pub fn relocate_backup_gpt(disk: &Path) -> Result<bool, PartitionError> {
    let Some((g, mut f, size, sector)) = open_gpt(disk)? else {
        return Ok(false);
    };
    Geometry::new(size, sector)?;
    let h = g.header().clone();
    let end_lba = size / sector - 1;
    if h.backup_lba == end_lba && g.backup_header().is_ok() {
        return Ok(false);
    }
    let parts = used(&g);
    // The stale backup (entries + header) in the middle of the disk would confuse tools
    // that scan for headers; it lies beyond the old last_usable, so no partition holds it.
    if h.backup_lba < end_lba && h.last_usable < h.backup_lba {
        let from = (h.last_usable + 1) * sector;
        let len = (h.backup_lba - h.last_usable) * sector;
        f.seek(SeekFrom::Start(from))
            .map_err(|e| io_err("seeking on", disk, e))?;
        f.write_all(&vec![0u8; len as usize])
            .map_err(|e| io_err("erasing the old backup GPT of", disk, e))?;
    }
    let old_mbr = ProtectiveMBR::from_disk(&mut f, lb_size(disk, sector)?).ok();
    let plain_protective = old_mbr.as_ref().is_some_and(|m| {
        m.partition(0).is_some_and(|p| p.os_type == 0xEE)
            && (1..4).all(|i| m.partition(i).is_some_and(|p| p.os_type == 0))
    });
    rewrite(disk, g, &f, parts)?;
    if plain_protective {
        // Keep the image's boot code: only the partition records change.
        protective_mbr(size / sector)
            .update_conservative(&mut f)
            .map_err(|e| io_err("updating the MBR of", disk, e))?;
        blockdev::flush(&f).map_err(|e| PartitionError::Io(e.to_string()))?;
    }
    let table = read_table(disk)?;
    drop(f);
    publish(disk, sector, &table)?;
    Ok(true)
}

/// Extends the partition that ends last to the end of the usable space, less
/// `reserve_bytes` kept free after it (for a configdrive appended next).
/// Returns its number and new size in bytes, or None if it already reaches the end.
pub fn grow_last_partition(
    disk: &Path,
    reserve_bytes: u64,
) -> Result<Option<(u32, u64)>, PartitionError> {
    let Some((g, f, _, sector)) = open_gpt(disk)? else {
        return Err(PartitionError::Io(format!(
            "{} has no GPT; there is no partition to grow",
            disk.display()
        )));
    };
    let mut parts = used(&g);
    let last_usable = g.header().last_usable;
    let Some((&n, _)) = parts.iter().max_by_key(|(_, p)| p.last_lba) else {
        return Ok(None);
    };
    let p = parts.get_mut(&n).expect("key from the map");
    // Leave `reserve_bytes` (plus alignment slack) free after it, on a 1 MiB boundary.
    let new_last = if reserve_bytes == 0 {
        last_usable
    } else {
        let end = ((last_usable + 1) * sector).saturating_sub(reserve_bytes + MIB) / MIB * MIB;
        (end / sector).saturating_sub(1).min(last_usable)
    };
    if p.last_lba >= new_last {
        return Ok(None);
    }
    p.last_lba = new_last;
    let new_size = (p.last_lba - p.first_lba + 1) * sector;
    rewrite(disk, g, &f, parts)?;
    drop(f);
    publish(disk, sector, &read_table(disk)?)?;
    Ok(Some((n, new_size)))
}

/// Adds a partition of `size_bytes` after the last one, 1 MiB aligned (the configdrive
/// after an image), tells the kernel and waits for its node.
pub fn append_partition(
    disk: &Path,
    size_bytes: u64,
    type_guid: &str,
    label: &str,
) -> Result<PartitionPlan, PartitionError> {
    let req = PartitionRequest {
        name: label.to_string(),
        label: label.to_string(),
        type_guid: type_guid.to_string(),
        size: SizeSpec::Bytes(Bytes(size_bytes)),
    };
    let mut placed = append_partitions(disk, &[req], 0)?;
    Ok(placed.remove(0))
}

/// Adds `reqs` in order after the last partition (the data partitions beside a
/// whole-disk image), each on a 1 MiB boundary; a `rest` request takes the space up to
/// the end less `reserve_bytes` (for a configdrive appended next). One table write;
/// tells the kernel and waits for the nodes. The plans carry the requests' names.
pub fn append_partitions(
    disk: &Path,
    reqs: &[PartitionRequest],
    reserve_bytes: u64,
) -> Result<Vec<PartitionPlan>, PartitionError> {
    let Some((g, f, size, sector)) = open_gpt(disk)? else {
        return Err(PartitionError::Io(format!(
            "{} has no GPT to append a partition to",
            disk.display()
        )));
    };
    let mut parts = used(&g);
    let h = g.header();
    let align = ALIGN_BYTES / sector;
    let mut after = parts
        .values()
        .map(|p| p.last_lba + 1)
        .max()
        .unwrap_or(h.first_usable)
        .max(h.first_usable);
    let mut placed = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let first = after.div_ceil(align) * align;
        let left = (h.last_usable + 1).saturating_sub(first) * sector;
        let len = match r.size {
            SizeSpec::Bytes(b) => b.0.div_ceil(sector).max(1),
            SizeSpec::Rest => {
                // Everything to the end, less what the requests after it and the reserve
                // need (each on its own 1 MiB boundary).
                let later: u64 = reqs[i + 1..]
                    .iter()
                    .map(|q| match q.size {
                        SizeSpec::Bytes(b) => b.0.div_ceil(MIB) * MIB,
                        SizeSpec::Rest => 0,
                    })
                    .sum();
                let keep = later + reserve_bytes.div_ceil(MIB) * MIB;
                let end = (h.last_usable + 1) / align * align;
                end.saturating_sub(keep.div_ceil(sector))
                    .saturating_sub(first)
            }
        };
        if len == 0 || first + len - 1 > h.last_usable {
            return Err(PartitionError::Layout(format!(
                "partition '{}' ({}) does not fit after the last partition of {}: {} left of {}",
                r.name,
                match r.size {
                    SizeSpec::Bytes(b) => b.human(),
                    SizeSpec::Rest => "the rest".into(),
                },
                disk.display(),
                Bytes(left).human(),
                Bytes(size).human()
            )));
        }
        let number = free_slot(&parts);
        let new = Partition {
            part_type_guid: gpt_type(&r.type_guid)?,
            part_guid: uuid::Uuid::new_v4(),
            first_lba: first,
            last_lba: first + len - 1,
            flags: 0,
            name: r.label.clone(),
        };
        let mut plan = plan_of(disk, number, &new);
        plan.name = r.name.clone();
        placed.push(plan);
        parts.insert(number, new);
        after = first + len;
    }
    if reserve_bytes > 0 {
        let end = (h.last_usable + 1) * sector;
        let used = after * sector;
        if end.saturating_sub(used) < reserve_bytes {
            return Err(PartitionError::Layout(format!(
                "the partitions appended to {} leave {} at its end, and the configdrive needs {}",
                disk.display(),
                Bytes(end.saturating_sub(used)).human(),
                Bytes(reserve_bytes).human()
            )));
        }
    }
    rewrite(disk, g, &f, parts)?;
    drop(f);
    publish(disk, sector, &read_table(disk)?)?;
    Ok(placed)
}

mod entries;

#[cfg(test)]
mod tests;
