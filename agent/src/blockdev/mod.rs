//! Block I/O through one door: ioctls, O_DIRECT alignment, telling the kernel
//! about partitions, and waiting for device nodes.
//!
//! Every ioctl of the project lives here, behind a safe function that names the
//! device in its error.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Alignment of [`AlignedBuf`]: enough for O_DIRECT on 512- and 4096-byte sector devices.
pub const DIRECT_ALIGN: usize = 4096;

/// Errors of block-device operations; each names the device.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("opening {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("{op} on {path}: {source}")]
    Ioctl {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("{op} is not supported by {path} ({source})")]
    Unsupported {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("partition {path} did not appear within {secs} s; the kernel may not have re-read the table")]
    NodeTimeout { path: String, secs: u64 },
    #[error("creating device node {path}: {source}")]
    Mknod { path: String, source: io::Error },
    #[error("reading {path}: {source}")]
    Sysfs { path: String, source: io::Error },
    #[error("{path} is not a block device")]
    NotBlock { path: String },
    #[error("{op} on {path} failed ({detail}); the device refused the command")]
    Ata {
        op: &'static str,
        path: String,
        detail: String,
    },
    #[error("{op} on {path} failed with NVMe status {status:#x}; the controller refused the command (see its Identify data and error log: nvme error-log)")]
    Nvme {
        op: &'static str,
        path: String,
        status: u32,
    },
}

type Result<T> = std::result::Result<T, BlockError>;

mod aligned;
pub use aligned::AlignedBuf;
pub mod ata;
pub mod nvme;

/// The ioctl request numbers (linux/fs.h, linux/blkpg.h) and their raw wrappers.
mod sys {
    use nix::{ioctl_none, ioctl_read, ioctl_read_bad, ioctl_write_ptr_bad, request_code_none};

    pub const BLKPG_ADD_PARTITION: libc::c_int = 1;
    pub const BLKPG_DEL_PARTITION: libc::c_int = 2;

    /// `struct blkpg_partition`.
    #[repr(C)]
    pub struct BlkpgPartition {
        pub start: libc::c_longlong,
        pub length: libc::c_longlong,
        pub pno: libc::c_int,
        pub devname: [libc::c_char; 64],
        pub volname: [libc::c_char; 64],
    }

    /// `struct blkpg_ioctl_arg`.
    #[repr(C)]
    pub struct BlkpgIoctlArg {
        pub op: libc::c_int,
        pub flags: libc::c_int,
        pub datalen: libc::c_int,
        pub data: *mut libc::c_void,
    }

    ioctl_read!(blkgetsize64, 0x12, 114, u64);
    ioctl_read_bad!(blksszget, request_code_none!(0x12, 104), libc::c_int);
    ioctl_read_bad!(blkpbszget, request_code_none!(0x12, 123), libc::c_uint);
    ioctl_none!(blkrrpart, 0x12, 95);
    ioctl_none!(blkflsbuf, 0x12, 97);
    ioctl_write_ptr_bad!(blkpg, request_code_none!(0x12, 105), BlkpgIoctlArg);
    ioctl_write_ptr_bad!(blkdiscard, request_code_none!(0x12, 119), [u64; 2]);
    ioctl_write_ptr_bad!(blkzeroout, request_code_none!(0x12, 127), [u64; 2]);
}

/// The path an open file was opened by, for error messages.
fn name_of(f: &File) -> String {
    fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| format!("fd {}", f.as_raw_fd()))
}

fn ioctl_err(op: &'static str, f: &File, e: nix::Error) -> BlockError {
    BlockError::Ioctl {
        op,
        path: name_of(f),
        source: io::Error::from(e),
    }
}

fn is_block_file(f: &File) -> Result<bool> {
    let md = f.metadata().map_err(|source| BlockError::Open {
        path: name_of(f),
        source,
    })?;
    Ok(md.file_type().is_block_device())
}

/// Size in bytes of a block device (BLKGETSIZE64) or a regular file.
pub fn size_bytes(f: &File) -> Result<u64> {
    if !is_block_file(f)? {
        return f
            .metadata()
            .map(|m| m.len())
            .map_err(|source| BlockError::Open {
                path: name_of(f),
                source,
            });
    }
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at a live local.
    unsafe { sys::blkgetsize64(f.as_raw_fd(), &mut size) }
        .map_err(|e| ioctl_err("BLKGETSIZE64", f, e))?;
    Ok(size)
}

/// Logical sector size (BLKSSZGET); 512 for regular files.
pub fn logical_sector(f: &File) -> Result<u64> {
    if !is_block_file(f)? {
        return Ok(512);
    }
    let mut v: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at a live local.
    unsafe { sys::blksszget(f.as_raw_fd(), &mut v) }.map_err(|e| ioctl_err("BLKSSZGET", f, e))?;
    Ok(v as u64)
}

/// Logical sector size of the device or file at `path`.
pub fn logical_sector_of(path: &Path) -> Result<u64> {
    let f = File::open(path).map_err(|source| BlockError::Open {
        path: path.display().to_string(),
        source,
    })?;
    logical_sector(&f)
}

/// Physical sector size (BLKPBSZGET); 512 for regular files.
pub fn physical_sector(f: &File) -> Result<u64> {
    if !is_block_file(f)? {
        return Ok(512);
    }
    let mut v: libc::c_uint = 0;
    // SAFETY: BLKPBSZGET writes one unsigned int through the pointer, which points at a live local.
    unsafe { sys::blkpbszget(f.as_raw_fd(), &mut v) }.map_err(|e| ioctl_err("BLKPBSZGET", f, e))?;
    Ok(v as u64)
}

/// Asks the kernel to re-read the partition table (BLKRRPART). Fails (EBUSY) while a
/// partition is open; [`sync_partitions`] falls back to BLKPG then.
pub fn reread_partitions(f: &File) -> Result<()> {
    // SAFETY: BLKRRPART takes no argument.
    unsafe { sys::blkrrpart(f.as_raw_fd()) }.map_err(|e| ioctl_err("BLKRRPART", f, e))?;
    Ok(())
}

fn blkpg(
    f: &File,
    op: libc::c_int,
    number: u32,
    start: u64,
    len: u64,
) -> std::result::Result<(), nix::Error> {
    let mut part = sys::BlkpgPartition {
        start: start as libc::c_longlong,
        length: len as libc::c_longlong,
        pno: number as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = sys::BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<sys::BlkpgPartition>() as libc::c_int,
        data: (&mut part as *mut sys::BlkpgPartition).cast(),
    };
    // SAFETY: `arg` and the partition it points to are live, correctly laid out
    // (#[repr(C)] copies of the kernel structs) and outlive the call.
    unsafe { sys::blkpg(f.as_raw_fd(), &arg) }.map(|_| ())
}

/// Tells the kernel about partition `number` at `start_bytes`, `len_bytes` long (BLKPG).
pub fn add_partition(f: &File, number: u32, start_bytes: u64, len_bytes: u64) -> Result<()> {
    blkpg(f, sys::BLKPG_ADD_PARTITION, number, start_bytes, len_bytes)
        .map_err(|e| ioctl_err("BLKPG add partition", f, e))
}

/// Removes partition `number` from the kernel's view of the disk (BLKPG).
pub fn delete_partition(f: &File, number: u32) -> Result<()> {
    blkpg(f, sys::BLKPG_DEL_PARTITION, number, 0, 0)
        .map_err(|e| ioctl_err("BLKPG delete partition", f, e))
}

/// A partition the kernel currently knows: number, start and length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPartition {
    /// Partition number (`2` for `sda2`).
    pub number: u32,
    /// Start on the disk, in bytes.
    pub start_bytes: u64,
    /// Length in bytes.
    pub len_bytes: u64,
}

/// The kernel name of a block device node (`sda`, `loop3p2`), found by its device number.
pub fn sysfs_name(dev: &Path) -> Result<String> {
    let md = fs::metadata(dev).map_err(|source| BlockError::Open {
        path: dev.display().to_string(),
        source,
    })?;
    if !md.file_type().is_block_device() {
        return Err(BlockError::NotBlock {
            path: dev.display().to_string(),
        });
    }
    let rdev = md.rdev();
    let link = format!("/sys/dev/block/{}:{}", libc::major(rdev), libc::minor(rdev));
    let target = fs::read_link(&link).map_err(|source| BlockError::Sysfs {
        path: link.clone(),
        source,
    })?;
    Ok(target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default())
}

fn read_sys_u64(path: &Path) -> Result<u64> {
    let s = fs::read_to_string(path).map_err(|source| BlockError::Sysfs {
        path: path.display().to_string(),
        source,
    })?;
    s.trim().parse().map_err(|_| BlockError::Sysfs {
        path: path.display().to_string(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a number: {:?}", s.trim()),
        ),
    })
}

/// The partitions the kernel knows on `disk` (from `/sys/class/block/<disk>/<part>/`).
pub fn kernel_partitions(disk: &Path) -> Result<Vec<KernelPartition>> {
    let name = sysfs_name(disk)?;
    let dir = PathBuf::from("/sys/class/block").join(&name);
    let entries = fs::read_dir(&dir).map_err(|source| BlockError::Sysfs {
        path: dir.display().to_string(),
        source,
    })?;
    let mut parts = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if !e.file_name().to_string_lossy().starts_with(&name) || !p.join("partition").exists() {
            continue;
        }
        // sysfs counts start and size in 512-byte units whatever the logical sector size.
        parts.push(KernelPartition {
            number: read_sys_u64(&p.join("partition"))? as u32,
            start_bytes: read_sys_u64(&p.join("start"))? * 512,
            len_bytes: read_sys_u64(&p.join("size"))? * 512,
        });
    }
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}

/// Makes the kernel's partitions of `disk` exactly `parts` (number, start bytes, length bytes):
/// BLKRRPART first (a kernel that parses the table is then done), else delete every kernel
/// partition and add these with BLKPG (a kernel without a GPT parser, or a busy disk).
pub fn sync_partitions(disk: &Path, parts: &[(u32, u64, u64)]) -> Result<()> {
    let f = File::open(disk).map_err(|source| BlockError::Open {
        path: disk.display().to_string(),
        source,
    })?;
    let wanted: Vec<KernelPartition> = {
        let mut w: Vec<_> = parts
            .iter()
            .map(|&(number, start_bytes, len_bytes)| KernelPartition {
                number,
                start_bytes,
                len_bytes,
            })
            .collect();
        w.sort_by_key(|p| p.number);
        w
    };
    match reread_partitions(&f) {
        Ok(()) if kernel_partitions(disk)? == wanted => return Ok(()),
        Ok(()) => crate::runner::log::debug(&format!(
            "{}: BLKRRPART left another table; using BLKPG",
            disk.display()
        )),
        Err(e) => crate::runner::log::debug(&format!("{e}; using BLKPG")),
    }
    // Only what changed: a partition in use (an open LUKS volume beside a disk image)
    // cannot be deleted, and need not be when it stays as it is.
    let have = kernel_partitions(disk)?;
    for p in have.iter().filter(|p| !wanted.contains(p)) {
        delete_partition(&f, p.number)?;
    }
    for p in wanted.iter().filter(|p| !have.contains(p)) {
        add_partition(&f, p.number, p.start_bytes, p.len_bytes)?;
    }
    Ok(())
}

fn range_op(
    f: &File,
    op: &'static str,
    offset: u64,
    len: u64,
    call: unsafe fn(libc::c_int, *const [u64; 2]) -> nix::Result<libc::c_int>,
) -> Result<()> {
    let range = [offset, len];
    // SAFETY: the ioctl reads two u64 (start, length) from a live local array.
    match unsafe { call(f.as_raw_fd(), &range) } {
        Ok(_) => Ok(()),
        Err(e @ (nix::Error::EOPNOTSUPP | nix::Error::ENOTTY | nix::Error::EINVAL)) => {
            Err(BlockError::Unsupported {
                op,
                path: name_of(f),
                source: e.into(),
            })
        }
        Err(e) => Err(ioctl_err(op, f, e)),
    }
}

/// Deallocates `len` bytes at `offset` of a regular file, keeping its size (reads back zeros).
pub fn punch_hole(f: &File, offset: u64, len: u64) -> Result<()> {
    let flags = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
        | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
    nix::fcntl::fallocate(f, flags, offset as i64, len as i64).map_err(|e| {
        BlockError::Unsupported {
            op: "fallocate punch hole",
            path: name_of(f),
            source: e.into(),
        }
    })
}

/// Zeroes `len` bytes at `offset` (BLKZEROOUT on devices, a zero-range fallocate on files).
/// Offset and length must be multiples of the logical sector size.
pub fn zero_out(f: &File, offset: u64, len: u64) -> Result<()> {
    if is_block_file(f)? {
        return range_op(f, "BLKZEROOUT", offset, len, sys::blkzeroout);
    }
    nix::fcntl::fallocate(
        f,
        nix::fcntl::FallocateFlags::FALLOC_FL_ZERO_RANGE,
        offset as i64,
        len as i64,
    )
    .map_err(|e| BlockError::Unsupported {
        op: "fallocate zero range",
        path: name_of(f),
        source: e.into(),
    })
}

/// Discards `len` bytes at `offset` (BLKDISCARD); [`BlockError::Unsupported`] when the device refuses.
pub fn discard(f: &File, offset: u64, len: u64) -> Result<()> {
    if !is_block_file(f)? {
        return Err(BlockError::NotBlock { path: name_of(f) });
    }
    range_op(f, "BLKDISCARD", offset, len, sys::blkdiscard)
}

/// Whether the device discards (sysfs `queue/discard_max_bytes` > 0).
pub fn supports_discard(disk: &Path) -> bool {
    let Ok(name) = sysfs_name(disk) else {
        return false;
    };
    read_sys_u64(
        &Path::new("/sys/class/block")
            .join(name)
            .join("queue/discard_max_bytes"),
    )
    .is_ok_and(|n| n > 0)
}

/// Whether the device offloads zeroing (sysfs `queue/write_zeroes_max_bytes` > 0).
pub fn supports_write_zeroes(disk: &Path) -> bool {
    let Ok(name) = sysfs_name(disk) else {
        return false;
    };
    read_sys_u64(
        &Path::new("/sys/class/block")
            .join(name)
            .join("queue/write_zeroes_max_bytes"),
    )
    .is_ok_and(|n| n > 0)
}

/// Writes everything to stable storage: fsync, then BLKFLSBUF to drop the buffer cache.
pub fn flush(f: &File) -> Result<()> {
    f.sync_all().map_err(|source| BlockError::Ioctl {
        op: "fsync",
        path: name_of(f),
        source,
    })?;
    if is_block_file(f)? {
        // SAFETY: BLKFLSBUF takes no argument.
        unsafe { sys::blkflsbuf(f.as_raw_fd()) }.map_err(|e| ioctl_err("BLKFLSBUF", f, e))?;
    }
    Ok(())
}

/// A file opened for direct I/O, and whether O_DIRECT is really in effect.
#[derive(Debug)]
pub struct DirectFile {
    /// The open file.
    pub file: File,
    /// False when the filesystem refused O_DIRECT and the file is buffered instead.
    pub direct: bool,
}

/// Opens `path` with O_DIRECT (read-write if `write`), falling back to buffered I/O when
/// the filesystem refuses O_DIRECT (tmpfs). Never creates or truncates.
pub fn open_direct(path: &Path, write: bool) -> Result<DirectFile> {
    let open = |flags: libc::c_int| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(flags)
            .open(path)
    };
    match open(libc::O_DIRECT) {
        Ok(file) => Ok(DirectFile { file, direct: true }),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            crate::runner::log::debug(&format!(
                "{}: O_DIRECT refused, using buffered I/O",
                path.display()
            ));
            let file = open(0).map_err(|source| BlockError::Open {
                path: path.display().to_string(),
                source,
            })?;
            Ok(DirectFile {
                file,
                direct: false,
            })
        }
        Err(source) => Err(BlockError::Open {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The node of partition `n` of `disk`: `/dev/sda`→`/dev/sda2`, `/dev/nvme0n1`→`/dev/nvme0n1p2`.
pub fn partition_node(disk: &Path, n: u32) -> PathBuf {
    let s = disk.as_os_str().to_string_lossy();
    if s.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{s}p{n}"))
    } else {
        PathBuf::from(format!("{s}{n}"))
    }
}

/// Whether `path` (symlinks followed) is a block device node.
pub fn is_block_device(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Creates `/dev/<name>` from `/sys/class/block/<name>/dev` when neither devtmpfs nor udev did.
fn mknod_from_sysfs(node: &Path) -> Result<bool> {
    let Some(name) = node.file_name() else {
        return Ok(false);
    };
    let dev_file = Path::new("/sys/class/block").join(name).join("dev");
    let Ok(s) = fs::read_to_string(&dev_file) else {
        return Ok(false);
    };
    let Some((maj, min)) = s.trim().split_once(':') else {
        return Ok(false);
    };
    let (Ok(maj), Ok(min)) = (maj.parse::<u32>(), min.parse::<u32>()) else {
        return Ok(false);
    };
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    match nix::sys::stat::mknod(
        node,
        nix::sys::stat::SFlag::S_IFBLK,
        mode,
        nix::sys::stat::makedev(maj as u64, min as u64),
    ) {
        Ok(()) | Err(nix::Error::EEXIST) => Ok(true),
        Err(e) => Err(BlockError::Mknod {
            path: node.display().to_string(),
            source: e.into(),
        }),
    }
}

/// Waits (bounded) until `path` is a block device; creates the node itself from sysfs
/// when the kernel knows the device but no devtmpfs/udev made the node.
pub fn wait_for_node(path: &Path, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let grace = Duration::from_millis(500).min(timeout / 2);
    loop {
        if is_block_device(path) {
            return Ok(());
        }
        if start.elapsed() >= grace
            && !path.exists()
            && mknod_from_sysfs(path)?
            && is_block_device(path)
        {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(BlockError::NodeTimeout {
                path: path.display().to_string(),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Test fixtures shared by the block-device modules: sparse files on loop devices.
#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests;
