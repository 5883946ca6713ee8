//! Memory: what the kernel manages (`/proc/meminfo`) and, when SMBIOS lists the memory
//! devices (type 17, `/sys/firmware/dmi/entries/17-*/raw`, root only), what is installed.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// How much memory there is.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
pub struct Memory {
    /// `MemTotal` in bytes: usable by the kernel (less than installed).
    pub total_bytes: Option<u64>,
    /// The sum of the installed memory devices SMBIOS lists; null without DMI or as non-root.
    pub physical_bytes: Option<u64>,
}

/// Reads both under `root`.
pub fn collect(root: &Path) -> Memory {
    let meminfo = std::fs::read_to_string(root.join("proc/meminfo")).unwrap_or_default();
    Memory {
        total_bytes: mem_total(&meminfo),
        physical_bytes: physical(root),
    }
}

/// `MemTotal:  16384 kB` in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut f = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = f.next()?.parse().ok()?;
    match f.next() {
        Some("kB") | None => n.checked_mul(1024),
        _ => None,
    }
}

/// The sum over SMBIOS memory devices; `None` when none could be read.
fn physical(root: &Path) -> Option<u64> {
    let dir = std::fs::read_dir(root.join("sys/firmware/dmi/entries")).ok()?;
    let mut total = None;
    for e in dir.flatten() {
        if !e.file_name().to_string_lossy().starts_with("17-") {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("raw")) else {
            continue;
        };
        if let Some(size) = memory_device_size(&raw) {
            total = Some(total.unwrap_or(0u64).saturating_add(size));
        }
    }
    total
}

/// The size in bytes of one SMBIOS type 17 structure; `None` for an empty slot, an
/// unknown size or a structure too short to hold one.
pub fn memory_device_size(raw: &[u8]) -> Option<u64> {
    if raw.first() != Some(&17) {
        return None;
    }
    let word = u16::from_le_bytes([*raw.get(0x0c)?, *raw.get(0x0d)?]);
    match word {
        0 | 0xffff => None,
        // The real size is in Extended Size, in MiB (SMBIOS 2.7+).
        0x7fff => {
            let ext = u32::from_le_bytes(raw.get(0x1c..0x20)?.try_into().ok()?) & 0x7fff_ffff;
            Some(u64::from(ext) << 20)
        }
        // Bit 15: the size is in KiB, else MiB.
        w if w & 0x8000 != 0 => Some(u64::from(w & 0x7fff) << 10),
        w => Some(u64::from(w) << 20),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testtree::put;
    use super::*;

    fn type17(size: u16, ext: u32) -> Vec<u8> {
        let mut raw = vec![0u8; 0x28];
        raw[0] = 17;
        raw[1] = 0x28;
        raw[0x0c..0x0e].copy_from_slice(&size.to_le_bytes());
        raw[0x1c..0x20].copy_from_slice(&ext.to_le_bytes());
        raw
    }

    #[test]
    fn meminfo_total_is_in_bytes() {
        assert_eq!(
            mem_total("MemTotal:       16303412 kB\nMemFree: 1 kB\n"),
            Some(16303412 * 1024)
        );
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn smbios_sizes_in_mib_kib_and_extended() {
        assert_eq!(memory_device_size(&type17(16384, 0)), Some(16 << 30));
        assert_eq!(
            memory_device_size(&type17(0x8000 | 512, 0)),
            Some(512 << 10)
        );
        assert_eq!(memory_device_size(&type17(0x7fff, 65536)), Some(64 << 30));
        assert_eq!(memory_device_size(&type17(0, 0)), None, "an empty slot");
        assert_eq!(memory_device_size(&[17, 4, 0]), None, "too short");
        assert_eq!(memory_device_size(&type17(1, 0)[..0x0d]), None);
    }

    #[test]
    fn installed_devices_are_summed_and_missing_dmi_is_null() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "proc/meminfo", "MemTotal: 1024 kB\n");
        assert_eq!(
            collect(r),
            Memory {
                total_bytes: Some(1 << 20),
                physical_bytes: None
            }
        );
        for (i, size) in [(0, 8192u16), (1, 0), (2, 8192)] {
            let p = r.join(format!("sys/firmware/dmi/entries/17-{i}"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("raw"), type17(size, 0)).unwrap();
        }
        assert_eq!(collect(r).physical_bytes, Some(16 << 30));
    }
}
