//! Writes a GPT back with every partition in its own entry slot. The gpt crate packs
//! the used entries at the front of the array when it writes, which renumbers a table
//! with gaps — and stock cloud images number theirs 1, 14, 15 (root, BIOS boot, ESP),
//! with an fstab or a boot loader that may name the numbers.

use super::super::PartitionError;
use gpt::header::Header;
use gpt::partition::Partition;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

const HEADER_SIZE: usize = 92;

/// Writes `parts` (entry slot number → partition) as the GPT of the disk behind `f`
/// (`size` bytes of `sector`-byte sectors): the entry array and primary header where
/// `h` has them, the backup array and header at the very end, `last_usable` just
/// before the backup array. Keeps `h`'s disk GUID, first usable LBA and array size.
pub(super) fn write(
    f: &File,
    size: u64,
    sector: u64,
    h: &Header,
    parts: &BTreeMap<u32, Partition>,
) -> Result<(), PartitionError> {
    let slots = h.num_parts as usize;
    let entry = h.part_size as usize;
    if entry < 128 || parts.keys().any(|&n| n == 0 || n as usize > slots) {
        return Err(PartitionError::Layout(format!(
            "partition numbers {:?} do not fit the table's {slots} entries of {entry} bytes",
            parts.keys().collect::<Vec<_>>()
        )));
    }
    let mut array = vec![0u8; slots * entry];
    for (&n, p) in parts {
        let at = (n as usize - 1) * entry;
        encode_entry(p, &mut array[at..at + 128]);
    }
    let array_lbas = (array.len() as u64).div_ceil(sector);
    let last_lba = size / sector - 1;
    let backup_array = last_lba - array_lbas;
    let last_usable = backup_array - 1;
    if h.part_start + array_lbas > h.first_usable || h.first_usable > last_usable {
        return Err(PartitionError::Layout(format!(
            "the GPT's entry array ({array_lbas} sectors from LBA {}) and first usable LBA {} do not fit a disk of {} sectors",
            h.part_start,
            h.first_usable,
            last_lba + 1
        )));
    }
    if let Some((n, p)) = parts
        .iter()
        .find(|(_, p)| p.last_lba > last_usable || p.first_lba < h.first_usable)
    {
        return Err(PartitionError::Layout(format!(
            "partition {n} (LBA {}-{}) lies outside the usable sectors {}-{last_usable}",
            p.first_lba, p.last_lba, h.first_usable
        )));
    }
    let array_crc = crc32(&array);
    let header = |mine: u64, other: u64, array_at: u64| {
        let mut b = [0u8; HEADER_SIZE];
        b[..8].copy_from_slice(b"EFI PART");
        b[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        b[24..32].copy_from_slice(&mine.to_le_bytes());
        b[32..40].copy_from_slice(&other.to_le_bytes());
        b[40..48].copy_from_slice(&h.first_usable.to_le_bytes());
        b[48..56].copy_from_slice(&last_usable.to_le_bytes());
        b[56..72].copy_from_slice(&h.disk_guid.to_bytes_le());
        b[72..80].copy_from_slice(&array_at.to_le_bytes());
        b[80..84].copy_from_slice(&h.num_parts.to_le_bytes());
        b[84..88].copy_from_slice(&h.part_size.to_le_bytes());
        b[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32(&b);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        let mut lba = vec![0u8; sector as usize];
        lba[..HEADER_SIZE].copy_from_slice(&b);
        lba
    };
    let put = |what: &str, at_lba: u64, bytes: &[u8]| {
        f.write_all_at(bytes, at_lba * sector)
            .map_err(|e| PartitionError::Io(format!("writing the {what}: {e}")))
    };
    // Arrays before headers: a header is only ever written over a valid array.
    put("backup GPT entries", backup_array, &array)?;
    put(
        "backup GPT header",
        last_lba,
        &header(last_lba, 1, backup_array),
    )?;
    put("GPT entries", h.part_start, &array)?;
    put("primary GPT header", 1, &header(1, last_lba, h.part_start))
}

/// One 128-byte GPT entry: type and unique GUIDs (mixed-endian), first and last LBA,
/// attribute flags, the name in UTF-16LE (36 code units at most).
fn encode_entry(p: &Partition, out: &mut [u8]) {
    out[..16].copy_from_slice(&p.part_type_guid.guid.to_bytes_le());
    out[16..32].copy_from_slice(&p.part_guid.to_bytes_le());
    out[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
    out[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
    out[48..56].copy_from_slice(&p.flags.to_le_bytes());
    for (i, unit) in p.name.encode_utf16().take(36).enumerate() {
        out[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(b);
    c.sum()
}
