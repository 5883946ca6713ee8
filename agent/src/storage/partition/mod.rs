//! GPT partitioning: placing partitions (1 MiB alignment, sizes, `rest`),
//! writing the table, and the fix-ups after a whole-disk image.
//!
//! [`place`] is pure arithmetic on byte sizes; [`table`] reads and writes the
//! on-disk GPT and tells the kernel through [`crate::blockdev`].

mod table;

pub use table::{
    append_partition, append_partitions, gpt_entries, grow_last_partition, read_table,
    relocate_backup_gpt, write_table, DiskGuid, GptEntry,
};

use crate::blockdev::partition_node;
use crate::plan::PartitionPlan;
use crate::units::{Bytes, SizeSpec, MIB};
use std::path::Path;

/// Partitions start on 1 MiB boundaries, whatever the sector size.
pub const ALIGN_BYTES: u64 = MIB;
/// GPT partition entries we reserve: 128 entries of 128 bytes, as every tool does.
const ENTRY_ARRAY_BYTES: u64 = 128 * 128;

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

/// Type aliases and their GUIDs (UEFI spec and the Discoverable Partitions Specification).
const ALIASES: &[(&str, &str)] = &[
    ("esp", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
    ("bios-boot", "21686148-6449-6E6F-744E-656564454649"),
    ("linux", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
    ("swap", "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"),
    ("raid", "A19D880F-05FC-4D3B-A006-743F0F84911E"),
    ("luks", "CA7D7CCB-63ED-4C53-861C-1742536059CC"),
    ("lvm", "E6D6D379-F507-44C2-A23C-238F2A3DF928"),
    ("xbootldr", "BC13C2FF-59E6-4262-A352-B275FD6F7172"),
    ("home", "933AC7E1-2EB4-4F13-B844-0E14E2AEF915"),
    ("srv", "3B8F8425-20E0-4F3B-907F-1A25A76F98E8"),
    ("var", "4D21B016-B534-45C2-A9FB-5C16E091FD2D"),
    ("var-tmp", "7EC6F557-3BC5-4ACA-B293-16EF5DF639D1"),
    ("root-x86-64", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
    ("root-aarch64", "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"),
    ("usr-x86-64", "8484680C-9521-48C6-9C11-B0720656F69E"),
    ("usr-aarch64", "B0E01050-EE5F-4390-949A-9101B17104E9"),
    ("linux-reserved", "8DA63339-0007-60C0-C436-083AC8230908"),
    ("prep", "9E1A2D38-C612-4316-AA26-8B49521E5A8B"),
    ("msr", "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"),
    ("basic-data", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
];

/// Resolves a type alias (`esp`, `bios-boot`, `linux`, `swap`, `raid`, `luks`, `lvm`,
/// `xbootldr`, `home`, `srv`, `var`, `root` …) or a GUID in any case to the canonical
/// upper-case GUID. `root`/`usr` mean this machine's architecture.
pub fn type_guid(alias_or_guid: &str) -> Option<String> {
    let key = alias_or_guid.trim().to_ascii_lowercase().replace('_', "-");
    let key = match key.as_str() {
        "root" => crate::arch::Arch::host().root_type().to_string(),
        "usr" => crate::arch::Arch::host().usr_type().to_string(),
        "efi" => "esp".to_string(),
        "bios" | "bios-grub" => "bios-boot".to_string(),
        _ => key,
    };
    if let Some((_, g)) = ALIASES.iter().find(|(a, _)| *a == key) {
        return Some((*g).to_string());
    }
    // Only the hyphenated 36-character form: it is what documents and tools print.
    if key.len() != 36 {
        return None;
    }
    uuid::Uuid::parse_str(&key)
        .ok()
        .map(|u| u.hyphenated().to_string().to_ascii_uppercase())
}

/// The alias of a canonical type GUID, for display (`esp`, `linux`), if it has one.
pub fn type_alias(guid: &str) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(_, g)| g.eq_ignore_ascii_case(guid))
        .map(|(a, _)| *a)
}

/// The GPT geometry of a disk: usable LBA range and alignment, all in logical sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Logical sector size in bytes.
    pub sector: u64,
    /// First LBA a partition may use (after the primary entries).
    pub first_usable: u64,
    /// Last LBA a partition may use (before the backup entries).
    pub last_usable: u64,
    /// Alignment of partition starts, in sectors (1 MiB).
    pub align: u64,
}

impl Geometry {
    /// The geometry of a `disk_bytes`-byte disk with `sector`-byte logical sectors.
    pub fn new(disk_bytes: u64, sector: u64) -> Result<Geometry, PartitionError> {
        if !matches!(sector, 512 | 4096) {
            return Err(PartitionError::Layout(format!(
                "logical sector size {sector} is not supported (GPT here needs 512 or 4096)"
            )));
        }
        let entries = ENTRY_ARRAY_BYTES.div_ceil(sector);
        let total = disk_bytes / sector;
        // LBA 0 protective MBR, LBA 1 header, then the entries; the mirror image at the end.
        let first_usable = 2 + entries;
        if total < 2 * first_usable + 1 {
            return Err(PartitionError::Layout(format!(
                "a disk of {} is too small for a GPT",
                Bytes(disk_bytes).human()
            )));
        }
        Ok(Geometry {
            sector,
            first_usable,
            last_usable: total - 2 - entries,
            align: ALIGN_BYTES / sector,
        })
    }

    fn align_up(&self, lba: u64) -> u64 {
        lba.div_ceil(self.align) * self.align
    }

    fn align_down(&self, lba: u64) -> u64 {
        lba / self.align * self.align
    }

    /// Free bytes from `lba` (inclusive) to the end of the usable area.
    fn bytes_from(&self, lba: u64) -> u64 {
        (self.last_usable + 1).saturating_sub(lba) * self.sector
    }
}

/// Places `reqs` on a disk of `disk_bytes` bytes with `logical_sector`-byte sectors:
/// 1 MiB alignment, at most one `rest`, partition node names derived from `disk_path`.
pub fn place(
    disk_path: &Path,
    disk_bytes: u64,
    logical_sector: u64,
    reqs: &[PartitionRequest],
) -> Result<Vec<PartitionPlan>, PartitionError> {
    let geo = Geometry::new(disk_bytes, logical_sector)?;
    let rests: Vec<&str> = reqs
        .iter()
        .filter(|r| r.size == SizeSpec::Rest)
        .map(|r| r.name.as_str())
        .collect();
    if rests.len() > 1 {
        return Err(PartitionError::Layout(format!(
            "on {}: only one partition may take the rest of the disk, but {} do",
            disk_path.display(),
            rests.join(", ")
        )));
    }
    let sectors = |r: &PartitionRequest, b: u64| -> Result<u64, PartitionError> {
        if b == 0 {
            return Err(PartitionError::Layout(format!(
                "partition '{}' on {} has size 0",
                r.name,
                disk_path.display()
            )));
        }
        Ok(b.div_ceil(geo.sector))
    };
    let no_room = |r: &PartitionRequest, free: u64| {
        PartitionError::Layout(format!(
            "partition '{}' ({}) does not fit on {}: {} left of {} ({}-byte sectors)",
            r.name,
            r.size,
            disk_path.display(),
            Bytes(free).human(),
            Bytes(disk_bytes).human(),
            geo.sector
        ))
    };

    // Partitions after a `rest` are laid out backwards from the end of the disk, so
    // `rest` gets exactly the space between its neighbours.
    let rest_idx = reqs.iter().position(|r| r.size == SizeSpec::Rest);
    let mut tail_starts = vec![0u64; reqs.len()];
    let mut rest_end = geo.last_usable + 1;
    if let Some(k) = rest_idx {
        for (j, r) in reqs.iter().enumerate().skip(k + 1).rev() {
            let SizeSpec::Bytes(Bytes(b)) = r.size else {
                unreachable!("only one rest")
            };
            let n = sectors(r, b)?;
            let start = geo.align_down(rest_end.checked_sub(n).ok_or_else(|| no_room(r, 0))?);
            tail_starts[j] = start;
            rest_end = start;
        }
    }

    let mut out = Vec::with_capacity(reqs.len());
    let mut cursor = geo.first_usable;
    for (i, r) in reqs.iter().enumerate() {
        let start = if rest_idx.is_some_and(|k| i > k) {
            tail_starts[i]
        } else {
            geo.align_up(cursor)
        };
        if start < geo.align_up(cursor) || start > geo.last_usable {
            return Err(no_room(
                r,
                geo.bytes_from(geo.align_up(cursor).min(geo.last_usable + 1)),
            ));
        }
        let last = match r.size {
            SizeSpec::Rest => {
                if rest_end <= start {
                    return Err(no_room(r, 0));
                }
                rest_end - 1
            }
            SizeSpec::Bytes(Bytes(b)) => {
                let last = start + sectors(r, b)? - 1;
                let limit = if rest_idx.is_some_and(|k| i > k) {
                    geo.last_usable
                } else {
                    rest_end - 1
                };
                if last > limit {
                    return Err(no_room(r, geo.bytes_from(start)));
                }
                last
            }
        };
        let number = i as u32 + 1;
        out.push(PartitionPlan {
            name: r.name.clone(),
            number,
            label: r.label.clone(),
            type_guid: r.type_guid.clone(),
            first_lba: start,
            last_lba: last,
            path: partition_node(disk_path, number),
        });
        cursor = last + 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::GIB;

    fn req(name: &str, size: &str) -> PartitionRequest {
        PartitionRequest {
            name: name.into(),
            label: name.into(),
            type_guid: type_guid("linux").unwrap(),
            size: size.parse().unwrap(),
        }
    }

    #[test]
    fn type_guid_aliases_and_guids() {
        assert_eq!(
            type_guid("esp").unwrap(),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
        assert_eq!(
            type_guid("BIOS_boot").unwrap(),
            "21686148-6449-6E6F-744E-656564454649"
        );
        assert_eq!(
            type_guid("raid").unwrap(),
            "A19D880F-05FC-4D3B-A006-743F0F84911E"
        );
        // The Discoverable Partitions root type of the machine's architecture.
        let root = match crate::arch::Arch::host() {
            crate::arch::Arch::X86_64 => "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            crate::arch::Arch::Aarch64 => "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
        };
        assert_eq!(type_guid("root").unwrap(), root);
        assert_eq!(
            type_guid("0fc63daf-8483-4772-8e79-3d69d8477de4").unwrap(),
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        );
        assert_eq!(
            type_alias("0fc63daf-8483-4772-8e79-3d69d8477de4"),
            Some("linux")
        );
        for bad in [
            "",
            "ntfs-ish",
            "0fc63daf84834772 8e793d69d8477de4",
            "0fc63daf848347728e793d69d8477de4",
        ] {
            assert_eq!(type_guid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn place_table() {
        struct Case {
            sector: u64,
            disk: u64,
            reqs: Vec<PartitionRequest>,
            /// (first_lba, last_lba) per partition.
            want: Vec<(u64, u64)>,
        }
        let disk = 1 << 30; // 1 GiB: 2097152 sectors of 512, 262144 of 4096.
        let cases = [
            Case {
                sector: 512,
                disk,
                reqs: vec![
                    req("bios", "1MiB"),
                    req("esp", "100MiB"),
                    req("root", "rest"),
                ],
                want: vec![(2048, 4095), (4096, 208895), (208896, 2097152 - 34)],
            },
            Case {
                sector: 4096,
                disk,
                reqs: vec![
                    req("bios", "1MiB"),
                    req("esp", "100MiB"),
                    req("root", "rest"),
                ],
                want: vec![(256, 511), (512, 26111), (26112, 262144 - 6)],
            },
            // Odd sizes round up to a sector; the next partition is realigned.
            Case {
                sector: 512,
                disk,
                reqs: vec![req("a", "1000"), req("b", "1MiB")],
                want: vec![(2048, 2049), (4096, 6143)],
            },
            // `rest` in the middle: the following partitions are packed against the end.
            Case {
                sector: 512,
                disk,
                reqs: vec![req("a", "1MiB"), req("mid", "rest"), req("tail", "10MiB")],
                want: vec![(2048, 4095), (4096, 2074623), (2074624, 2095103)],
            },
            Case {
                sector: 4096,
                disk,
                reqs: vec![req("mid", "rest"), req("tail", "10MiB")],
                want: vec![(256, 259327), (259328, 261887)],
            },
        ];
        for (ci, c) in cases.iter().enumerate() {
            let got = place(Path::new("/dev/sda"), c.disk, c.sector, &c.reqs).unwrap();
            let lbas: Vec<_> = got.iter().map(|p| (p.first_lba, p.last_lba)).collect();
            assert_eq!(lbas, c.want, "case {ci}");
            let geo = Geometry::new(c.disk, c.sector).unwrap();
            for (i, p) in got.iter().enumerate() {
                assert_eq!(p.number, i as u32 + 1);
                assert_eq!(p.path, Path::new(&format!("/dev/sda{}", i + 1)));
                assert_eq!(
                    (p.first_lba * c.sector) % ALIGN_BYTES,
                    0,
                    "case {ci}: {p:?} aligned"
                );
                assert!(p.first_lba >= geo.first_usable && p.last_lba <= geo.last_usable);
                if let SizeSpec::Bytes(Bytes(b)) = c.reqs[i].size {
                    assert!(
                        (p.last_lba - p.first_lba + 1) * c.sector >= b,
                        "case {ci}: {p:?} big enough"
                    );
                }
            }
            for w in got.windows(2) {
                assert!(w[0].last_lba < w[1].first_lba, "case {ci}: no overlap");
            }
        }
    }

    #[test]
    fn node_names_follow_the_disk() {
        let got = place(
            Path::new("/dev/nvme0n1"),
            GIB,
            512,
            &[req("a", "1MiB"), req("b", "rest")],
        )
        .unwrap();
        assert_eq!(got[1].path, Path::new("/dev/nvme0n1p2"));
    }

    #[test]
    fn place_errors_name_the_partition_and_the_space() {
        let e = place(Path::new("/dev/sdb"), GIB, 512, &[req("big", "2GiB")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'big'")
                && e.contains("2GiB")
                && e.contains("/dev/sdb")
                && e.contains("left"),
            "{e}"
        );

        let e = place(
            Path::new("/dev/sdb"),
            GIB,
            512,
            &[req("a", "rest"), req("b", "rest")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("only one") && e.contains("a, b"), "{e}");

        // The tail after `rest` eats everything: no room for `rest` itself.
        let e = place(
            Path::new("/dev/sdb"),
            GIB,
            512,
            &[req("r", "rest"), req("t", "1023MiB")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'r'"), "{e}");

        let e = place(Path::new("/dev/sdb"), GIB, 512, &[req("z", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'z'") && e.contains("size 0"), "{e}");

        // Exactly full is fine; one more MiB is not.
        assert!(place(Path::new("/dev/sdb"), GIB, 512, &[req("a", "1022MiB")]).is_ok());
        assert!(place(Path::new("/dev/sdb"), GIB, 512, &[req("a", "1023MiB")]).is_err());
        assert!(place(Path::new("/dev/sdb"), GIB, 512, &[req("a", "1GiB")]).is_err());

        let e = place(Path::new("/dev/sdb"), GIB, 520, &[req("a", "1MiB")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("520"), "{e}");
    }
}
