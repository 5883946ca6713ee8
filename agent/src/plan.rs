//! The plan: the fully explicit, resolved form of a document on this machine.
//!
//! `imprint plan` prints it; the [`crate::engine`] runs its steps in order and
//! records an event per step. Every value here is decided: disks are paths,
//! partitions have sectors, images have their digests.

pub use crate::kinds::{
    ConfigdriveFormat, EraseFallback, Finish, FsType, ImageFormat, MdMetadata, PcrBank, RaidLevel,
    VerifyMode, WipePolicy,
};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The resolved plan.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Plan {
    pub host: HostPlan,
    /// The disks chosen by the document's hints, with what is on them now.
    pub disks: Vec<DiskPlan>,
    /// What is checked before the first step, while every disk is still untouched:
    /// everything the steps will need from outside the disks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// What will run, in order.
    pub steps: Vec<Step>,
    pub report: Option<ReportPlan>,
    pub finish: Finish,
    /// Extra kernel arguments for the deployed OS (`boot.kernel_args`).
    pub kernel_args: Vec<String>,
}

/// Host identity.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HostPlan {
    pub hostname: String,
    /// Stable per host: the document's, or derived from the hostname and the disks' serials.
    pub instance_id: String,
}

/// One chosen disk.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DiskPlan {
    /// The name the document gave it.
    pub name: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub logical_sector: u64,
    pub serial: Option<String>,
    pub model: Option<String>,
    /// Why the hints chose this disk, in words.
    pub chosen_because: String,
    /// What is on it now and will be destroyed (signatures, partitions).
    pub destroys: Vec<String>,
}

/// A step of the plan. `name()` is what step events carry.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// Remove every signature on the disk and its partitions, the MBR and both GPT headers.
    Wipe {
        disk: String,
        path: PathBuf,
        /// Signatures only (default), or also discard/zero the whole disk, or a secure erase.
        #[serde(default)]
        policy: WipePolicy,
        /// What a `secure` wipe may fall back to, in order (empty: none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fallback: Vec<EraseFallback>,
    },
    /// Write a new GPT.
    Partition {
        disk: String,
        path: PathBuf,
        logical_sector: u64,
        partitions: Vec<PartitionPlan>,
    },
    /// Stream, decompress, verify and write an image.
    WriteImage(ImagePlan),
    /// Add data partitions after a whole-disk image's own, once it is written.
    AppendPartitions(AppendPlan),
    /// Write the cloud-init configdrive.
    Configdrive(ConfigdrivePlan),
    /// Create an md RAID1 array.
    Raid(RaidPlan),
    /// Format and open a LUKS2 volume, bound to its pins.
    Luks(LuksPlan),
    /// Create an LVM volume group and its logical volumes.
    Lvm(LvmPlan),
    /// Make a filesystem (or swap).
    Mkfs(MkfsPlan),
    /// Mount a filesystem under the target root (rootfs images).
    Mount(MountPlan),
    /// Write fstab, crypttab, mdadm.conf, kernel arguments; install the boot loader.
    Finalize(FinalizePlan),
    /// In UEFI mode, a firmware boot entry for each ESP's loader, first in `BootOrder`.
    BootEntries(BootEntriesPlan),
}

/// One check made before any disk is touched (`preflight`): a failure ends the run
/// with the disks exactly as they were.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Check {
    /// One of the image's URLs answers and says the file's size.
    Image { urls: Vec<String> },
    /// The image's signature is there, readable, and names a key that may sign it;
    /// an image without a digest also needs the document to be signed.
    Signature { url: String },
    /// The registry image's manifest has a signature in the lookaside store by a key
    /// that may sign it (and its keys are ones the document may name).
    RegistrySignature { url: String, lookaside: String },
    /// The tang server advertises a signing key with the pinned thumbprint (any signed
    /// advertisement, with `trust_on_first_use`).
    Tang {
        url: String,
        thumbprint: Option<String>,
    },
    /// The TPM answers: it reads a PCR of the bank a TPM2 pin seals to.
    Tpm { bank: PcrBank },
    /// The configdrive's files fit the space planned for it.
    Configdrive { disk: String, size_bytes: u64 },
    /// The disk offers a secure erase, or one of the fallbacks the document allows.
    Erase {
        disk: String,
        path: PathBuf,
        fallback: Vec<EraseFallback>,
    },
    /// Booted in UEFI mode, the firmware's variables can be read and written there
    /// (booted by BIOS, the boot-entries step is skipped and this passes).
    Efivars { efivars: PathBuf },
}

impl Check {
    /// The check in a few words, for the plan and the console.
    pub fn describe(&self) -> String {
        match self {
            Check::Image { urls } => format!(
                "the image answers at {}{}{}",
                urls[0],
                match urls.len() {
                    1 => String::new(),
                    n => format!(" (or one of its {} mirrors)", n - 1),
                },
                if crate::image::chunked::is_index_url(&urls[0]) {
                    ", and a chunk store gives one of its chunks"
                } else {
                    ""
                }
            ),
            Check::Signature { url } => {
                format!("the image's signature {url} is by a key that may sign it")
            }
            Check::RegistrySignature { url, lookaside } => {
                format!("{url} is signed in {lookaside} by a key that may sign it")
            }
            Check::Tang {
                url,
                thumbprint: Some(t),
            } => format!("tang {url} advertises signing key {t}"),
            Check::Tang {
                url,
                thumbprint: None,
            } => format!("tang {url} answers with a signed advertisement"),
            Check::Tpm { bank } => format!("the TPM answers (PCR bank {bank})"),
            Check::Configdrive { disk, size_bytes } => format!(
                "the configdrive's files fit its {} on {disk}",
                crate::units::Bytes(*size_bytes).human()
            ),
            Check::Erase {
                disk,
                path,
                fallback,
            } => format!(
                "{disk} ({}) offers a secure erase{}",
                path.display(),
                crate::storage::erase::fallback_words(fallback)
                    .map(|f| format!(", or the document allows {f}"))
                    .unwrap_or_default()
            ),
            Check::Efivars { efivars } => format!(
                "in UEFI mode, the firmware's boot entries are readable and writable in {}",
                efivars.display()
            ),
        }
    }
}

impl Step {
    /// Stable step name for events and reports, e.g. `wipe:root`, `write-image`.
    pub fn name(&self) -> String {
        match self {
            Step::Wipe { disk, .. } => format!("wipe:{disk}"),
            Step::Partition { disk, .. } => format!("partition:{disk}"),
            Step::AppendPartitions(a) => format!("partition:{}", a.disk),
            Step::WriteImage(_) => "write-image".into(),
            Step::Configdrive(c) if c.copy => format!("configdrive:{}", c.disk),
            Step::Configdrive(_) => "configdrive".into(),
            Step::Raid(r) => format!("raid:{}", r.name),
            Step::Luks(l) => format!("luks:{}", l.name),
            Step::Lvm(v) => format!("lvm:{}", v.vg),
            Step::Mkfs(m) => format!("mkfs:{}", m.mount.as_deref().unwrap_or(&m.name)),
            Step::Mount(m) => format!("mount:{}", m.mountpoint),
            Step::Finalize(_) => "finalize".into(),
            Step::BootEntries(_) => "boot-entries".into(),
        }
    }
}

/// One GPT partition, fully placed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct PartitionPlan {
    /// The document's name for it (references use this).
    pub name: String,
    /// 1-based partition number.
    pub number: u32,
    /// GPT partition name (label).
    pub label: String,
    /// Partition type GUID, upper-case canonical form.
    pub type_guid: String,
    /// First and last LBA, inclusive, in logical sectors.
    pub first_lba: u64,
    pub last_lba: u64,
    /// Device node it will appear as, e.g. `/dev/sda2`, `/dev/nvme0n1p2`.
    pub path: PathBuf,
}

/// Partitions added after a whole-disk image: their numbers and sectors follow from the
/// image's own table, so they are placed when the image is on the disk.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AppendPlan {
    pub disk: String,
    pub path: PathBuf,
    pub partitions: Vec<AppendedPartition>,
    /// Kept free at the disk's end for the configdrive appended after them.
    pub reserve_bytes: u64,
}

/// One partition to append.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AppendedPartition {
    pub name: String,
    pub label: String,
    pub type_guid: String,
    /// `None`: the rest of the disk.
    pub size_bytes: Option<u64>,
    /// What later steps of the plan call its device until it exists: see [`appended_node`].
    pub node: PathBuf,
}

/// The stand-in device path of partition `name` appended to `disk`, e.g. `/dev/sda#data`;
/// the engine replaces it with the real node once the partition exists.
pub fn appended_node(disk: &std::path::Path, name: &str) -> PathBuf {
    PathBuf::from(format!("{}#{name}", disk.display()))
}

/// Digest algorithm and expected value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Digest {
    pub algorithm: DigestAlgorithm,
    /// Lower-case hex.
    pub hex: String,
}

/// Supported digests.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlgorithm {
    Sha256,
    Sha512,
}

/// An image to write.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ImagePlan {
    /// The URL first, then its mirrors, tried in turn.
    pub urls: Vec<String>,
    /// The served file's digest; absent only for a signed image (whose signature then
    /// pins it, in a signed document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The served file's detached signature, checked as it streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignaturePlan>,
    /// The registry signatures an `oci://` image's manifest must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_signature: Option<RegistrySignaturePlan>,
    /// What pins the served bytes.
    pub pin: ImagePin,
    pub format: ImageFormat,
    /// The disk (by document name) and device the image goes to.
    pub target_disk: String,
    pub target_path: PathBuf,
    /// Grow the last partition of a disk image to the end of the disk.
    pub grow: bool,
    /// Verification after writing (`readback`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyMode>,
    /// Credentials for the registry of an `oci://` URL (printed redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::oci::Credentials>,
    /// Chunk stores of a casync index, in order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<String>,
}

/// What pins an image's bytes: what the served file is checked against.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum ImagePin {
    /// The document's `sha256`/`sha512`.
    Digest,
    /// The `oci://` reference's manifest digest: the manifest must have it, and the
    /// layer digest it names is what the served blob is checked against.
    Manifest { digest: String },
    /// The manifest digest a valid registry signature signs (a tag alone).
    RegistrySignature,
    /// The detached signature alone (accepted only in a signed document).
    Signature,
    /// Nothing: `--insecure` took a tag that neither a digest nor a signature pins.
    Insecure,
}

/// Where an `oci://` image's signatures are kept (a lookaside store), and the keys
/// that may have made them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct RegistrySignaturePlan {
    pub lookaside: String,
    /// OpenPGP certificates as the document gave them; empty: the trust root's keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// Where an image's signature is, and the keys that may have made it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct SignaturePlan {
    pub url: String,
    /// Public keys as the document gave them; empty: the trust root's keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// The configdrive to write, into a new partition after the image's partitions.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ConfigdrivePlan {
    pub disk: String,
    pub disk_path: PathBuf,
    pub format: ConfigdriveFormat,
    pub size_bytes: u64,
    pub hostname: String,
    pub instance_id: String,
    /// `meta-data` (NoCloud) / `meta_data.json` (config-2) content, instance-id and hostname filled in.
    pub meta_data: serde_json::Value,
    pub user_data: Option<String>,
    pub network_config: Option<serde_json::Value>,
    pub vendor_data: Option<String>,
    /// The partition the planner reserved for it when it wrote the table itself;
    /// `None`: create one after the image's partitions.
    #[serde(default)]
    pub partition: Option<PathBuf>,
    /// A copy on another disk of a mirrored root (the step is `configdrive:<disk>`).
    #[serde(default)]
    pub copy: bool,
}

/// Where reports go.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ReportPlan {
    pub url: String,
    pub token: Option<Secret>,
    pub heartbeat_secs: u64,
    /// Asked (`GET`) after the final report of a success (shown without its query).
    #[serde(default, serialize_with = "without_query")]
    pub built: Option<String>,
    /// Sent the failure (`POST`) after the final report of a failure (shown without its query).
    #[serde(default, serialize_with = "without_query")]
    pub failed: Option<String>,
}

/// A URL as it may be shown: its query (where hooks carry their tokens) redacted.
pub fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?<redacted>"),
        None => url.to_string(),
    }
}

fn without_query<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&redact_query(u)),
        None => s.serialize_none(),
    }
}

/// An md array to create.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RaidPlan {
    pub name: String,
    pub level: RaidLevel,
    /// `1.0` (superblock at the end) or `1.2`.
    pub metadata: MdMetadata,
    pub members: Vec<PathBuf>,
    /// `/dev/md/<name>`.
    pub path: PathBuf,
    /// Array UUID (standard form; mdadm takes it as is).
    pub uuid: String,
    /// What the array holds at least: the smallest member less md's superblock, bitmap
    /// and headroom, rounded to whole chunks, times the level's share of the members.
    pub size_bytes: u64,
    /// mdadm's `--layout=` (`n2` for RAID10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Chunk size of a striped level (RAID0, 5, 6, 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_bytes: Option<u64>,
}

/// A tang pin.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TangPin {
    pub url: String,
    pub thumbprint: Option<String>,
    pub trust_on_first_use: bool,
}

/// A TPM2 pin.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Tpm2Pin {
    pub pcrs: Vec<u8>,
    /// `sha256` or `sha1`.
    pub bank: PcrBank,
}

/// A LUKS2 volume to format, bind and open.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LuksPlan {
    pub name: String,
    /// The device it is formatted on.
    pub device: PathBuf,
    /// `/dev/mapper/<name>` once open.
    pub path: PathBuf,
    pub cipher: String,
    pub key_size: u32,
    pub label: Option<String>,
    pub uuid: String,
    pub tang: Vec<TangPin>,
    pub tpm2: Option<Tpm2Pin>,
    /// clevis sss threshold: how many pins must agree.
    pub threshold: u32,
    /// An extra keyslot; serialized as `<redacted>`.
    pub recovery_passphrase: Option<Secret>,
}

/// A logical volume.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LvPlan {
    pub name: String,
    /// `/dev/<vg>/<lv>`.
    pub path: PathBuf,
    /// Bytes, or `None` for all the space left in the group.
    pub size_bytes: Option<u64>,
}

/// A volume group and its volumes.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LvmPlan {
    pub vg: String,
    pub pvs: Vec<PathBuf>,
    pub volumes: Vec<LvPlan>,
}

/// A filesystem to make.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MkfsPlan {
    /// The document's name of the device.
    pub name: String,
    pub device: PathBuf,
    /// `ext4`, `xfs`, `vfat` or `swap`.
    pub fstype: FsType,
    pub label: Option<String>,
    /// Filesystem UUID (vfat: an `XXXX-XXXX` volume id).
    pub uuid: String,
    /// Where the deployed system mounts it.
    pub mount: Option<String>,
}

/// A mount under the target root, parents first.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MountPlan {
    pub device: PathBuf,
    /// The mount point in the deployed system (the engine prefixes its target root).
    pub mountpoint: String,
    pub fstype: FsType,
    pub options: Vec<String>,
}

/// What makes the extracted root filesystem boot.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FinalizePlan {
    /// `/etc/fstab` lines.
    pub fstab: Vec<String>,
    /// `/etc/crypttab` lines.
    pub crypttab: Vec<String>,
    /// `/etc/mdadm/mdadm.conf` ARRAY lines.
    pub mdadm: Vec<String>,
    /// Disks the boot loader is installed on (every disk of a mirror).
    pub boot_disks: Vec<PathBuf>,
    /// ESPs besides the mounted one, kept as copies of it.
    pub esp_copies: Vec<PathBuf>,
    pub kernel_args: Vec<String>,
    /// `boot.finalize`: argv lists run in the target instead of the built-in steps.
    pub commands: Vec<Vec<String>>,
    /// Seconds each command may run before it is killed with its process group.
    pub command_timeout_secs: u64,
    /// The deployed system's architecture (the image's): GRUB's targets.
    pub arch: crate::arch::Arch,
}

/// Firmware boot entries for the deployed disks (`boot.uefi_entries`), made last, once
/// everything on the disks is written and verified. Skipped when the machine did not
/// boot in UEFI mode.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BootEntriesPlan {
    /// The disks whose ESPs get an entry, in the order the entries lead `BootOrder`.
    pub disks: Vec<BootEntryDisk>,
    /// Where efivarfs is mounted.
    pub efivars: PathBuf,
}

/// A disk that gets boot entries, and the identity that marks them as its own.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BootEntryDisk {
    /// The document's name for it.
    pub disk: String,
    pub path: PathBuf,
    /// In the entries' descriptions: `wwn …`, else `serial …`, else `path …` (by-path).
    pub identity: String,
}
