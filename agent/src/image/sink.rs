//! The target: a block device (O_DIRECT where it works) or a regular file.
//!
//! The first MiB (partition table, boot code) is held in memory and written only
//! by [`Sink::commit_head`], after the stream verified. Aligned all-zero MiBs are
//! not written as data: BLKZEROOUT on a device that offloads it, a punched hole
//! in a file, else plain zeros (the device is never assumed to hold zeros).

use super::buf::{AlignedBuf, ALIGN};
use super::error::ImageError;
use crate::units::{Bytes, MIB};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bytes at the start of the output held back until the stream verified.
pub(crate) const HOLD_BACK: u64 = MIB;
/// Granularity of zero detection; zero runs are whole, aligned blocks of this size.
pub(crate) const ZERO_BLOCK: usize = MIB as usize;

enum Kind {
    Block {
        size: u64,
        sector: u64,
        zeroout: bool,
    },
    File,
}

/// An open target being written.
pub(crate) struct Sink {
    path: PathBuf,
    kind: Kind,
    /// O_DIRECT when possible (block devices), else buffered.
    file: File,
    /// A buffered handle for unaligned tails when `file` is O_DIRECT.
    tail: Option<File>,
    /// The O_DIRECT handle after [`Sink::buffered`]: kept open, it holds the exclusive claim.
    claim: Option<File>,
    head: AlignedBuf,
    /// Output bytes seen so far (the next offset).
    offset: u64,
    /// A zero run not yet applied: (start, len).
    pending_zero: Option<(u64, u64)>,
    zero_skipped: u64,
    zeros: Option<AlignedBuf>,
    synced: bool,
}

impl Sink {
    /// Opens `path` for writing; it must exist (a block device or a regular file).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn open(path: &Path) -> Result<Sink, ImageError> {
        Sink::open_with(path, None)
    }

    /// As [`Sink::open`]; `write_zeroes` overrides what the device reports about offloading it.
    pub(crate) fn open_with(path: &Path, write_zeroes: Option<bool>) -> Result<Sink, ImageError> {
        Sink::open_opts(path, write_zeroes, true)
    }

    /// As [`Sink::open_with`]; without `direct` a block device is written through the page
    /// cache (for writes smaller or less aligned than its sectors).
    pub(crate) fn open_opts(
        path: &Path,
        write_zeroes: Option<bool>,
        direct: bool,
    ) -> Result<Sink, ImageError> {
        let target = |cause: String| ImageError::Target {
            path: path.to_path_buf(),
            cause,
        };
        let meta = std::fs::metadata(path).map_err(|e| target(format!("cannot use it: {e}")))?;
        let ft = meta.file_type();
        let (file, tail, kind) = if ft.is_block_device() {
            // O_EXCL on a block device: refuse one that is mounted or held by md/dm.
            // The claim belongs to the first open, so the direct handle takes it and
            // the buffered one (for unaligned tails) joins without it.
            let open = |flags: i32| {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(flags)
                    .open(path)
            };
            let in_use = |e: io::Error| {
                target(format!(
                    "opening for writing (is it mounted or in use?): {e}"
                ))
            };
            let flags = if direct {
                libc::O_EXCL | libc::O_DIRECT
            } else {
                libc::O_EXCL
            };
            let (file, tail) = match open(flags) {
                Ok(f) if direct => (f, Some(open(0).map_err(in_use)?)),
                Ok(f) => (f, None),
                // EINVAL: this device (or its driver) does not do direct I/O.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    (open(libc::O_EXCL).map_err(in_use)?, None)
                }
                Err(e) => return Err(in_use(e)),
            };
            let size = (&file)
                .seek(SeekFrom::End(0))
                .map_err(|e| target(format!("reading its size: {e}")))?;
            let sector = crate::blockdev::logical_sector(&file)
                .map_err(|e| target(format!("reading its sector size: {e}")))?;
            let zeroout = write_zeroes.unwrap_or_else(|| write_zeroes_supported(meta.rdev()));
            (
                file,
                tail,
                Kind::Block {
                    size,
                    sector,
                    zeroout,
                },
            )
        } else if ft.is_file() {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| target(format!("opening for writing: {e}")))?;
            (file, None, Kind::File)
        } else {
            return Err(target(
                "is neither a block device nor a regular file".into(),
            ));
        };
        Ok(Sink {
            path: path.to_path_buf(),
            kind,
            file,
            tail,
            claim: None,
            head: AlignedBuf::with_capacity(HOLD_BACK as usize),
            offset: 0,
            pending_zero: None,
            zero_skipped: 0,
            zeros: None,
            synced: false,
        })
    }

    /// The target's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of output accepted so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes not written as data because they were zero.
    pub(crate) fn zero_skipped(&self) -> u64 {
        self.zero_skipped
    }

    /// Writes through the page cache from now on (for writes smaller or less aligned
    /// than the device's sectors), before anything was written.
    pub(crate) fn buffered(&mut self) {
        if let Some(tail) = self.tail.take() {
            self.claim = Some(std::mem::replace(&mut self.file, tail));
        }
    }

    /// Whether zeros are made without sending them (a file's holes, a device that
    /// offloads write-zeroes): then writing zeros costs less than reading what is there.
    pub(crate) fn zeroes_cheaply(&self) -> bool {
        matches!(self.kind, Kind::File | Kind::Block { zeroout: true, .. })
    }

    /// Whether writes bypass the page cache.
    pub(crate) fn is_direct(&self) -> bool {
        self.tail.is_some()
    }

    /// Accepts the next piece of output; it starts at a multiple of [`ZERO_BLOCK`].
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<(), ImageError> {
        self.write_blocks(data, None)
    }

    /// As [`Sink::write`], with bit `i` of `zeros` telling whether block `i` is all zero
    /// (already checked upstream); `None` checks here. At most 64 blocks.
    pub(crate) fn write_blocks(
        &mut self,
        data: &[u8],
        zeros: Option<u64>,
    ) -> Result<(), ImageError> {
        debug_assert_eq!(
            self.offset % ZERO_BLOCK as u64,
            0,
            "chunks start on a zero-block boundary"
        );
        let end = self.offset + data.len() as u64;
        self.check_fits(end)?;
        let mut data_run: Option<(u64, usize, usize)> = None; // (offset, start, end) within `data`
        for (i, block) in data.chunks(ZERO_BLOCK).enumerate() {
            let at = self.offset + (i * ZERO_BLOCK) as u64;
            let range = (i * ZERO_BLOCK, i * ZERO_BLOCK + block.len());
            if at < HOLD_BACK {
                let n = block.len().min((HOLD_BACK - at) as usize);
                let head_len = self.head.len().max(at as usize + n);
                self.head.set_len(head_len);
                self.head[at as usize..at as usize + n].copy_from_slice(&block[..n]);
                continue;
            }
            let zero = match zeros {
                Some(mask) => mask >> i & 1 == 1,
                None => block.len() == ZERO_BLOCK && is_zero(block),
            };
            if zero && block.len() == ZERO_BLOCK {
                if let Some((o, s, e)) = data_run.take() {
                    self.write_data(o, &data[s..e])?;
                }
                self.pending_zero = match self.pending_zero {
                    Some((s, l)) if s + l == at => Some((s, l + ZERO_BLOCK as u64)),
                    other => {
                        if let Some((s, l)) = other {
                            self.apply_zeros(s, l)?;
                        }
                        Some((at, ZERO_BLOCK as u64))
                    }
                };
                continue;
            }
            if let Some((s, l)) = self.pending_zero.take() {
                self.apply_zeros(s, l)?;
            }
            data_run = match data_run {
                Some((o, s, _)) => Some((o, s, range.1)),
                None => Some((at, range.0, range.1)),
            };
        }
        if let Some((o, s, e)) = data_run {
            self.write_data(o, &data[s..e])?;
        }
        self.offset = end;
        Ok(())
    }

    /// Refuses output that would end past the end of a block device.
    fn check_fits(&self, end: u64) -> Result<(), ImageError> {
        match self.kind {
            Kind::Block { size, .. } if end > size => Err(ImageError::TooLarge {
                path: self.path.clone(),
                capacity: size,
                needed: end,
            }),
            _ => Ok(()),
        }
    }

    /// Accepts `len` bytes known to be zero without looking at them: whole
    /// [`ZERO_BLOCK`]s, the output so far being whole blocks too.
    pub(crate) fn write_zeros(&mut self, len: u64) -> Result<(), ImageError> {
        let block = ZERO_BLOCK as u64;
        debug_assert!(
            self.offset.is_multiple_of(block) && len.is_multiple_of(block),
            "zero runs are whole blocks"
        );
        let end = self.offset + len;
        self.check_fits(end)?;
        let mut at = self.offset;
        if at < HOLD_BACK {
            let held = (HOLD_BACK - at).min(len) as usize;
            let head_len = self.head.len().max(at as usize + held);
            self.head.set_len(head_len);
            self.head[at as usize..at as usize + held].fill(0);
            at += held as u64;
        }
        if at < end {
            self.pending_zero = match self.pending_zero {
                Some((s, l)) if s + l == at => Some((s, l + end - at)),
                other => {
                    if let Some((s, l)) = other {
                        self.apply_zeros(s, l)?;
                    }
                    Some((at, end - at))
                }
            };
        }
        self.offset = end;
        Ok(())
    }

    /// Prepares for writes in any order ([`Sink::write_at`], [`Sink::zero_at`]) of an image of
    /// `len` bytes: refuses one larger than a block device before anything is written.
    pub(crate) fn begin_random(&mut self, len: u64) -> Result<(), ImageError> {
        if let Kind::Block { size, .. } = self.kind {
            if len > size {
                return Err(ImageError::TooLarge {
                    path: self.path.clone(),
                    capacity: size,
                    needed: len,
                });
            }
        }
        // The head is all zeros until data lands in it; all of it is written at commit.
        self.head.set_len(len.min(HOLD_BACK) as usize);
        self.head.fill(0);
        self.offset = len;
        Ok(())
    }

    /// After [`Sink::begin_random`]: the held-back head starts as what the target holds
    /// now (a writer that leaves chunks already in place keeps those bytes).
    pub(crate) fn hold_current_head(&mut self) -> Result<(), ImageError> {
        let len = self.head.len();
        // The write handles may be write-only: read through a handle of its own.
        let file = File::open(&self.path).map_err(|e| self.write_error(0, e))?;
        let mut at = 0;
        while at < len {
            match file.read_at(&mut self.head[at..len], at as u64) {
                Ok(0) => break,
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.write_error(at as u64, e)),
            }
        }
        Ok(())
    }

    /// Writes `data` at `offset` (after [`Sink::begin_random`]); the first MiB is held back.
    /// `offset` is a multiple of the sector size, and `data` starts aligned in memory.
    pub(crate) fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        let end = offset + data.len() as u64;
        if end > self.offset {
            return Err(
                self.write_error(offset, io::Error::other("write past the end of the image"))
            );
        }
        let held = (HOLD_BACK.saturating_sub(offset) as usize).min(data.len());
        if held > 0 {
            self.head[offset as usize..offset as usize + held].copy_from_slice(&data[..held]);
        }
        if held < data.len() {
            self.write_data(offset + held as u64, &data[held..])?;
        }
        Ok(())
    }

    /// Makes `len` bytes at `offset` zeros (after [`Sink::begin_random`]); see [`Sink::write_at`].
    pub(crate) fn zero_at(&mut self, offset: u64, len: u64) -> Result<(), ImageError> {
        let held = HOLD_BACK.saturating_sub(offset).min(len);
        if held > 0 {
            self.head[offset as usize..(offset + held) as usize].fill(0);
        }
        if held < len {
            self.apply_zeros(offset + held, len - held)?;
        }
        Ok(())
    }

    /// After the last piece: applies a pending zero run, sizes a file target, flushes.
    pub(crate) fn finish(&mut self) -> Result<(), ImageError> {
        if let Some((s, l)) = self.pending_zero.take() {
            self.apply_zeros(s, l)?;
        }
        if let Kind::File = self.kind {
            let len = self
                .file
                .metadata()
                .map_err(|e| self.write_error(self.offset, e))?
                .len();
            // Trailing holes must still count as the image's length; never shrink the file.
            if len < self.offset {
                self.file
                    .set_len(self.offset)
                    .map_err(|e| self.write_error(self.offset, e))?;
            }
        }
        self.sync()
    }

    /// Writes the held-back first MiB. Call only after the stream verified.
    pub(crate) fn commit_head(&mut self) -> Result<(), ImageError> {
        let head = std::mem::replace(&mut self.head, AlignedBuf::with_capacity(ALIGN));
        self.write_data(0, &head)?;
        self.head = head;
        self.synced = false;
        self.sync()
    }

    fn sync(&mut self) -> Result<(), ImageError> {
        if self.synced {
            return Ok(());
        }
        for f in std::iter::once(&self.file).chain(self.tail.as_ref()) {
            f.sync_data().map_err(|e| ImageError::Write {
                path: self.path.clone(),
                offset: self.offset,
                cause: format!("flushing: {e}"),
            })?;
        }
        self.synced = true;
        Ok(())
    }

    fn write_error(&self, offset: u64, e: io::Error) -> ImageError {
        ImageError::Write {
            path: self.path.clone(),
            offset,
            cause: e.to_string(),
        }
    }

    /// Writes `data` at `offset` (a multiple of the sector size); an unaligned tail goes buffered.
    fn write_data(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        self.synced = false;
        let (direct_len, tail_file) = match (&self.kind, &self.tail) {
            (Kind::Block { sector, .. }, Some(tail)) => {
                (data.len() - data.len() % *sector as usize, Some(tail))
            }
            _ => (data.len(), None),
        };
        self.file
            .write_all_at(&data[..direct_len], offset)
            .map_err(|e| self.write_error(offset, e))?;
        if let (Some(tail), true) = (tail_file, direct_len < data.len()) {
            let at = offset + direct_len as u64;
            tail.write_all_at(&data[direct_len..], at)
                .map_err(|e| self.write_error(at, e))?;
        }
        Ok(())
    }

    /// Makes `len` bytes at `offset` read back as zeros, without sending data where possible.
    fn apply_zeros(&mut self, offset: u64, len: u64) -> Result<(), ImageError> {
        self.synced = false;
        let done = match self.kind {
            // Through the handle that holds the exclusive claim: the kernel drops the
            // range's cached pages only for the claim's holder (EBUSY for others).
            Kind::Block { zeroout: true, .. } => {
                crate::blockdev::zero_out(self.claim.as_ref().unwrap_or(&self.file), offset, len)
                    .map_err(io::Error::other)
            }
            Kind::File => {
                crate::blockdev::punch_hole(&self.file, offset, len).map_err(io::Error::other)
            }
            Kind::Block { zeroout: false, .. } => Err(io::Error::from(io::ErrorKind::Unsupported)),
        };
        if done.is_ok() {
            self.zero_skipped += len;
            return Ok(());
        }
        let zeros = self.zeros.take().unwrap_or_else(|| {
            let mut z = AlignedBuf::with_capacity(ZERO_BLOCK);
            z.set_len(ZERO_BLOCK);
            z
        });
        let mut at = offset;
        let result = loop {
            if at >= offset + len {
                break Ok(());
            }
            let n = (offset + len - at).min(ZERO_BLOCK as u64) as usize;
            if let Err(e) = self.write_data(at, &zeros[..n]) {
                break Err(e);
            }
            at += n as u64;
        };
        self.zeros = Some(zeros);
        result
    }
}

/// Whether the device (or, for a partition, its disk) offloads write-zeroes.
fn write_zeroes_supported(rdev: u64) -> bool {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let dir = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    [
        dir.join("queue/write_zeroes_max_bytes"),
        dir.join("../queue/write_zeroes_max_bytes"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .and_then(|s| s.trim().parse::<u64>().ok())
    .is_some_and(|n| n > 0)
}

/// Whether every byte is zero (word-wise; the compiler vectorises the OR-fold).
pub(crate) fn is_zero(block: &[u8]) -> bool {
    let (pre, words, post) = {
        // SAFETY: u64 has no invalid bit patterns; align_to only reinterprets the aligned middle.
        unsafe { block.align_to::<u64>() }
    };
    pre.iter().all(|&b| b == 0)
        && post.iter().all(|&b| b == 0)
        && words
            .chunks(64)
            .all(|c| c.iter().fold(0u64, |acc, &w| acc | w) == 0)
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sink({}, {} written)",
            self.path.display(),
            Bytes(self.offset).human()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        let mut v = vec![0u8; ZERO_BLOCK + 3];
        assert!(is_zero(&v[1..]));
        v[ZERO_BLOCK] = 1;
        assert!(!is_zero(&v[1..]));
    }

    #[test]
    fn head_is_held_back_and_zero_runs_are_punched_in_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.img");
        std::fs::write(&p, vec![0xAAu8; 2 * MIB as usize]).unwrap();
        let mut s = Sink::open(&p).unwrap();
        let mut data = vec![7u8; 4 * MIB as usize];
        data[MIB as usize..3 * MIB as usize].fill(0);
        s.write(&data).unwrap();
        s.finish().unwrap();
        let got = std::fs::read(&p).unwrap();
        assert_eq!(got.len(), 4 * MIB as usize);
        assert!(
            got[..MIB as usize].iter().all(|&b| b == 0xAA),
            "head not written before commit"
        );
        assert!(
            is_zero(&got[MIB as usize..3 * MIB as usize]),
            "punched range reads zeros"
        );
        assert_eq!(s.zero_skipped(), 2 * MIB);
        s.commit_head().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), data);
    }
}
