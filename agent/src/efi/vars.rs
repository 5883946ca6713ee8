//! The firmware's global variables through efivarfs: `Boot####` and `BootOrder`.
//!
//! A variable is the file `<Name>-<VendorGuid>`; its content is a 4-byte attribute
//! word followed by the value, and a write must hand both over in one `write(2)`.
//! efivarfs marks most variables immutable (`chattr +i`) so that a stray `rm` cannot
//! brick a machine; the flag is cleared just before imprint writes or deletes one.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where the kernel mounts efivarfs.
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// EFI_GLOBAL_VARIABLE: the vendor GUID of `Boot####` and `BootOrder`.
pub const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS, as the specification requires
/// for boot options and the boot order.
pub const NV_BS_RT: u32 = 0x7;
/// `EFIVARFS_MAGIC` of linux/magic.h: statfs's type of efivarfs.
const EFIVARFS_MAGIC: i128 = 0xde5e_81e4;
/// `FS_IMMUTABLE_FL` of linux/fs.h.
const IMMUTABLE: libc::c_int = 0x10;

/// A variable could not be read, written or deleted.
#[derive(Debug, thiserror::Error)]
pub enum VarError {
    #[error("reading EFI variable {name} in {}: {source}", dir.display())]
    Read {
        name: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("writing EFI variable {name} in {}: {source}{}", dir.display(), hint(source))]
    Write {
        name: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("deleting EFI variable {name} in {}: {source}{}", dir.display(), hint(source))]
    Delete {
        name: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("EFI variable {name} in {} is {len} bytes, shorter than its 4-byte attributes", dir.display())]
    Short {
        name: String,
        dir: PathBuf,
        len: usize,
    },
    #[error("listing the EFI variables in {}: {source}; is efivarfs mounted there (mount -t efivarfs efivarfs {})?", dir.display(), dir.display())]
    List {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("every Boot#### number from Boot0000 to BootFFFF is taken in {}", dir.display())]
    Full { dir: PathBuf },
}

/// What to try after a failed write, by errno.
fn hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => {
            "; the firmware's variable store is full: remove stale entries (efibootmgr -B -b ####) or set boot.uefi_entries: false"
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "; the variable is immutable or efivarfs is mounted read-only (mount -o remount,rw /sys/firmware/efi/efivars)"
        }
        Some(libc::EINVAL) | Some(libc::EIO) => {
            "; the firmware refused it: some firmware lets only itself write boot entries, set boot.uefi_entries: false there"
        }
        _ => "",
    }
}

/// efivarfs (or, in tests, a directory standing in for it).
#[derive(Debug, Clone)]
pub struct Efivars {
    dir: PathBuf,
}

impl Efivars {
    /// The variables under `dir` (normally [`EFIVARS`]).
    pub fn at(dir: impl Into<PathBuf>) -> Efivars {
        Efivars { dir: dir.into() }
    }

    /// Where the variables are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-{GLOBAL}"))
    }

    /// The attributes and value of global variable `name`, or `None` if it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<(u32, Vec<u8>)>, VarError> {
        let err = |source| VarError::Read {
            name: name.into(),
            dir: self.dir.clone(),
            source,
        };
        let mut b = Vec::new();
        match File::open(self.file(name)) {
            Ok(mut f) => f.read_to_end(&mut b).map_err(err)?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        if b.len() < 4 {
            return Err(VarError::Short {
                name: name.into(),
                dir: self.dir.clone(),
                len: b.len(),
            });
        }
        let attrs = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
        Ok(Some((attrs, b.split_off(4))))
    }

    /// Creates or replaces global variable `name` with `value` (attributes NV|BS|RT).
    pub fn write(&self, name: &str, value: &[u8]) -> Result<(), VarError> {
        let path = self.file(name);
        let err = |source| VarError::Write {
            name: name.into(),
            dir: self.dir.clone(),
            source,
        };
        if path.exists() {
            make_mutable(&path).map_err(err)?;
        }
        let mut buf = NV_BS_RT.to_le_bytes().to_vec();
        buf.extend_from_slice(value);
        // efivarfs replaces the value on each write and has no truncation; a plain
        // directory (tests) needs the old bytes cut.
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(!is_efivarfs(&self.dir))
            .open(&path)
            .map_err(err)?;
        let n = f.write(&buf).map_err(err)?;
        if n != buf.len() {
            return Err(err(std::io::Error::new(
                ErrorKind::WriteZero,
                format!("only {n} of {} bytes were taken", buf.len()),
            )));
        }
        Ok(())
    }

    /// Deletes global variable `name` (nothing to do if it does not exist).
    pub fn delete(&self, name: &str) -> Result<(), VarError> {
        let path = self.file(name);
        let err = |source| VarError::Delete {
            name: name.into(),
            dir: self.dir.clone(),
            source,
        };
        if !path.exists() {
            return Ok(());
        }
        make_mutable(&path).map_err(err)?;
        std::fs::remove_file(&path).map_err(err)
    }

    /// The numbers of the `Boot####` variables that exist, in ascending order.
    pub fn boot_numbers(&self) -> Result<Vec<u16>, VarError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|source| VarError::List {
            dir: self.dir.clone(),
            source,
        })?;
        let suffix = format!("-{GLOBAL}");
        let mut v: Vec<u16> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                boot_number(name.strip_suffix(&suffix)?)
            })
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The lowest `Boot####` number not in use.
    pub fn free_boot_number(&self) -> Result<u16, VarError> {
        let used = self.boot_numbers()?;
        (0..=u16::MAX)
            .find(|n| used.binary_search(n).is_err())
            .ok_or_else(|| VarError::Full {
                dir: self.dir.clone(),
            })
    }

    /// `BootOrder` (empty when the variable does not exist).
    pub fn boot_order(&self) -> Result<Vec<u16>, VarError> {
        Ok(self
            .read("BootOrder")?
            .map(|(_, v)| {
                v.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Writes `BootOrder`.
    pub fn set_boot_order(&self, order: &[u16]) -> Result<(), VarError> {
        let v: Vec<u8> = order.iter().flat_map(|n| n.to_le_bytes()).collect();
        self.write("BootOrder", &v)
    }
}

/// `Boot####` → its number; `None` for every other name (`BootOrder`, `BootNext`,
/// lower-case hex, which firmware does not look up).
pub fn boot_number(name: &str) -> Option<u16> {
    let hex = name.strip_prefix("Boot")?;
    if hex.len() != 4
        || !hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
    {
        return None;
    }
    u16::from_str_radix(hex, 16).ok()
}

/// The variable name of boot option `n`, e.g. `Boot0003`.
pub fn boot_name(n: u16) -> String {
    format!("Boot{n:04X}")
}

/// `order` with `first` in front, in their order, and each number once.
pub fn order_with_first(order: &[u16], first: &[u16]) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::with_capacity(order.len() + first.len());
    for n in first.iter().chain(order) {
        if !out.contains(n) {
            out.push(*n);
        }
    }
    out
}

/// Whether `dir` is efivarfs itself rather than a directory standing in for it.
fn is_efivarfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir).is_ok_and(|s| i128::from(s.filesystem_type().0) == EFIVARFS_MAGIC)
}

/// Clears the immutable flag of `path`. A filesystem without inode flags (tmpfs of
/// older kernels, a test directory) has nothing to clear.
fn make_mutable(path: &Path) -> std::io::Result<()> {
    let f = File::open(path)?;
    let flags = match inode_flags(&f) {
        Ok(flags) => flags,
        Err(e) if flags_unsupported(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    match without_immutable(flags) {
        Some(cleared) => set_inode_flags(&f, cleared),
        None => Ok(()),
    }
}

/// `flags` without the immutable bit, or `None` when it is not set.
fn without_immutable(flags: libc::c_int) -> Option<libc::c_int> {
    (flags & IMMUTABLE != 0).then_some(flags & !IMMUTABLE)
}

/// The errors of a filesystem that has no inode flags at all.
fn flags_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTTY | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS)
    )
}

nix::ioctl_read_bad!(fs_ioc_getflags, libc::FS_IOC_GETFLAGS, libc::c_int);
nix::ioctl_write_ptr_bad!(fs_ioc_setflags, libc::FS_IOC_SETFLAGS, libc::c_int);

/// The inode flags of `f` (`lsattr`).
fn inode_flags(f: &File) -> std::io::Result<libc::c_int> {
    let mut flags: libc::c_int = 0;
    // SAFETY: the descriptor is open for the duration of the call and `flags` is a
    // valid, writable c_int: the kernel stores the flags as an int whatever the
    // request's declared size.
    unsafe { fs_ioc_getflags(f.as_raw_fd(), &mut flags) }.map_err(std::io::Error::from)?;
    Ok(flags)
}

/// Sets the inode flags of `f` (`chattr`).
fn set_inode_flags(f: &File, flags: libc::c_int) -> std::io::Result<()> {
    // SAFETY: the descriptor is open for the duration of the call and `flags` is a
    // valid c_int the kernel only reads.
    unsafe { fs_ioc_setflags(f.as_raw_fd(), &flags) }.map_err(std::io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_writes_with_the_attribute_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let v = Efivars::at(dir.path());
        assert_eq!(v.read("BootOrder").unwrap(), None);
        v.set_boot_order(&[3, 1]).unwrap();
        let raw = std::fs::read(dir.path().join(format!("BootOrder-{GLOBAL}"))).unwrap();
        assert_eq!(raw, [7, 0, 0, 0, 3, 0, 1, 0]);
        assert_eq!(v.boot_order().unwrap(), [3, 1]);
        // A shorter value replaces a longer one.
        v.set_boot_order(&[2]).unwrap();
        let raw = std::fs::read(dir.path().join(format!("BootOrder-{GLOBAL}"))).unwrap();
        assert_eq!(raw.len(), 6, "{raw:?}");
        assert_eq!(v.boot_order().unwrap(), [2]);
    }

    #[test]
    fn picks_the_lowest_free_boot_number() {
        let dir = tempfile::tempdir().unwrap();
        let v = Efivars::at(dir.path());
        assert_eq!(v.free_boot_number().unwrap(), 0);
        for n in [0, 1, 3] {
            v.write(&boot_name(n), b"x").unwrap();
        }
        // Names that only look like boot options do not count.
        std::fs::write(dir.path().join(format!("Boot0002-{}", "0".repeat(36))), b"").unwrap();
        std::fs::write(dir.path().join(format!("Boot0002x-{GLOBAL}")), b"").unwrap();
        assert_eq!(v.boot_numbers().unwrap(), [0, 1, 3]);
        assert_eq!(v.free_boot_number().unwrap(), 2);
        v.delete(&boot_name(1)).unwrap();
        assert_eq!(v.free_boot_number().unwrap(), 1);
        v.delete(&boot_name(1)).unwrap();
    }

    #[test]
    fn boot_order_puts_new_entries_first_once() {
        assert_eq!(order_with_first(&[1, 4, 2, 4], &[4, 7]), [4, 7, 1, 2]);
        assert_eq!(order_with_first(&[], &[5]), [5]);
        assert_eq!(boot_number("Boot00A1"), Some(0xa1));
        assert_eq!(boot_number("Boot00a1"), None);
        assert_eq!(boot_number("BootOrder"), None);
        assert_eq!(boot_name(0xa1), "Boot00A1");
    }

    #[test]
    fn clears_only_the_immutable_bit() {
        // FS_EXTENT_FL (0x80000) stays; FS_IMMUTABLE_FL goes.
        assert_eq!(without_immutable(0x80010), Some(0x80000));
        assert_eq!(without_immutable(0x80000), None);
    }

    #[test]
    fn immutable_flag_handling_tolerates_filesystems_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let v = Efivars::at(dir.path());
        v.write("Boot0000", b"a").unwrap();
        let path = v.file("Boot0000");
        let f = File::open(&path).unwrap();
        // Set the flag where the filesystem and our privileges allow it (ext4 as root);
        // elsewhere the write and delete below must work all the same.
        let set = match inode_flags(&f) {
            Ok(flags) => set_inode_flags(&f, flags | IMMUTABLE).is_ok(),
            Err(e) => {
                assert!(flags_unsupported(&e), "{e}");
                false
            }
        };
        if set {
            assert!(std::fs::write(&path, b"blocked").is_err(), "immutable");
        }
        v.write("Boot0000", b"b").unwrap();
        assert_eq!(v.read("Boot0000").unwrap(), Some((7, b"b".to_vec())));
        if set {
            set_inode_flags(&f, inode_flags(&f).unwrap() | IMMUTABLE).unwrap();
        }
        v.delete("Boot0000").unwrap();
        assert!(!path.exists());
    }
}
