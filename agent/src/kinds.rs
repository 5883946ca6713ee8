//! Small kinds shared by the document, the plan and the executor: image formats,
//! verification, configdrive flavours, what happens at the end, wipe policy, disk
//! hints, filesystem types, md levels and metadata, and PCR banks.
//!
//! A leaf: it imports nothing from the crate but [`crate::units`], so `config` and
//! `plan` both use these without importing each other. Each serialises exactly as
//! the document spells it.

use crate::units::Bytes;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

/// How the image's bytes are laid down.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// A whole-disk image (partition table included).
    #[default]
    Disk,
    /// A tar archive extracted across the mounted layout.
    Rootfs,
    /// A raw filesystem image written into one volume.
    Filesystem,
}

/// Extra verification after an image is written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Read the written bytes back (O_DIRECT) and compare their digest with the one taken while writing.
    Readback,
}

/// Configdrive flavours.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigdriveFormat {
    /// cloud-init NoCloud: label `cidata`.
    #[default]
    Nocloud,
    /// OpenStack config drive: label `config-2`.
    #[serde(rename = "config-2")]
    Config2,
}

impl ConfigdriveFormat {
    /// The filesystem label cloud-init looks for.
    pub fn label(self) -> &'static str {
        match self {
            ConfigdriveFormat::Nocloud => "cidata",
            ConfigdriveFormat::Config2 => "config-2",
        }
    }
}

/// What happens after the final report (`run` only; `apply` never reboots).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    #[default]
    Reboot,
    Poweroff,
    Kexec,
    None,
}

/// How thoroughly to wipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Policy")]
pub enum WipePolicy {
    /// Erase signatures, the MBR and both GPTs (fast; the default).
    #[default]
    Signatures,
    /// As `signatures`, then discard the whole disk (ignored where unsupported).
    Discard,
    /// As `signatures`, then zero the whole disk (BLKZEROOUT; slow without offload).
    Zero,
    /// Erase every block with the device's own secure erase (NVMe Sanitize or Format,
    /// ATA Security Erase), chosen at run time from what the device reports and proved
    /// by sampled reads; `storage.erase.fallback` says what may stand in for it.
    Secure,
}

/// What may stand in for a secure erase the device does not offer (`storage.erase.fallback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EraseFallback {
    /// Discard the whole disk (BLKDISCARD); the sampled reads decide whether it erased.
    Discard,
    /// Write zeros over the whole disk (BLKZEROOUT, offloaded where the device can).
    Overwrite,
}

/// Hints selecting one disk. Every given hint must match.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hints {
    /// Device path, e.g. `/dev/sda` (symlinks such as `/dev/disk/by-id/…` are resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A `/dev/disk/by-path` name, with or without that prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_path: Option<String>,
    /// Serial number, exact after trimming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// World Wide Name; `0x`, `naa.`, `eui.` prefixes and case are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    /// Model, case-insensitive, after trimming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Vendor, case-insensitive, after trimming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Smallest acceptable size (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<Bytes>,
    /// Largest acceptable size (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Bytes>,
    /// Spinning (true) or solid-state (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotational: Option<bool>,
    /// Of the disks matching every other hint, take the smallest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smallest: bool,
}

/// Filesystem types imprint creates.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Ext4,
    Xfs,
    Vfat,
    Swap,
}

impl FsType {
    /// As mkfs and fstab spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Vfat => "vfat",
            FsType::Swap => "swap",
        }
    }
    /// Longest label the filesystem stores.
    pub fn max_label(self) -> usize {
        match self {
            FsType::Ext4 => 16,
            FsType::Xfs => 12,
            FsType::Vfat => 11,
            FsType::Swap => 15,
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PCR bank for the TPM2 pin.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PcrBank {
    #[default]
    Sha256,
    Sha1,
}

impl PcrBank {
    /// As the document and clevis spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PcrBank::Sha256 => "sha256",
            PcrBank::Sha1 => "sha1",
        }
    }
}

impl fmt::Display for PcrBank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// md superblock format: `1.0` at the end of the members (firmware reads a member alone),
/// `1.2` near the start (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MdMetadata {
    V1_0,
    #[default]
    V1_2,
}

impl MdMetadata {
    /// As mdadm's `--metadata=` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MdMetadata::V1_0 => "1.0",
            MdMetadata::V1_2 => "1.2",
        }
    }
}

impl Serialize for MdMetadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MdMetadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const WHAT: &str = "\"1.0\" or \"1.2\"";
        impl Visitor<'_> for V {
            type Value = MdMetadata;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(WHAT)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MdMetadata, E> {
                match v {
                    "1.0" => Ok(MdMetadata::V1_0),
                    "1.2" => Ok(MdMetadata::V1_2),
                    _ => Err(E::custom(format!("expected {WHAT}, got {v:?}"))),
                }
            }
            // YAML reads an unquoted 1.0 as a number; take it as the operator meant it.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MdMetadata, E> {
                if v == 1.0 {
                    Ok(MdMetadata::V1_0)
                } else if v == 1.2 {
                    Ok(MdMetadata::V1_2)
                } else {
                    Err(E::custom(format!("expected {WHAT}, got {v}")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for MdMetadata {
    fn schema_name() -> Cow<'static, str> {
        "MdMetadata".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"description": "md superblock version.", "enum": ["1.0", "1.2", 1.0, 1.2]})
    }
}

impl fmt::Display for MdMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// md RAID level: 0 (striped), 1 (mirrored), 5 and 6 (striped with one or two parity
/// blocks), 10 (md's own RAID10, near-2 layout: two copies of each chunk on neighbouring
/// members).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RaidLevel {
    Raid0,
    #[default]
    Raid1,
    Raid5,
    Raid6,
    Raid10,
}

impl RaidLevel {
    /// Every level, in the order the document and the schema list them.
    pub const ALL: [RaidLevel; 5] = [
        RaidLevel::Raid0,
        RaidLevel::Raid1,
        RaidLevel::Raid5,
        RaidLevel::Raid6,
        RaidLevel::Raid10,
    ];

    /// The level's number, as the document writes it and mdadm's `--level=` takes it.
    pub fn number(self) -> u8 {
        match self {
            RaidLevel::Raid0 => 0,
            RaidLevel::Raid1 => 1,
            RaidLevel::Raid5 => 5,
            RaidLevel::Raid6 => 6,
            RaidLevel::Raid10 => 10,
        }
    }

    fn from_number(v: u64) -> Option<RaidLevel> {
        RaidLevel::ALL
            .into_iter()
            .find(|l| u64::from(l.number()) == v)
    }

    /// The fewest members imprint builds the level with. md itself takes RAID10 on two
    /// or three members; imprint does not: on two it is a RAID1 by another name, on
    /// three the near-2 copies wrap around the members unevenly. Use 1 or 5 there.
    pub fn min_members(self) -> usize {
        match self {
            RaidLevel::Raid0 | RaidLevel::Raid1 => 2,
            RaidLevel::Raid5 => 3,
            RaidLevel::Raid6 | RaidLevel::Raid10 => 4,
        }
    }

    /// How many members' worth of data an array of `n` members holds, as a fraction
    /// (numerator, denominator): RAID0 n, RAID1 1, RAID5 n−1, RAID6 n−2, RAID10 n/2.
    pub fn data_fraction(self, n: u64) -> (u64, u64) {
        match self {
            RaidLevel::Raid0 => (n, 1),
            RaidLevel::Raid1 => (1, 1),
            RaidLevel::Raid5 => (n.saturating_sub(1), 1),
            RaidLevel::Raid6 => (n.saturating_sub(2), 1),
            RaidLevel::Raid10 => (n, 2),
        }
    }

    /// Whether data goes to the members in chunks (every level but RAID1).
    pub fn striped(self) -> bool {
        self != RaidLevel::Raid1
    }

    /// Whether the array survives the loss of a member (every level but RAID0); only
    /// those have a resync and a write-intent bitmap.
    pub fn redundant(self) -> bool {
        self != RaidLevel::Raid0
    }

    /// mdadm's `--layout=` for this level, where imprint chooses one: `n2` for RAID10.
    pub fn md_layout(self) -> Option<&'static str> {
        (self == RaidLevel::Raid10).then_some("n2")
    }
}

impl fmt::Display for RaidLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RAID{}", self.number())
    }
}

impl Serialize for RaidLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::from(self.number()))
    }
}

impl<'de> Deserialize<'de> for RaidLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const WHAT: &str = "0, 1, 5, 6 or 10 (the md RAID levels imprint builds)";
        impl Visitor<'_> for V {
            type Value = RaidLevel;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(WHAT)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RaidLevel, E> {
                RaidLevel::from_number(v)
                    .ok_or_else(|| E::custom(format!("expected {WHAT}, got {v}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RaidLevel, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("expected {WHAT}, got {v}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for RaidLevel {
    fn schema_name() -> Cow<'static, str> {
        "RaidLevel".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "md RAID level: 0, 1, 5, 6 or 10 (near-2 layout).",
            "enum": [0, 1, 5, 6, 10]
        })
    }
}
