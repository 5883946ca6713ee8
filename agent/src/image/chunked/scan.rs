//! What the target already holds: each chunk's place read and hashed before anything
//! is fetched. A chunk whose place already hashes to its id is neither fetched nor
//! written (the disk is its own seed); bytes found at one chunk's place that another
//! chunk needs are copied from there. Zero ranges are recognised without hashing.

use super::index::{Chunk, ChunkDigest, ChunkId, Index};
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
) -> std::io::Result<Scan> {
    let file = File::open(target)?;
    let len = crate::blockdev::size_bytes(&file).unwrap_or(0);
    let wanted: HashSet<ChunkId> = index.chunks.iter().map(|c| c.id).collect();
    let spans = spans(&index.chunks, skip);
    let next = AtomicUsize::new(0);
    let n = index.chunks.len();
    let results: Mutex<Vec<(usize, Batch)>> = Mutex::new(Vec::new());
    let failed: Mutex<Option<std::io::Error>> = Mutex::new(None);
    let ctx = Ctx {
        file: &file,
        len,
        index,
        zeros,
        zero_max: zeros.get(index.max, index.digest),
        wanted: &wanted,
    };
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut buf = Vec::new();
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
    /// Reads the neighbouring `chunks` at once and checks each.
    fn scan_span(&self, chunks: &[Chunk], buf: &mut Vec<u8>) -> std::io::Result<Batch> {
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
        buf.resize((end - start) as usize, 0);
        self.file.read_exact_at(buf, start)?;
        let mut here = Vec::with_capacity(chunks.len());
        let mut found = Vec::new();
        for c in chunks {
            let at = (c.start - start) as usize;
            let data = &buf[at..at + c.size as usize];
            let id = if is_zero(data) {
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
            if self.wanted.contains(&id) {
                found.push((id, c.start));
            }
        }
        Ok((here, found, end - start))
    }
}

/// Reads chunk `c`'s bytes at `at` on `file` and returns them if they hash to its id.
pub(crate) fn read_if_same(
    file: &File,
    at: u64,
    c: &Chunk,
    digest: ChunkDigest,
) -> Option<Vec<u8>> {
    let mut data = vec![0u8; c.size as usize];
    file.read_exact_at(&mut data, at).ok()?;
    (digest.id(&data) == c.id).then_some(data)
}
