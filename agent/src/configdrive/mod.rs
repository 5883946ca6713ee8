//! cloud-init configdrives (NoCloud `cidata`, OpenStack `config-2`) as vfat built in Rust.
//!
//! [`files`] turns a [`ConfigdrivePlan`] into the file tree cloud-init reads
//! ([`tree`]), converting netplan to OpenStack `network_data.json` where needed
//! ([`netdata`]); [`write`] formats a FAT filesystem over a byte region of a
//! device or file and puts the tree on it ([`fat`] does the I/O, [`fatlayout`]
//! the geometry and tables, [`fatdir`] the directory entries); [`write_dir`]
//! puts the same tree into a directory instead.

mod fat;
mod fatdir;
mod fatlayout;
mod netdata;
mod tree;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::plan::{ConfigdriveFormat, ConfigdrivePlan};

/// Smallest configdrive we format: room for the FAT metadata and a few seed files.
pub const MIN_SIZE: u64 = 1024 * 1024;

/// Why a configdrive could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigdriveError {
    #[error("configdrive.meta_data: expected a mapping of keys to values, got {found}")]
    MetaDataNotMapping { found: &'static str },
    #[error("configdrive.meta_data.{key}: {reason}")]
    MetaData { key: String, reason: String },
    #[error("configdrive.network_config{at}: {reason}")]
    NetworkConfig { at: String, reason: String },
    #[error("encoding {what} for the configdrive: {reason}")]
    Encode { what: &'static str, reason: String },
    #[error(
        "configdrive size {size} bytes for {target} is too small; give configdrive at least {MIN_SIZE} bytes"
    )]
    TooSmall { target: PathBuf, size: u64 },
    #[error("cannot open configdrive target {target}: {source} (it must exist: a device, or a file the caller created)")]
    Open {
        target: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "configdrive region {offset}+{size} does not fit in {target}, which has {len} bytes; check the partition placement"
    )]
    OutOfBounds {
        target: PathBuf,
        offset: u64,
        size: u64,
        len: u64,
    },
    #[error("{action} on {target}: {source}")]
    Io {
        action: String,
        target: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "configdrive size {size} bytes for {target} is too large for FAT16 (about 2 GiB at most); give configdrive a smaller size"
    )]
    TooLarge { target: PathBuf, size: u64 },
    #[error("laying out the configdrive for {target} ({size} bytes): {reason}")]
    Layout {
        target: PathBuf,
        size: u64,
        reason: String,
    },
    #[error("writing {file} into the configdrive on {target} ({size} bytes): {source}")]
    WriteFile {
        file: String,
        target: PathBuf,
        size: u64,
        source: std::io::Error,
    },
    #[error("writing {path} for the configdrive directory: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What [`write`] put on the target.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ConfigdriveOutcome {
    /// Volume label: `cidata` or `config-2`.
    pub label: String,
    /// FAT volume id (serial number).
    pub volume_id: u32,
    /// The volume id as blkid shows it (`UUID="ABCD-1234"`).
    pub fs_uuid: String,
    /// FAT variant chosen for the size: `FAT12`, `FAT16` or `FAT32`.
    pub fat_type: String,
    /// Paths of the files written, relative to the filesystem root.
    pub files: Vec<String>,
    /// Total bytes of file content written.
    pub bytes: u64,
}

/// The file tree (paths relative to the filesystem root, `/`-separated) for the plan's flavour.
pub fn files(plan: &ConfigdrivePlan) -> Result<Vec<(String, Vec<u8>)>, ConfigdriveError> {
    match plan.format {
        ConfigdriveFormat::Nocloud => tree::nocloud(plan),
        ConfigdriveFormat::Config2 => tree::config2(plan),
    }
}

/// Volume label cloud-init looks for. Lower case: NoCloud accepts `cidata` and
/// `CIDATA`, ConfigDrive `config-2` and `CONFIG-2`; lower case is what both
/// document and what older cloud-init versions only accept for `config-2`.
pub fn label(format: ConfigdriveFormat) -> &'static str {
    match format {
        ConfigdriveFormat::Nocloud => "cidata",
        ConfigdriveFormat::Config2 => "config-2",
    }
}

/// Formats FAT over `size` bytes at `offset` in `target` (device or file) and writes the plan's files.
///
/// Bytes outside `[offset, offset + size)` are not touched. The region is
/// zeroed first so stale signatures of an earlier filesystem cannot make
/// blkid's answer ambiguous. A regular file shorter than the region is extended.
pub fn write(
    target: &Path,
    offset: u64,
    size: u64,
    plan: &ConfigdrivePlan,
) -> Result<ConfigdriveOutcome, ConfigdriveError> {
    let tree = files(plan)?;
    let label = label(plan.format);
    let volume_id = volume_id(&plan.instance_id);
    let fat_type = fat::write(target, offset, size, label, volume_id, &tree)?;
    let outcome = ConfigdriveOutcome {
        label: label.to_string(),
        volume_id,
        fs_uuid: format!("{:04X}-{:04X}", volume_id >> 16, volume_id & 0xffff),
        fat_type,
        files: tree.iter().map(|(p, _)| p.clone()).collect(),
        bytes: tree.iter().map(|(_, c)| c.len() as u64).sum(),
    };
    crate::runner::log::info(&format!(
        "configdrive {} ({}, UUID {}) written to {} at offset {offset}: {} files, {} bytes",
        outcome.label,
        outcome.fat_type,
        outcome.fs_uuid,
        target.display(),
        outcome.files.len(),
        outcome.bytes
    ));
    Ok(outcome)
}

/// Builds the configdrive into a scratch file of its planned size and removes it: the
/// files are valid and fit, checked before any disk is touched. Returns the bytes of
/// file content.
pub fn check_fits(plan: &ConfigdrivePlan) -> Result<u64, ConfigdriveError> {
    let scratch =
        std::env::temp_dir().join(format!("imprint-configdrive-check-{}", std::process::id()));
    let made = std::fs::File::create(&scratch).map_err(|source| ConfigdriveError::Dir {
        path: scratch.clone(),
        source,
    });
    let result = made.and_then(|_| {
        let tree = files(plan)?;
        fat::write(&scratch, 0, plan.size_bytes, label(plan.format), 0, &tree)?;
        Ok(tree.iter().map(|(_, c)| c.len() as u64).sum())
    });
    let _ = std::fs::remove_file(&scratch);
    result
}

/// Writes the plan's files into directory `dir` (created if missing), e.g. as a seed dir or ISO source.
pub fn write_dir(dir: &Path, plan: &ConfigdrivePlan) -> Result<Vec<String>, ConfigdriveError> {
    let tree = files(plan)?;
    for (rel, content) in &tree {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ConfigdriveError::Dir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, content).map_err(|source| ConfigdriveError::Dir {
            path: path.clone(),
            source,
        })?;
    }
    Ok(tree.into_iter().map(|(p, _)| p).collect())
}

/// A volume id derived from the instance id: stable across reruns of the same plan.
fn volume_id(instance_id: &str) -> u32 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(instance_id.as_bytes());
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}
