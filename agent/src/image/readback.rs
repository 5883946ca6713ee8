//! Read-back verification: after the write, every block written as data is read
//! from the target (O_DIRECT on block devices, so the page cache cannot answer
//! for the disk) and the hash list compared, block by block, with the one taken
//! inline. Zeroed blocks are not read: the device's write-zeroes command vouches
//! for them (it completes or fails), and reading gigabytes of zeros would double
//! the cost for nothing the data blocks do not already prove about the device.

use super::buf::{Pool, Pooled};
use super::sink::ZERO_BLOCK;
use super::verify::{zero_block_prefix, BlockDigest};
use super::ImageError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::sync_channel;

/// Bytes per read.
const READ_BUF: usize = 4 << 20;
/// Read buffers in circulation (reading, queued, hashing).
const READ_BUFS: usize = 3;

/// What the write recorded: the hash list and each block's digest prefix.
pub(crate) struct Written<'a> {
    pub len: u64,
    pub hex: &'a str,
    pub blocks: &'a [u64],
}

/// Reads `written.len` bytes of `path` back and returns their hash list (hex); a
/// difference is an error naming the first differing MiB.
pub(crate) fn read_back(path: &Path, written: &Written) -> Result<String, ImageError> {
    let fail = |cause: String| ImageError::Readback {
        path: path.to_path_buf(),
        cause,
    };
    let (file, sector) = open(path).map_err(|e| fail(format!("opening for reading: {e}")))?;
    let cancel = AtomicBool::new(false);
    let mut pool = Pool::new(READ_BUF, READ_BUFS);
    let (tx, rx) = sync_channel(READ_BUFS - 1);
    let len = written.len;
    let mut digest = BlockDigest::new(true);
    let mut first_bad: Option<u64> = None;
    let mut bad = 0u64;
    let zero_prefix = zero_block_prefix();
    let block_len = |i: usize| (len - i as u64 * ZERO_BLOCK as u64).min(ZERO_BLOCK as u64) as usize;
    // Blocks the sink zeroed (BLKZEROOUT, a punched hole) were not written as data:
    // they are trusted to the device's write-zeroes command, and not read.
    let is_data = |i: usize| written.blocks[i] != zero_prefix || block_len(i) < ZERO_BLOCK;
    let n = written.blocks.len();
    let read = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            // Owned here, so the hashing loop below ends when the reader does.
            let tx = tx;
            let per_buf = READ_BUF / ZERO_BLOCK;
            let mut i = 0;
            while i < n {
                if !is_data(i) {
                    i += 1;
                    continue;
                }
                let first = i;
                while i < n && i - first < per_buf && is_data(i) {
                    i += 1;
                }
                let at = first as u64 * ZERO_BLOCK as u64;
                let want = (first..i).map(block_len).sum::<usize>();
                let Some(mut buf) = pool.get(&cancel) else {
                    return Ok(());
                };
                // Direct reads need whole sectors: round up (the device is at least that long).
                let asked = want.div_ceil(sector) * sector;
                let mut got = 0;
                while got < asked {
                    match file.read_at(&mut buf.spare()[got..asked], at + got as u64) {
                        Ok(0) => break,
                        Ok(k) => got += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("reading at byte {}: {e}", at + got as u64)),
                    }
                }
                if got < want {
                    return Err(format!("the target ends at byte {}", at + got as u64));
                }
                buf.set_len(want);
                if tx.send(buf).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
        let mut cur = None;
        let mut pos = 0;
        for i in 0..n {
            if !is_data(i) {
                digest.push_zero();
                continue;
            }
            if cur.as_ref().is_none_or(|b: &Pooled| pos >= b.len()) {
                cur = rx.recv().ok();
                pos = 0;
            }
            let Some(b) = cur.as_ref() else { break };
            let block = &b[pos..pos + block_len(i)];
            digest.push(block, false);
            pos += block.len();
        }
        drop(cur);
        drop(rx);
        reader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    read.map_err(fail)?;
    let (hex, blocks) = digest.finish();
    let blocks = blocks.unwrap_or_default();
    for (i, (a, b)) in blocks.iter().zip(written.blocks).enumerate() {
        if a != b {
            bad += 1;
            first_bad.get_or_insert(i as u64 * ZERO_BLOCK as u64);
        }
    }
    if let Some(offset) = first_bad {
        return Err(ImageError::ReadbackMismatch {
            path: path.to_path_buf(),
            offset,
            more: bad - 1,
            written: written.hex.to_string(),
            read: hex,
        });
    }
    if hex != written.hex {
        return Err(ImageError::ReadbackMismatch {
            path: path.to_path_buf(),
            offset: 0,
            more: 0,
            written: written.hex.to_string(),
            read: hex,
        });
    }
    Ok(hex)
}

/// The target for reading, direct where possible, and the unit reads are rounded to.
fn open(path: &Path) -> std::io::Result<(File, usize)> {
    let meta = std::fs::metadata(path)?;
    if meta.file_type().is_block_device() {
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(f) => {
                let sector = crate::blockdev::logical_sector(&f).map_err(std::io::Error::other)? as usize;
                return Ok((f, sector.max(1)));
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    let f = File::open(path)?;
    // A regular file: drop its cached pages first so the read comes from the disk.
    // Advice only: if it fails the read may come from the cache, which is still the file.
    let _ = nix::fcntl::posix_fadvise(
        &f,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    Ok((f, 1))
}
