//! The proof of an erase: sample blocks spread over the disk, hashed before the erase
//! and read again after it. Positions depend only on the disk's size, so the same
//! blocks are read both times; reads bypass the page cache (O_DIRECT, or the buffer
//! cache dropped first), so the second read sees the media, not what the first cached.

use crate::blockdev::{self, AlignedBuf, BlockError};
use crate::units::MIB;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Samples taken from a disk large enough for all of them.
pub const COUNT: u64 = 64;
/// Bytes per sample.
pub const LEN: u64 = MIB;
/// Sample offsets are multiples of this (any logical sector size divides it).
const ALIGN: u64 = 4096;

/// One sample: where, its SHA-256, whether it read all zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub offset: u64,
    pub len: u64,
    pub digest: [u8; 32],
    pub zero: bool,
}

/// What the samples after the erase showed, against the same samples before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Samples {
    /// Samples read (each [`LEN`] bytes, spread evenly from the first byte to the last).
    pub count: u64,
    /// Bytes per sample.
    pub bytes_each: u64,
    /// Samples that read all zeros after the erase.
    pub zero: u64,
    /// Samples whose contents differ from before the erase.
    pub changed: u64,
    /// Samples that read the same as before (all-zero ones included).
    pub unchanged: u64,
    /// Unchanged samples that were not all zeros: data the erase left; must be 0.
    pub unchanged_data: u64,
}

/// `(offset, len)` of the samples of a disk of `size` bytes: [`COUNT`] of [`LEN`]
/// bytes from the first to the last MiB, fewer on a disk under 64 MiB.
pub fn positions(size: u64) -> Vec<(u64, u64)> {
    let len = LEN.min(size / ALIGN * ALIGN);
    if len == 0 {
        return Vec::new();
    }
    let n = COUNT.min(size / len).max(1);
    let span = size - len;
    (0..n)
        .map(|i| {
            let at = if n == 1 { 0 } else { span * i / (n - 1) };
            (at / ALIGN * ALIGN, len)
        })
        .collect()
}

/// Reads and hashes the samples of `path` (`size` bytes), bypassing the page cache.
pub fn take(path: &Path, size: u64) -> Result<Vec<Sample>, BlockError> {
    let d = blockdev::open_direct(path, false)?;
    if !d.direct {
        // Buffered: what an erase below the page cache changed must be read afresh.
        blockdev::flush(&d.file)?;
    }
    let mut buf = AlignedBuf::new(LEN as usize);
    let mut out = Vec::new();
    for (offset, len) in positions(size) {
        let b = &mut buf[..len as usize];
        d.file
            .read_exact_at(b, offset)
            .map_err(|source| BlockError::Ioctl {
                op: "reading an erase sample",
                path: path.display().to_string(),
                source,
            })?;
        out.push(Sample {
            offset,
            len,
            digest: Sha256::digest(&*b).into(),
            zero: b.iter().all(|&x| x == 0),
        });
    }
    Ok(out)
}

/// Compares the samples after an erase with those before it (same positions).
pub fn compare(before: &[Sample], after: &[Sample]) -> Samples {
    let mut s = Samples {
        count: after.len() as u64,
        bytes_each: after.first().map_or(0, |a| a.len),
        ..Samples::default()
    };
    for (b, a) in before.iter().zip(after) {
        debug_assert_eq!(b.offset, a.offset);
        s.zero += u64::from(a.zero);
        if a.digest == b.digest {
            s.unchanged += 1;
            s.unchanged_data += u64::from(!a.zero);
        } else {
            s.changed += 1;
        }
    }
    s
}
