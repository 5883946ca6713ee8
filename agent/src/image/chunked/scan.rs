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

/// Chunks handed to a scanning thread at a time (neighbours, so reads stay sequential).
const BATCH: usize = 64;

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

/// Reads the target at every chunk's place (on `threads` threads) and hashes what is
/// there. Chunks past the end of `len` readable bytes are simply not there.
pub(crate) fn scan(
    target: &Path,
    index: &Index,
    zeros: &ZeroIds,
    threads: usize,
    cancel: &AtomicBool,
) -> std::io::Result<Scan> {
    let file = File::open(target)?;
    let len = crate::blockdev::size_bytes(&file).unwrap_or(0);
    let wanted: HashSet<ChunkId> = index.chunks.iter().map(|c| c.id).collect();
    let next = AtomicUsize::new(0);
    let n = index.chunks.len();
    let results: Mutex<Vec<(usize, Batch)>> = Mutex::new(Vec::new());
    let failed: Mutex<Option<std::io::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut buf = vec![0u8; index.max as usize];
                loop {
                    let first = next.fetch_add(BATCH, Ordering::Relaxed);
                    if first >= n || cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let batch = &index.chunks[first..(first + BATCH).min(n)];
                    match scan_batch(&file, len, batch, index.digest, zeros, &wanted, &mut buf) {
                        Ok(batch) => results.lock().expect("scan results").push((first, batch)),
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

fn scan_batch(
    file: &File,
    len: u64,
    batch: &[Chunk],
    digest: ChunkDigest,
    zeros: &ZeroIds,
    wanted: &HashSet<ChunkId>,
    buf: &mut [u8],
) -> std::io::Result<Batch> {
    let mut here = Vec::with_capacity(batch.len());
    let mut found = Vec::new();
    let mut read = 0;
    for c in batch {
        if c.end() > len {
            here.push(false);
            continue;
        }
        let data = &mut buf[..c.size as usize];
        file.read_exact_at(data, c.start)?;
        read += c.size;
        let id = if is_zero(data) {
            zeros.get(c.size, digest)
        } else {
            digest.id(data)
        };
        here.push(id == c.id);
        if wanted.contains(&id) {
            found.push((id, c.start));
        }
    }
    Ok((here, found, read))
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
