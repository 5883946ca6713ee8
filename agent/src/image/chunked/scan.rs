//! What the target already holds: each chunk's place read and hashed before anything
//! is fetched. A chunk whose place already hashes to its id is neither fetched nor
//! written (the disk is its own seed); bytes found at one chunk's place that another
//! chunk needs are copied from there. Zero ranges are recognised without hashing.
//!
//! Reads bypass the page cache (O_DIRECT where the target allows it): they see what the
//! device holds, and buffered reads of a loop device run at a fraction of the speed.
//! A write scan first reads a sample of the places; when not one of them holds a
//! chunk of the image (a blank or foreign disk) the rest is not read.

use super::index::{Chunk, ChunkDigest, ChunkId, Index};
use crate::blockdev::{AlignedBuf, DIRECT_ALIGN};
use crate::image::sink::is_zero;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Bytes read at once: neighbouring chunks are read together, so the device sees
/// large sequential reads (64 KiB reads of a loop device are four times slower).
const SPAN: u64 = 4 << 20;

/// What the scan found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Per chunk of the index: the target already holds it at its place.
    pub in_place: Vec<bool>,
    /// Where on the target bytes with a wanted id were found (a chunk's place).
    pub found: HashMap<ChunkId, u64>,
    /// Bytes of the target read.
    pub bytes_read: u64,
    /// When only a sample was read: how many places (at most [`SAMPLE_HITS`] held a chunk).
    pub sampled: Option<u64>,
}

/// The ids of `size` zero bytes, computed once per size.
#[derive(Default)]
pub(crate) struct ZeroIds(Mutex<HashMap<u64, ChunkId>>);

impl ZeroIds {
    /// The id of `size` zero bytes under `digest`.
    pub(crate) fn get(&self, size: u64, digest: ChunkDigest) -> ChunkId {
        if let Some(id) = self.0.lock().expect("zero ids").get(&size) {
            return *id;
        }
        let id = digest.id(&vec![0; size as usize]);
        self.0.lock().expect("zero ids").insert(size, id);
        id
    }
}

/// Runs of neighbouring chunks not `skip`ped, each at most [`SPAN`] bytes (or one
/// larger chunk).
fn spans(chunks: &[Chunk], skip: &dyn Fn(&Chunk) -> bool) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut first: Option<usize> = None;
    for (i, c) in chunks.iter().enumerate() {
        if skip(c) {
            if let Some(f) = first.take() {
                out.push(f..i);
            }
            continue;
        }
        match first {
            Some(f) if c.end() - chunks[f].start > SPAN => {
                out.push(f..i);
                first = Some(i);
            }
            Some(_) => {}
            None => first = Some(i),
        }
    }
    if let Some(f) = first {
        out.push(f..chunks.len());
    }
    out
}

/// How much of the target a scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depth {
    /// Every place (the read-back).
    Full,
    /// A sample first; the rest only if the sample found any chunk of the image.
    SampleFirst,
}

/// Places read by a sample (spread evenly over the chunks to read): when at most
/// [`SAMPLE_HITS`] of them hold a chunk of the image (a blank or foreign disk, where a
/// trailing run of zeros or a common block may still match), the disk holds about 2 %
/// of it at most, and reading the rest would cost more than it could save.
pub(crate) const SAMPLE: usize = 256;
pub(crate) const SAMPLE_HITS: usize = 2;

/// Reads the target at every chunk's place but those `skip`ped (on `threads` threads)
/// and hashes what is there. Chunks past the end of `len` readable bytes are simply not
/// there; skipped ones count as not there.
pub(crate) fn scan(
    target: &Path,
    index: &Index,
    zeros: &ZeroIds,
    threads: usize,
    cancel: &AtomicBool,
    skip: &dyn Fn(&Chunk) -> bool,
    depth: Depth,
) -> std::io::Result<Scan> {
    let file = crate::blockdev::open_direct(target, false)
        .map_err(std::io::Error::other)?
        .file;
    let len = crate::blockdev::size_bytes(&file).unwrap_or(0);
    let wanted: HashSet<ChunkId> = index.chunks.iter().map(|c| c.id).collect();
    let ctx = Ctx {
        file: &file,
        len,
        index,
        zeros,
        zero_max: zeros.get(index.max, index.digest),
        wanted: &wanted,
    };
    let n = index.chunks.len();
    if depth == Depth::SampleFirst {
        if let Some((places, read)) = ctx.sample(skip)? {
            return Ok(Scan {
                in_place: vec![false; n],
                bytes_read: read,
                sampled: Some(places),
                ..Scan::default()
            });
        }
    }
    let spans = spans(&index.chunks, skip);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Batch)>> = Mutex::new(Vec::new());
    let failed: Mutex<Option<std::io::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut buf = AlignedBuf::with_capacity(SPAN as usize + 2 * DIRECT_ALIGN);
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= spans.len() || cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let range = spans[k].clone();
                    match ctx.scan_span(&index.chunks[range.clone()], &mut buf) {
                        Ok(batch) => results
                            .lock()
                            .expect("scan results")
                            .push((range.start, batch)),
                        Err(e) => {
                            *failed.lock().expect("scan error") = Some(e);
                            cancel.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("scan error") {
        return Err(e);
    }
    let mut scan = Scan {
        in_place: vec![false; n],
        ..Scan::default()
    };
    for (first, (here, found, read)) in results.into_inner().expect("scan results") {
        scan.in_place[first..first + here.len()].copy_from_slice(&here);
        for (id, at) in found {
            scan.found.entry(id).or_insert(at);
        }
        scan.bytes_read += read;
    }
    Ok(scan)
}

type Batch = (Vec<bool>, Vec<(ChunkId, u64)>, u64);

/// What every scanning thread shares.
struct Ctx<'a> {
    file: &'a File,
    len: u64,
    index: &'a Index,
    zeros: &'a ZeroIds,
    /// The id of a maximum-size zero chunk (casync's long zero runs).
    zero_max: ChunkId,
    wanted: &'a HashSet<ChunkId>,
}

impl Ctx<'_> {
    /// Reads [`SAMPLE`] places spread over the chunks not `skip`ped: `Some((places,
    /// bytes read))` when at most [`SAMPLE_HITS`] hold a chunk of the image (or bytes
    /// another chunk needs), `None` when the whole scan is worth it (or the image is small).
    fn sample(&self, skip: &dyn Fn(&Chunk) -> bool) -> std::io::Result<Option<(u64, u64)>> {
        let candidates: Vec<&Chunk> = self
            .index
            .chunks
            .iter()
            .filter(|c| !skip(c) && c.end() <= self.len)
            .collect();
        if candidates.len() < SAMPLE * 8 {
            return Ok(None);
        }
        let mut buf = AlignedBuf::with_capacity(self.index.max as usize + 2 * DIRECT_ALIGN);
        let (mut read, mut hits) = (0, 0);
        for k in 0..SAMPLE {
            let c = candidates[k * candidates.len() / SAMPLE];
            let (here, found, n) = self.scan_span(std::slice::from_ref(c), &mut buf)?;
            read += n;
            if here[0] || !found.is_empty() {
                hits += 1;
                if hits > SAMPLE_HITS {
                    return Ok(None);
                }
            }
        }
        Ok(Some((SAMPLE as u64, read)))
    }

    /// Reads the neighbouring `chunks` at once and checks each.
    fn scan_span(&self, chunks: &[Chunk], buf: &mut AlignedBuf) -> std::io::Result<Batch> {
        let (start, end) = (chunks[0].start, chunks[chunks.len() - 1].end());
        if end > self.len {
            // Past the end of the target (one smaller than the image): check one by one.
            let mut out: Batch = (Vec::new(), Vec::new(), 0);
            for c in chunks {
                if c.end() > self.len {
                    out.0.push(false);
                    continue;
                }
                let (here, found, read) = self.scan_span(std::slice::from_ref(c), buf)?;
                out.0.extend(here);
                out.1.extend(found);
                out.2 += read;
            }
            return Ok(out);
        }
        let bytes = read_aligned(self.file, start, end, buf)?;
        let mut here = Vec::with_capacity(chunks.len());
        let mut found = Vec::new();
        for c in chunks {
            let at = (c.start - start) as usize;
            let data = &bytes[at..at + c.size as usize];
            let zero = is_zero(data);
            let id = if zero {
                // Zero chunks are casync's maximum-size ones (and perhaps the last):
                // hashing zeros of every other size would cost more than it finds.
                if c.size == self.index.max {
                    self.zero_max
                } else if c.end() == self.index.len() {
                    self.zeros.get(c.size, self.index.digest)
                } else {
                    here.push(false);
                    continue;
                }
            } else {
                self.index.digest.id(data)
            };
            here.push(id == c.id);
            // Zeros are made where they are needed, never copied.
            if !zero && self.wanted.contains(&id) {
                found.push((id, c.start));
            }
        }
        Ok((here, found, end - start))
    }
}

/// Reads bytes `start..end` of `file` into `buf` through the aligned blocks around them
/// (as O_DIRECT needs; a buffered file reads the same way) and returns them.
pub(crate) fn read_aligned<'b>(
    file: &File,
    start: u64,
    end: u64,
    buf: &'b mut AlignedBuf,
) -> std::io::Result<&'b [u8]> {
    let align = DIRECT_ALIGN as u64;
    let from = start / align * align;
    let to = end.next_multiple_of(align);
    let want = (to - from) as usize;
    if buf.capacity() < want {
        *buf = AlignedBuf::with_capacity(want);
    }
    buf.set_len(want);
    let mut got = 0;
    // The last block may run past the end of the device or file: a short read there.
    while got < (end - from) as usize {
        match file.read_at(&mut buf[got..want], from + got as u64) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the target ends at byte {}, before {end}",
                        from + got as u64
                    ),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(&buf[(start - from) as usize..(end - from) as usize])
}

/// Reads chunk `c`'s bytes at `at` on `file` into `out` if they hash to its id.
pub(crate) fn read_if_same(
    file: &File,
    at: u64,
    c: &Chunk,
    digest: ChunkDigest,
    block: &mut AlignedBuf,
    out: &mut Vec<u8>,
) -> bool {
    let Ok(data) = read_aligned(file, at, at + c.size, block) else {
        return false;
    };
    if digest.id(data) != c.id {
        return false;
    }
    out.clear();
    out.extend_from_slice(data);
    true
}
