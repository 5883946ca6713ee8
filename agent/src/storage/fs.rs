//! Filesystems: make them with the plan's labels and UUIDs, mount the tree under a
//! staging root, unmount it, and grow a written filesystem image to its volume.

use crate::plan::{MkfsPlan, MountPlan};
use crate::runner::{self, RunError};
use nix::mount::{MntFlags, MsFlags};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// mkfs on a large, slow disk (mkfs.ext4 zeroes inode tables lazily, xfs discards).
const TIMEOUT: Duration = Duration::from_secs(600);

/// Where the deployed system's tree is assembled.
pub const STAGING_ROOT: &str = "/run/imprint/target";

/// Why a filesystem operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("making {fstype} on {}: {source}", device.display())]
    Mkfs {
        fstype: String,
        device: PathBuf,
        source: RunError,
    },
    #[error("filesystem type {0:?} is not supported (ext4, xfs, vfat, swap)")]
    Type(String),
    #[error("mount point {0:?} must be an absolute path without `..`")]
    MountPoint(String),
    #[error("mounting {} on {}: {cause}", device.display(), target.display())]
    Mount {
        device: PathBuf,
        target: PathBuf,
        cause: String,
    },
    #[error("unmounting {}: {cause}", target.display())]
    Unmount { target: PathBuf, cause: String },
    #[error("growing the {fstype} filesystem on {}: {cause}", device.display())]
    Grow {
        fstype: String,
        device: PathBuf,
        cause: String,
    },
}

/// The mkfs command line for `plan`.
pub fn mkfs_command(plan: &MkfsPlan) -> Result<(&'static str, Vec<String>), FsError> {
    let dev = plan.device.display().to_string();
    let label = plan.label.clone();
    let (prog, mut a): (&str, Vec<String>) = match plan.fstype.as_str() {
        "ext4" => (
            "mkfs.ext4",
            vec!["-F".into(), "-q".into(), "-U".into(), plan.uuid.clone()],
        ),
        "xfs" => (
            "mkfs.xfs",
            vec![
                "-f".into(),
                "-q".into(),
                "-m".into(),
                format!("uuid={}", plan.uuid),
            ],
        ),
        // mkfs.vfat takes the volume id as 8 hex digits, without the dash.
        "vfat" => ("mkfs.vfat", vec!["-i".into(), plan.uuid.replace('-', "")]),
        "swap" => ("mkswap", vec!["-U".into(), plan.uuid.clone()]),
        other => return Err(FsError::Type(other.into())),
    };
    if let Some(l) = label {
        a.push(if plan.fstype.as_str() == "vfat" {
            "-n".into()
        } else {
            "-L".into()
        });
        a.push(l);
    }
    a.push(dev);
    Ok((prog, a))
}

/// Makes the filesystem.
pub fn mkfs(plan: &MkfsPlan) -> Result<(), FsError> {
    let (prog, args) = mkfs_command(plan)?;
    runner::run(prog, &args, TIMEOUT)
        .map(|_| ())
        .map_err(|source| FsError::Mkfs {
            fstype: plan.fstype.as_str().into(),
            device: plan.device.clone(),
            source,
        })
}

/// `mountpoint` under `root`, refusing anything that is not a plain absolute path.
pub fn under_root(root: &Path, mountpoint: &str) -> Result<PathBuf, FsError> {
    let p = Path::new(mountpoint);
    if !p.is_absolute() {
        return Err(FsError::MountPoint(mountpoint.into()));
    }
    let mut out = root.to_path_buf();
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            _ => return Err(FsError::MountPoint(mountpoint.into())),
        }
    }
    Ok(out)
}

/// Mount flags and data for the staging mount. `noexec` and `ro` are left to the
/// deployed system's fstab: the image's own tools run in a chroot of this tree and
/// execute from /tmp and /var/tmp (initramfs builders do).
pub fn staging_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "nodev" => flags |= MsFlags::MS_NODEV,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            // fstab-only or deployed-only options.
            "defaults" | "noexec" | "exec" | "ro" | "rw" | "auto" | "noauto" | "nofail"
            | "user" | "nouser" | "_netdev" | "suid" | "dev" | "atime" | "sync" | "async" => {}
            o if o.starts_with("x-") || o.starts_with("comment=") => {}
            o => data.push(o.to_string()),
        }
    }
    (flags, data.join(","))
}

/// Mounts `plan` under `root`, creating the mount point; returns where.
pub fn mount(plan: &MountPlan, root: &Path) -> Result<PathBuf, FsError> {
    let target = under_root(root, &plan.mountpoint)?;
    std::fs::create_dir_all(&target).map_err(|e| FsError::Mount {
        device: plan.device.clone(),
        target: target.clone(),
        cause: format!("creating the mount point: {e}"),
    })?;
    let (flags, data) = staging_options(&plan.options);
    mount_raw(&plan.device, &target, plan.fstype.as_str(), flags, &data)?;
    Ok(target)
}

/// mount(2) with errors that name device and target.
pub fn mount_raw(
    device: &Path,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: &str,
) -> Result<(), FsError> {
    nix::mount::mount(
        Some(device),
        target,
        Some(fstype),
        flags,
        (!data.is_empty()).then_some(data),
    )
    .map_err(|e| FsError::Mount {
        device: device.to_path_buf(),
        target: target.to_path_buf(),
        cause: e.to_string(),
    })
}

/// Unmounts `target` (bounded retries while something still holds it briefly).
pub fn unmount(target: &Path) -> Result<(), FsError> {
    let mut last = None;
    for _ in 0..20 {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut cause = last.map(|e| e.to_string()).unwrap_or_default();
    let held = holders(target);
    if !held.is_empty() {
        cause = format!("{cause}; held by {}", held.join(", "));
    }
    Err(FsError::Unmount {
        target: target.to_path_buf(),
        cause,
    })
}

/// Kills the processes whose root directory is `root` or below it: commands run
/// chrooted into the target and whatever they left running there, which would keep
/// the target busy. Returns them as `pid N (name)`.
pub fn stop_processes_in(root: &Path) -> Vec<String> {
    let mut stopped = Vec::new();
    for (pid, name) in processes() {
        let inside = std::fs::read_link(format!("/proc/{pid}/root"))
            .is_ok_and(|r| r.starts_with(root) && r != Path::new("/"));
        if inside && pid != std::process::id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            stopped.push(format!("pid {pid} ({name})"));
        }
    }
    if !stopped.is_empty() {
        // Give the kernel a moment to tear them down before anything is unmounted.
        std::thread::sleep(Duration::from_millis(300));
    }
    stopped
}

/// The processes with their working directory or an open file at or below `path` (not
/// stopped: they were not started in the target, e.g. an operator's shell).
pub fn holders(path: &Path) -> Vec<String> {
    let under = |link: std::io::Result<PathBuf>| link.is_ok_and(|l| l.starts_with(path));
    processes()
        .into_iter()
        .filter(|(pid, _)| {
            under(std::fs::read_link(format!("/proc/{pid}/cwd")))
                || std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|fd| under(std::fs::read_link(fd.path())))
        })
        .map(|(pid, name)| format!("pid {pid} ({name})"))
        .collect()
}

/// Every process: its pid and command name.
fn processes() -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .map(|pid| {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (pid, name.trim().to_string())
        })
        .collect()
}

/// Grows the filesystem on `device` (just written from an image) to fill the device.
pub fn grow(device: &Path, fstype: &str) -> Result<String, FsError> {
    let err = |cause: String| FsError::Grow {
        fstype: fstype.into(),
        device: device.to_path_buf(),
        cause,
    };
    match fstype {
        "ext4" | "ext3" | "ext2" => {
            // resize2fs wants a freshly checked filesystem; e2fsck exits 1 when it fixed something.
            match runner::run(
                "e2fsck",
                ["-f".as_ref(), "-p".as_ref(), device.as_os_str()],
                TIMEOUT,
            ) {
                Ok(_) => {}
                Err(RunError::Failed { status, .. }) if status.ends_with("status: 1") => {}
                Err(e) => return Err(err(e.to_string())),
            }
            let out = runner::run("resize2fs", [device.as_os_str()], TIMEOUT)
                .map_err(|e| err(e.to_string()))?;
            Ok(format!("{}{}", out.stdout, out.stderr).trim().to_string())
        }
        "xfs" => {
            let dir = PathBuf::from("/run/imprint/grow");
            std::fs::create_dir_all(&dir)
                .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
            mount_raw(device, &dir, "xfs", MsFlags::empty(), "")?;
            let res = runner::run("xfs_growfs", [dir.as_os_str()], TIMEOUT);
            let un = unmount(&dir);
            let out = res.map_err(|e| err(e.to_string()))?;
            un?;
            Ok(out.stdout.trim().to_string())
        }
        other => Ok(format!("{other}: not grown")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(fstype: &str, label: Option<&str>, uuid: &str) -> MkfsPlan {
        MkfsPlan {
            name: "x".into(),
            device: "/dev/vg0/root".into(),
            fstype: serde_json::from_value(fstype.into()).expect("a filesystem type"),
            label: label.map(Into::into),
            uuid: uuid.into(),
            mount: None,
        }
    }

    #[test]
    fn mkfs_commands_carry_label_and_uuid() {
        let u = "bc62f174-0fda-4a69-9c16-b98117cfa1ca";
        let (p, a) = mkfs_command(&plan("xfs", Some("root"), u)).unwrap();
        assert_eq!(
            (p, a.join(" ").as_str()),
            (
                "mkfs.xfs",
                "-f -q -m uuid=bc62f174-0fda-4a69-9c16-b98117cfa1ca -L root /dev/vg0/root"
            )
        );
        let (p, a) = mkfs_command(&plan("vfat", Some("ESP"), "D156-A340")).unwrap();
        assert_eq!(
            (p, a.join(" ").as_str()),
            ("mkfs.vfat", "-i D156A340 -n ESP /dev/vg0/root")
        );
        // Types imprint does not make cannot reach mkfs: the plan has no word for them.
        assert!(serde_json::from_value::<crate::plan::FsType>("btrfs".into()).is_err());
    }

    /// Real tools check the result: blkid reads back the UUID and label we asked for.
    #[test]
    fn made_filesystems_have_the_planned_uuid_and_label() {
        let dir = tempfile::tempdir().unwrap();
        for (fstype, uuid, label) in [
            ("ext4", "6e34b360-d747-4835-bd23-f8d0ddfb8618", "boot"),
            ("xfs", "bc62f174-0fda-4a69-9c16-b98117cfa1ca", "root"),
            ("vfat", "D156-A340", "ESP"),
            ("swap", "7656743c-422a-4809-81f9-8260394fbcc0", "swap"),
        ] {
            let f = dir.path().join(fstype);
            std::fs::File::create(&f)
                .unwrap()
                .set_len(320 << 20)
                .unwrap();
            let mut p = plan(fstype, Some(label), uuid);
            p.device = f.clone();
            mkfs(&p).unwrap();
            let out = std::process::Command::new("blkid")
                .args(["-p", "-o", "export"])
                .arg(&f)
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&out.stdout);
            assert!(out.contains(&format!("UUID={uuid}")), "{fstype}: {out}");
            assert!(out.contains(&format!("LABEL={label}")), "{fstype}: {out}");
        }
    }

    #[test]
    fn staging_mounts_keep_nodev_nosuid_but_not_noexec() {
        let (f, d) = staging_options(&[
            "nodev".into(),
            "nosuid".into(),
            "noexec".into(),
            "umask=0077".into(),
            "nofail".into(),
        ]);
        assert_eq!(f, MsFlags::MS_NODEV | MsFlags::MS_NOSUID);
        assert_eq!(d, "umask=0077");
    }

    #[test]
    fn mount_points_cannot_escape_the_root() {
        let r = Path::new("/run/imprint/target");
        assert_eq!(
            under_root(r, "/var/log").unwrap(),
            Path::new("/run/imprint/target/var/log")
        );
        assert_eq!(under_root(r, "/").unwrap(), r);
        assert!(under_root(r, "/var/../../etc").is_err());
        assert!(under_root(r, "var").is_err());
    }
}
