//! Read-back verification: after the write, the written range is read from the
//! target (O_DIRECT on block devices, so the page cache cannot answer for the
//! disk) and its hash list compared, block by block, with the one taken inline.

use super::buf::Pool;
use super::ioctl;
use super::sink::{is_zero, ZERO_BLOCK};
use super::verify::BlockDigest;
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
    let read = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            // Owned here, so the hashing loop below ends when the reader does.
            let tx = tx;
            let mut at = 0u64;
            while at < len {
                let Some(mut buf) = pool.get(&cancel) else {
                    return Ok(());
                };
                let want = (len - at).min(READ_BUF as u64) as usize;
                // Direct reads need whole sectors: round up (the device is at least that long).
                let asked = want.div_ceil(sector) * sector;
                let mut got = 0;
                while got < asked {
                    match file.read_at(&mut buf.spare()[got..asked], at + got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
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
                at += want as u64;
            }
            Ok(())
        });
        for buf in rx.iter() {
            for block in buf.chunks(ZERO_BLOCK) {
                digest.push(block, block.len() == ZERO_BLOCK && is_zero(block));
            }
        }
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
                let sector = ioctl::logical_sector_size(&f)? as usize;
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
