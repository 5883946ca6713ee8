//! The typed model of document version 1. Every struct refuses unknown fields; the
//! explicit storage form (partitions, raid, luks, lvm, filesystems) references by name.

use super::types::*;
use crate::kinds::{
    ConfigdriveFormat, EraseFallback, Finish, FsType, Hints, ImageFormat, MdMetadata, PcrBank,
    RaidLevel, VerifyMode, WipePolicy,
};
use crate::secret::Secret;
use crate::units::{Bytes, SizeSpec, MIB};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A provisioning document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Always 1.
    pub version: Version,
    pub host: Host,
    /// The disks this document touches, each chosen by hints.
    pub disks: Vec<DiskSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configdrive: Option<Configdrive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<Boot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// What happens after the final report.
    #[serde(default)]
    pub finish: Finish,
    /// After this time (RFC 3339) `run` and `apply` refuse the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
}

/// Host identity.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub hostname: Hostname,
    /// cloud-init instance id; derived from the hostname and machine when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

/// A named target disk.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    pub name: Name,
    /// Hints; every one given must match exactly one disk.
    #[serde(rename = "match")]
    pub hints: Hints,
    /// This disk's wipe, instead of `storage.wipe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wipe: Option<WipePolicy>,
}

/// Storage: a short-form `layout`, explicit items, or both on different disks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    #[serde(default)]
    pub wipe: WipePolicy,
    /// What a `secure` wipe may fall back to where the device offers no secure erase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erase: Option<Erase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<Partition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raid: Vec<Raid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub luks: Vec<Luks>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lvm: Vec<VolumeGroup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filesystems: Vec<Filesystem>,
}

/// Settings of the `secure` wipe.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Erase {
    /// Tried in order when the device offers no secure erase; empty (the default):
    /// such a device is refused before any disk is touched.
    #[serde(default)]
    pub fallback: Vec<EraseFallback>,
}

/// The short form: the common layouts in a few lines (see `config::expand`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// The one disk (single-disk form); defaults to the only disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Name>,
    /// Two disks mirrored with md RAID1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Vec<Name>>,
    /// Two or more disks: `/boot` RAID1 across all of them, root at `level`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raid: Option<LayoutRaid>,
    /// Encrypt root (below LVM) with LUKS2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub luks: Option<LayoutLuks>,
    /// Logical volumes, one per entry, in volume group `vg0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lvm: Option<Vec<LayoutVolume>>,
    /// The root filesystem when there is no `lvm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<LayoutRoot>,
}

/// The short form's md array for root: its level, its disks and (striped levels) chunk.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayoutRaid {
    /// The root array's level; `/boot` is RAID1 whatever it is.
    pub level: RaidLevel,
    /// The disks, each getting its own BIOS boot partition, ESP, `/boot` member and
    /// root member.
    pub disks: Vec<Name>,
    /// The root array's chunk size (RAID0, 5, 6, 10); default 512KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<Bytes>,
}

/// LUKS settings of the short form.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct LayoutLuks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tang: Vec<Tang>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm2: Option<Tpm2>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_passphrase: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u32>,
}

/// One logical volume of the short form.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayoutVolume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountPoint>,
    pub size: SizeSpec,
    /// Filesystem type; ext4 unless given (swap for `swap: true`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<FsType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub swap: bool,
    /// The volume's name; derived from the mount point when absent (`/var/log` → `var_log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
}

/// The root filesystem of a layout without `lvm`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct LayoutRoot {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<FsType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<SizeSpec>,
}

/// A GPT partition.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub name: Name,
    /// The document name of the disk it goes on.
    pub disk: Name,
    pub size: SizeSpec,
    #[serde(rename = "type", default)]
    pub ptype: PartitionType,
    /// GPT partition name; defaults to `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// An md array: RAID0, 1, 5, 6 or 10.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raid {
    pub name: Name,
    pub level: RaidLevel,
    /// Partition names.
    pub members: Vec<Name>,
    #[serde(default)]
    pub metadata: MdMetadata,
    /// Chunk size of a striped level (RAID0, 5, 6, 10); default 512KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<Bytes>,
}

fn default_cipher() -> String {
    "aes-xts-plain64".into()
}
fn default_key_size() -> u32 {
    512
}
fn one() -> u32 {
    1
}

/// A LUKS2 volume, unlocked by tang and/or TPM2 pins (clevis sss) and optionally a passphrase.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Luks {
    pub name: Name,
    /// A partition or md array name.
    pub device: Name,
    #[serde(default = "default_cipher")]
    pub cipher: String,
    #[serde(default = "default_key_size")]
    pub key_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tang: Vec<Tang>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm2: Option<Tpm2>,
    /// How many pins must agree to unlock (1 = any one).
    #[serde(default = "one")]
    pub threshold: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_passphrase: Option<Secret>,
}

/// A tang server pin.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tang {
    pub url: HttpUrl,
    /// The signing key's thumbprint; required unless `trust_on_first_use`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<Thumbprint>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trust_on_first_use: bool,
}

/// A TPM2 pin.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tpm2 {
    /// PCRs the key is sealed to (0–23); empty: not sealed to any.
    #[serde(default)]
    pub pcrs: Vec<u8>,
    #[serde(default)]
    pub bank: PcrBank,
}

/// An LVM volume group and its volumes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeGroup {
    pub vg: Name,
    /// Physical volumes: partition, md or LUKS names.
    pub pvs: Vec<Name>,
    pub volumes: Vec<LogicalVolume>,
}

/// A logical volume.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogicalVolume {
    pub name: Name,
    pub size: SizeSpec,
}

/// A filesystem (or swap) on a named device.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// A partition, md, LUKS or logical volume name.
    pub device: Name,
    #[serde(rename = "type")]
    pub fstype: FsType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountPoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The OS image.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub url: SourceUrl,
    /// Tried in turn after `url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<SourceUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Hex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<Sha512Hex>,
    /// A detached signature over the image file as served, checked while it streams
    /// (`url`), or a registry image's signatures in a lookaside store (`lookaside`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ImageSignature>,
    #[serde(default)]
    pub format: ImageFormat,
    /// A disk (format disk) or volume (format filesystem) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Name>,
    /// Grow the last partition of a disk image to the end of the disk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grow: bool,
    /// `readback`: after writing, read the image back from the disk and compare digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyMode>,
    /// Credentials for the registry of an `oci://` `url` (not sent to mirrors on other
    /// registries); never logged or reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ImageAuth>,
    /// Chunk stores for a casync blob index (`url` names a `.caibx`): `http(s)://`,
    /// `file:///` or `medium:/path` (on the filesystem labelled `IMPRINT`), all read at
    /// once. Default: `default.castr` beside the index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<StoreUrl>,
    /// The architecture the image is built for (`x86_64`/`amd64`, `aarch64`/`arm64`).
    /// Default: the machine's. A machine of another architecture refuses the document
    /// before anything is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<crate::arch::Arch>,
}

impl Document {
    /// The architecture the deployed system runs on: the image's `arch`, else the
    /// machine's.
    pub fn image_arch(&self) -> crate::arch::Arch {
        self.image
            .as_ref()
            .and_then(|i| i.arch)
            .unwrap_or_else(crate::arch::Arch::host)
    }

    /// The same document with `image.arch` stated (when it has an image).
    pub fn with_image_arch(&self, arch: crate::arch::Arch) -> Document {
        let mut doc = self.clone();
        if let Some(img) = doc.image.as_mut() {
            img.arch = Some(arch);
        }
        doc
    }
}

/// Registry credentials: `username` and `password`, or a `token`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageAuth {
    /// The account (with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Its password, or an access token used as one (with `username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A bearer token sent as it is (instead of `username` and `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

/// Where the image's signature is, and who may have made it: a detached signature
/// (`url`), or, for an `oci://` image, containers "simple signing" signatures in a
/// lookaside store (`lookaside`); one of the two.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSignature {
    /// The detached signature: a minisign `.minisig` file, or an OpenPGP detached
    /// signature (binary or armored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<SourceUrl>,
    /// Base URL of a lookaside signature store (`http(s)://` or `file://`) for an
    /// `oci://` image: `<lookaside>/<repository>@sha256=<hex>/signature-<n>`, as
    /// `skopeo copy --sign-by` writes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookaside: Option<SourceUrl>,
    /// The public keys that may have signed the image (a minisign public key, or an
    /// armored OpenPGP certificate, each as text; OpenPGP only for `lookaside`);
    /// without them, the trust root's keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

fn default_configdrive_size() -> Bytes {
    Bytes(64 * MIB)
}

/// The cloud-init configdrive.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Configdrive {
    #[serde(default)]
    pub format: ConfigdriveFormat,
    /// The disk it goes on; defaults to the image's disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Name>,
    #[serde(default = "default_configdrive_size")]
    pub size: Bytes,
    /// `instance-id` and `local-hostname` are filled in unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_data: Option<String>,
}

/// Boot settings of the deployed OS.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    #[serde(default)]
    pub kernel_args: KernelArgs,
    /// Commands (argv lists) run in the deployed root instead of the built-in finalization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalize: Vec<Vec<String>>,
    /// Seconds each finalize command (built-in or from `finalize`) may run before it is
    /// killed with everything it started (default 3600: an initramfs rebuild on a slow
    /// machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalize_timeout: Option<u64>,
    /// In UEFI mode, make a firmware boot entry for each deployed ESP's loader and put
    /// it first in `BootOrder`, replacing the ones imprint made for the same disk before
    /// (default true). Skipped when the machine did not boot in UEFI mode.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub uefi_entries: bool,
}

impl Default for Boot {
    fn default() -> Self {
        Boot {
            kernel_args: KernelArgs::default(),
            finalize: Vec::new(),
            finalize_timeout: None,
            uefi_entries: true,
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_heartbeat() -> u64 {
    10
}

/// Where progress and the final report go.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub url: HttpUrl,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Seconds between progress events.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: u64,
    /// Asked (`GET`) once the final report of a successful run is delivered, before the
    /// finish action: an orchestrator's "built" hook, e.g. Foreman's
    /// `/unattended/built?token=…`. Its query is never logged or shown in a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built: Option<HttpUrl>,
    /// Sent the failure (`POST`, text) once the final report of a failed run is
    /// delivered, e.g. Foreman's `/unattended/failed?token=…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<HttpUrl>,
}
