//! A small safe layer over libblkid's low-level probing API (`libblkid-rs-sys`).
//!
//! The high-level `libblkid-rs` crate has no `blkid_probe_set_partitions_flags`, and
//! without `BLKID_PARTS_MAGIC` a partition table reports no `PTMAGIC_OFFSET`, so
//! `blkid_do_wipe` cannot erase it; nor does it hand out its raw probe. The few calls
//! the inventory, the wipe and the boot-medium search need are wrapped here instead.

use libblkid_rs_sys as sys;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Superblock chain: report TYPE, LABEL, UUID and where the magic sits (SBMAGIC_OFFSET).
const SUPERBLOCK_FLAGS: u32 = sys::BLKID_SUBLKS_TYPE
    | sys::BLKID_SUBLKS_LABEL
    | sys::BLKID_SUBLKS_UUID
    | sys::BLKID_SUBLKS_MAGIC;

/// `Ok` for libblkid's 0, the OS error for its negative returns.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A libblkid probe, freed on drop. `'f` ties it to the file whose descriptor it reads.
pub struct Probe<'f> {
    raw: sys::blkid_probe,
    _file: PhantomData<&'f File>,
}

/// One entry of a partition table, in libblkid's 512-byte units whatever the sector size.
#[derive(Debug, Clone, Copy)]
pub struct TableEntry {
    /// Partition number in the table (negative when libblkid could not tell).
    pub partno: i32,
    /// Start, in 512-byte units.
    pub start: i64,
    /// Length, in 512-byte units.
    pub size: i64,
    /// An MBR extended partition (a container, not a partition of its own).
    pub extended: bool,
}

impl Probe<'static> {
    /// A probe that opens `path` itself (read-only) and closes it on drop.
    pub fn from_path(path: &Path) -> io::Result<Self> {
        let name = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `name` is a NUL-terminated string that outlives the call; libblkid
        // copies what it keeps and returns NULL on failure, which is checked below.
        let raw = unsafe { sys::blkid_new_probe_from_filename(name.as_ptr()) };
        Self::owned(raw)
    }
}

impl<'f> Probe<'f> {
    fn owned(raw: sys::blkid_probe) -> io::Result<Self> {
        if raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Probe {
            raw,
            _file: PhantomData,
        })
    }

    /// A probe over `size` bytes (None: to the end) from `offset` of the open `file`.
    pub fn on_file(file: &'f File, offset: u64, size: Option<u64>) -> io::Result<Self> {
        // SAFETY: plain allocation; NULL on failure is checked by `owned`.
        let probe = Self::owned(unsafe { sys::blkid_new_probe() })?;
        let offset =
            i64::try_from(offset).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // libblkid reads 0 as "to the end of the device".
        let size = i64::try_from(size.unwrap_or(0))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `probe.raw` is a live probe; the descriptor stays open for `'f`, which
        // the probe cannot outlive, and libblkid does not close a descriptor it was given.
        check(unsafe { sys::blkid_probe_set_device(probe.raw, file.as_raw_fd(), offset, size) })?;
        Ok(probe)
    }

    /// Turns on the superblock and partition chains with the magic offsets reported,
    /// which [`Probe::wipe_current`] needs.
    pub fn with_signature_chains(self) -> io::Result<Self> {
        let probe = self;
        // SAFETY: `probe.raw` is a live probe; these calls only set its flags.
        unsafe {
            check(sys::blkid_probe_enable_superblocks(probe.raw, 1))?;
            check(sys::blkid_probe_set_superblocks_flags(
                probe.raw,
                SUPERBLOCK_FLAGS as i32,
            ))?;
            check(sys::blkid_probe_enable_partitions(probe.raw, 1))?;
            check(sys::blkid_probe_set_partitions_flags(
                probe.raw,
                sys::BLKID_PARTS_MAGIC as i32,
            ))?;
        }
        Ok(probe)
    }

    /// Steps to the next signature: true when one was found, false when none is left.
    pub fn next(&mut self) -> io::Result<bool> {
        // SAFETY: `self.raw` is a live probe.
        Ok(check(unsafe { sys::blkid_do_probe(self.raw) })? == 0)
    }

    /// Probes every chain once; true only when exactly one unambiguous result was found.
    pub fn safe_probe(&mut self) -> io::Result<bool> {
        // SAFETY: `self.raw` is a live probe. -2 (ambivalent) is no error here.
        match unsafe { sys::blkid_do_safeprobe(self.raw) } {
            0 => Ok(true),
            1 | -2 => Ok(false),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// The value of `name` (TYPE, LABEL, PTMAGIC_OFFSET…) in the current result, if any
    /// and if it is UTF-8.
    pub fn value(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        let mut data: *const libc::c_char = std::ptr::null();
        // SAFETY: `self.raw` is a live probe, `name` a NUL-terminated string; on success
        // libblkid points `data` at a NUL-terminated string it owns until the next probe
        // call, and it is copied out before `self` can be used again.
        let rc = unsafe {
            sys::blkid_probe_lookup_value(self.raw, name.as_ptr(), &mut data, std::ptr::null_mut())
        };
        if rc != 0 || data.is_null() {
            return None;
        }
        // SAFETY: see above: non-null and NUL-terminated, valid while `self` is borrowed.
        let value = unsafe { CStr::from_ptr(data) };
        value.to_str().ok().map(str::to_owned)
    }

    /// Erases the signature the probe stands on and steps back, so that the next
    /// [`Probe::next`] sees what lay beneath it.
    pub fn wipe_current(&mut self) -> io::Result<()> {
        // SAFETY: `self.raw` is a live probe on a descriptor open for writing (the
        // caller's contract); libblkid writes zeros over the magic it reported.
        check(unsafe { sys::blkid_do_wipe(self.raw, 0) }).map(drop)
    }

    /// The entries of the partition table on the device (empty without a table).
    pub fn table(&mut self) -> io::Result<Vec<TableEntry>> {
        // SAFETY: `self.raw` is a live probe; the list belongs to it and is only read
        // below, while `self` is mutably borrowed.
        let list = unsafe { sys::blkid_probe_get_partitions(self.raw) };
        if list.is_null() {
            return Ok(Vec::new());
        }
        // SAFETY: `list` is the non-null list just returned.
        let n = check(unsafe { sys::blkid_partlist_numof_partitions(list) })?;
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            // SAFETY: `list` is live and `i` is below the count it gave.
            let part = unsafe { sys::blkid_partlist_get_partition(list, i) };
            if part.is_null() {
                continue;
            }
            // SAFETY: `part` is a non-null partition of the live list; these only read it.
            out.push(unsafe {
                TableEntry {
                    partno: sys::blkid_partition_get_partno(part),
                    start: sys::blkid_partition_get_start(part),
                    size: sys::blkid_partition_get_size(part),
                    extended: sys::blkid_partition_is_extended(part) != 0,
                }
            });
        }
        Ok(out)
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        // SAFETY: `self.raw` came from blkid_new_probe* and is freed exactly once, here.
        unsafe { sys::blkid_free_probe(self.raw) }
    }
}
