//! Before a disk is wiped: stop what a previous deployment left running on it — md
//! arrays, LUKS mappings, LVM volumes — top of the stack first. The ramdisk assembles
//! nothing by itself, but a rescue shell (or a distribution's udev) may have.

use std::path::{Path, PathBuf};

/// Why a stale stack could not be taken down.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("{device} sits on {disk} and could not be stopped: {cause}")]
    Stop {
        device: String,
        disk: String,
        cause: String,
    },
    #[error("{device} (device-mapper {uuid:?}) sits on {disk}; this agent does not know how to stop it: remove it by hand")]
    Unknown {
        device: String,
        uuid: String,
        disk: String,
    },
}

fn sys(name: &str) -> PathBuf {
    Path::new("/sys/class/block").join(name)
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn holders(name: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sys(name).join("holders"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The disk's kernel name and its partitions' names.
fn disk_and_partitions(disk: &Path) -> Vec<String> {
    let Ok(name) = crate::blockdev::sysfs_name(disk) else {
        return Vec::new();
    };
    let mut v = vec![name.clone()];
    if let Ok(d) = std::fs::read_dir(Path::new("/sys/block").join(&name)) {
        let mut parts: Vec<String> = d
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("partition").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        parts.sort();
        v.extend(parts);
    }
    v
}

/// Stops every md array and device-mapper device stacked on `disk`; returns what it did.
pub fn release(disk: &Path) -> Result<Vec<String>, TeardownError> {
    let mut done = Vec::new();
    for n in disk_and_partitions(disk) {
        for h in holders(&n) {
            release_device(&h, disk, &mut done)?;
        }
    }
    Ok(done)
}

fn release_device(name: &str, disk: &Path, done: &mut Vec<String>) -> Result<(), TeardownError> {
    if !sys(name).exists() {
        return Ok(()); // already gone with an earlier branch
    }
    for h in holders(name) {
        release_device(&h, disk, done)?;
    }
    let stop = |cause: String| TeardownError::Stop {
        device: name.into(),
        disk: disk.display().to_string(),
        cause,
    };
    if name.starts_with("md") {
        let dev = PathBuf::from("/dev").join(name);
        crate::blockdev::wait_for_node(&dev, std::time::Duration::from_secs(2))
            .map_err(|e| stop(e.to_string()))?;
        crate::storage::raid::stop(&dev).map_err(|e| stop(e.to_string()))?;
        done.push(format!("stopped md array {name}"));
    } else if name.starts_with("dm-") {
        let uuid = read(sys(name).join("dm/uuid"));
        let dm_name = read(sys(name).join("dm/name"));
        if uuid.starts_with("CRYPT-") {
            crate::storage::luks::close(&dm_name).map_err(|e| stop(e.to_string()))?;
            done.push(format!("closed LUKS mapping {dm_name}"));
        } else if uuid.starts_with("LVM-") {
            let vg = crate::storage::lvm::vg_of_dm_name(&dm_name).unwrap_or(dm_name.clone());
            crate::storage::lvm::deactivate(&vg).map_err(|e| stop(e.to_string()))?;
            done.push(format!("deactivated volume group {vg}"));
        } else {
            return Err(TeardownError::Unknown {
                device: format!("{name} ({dm_name})"),
                uuid,
                disk: disk.display().to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_without_holders_needs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("plain");
        std::fs::write(&f, b"x").unwrap();
        assert!(release(&f).unwrap().is_empty());
    }
}
