//! What each kind of step produced: the `details` of a `step` event and the `output`
//! of a step in the final report. One type per step kind; each module's own result
//! type (wipe, image, LUKS, …) sits inside, so the report says what the module said.
//!
//! On the wire the kinds carry no tag (the step's name says which it is), so every
//! type here refuses unknown fields: that keeps them apart when an event is read back.

use crate::configdrive::ConfigdriveOutcome;
use crate::image::{Compression, WriteOutcome};
use crate::plan::{Digest, ImageFormat, PartitionPlan};
use crate::rootfs::Extracted;
use crate::storage::wipe::WipeReport;
use crate::storage::{luks, lvm, raid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What one step produced, by step kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StepOutput {
    /// `preflight`: the checks made before any disk was touched.
    Preflight(Checked),
    /// `wipe:<disk>`.
    Wipe(Wiped),
    /// `partition:<disk>`: a new GPT.
    Partition(Partitioned),
    /// `partition:<disk>` after a whole-disk image: partitions added after the image's.
    Append(Appended),
    /// `write-image` of a whole-disk image.
    DiskImage(DiskImageWritten),
    /// `write-image` of a rootfs archive.
    Rootfs(RootfsExtracted),
    /// `write-image` of a filesystem image.
    FilesystemImage(FilesystemImageWritten),
    /// `configdrive` and `configdrive:<disk>`.
    Configdrive(ConfigdriveWritten),
    /// `raid:<name>`.
    Raid(raid::Created),
    /// `luks:<name>`.
    Luks(luks::Formatted),
    /// `lvm:<vg>`.
    Lvm(lvm::Created),
    /// `mkfs:<volume>`.
    Mkfs(Made),
    /// `mount:<mountpoint>`.
    Mount(Mounted),
    /// `finalize`.
    Finalize(crate::finalize::Finalized),
    /// `boot-entries`.
    BootEntries(crate::efi::BootEntries),
}

/// The checks made before the first step, all passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Checked {
    pub checks: Vec<CheckPassed>,
}

/// One check that passed, and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckPassed {
    /// The check, as the plan words it.
    pub check: String,
    /// What answered: the URL and size, the signing key's thumbprint, the bytes.
    pub found: String,
}

/// A wiped disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wiped {
    pub disk: PathBuf,
    /// A previous deployment's arrays, mappings and volumes taken down first.
    pub released: Vec<String>,
    /// The signatures removed and the ranges zeroed.
    pub erased: WipeReport,
    /// `wipe: secure`: the method, what the device claimed, the sampled proof, the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<crate::storage::erase::EraseReport>,
}

/// A new partition table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Partitioned {
    pub disk: PathBuf,
    #[schemars(with = "String", extend("format" = "uuid"))]
    pub disk_guid: uuid::Uuid,
    pub partitions: Vec<PartitionPlan>,
}

/// Partitions appended after a whole-disk image's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Appended {
    pub disk: PathBuf,
    /// The real nodes, in the numbers the image's table left free.
    pub appended: Vec<PartitionPlan>,
}

/// A whole-disk image on its disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskImageWritten {
    pub image: WriteOutcome,
    pub target: PathBuf,
    /// The backup GPT was moved to the disk's end.
    pub gpt_backup_relocated: bool,
    pub grown_partition: Option<GrownPartition>,
    /// The partition table after relocation (empty when the image has no GPT).
    pub partitions: Vec<PartitionPlan>,
}

/// The last partition of an image, grown towards the disk's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrownPartition {
    pub number: u32,
    pub size_bytes: u64,
}

/// A rootfs archive extracted across the mounted layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RootfsExtracted {
    /// Always `rootfs`.
    pub format: ImageFormat,
    /// Where the layout was mounted.
    pub root: PathBuf,
    pub compression: Compression,
    pub bytes_downloaded: u64,
    /// The digest the served file was verified against (absent for an image pinned by
    /// its signature alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// For a signed image: the key whose signature over the served file verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    pub verified: bool,
    pub extracted: Extracted,
    /// For a container image (`oci://`): the manifest, config and each layer applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<crate::rootfs::ContainerDeployed>,
    pub duration_s: f64,
}

/// A filesystem image in its volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesystemImageWritten {
    /// Always `filesystem`.
    pub format: ImageFormat,
    pub image: WriteOutcome,
    pub target: PathBuf,
    /// The filesystem found in the image.
    pub fstype: String,
    /// What growing it to the volume did.
    pub grown: String,
}

/// The configdrive on its partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigdriveWritten {
    pub device: PathBuf,
    /// The partition made for it after a whole-disk image (`null`: the planner's own).
    pub partition: Option<PartitionPlan>,
    pub configdrive: ConfigdriveOutcome,
}

/// A filesystem (or swap) made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Made {
    pub device: PathBuf,
    pub fstype: crate::kinds::FsType,
    pub label: Option<String>,
    pub uuid: String,
    pub mount: Option<String>,
}

/// A filesystem mounted under the staging root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mounted {
    pub device: PathBuf,
    pub mountpoint: String,
    /// Where it is mounted now, under the staging root.
    pub staged_at: PathBuf,
    pub options: Vec<String>,
}
