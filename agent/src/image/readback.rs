//! Read-back verification: after the write, every block written as data is read
//! from the target (O_DIRECT on block devices, so the page cache cannot answer
//! for the disk) and the hash list compared, block by block, with the one taken
//! inline. Zeroed blocks are not read: the device's write-zeroes command vouches
//! for them (it completes or fails), and reading gigabytes of zeros would double
//! the cost for nothing the data blocks do not already prove about the device.

use super::buf::AlignedBuf;
use super::error::ImageError;
use super::sink::ZERO_BLOCK;
use super::verify::{block_digest, zero_block_prefix, BlockDigest};
use crate::units::Bytes;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Instant;

/// Bytes per read: a run of at most this many data blocks is one read.
const READ_BUF: usize = 4 << 20;
/// Threads that each read a run and then hash it, taking every `WORKERS`th run.
/// Two keep a read in flight while the other hashes (one alone would leave the
/// device idle while hashing), and both cores hash when the device outpaces one
/// core's BLAKE3. More, or larger reads, measured no faster. One buffer each.
const WORKERS: usize = 2;
/// Runs a worker may have hashed ahead of the one being combined.
const AHEAD: usize = 2;

/// What the write recorded: the hash list and each block's digest prefix.
pub(crate) struct Written<'a> {
    pub len: u64,
    pub hex: &'a str,
    pub blocks: &'a [u64],
}

/// Which blocks of the write to read, and how they group into reads.
struct Layout<'a> {
    written: &'a Written<'a>,
    zero_prefix: u64,
}

impl Layout<'_> {
    fn block_len(&self, i: usize) -> usize {
        (self.written.len - i as u64 * ZERO_BLOCK as u64).min(ZERO_BLOCK as u64) as usize
    }

    /// Blocks the sink zeroed (BLKZEROOUT, a punched hole) were not written as data:
    /// they are trusted to the device's write-zeroes command, and not read.
    fn is_data(&self, i: usize) -> bool {
        self.written.blocks[i] != self.zero_prefix || self.block_len(i) < ZERO_BLOCK
    }

    /// The runs of data blocks, each at most [`READ_BUF`] long, in disk order.
    fn runs(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let n = self.written.blocks.len();
        let per_read = READ_BUF / ZERO_BLOCK;
        let mut i = 0;
        std::iter::from_fn(move || {
            while i < n && !self.is_data(i) {
                i += 1;
            }
            let first = i;
            while i < n && i - first < per_read && self.is_data(i) {
                i += 1;
            }
            (i > first).then_some(first..i)
        })
    }
}

/// Reads `written.len` bytes of `path` back and returns their hash list (hex); a
/// difference is an error naming the first differing MiB.
pub(crate) fn read_back(path: &Path, written: &Written) -> Result<String, ImageError> {
    let fail = |cause: String| ImageError::Readback {
        path: path.to_path_buf(),
        cause,
    };
    let started = Instant::now();
    let (file, sector) = open(path).map_err(|e| fail(format!("opening for reading: {e}")))?;
    let layout = Layout {
        written,
        zero_prefix: zero_block_prefix(),
    };
    let mut digest = BlockDigest::new(true);
    let mut data_bytes = 0u64;
    let read = std::thread::scope(|s| {
        let (workers, rxs): (Vec<_>, Vec<_>) = (0..WORKERS)
            .map(|w| {
                let (tx, rx) = sync_channel(AHEAD);
                let (layout, file) = (&layout, &file);
                let worker = s.spawn(move || {
                    let mut buf = AlignedBuf::with_capacity(READ_BUF);
                    for run in layout.runs().skip(w).step_by(WORKERS) {
                        let digests = read_run(file, sector, layout, run, &mut buf)?;
                        // The combiner stopped (another worker failed): nothing more to do.
                        if tx.send(digests).is_err() {
                            break;
                        }
                    }
                    Ok::<(), String>(())
                });
                (worker, rx)
            })
            .unzip();
        // Combine in disk order: runs alternate between the workers.
        let stopped_at = combine(&layout, &rxs, &mut digest, &mut data_bytes);
        drop(rxs);
        let mut results: Vec<_> = workers
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        // A worker stops early only on a failure; the one whose run the combiner
        // waited for failed first in disk order (another may have failed after it,
        // or stopped because the combiner did).
        stopped_at.map_or(Ok(()), |w| results.swap_remove(w))
    });
    read.map_err(fail)?;
    let seconds = started.elapsed().as_secs_f64();
    crate::runner::log::debug(&format!(
        "read-back of {}: {} of data read in {seconds:.2} s ({:.0} MB/s), the zeroed rest not read",
        path.display(),
        Bytes(data_bytes).human(),
        data_bytes as f64 / seconds.max(1e-6) / 1e6
    ));
    let (hex, blocks) = digest.finish();
    compare(path, written, hex, &blocks.unwrap_or_default())
}

/// Feeds `digest` with every block in order, the data blocks' digests taken from the
/// workers; `Some(w)` if worker `w` stopped before sending a run it owed.
fn combine(
    layout: &Layout,
    rxs: &[Receiver<Vec<[u8; 32]>>],
    digest: &mut BlockDigest,
    data_bytes: &mut u64,
) -> Option<usize> {
    let mut next = 0;
    for (j, run) in layout.runs().enumerate() {
        for _ in next..run.start {
            digest.push_zero();
        }
        let w = j % WORKERS;
        let Ok(digests) = rxs[w].recv() else {
            return Some(w);
        };
        for d in digests {
            digest.push_digest(d);
        }
        *data_bytes += run.clone().map(|i| layout.block_len(i) as u64).sum::<u64>();
        next = run.end;
    }
    for _ in next..layout.written.blocks.len() {
        digest.push_zero();
    }
    None
}

/// Reads one run of data blocks into `buf` and returns each block's digest.
fn read_run(
    file: &File,
    sector: usize,
    layout: &Layout,
    run: Range<usize>,
    buf: &mut AlignedBuf,
) -> Result<Vec<[u8; 32]>, String> {
    let at = run.start as u64 * ZERO_BLOCK as u64;
    let want = run.clone().map(|i| layout.block_len(i)).sum::<usize>();
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
    let mut pos = 0;
    Ok(run
        .map(|i| {
            let block = &buf[pos..pos + layout.block_len(i)];
            pos += block.len();
            block_digest(block)
        })
        .collect())
}

/// The read-back's hash list against the written one: `Ok` with it if equal, else
/// the mismatch naming the first differing MiB.
fn compare(
    path: &Path,
    written: &Written,
    hex: String,
    blocks: &[u64],
) -> Result<String, ImageError> {
    let mut bad = blocks
        .iter()
        .zip(written.blocks)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i as u64 * ZERO_BLOCK as u64);
    let first_bad = bad.next();
    if first_bad.is_some() || hex != written.hex {
        return Err(ImageError::ReadbackMismatch {
            path: path.to_path_buf(),
            offset: first_bad.unwrap_or(0),
            more: bad.count() as u64,
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
                let sector =
                    crate::blockdev::logical_sector(&f).map_err(std::io::Error::other)? as usize;
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
