//! What every destructive command checks before it writes: is the device in use, did the
//! operator agree. `apply`, `write-image` and `configdrive --target` share these.

use super::document;
use super::exit::{self, Exit};
use imprint::disks::Disk;
use std::fs::File;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why `disk` must not be touched without `--force`: the boot medium, mounted
/// filesystems, holders (md, dm, LVM). Empty when it is free.
pub fn busy_reasons(disk: &Disk) -> Vec<String> {
    let mut out = Vec::new();
    let path = disk.path.display();
    if document::is_boot_medium(disk) {
        out.push(format!(
            "{path} is an imprint boot medium (the system may have booted from it)"
        ));
    }
    if !disk.mounts.is_empty() {
        out.push(format!(
            "{path} has mounted filesystems: {}",
            disk.mounts.join(", ")
        ));
    }
    if !disk.holders.is_empty() {
        out.push(format!("{path} is held by {}", disk.holders.join(", ")));
    }
    out
}

/// The refusal for disks in use, unless `force`.
pub fn refuse_busy(busy: &[String], force: bool) -> Result<(), Exit> {
    if busy.is_empty() || force {
        return Ok(());
    }
    Err(Exit::new(
        exit::REFUSED,
        format!(
            "refusing to touch disks in use:\n  {}\npass --force if you are sure",
            busy.join("\n  ")
        ),
    ))
}

/// Asks the operator to type `yes`; without a terminal, refuses (`--yes` skips the question).
pub fn confirm(prompt: &str) -> Result<(), Exit> {
    if !std::io::stdin().is_terminal() {
        return Err(Exit::new(
            exit::ABORTED,
            "not a terminal, cannot ask for confirmation; pass --yes to proceed",
        ));
    }
    eprint!("{prompt} Type 'yes' to continue: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(anyhow::Error::from)?;
    if line.trim() == "yes" {
        Ok(())
    } else {
        Err(Exit::new(exit::ABORTED, "aborted; nothing was changed"))
    }
}

/// The whole disk a block device belongs to: itself, or a partition's parent.
pub fn whole_disk(dev: &Path) -> Result<PathBuf, Exit> {
    let fail = |e: String| Exit::new(exit::PROVISION_FAILED, format!("{}: {e}", dev.display()));
    let name = imprint::blockdev::sysfs_name(dev).map_err(|e| fail(e.to_string()))?;
    let sys = Path::new("/sys/class/block").join(&name);
    if !sys.join("partition").exists() {
        return Ok(PathBuf::from("/dev").join(name));
    }
    let real = std::fs::canonicalize(&sys)
        .map_err(|e| fail(format!("resolving {}: {e}", sys.display())))?;
    let parent = real
        .parent()
        .and_then(Path::file_name)
        .ok_or_else(|| fail("no parent disk in sysfs".into()))?;
    Ok(PathBuf::from("/dev").join(parent))
}

/// Opens a block device exclusively: the kernel refuses while it is mounted or held by
/// md, dm or another exclusive opener, and nobody can claim it while the file is open.
pub fn open_exclusive(dev: &Path) -> Result<File, Exit> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(dev)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                Exit::new(
                    exit::REFUSED,
                    format!(
                        "refusing to touch {}: it is in use (mounted, or held by md, dm or LVM)",
                        dev.display()
                    ),
                )
            } else {
                Exit::new(
                    exit::PROVISION_FAILED,
                    format!("opening {}: {e}", dev.display()),
                )
            }
        })
}
