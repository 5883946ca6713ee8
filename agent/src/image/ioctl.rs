//! The few block-device calls the image sink needs, behind safe wrappers.
//! (To be merged into `blockdev` later; kept private here to avoid conflicts.)

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

// BLKSSZGET = _IO(0x12, 104): logical sector size (int).
nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), libc::c_int);
// BLKZEROOUT = _IO(0x12, 127): zero [start, start+len) (u64[2]), offloaded where the device can.
nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);

/// Logical sector size of a block device.
pub(crate) fn logical_sector_size(dev: &File) -> io::Result<u64> {
    let mut size: libc::c_int = 0;
    // SAFETY: the fd is open for the duration of the call; the kernel writes one int into `size`.
    unsafe { blksszget(dev.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
    Ok(size as u64)
}

/// Zeroes `len` bytes at `offset` of a block device (both sector-aligned).
pub(crate) fn zero_out(dev: &File, offset: u64, len: u64) -> io::Result<()> {
    let range = [offset, len];
    // SAFETY: the fd is open; the kernel reads two u64 from `range`, which outlives the call.
    unsafe { blkzeroout(dev.as_raw_fd(), &range) }.map_err(io::Error::from)?;
    Ok(())
}

/// Deallocates `len` bytes at `offset` of a regular file, keeping its size (reads back zeros).
pub(crate) fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use nix::fcntl::{fallocate, FallocateFlags};
    let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    fallocate(file, flags, offset as libc::off_t, len as libc::off_t).map_err(io::Error::from)
}
