//! A chroot of the target with /dev, /proc, /sys, /run and a working resolv.conf; torn
//! down in reverse on drop.

use crate::runner::{self, RunError};
use crate::storage::fs::{mount_raw, unmount, FsError};
use nix::mount::MsFlags;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment commands in the target get (nothing of the agent's leaks in).
const ENV: [&str; 5] = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "HOME=/root",
    "DEBIAN_FRONTEND=noninteractive",
    "TERM=dumb",
];

/// A prepared chroot.
pub struct Chroot {
    root: PathBuf,
    mounts: Vec<PathBuf>,
    resolv: Option<ResolvRestore>,
}

enum ResolvRestore {
    Remove,
    Rename(PathBuf),
}

impl Chroot {
    /// Mounts the API filesystems into `root` and provides /etc/resolv.conf.
    pub fn enter(root: &Path) -> Result<Chroot, FsError> {
        let mut c = Chroot {
            root: root.to_path_buf(),
            mounts: Vec::new(),
            resolv: None,
        };
        c.bind("/dev", "dev")?;
        c.fresh("proc", "proc", "proc")?;
        c.fresh("sysfs", "sys", "sysfs")?;
        if Path::new("/sys/firmware/efi/efivars").is_dir() {
            // Best effort, for a document's own finalize commands (efibootmgr): the
            // built-in ones pass --no-nvram and the boot-entries step writes the entries.
            let _ = c.fresh("efivarfs", "sys/firmware/efi/efivars", "efivarfs");
        }
        c.bind("/run", "run")?;
        c.resolv = provide_resolv_conf(root);
        Ok(c)
    }

    fn target(&self, rel: &str) -> Result<PathBuf, FsError> {
        let t = self.root.join(rel);
        std::fs::create_dir_all(&t).map_err(|e| FsError::Mount {
            device: rel.into(),
            target: t.clone(),
            cause: e.to_string(),
        })?;
        Ok(t)
    }

    fn bind(&mut self, src: &str, rel: &str) -> Result<(), FsError> {
        let t = self.target(rel)?;
        mount_raw(Path::new(src), &t, "", MsFlags::MS_BIND, "")?;
        self.mounts.push(t);
        Ok(())
    }

    fn fresh(&mut self, src: &str, rel: &str, fstype: &str) -> Result<(), FsError> {
        let t = self.target(rel)?;
        mount_raw(Path::new(src), &t, fstype, MsFlags::empty(), "")?;
        self.mounts.push(t);
        Ok(())
    }

    /// Mounts `device` (vfat) at `rel` inside the chroot until the chroot is left.
    pub fn mount_extra(&mut self, device: &Path, rel: &str) -> Result<(), FsError> {
        let t = self.target(rel)?;
        mount_raw(device, &t, "vfat", MsFlags::empty(), "")?;
        self.mounts.push(t);
        Ok(())
    }

    /// Runs `argv` inside the chroot with a clean environment.
    pub fn run(&self, argv: &[String], timeout: Duration) -> Result<runner::Output, RunError> {
        let mut a: Vec<String> = vec![
            self.root.display().to_string(),
            "/usr/bin/env".into(),
            "-i".into(),
        ];
        a.extend(ENV.iter().map(|s| s.to_string()));
        a.extend(argv.iter().cloned());
        runner::run("chroot", &a, timeout)
    }
}

fn provide_resolv_conf(root: &Path) -> Option<ResolvRestore> {
    let p = root.join("etc/resolv.conf");
    if p.is_file() && !p.is_symlink() {
        return None;
    }
    let host = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    let restore = if p.is_symlink() {
        let saved = root.join("etc/resolv.conf.imprint-saved");
        std::fs::rename(&p, &saved).ok()?;
        ResolvRestore::Rename(saved)
    } else {
        ResolvRestore::Remove
    };
    std::fs::write(&p, host).ok()?;
    Some(restore)
}

impl Drop for Chroot {
    fn drop(&mut self) {
        // Whatever the commands left running inside keeps the mounts busy.
        let stopped = crate::storage::fs::stop_processes_in(&self.root);
        if !stopped.is_empty() {
            crate::runner::log::warn(&format!(
                "stopped what was left running in the target: {}",
                stopped.join(", ")
            ));
        }
        let p = self.root.join("etc/resolv.conf");
        match self.resolv.take() {
            Some(ResolvRestore::Remove) => {
                let _ = std::fs::remove_file(&p);
            }
            Some(ResolvRestore::Rename(saved)) => {
                let _ = std::fs::rename(saved, &p);
            }
            None => {}
        }
        for m in self.mounts.drain(..).rev() {
            if let Err(e) = unmount(&m) {
                crate::runner::log::warn(&e.to_string());
            }
        }
    }
}
