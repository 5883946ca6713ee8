//! Getting one chunk: from another place on the target when the scan saw it there,
//! else from the stores, spread over them; a store that keeps failing is dropped and
//! its chunks asked of the others, a chunk whose bytes are wrong is asked of another
//! store, and every store's part is counted for the report.

use super::index::{Chunk, ChunkDigest};
use super::report::StoreReport;
use super::scan::read_if_same;
use super::store::{Conn, Decoder, Miss, Store};
use crate::blockdev::AlignedBuf;
use crate::image::options::RetryPolicy;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row after which a store is dropped.
const DROP_AFTER: u32 = 3;

/// Where a chunk's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum From {
    /// Another place on the target.
    Disk,
    /// Store number `n` (local or network).
    Store(usize),
}

/// A store and what it did.
pub(crate) struct StoreState {
    pub store: Store,
    failures_in_row: AtomicU32,
    failures: AtomicU64,
    chunks: AtomicU64,
    bytes: AtomicU64,
    corrupt: AtomicU64,
    dropped: Mutex<Option<String>>,
    alive: AtomicBool,
}

impl StoreState {
    pub(crate) fn new(store: Store) -> StoreState {
        StoreState {
            store,
            failures_in_row: AtomicU32::new(0),
            failures: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            dropped: Mutex::new(None),
            alive: AtomicBool::new(true),
        }
    }

    fn failed(&self, cause: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if self.failures_in_row.fetch_add(1, Ordering::Relaxed) + 1 >= DROP_AFTER
            && self.alive.swap(false, Ordering::Relaxed)
        {
            crate::runner::log::warn(&format!(
                "chunk store {} dropped after {DROP_AFTER} failures in a row: {cause}",
                self.store.url()
            ));
            *self.dropped.lock().expect("store state") =
                Some(format!("{DROP_AFTER} failures in a row, the last: {cause}"));
        }
    }

    /// What the store did, for the report.
    pub(crate) fn report(&self) -> StoreReport {
        StoreReport {
            url: self.store.url().to_string(),
            local: self.store.is_local(),
            chunks: self.chunks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            corrupt_chunks: self.corrupt.load(Ordering::Relaxed),
            dropped: self.dropped.lock().expect("store state").clone(),
        }
    }
}

/// One fetching thread's buffers and decoder, kept from one chunk to the next.
pub(crate) struct Scratch {
    file: Vec<u8>,
    decoder: Decoder,
    block: AlignedBuf,
    conn: Conn,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            file: Vec::new(),
            decoder: Decoder::new(),
            block: AlignedBuf::with_capacity(0),
            conn: Conn::default(),
        }
    }
}

/// Everything a fetching thread needs.
pub(crate) struct Getter<'a> {
    pub stores: &'a [StoreState],
    pub digest: ChunkDigest,
    pub retry: &'a RetryPolicy,
    pub timeout: Duration,
    pub cancel: &'a AtomicBool,
    /// When the last chunk arrived (an outage is measured from it).
    pub last_progress: &'a Mutex<Instant>,
}

impl Getter<'_> {
    /// Chunk `c`'s bytes, into `out`: from `copy_from` on the target if they are still
    /// there, else from a store (starting with store `first`: job `j` starts at store
    /// `j mod n`, so the chunks spread over every store).
    pub(crate) fn get(
        &self,
        c: &Chunk,
        copy_from: Option<u64>,
        target: &File,
        first: usize,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Result<From, String> {
        if let Some(at) = copy_from {
            if read_if_same(target, at, c, self.digest, &mut scratch.block, out) {
                return Ok(From::Disk);
            }
        }
        let n = self.stores.len();
        // Per store: why it cannot give this chunk (absent, or corrupt), when it cannot.
        let mut no: Vec<Option<String>> = vec![None; n];
        let mut backoff = self.retry.initial_backoff;
        loop {
            let mut transient = Vec::new();
            // Dropped stores are asked again only when no live one may have the chunk.
            let any_alive =
                (0..n).any(|i| no[i].is_none() && self.stores[i].alive.load(Ordering::Relaxed));
            for k in 0..n {
                let i = (first + k) % n;
                let s = &self.stores[i];
                if no[i].is_some() || (any_alive && !s.alive.load(Ordering::Relaxed)) {
                    continue;
                }
                if self.cancel.load(Ordering::Relaxed) {
                    return Err("cancelled".into());
                }
                let limit = c.size.saturating_mul(2) + 4096;
                let file = &mut scratch.file;
                match s
                    .store
                    .get(&c.id, limit, self.timeout, file, &mut scratch.conn)
                {
                    Ok(()) => match scratch
                        .decoder
                        .decode(file, c.size, &c.id, self.digest, out)
                    {
                        Ok(()) => {
                            s.failures_in_row.store(0, Ordering::Relaxed);
                            s.alive.store(true, Ordering::Relaxed);
                            s.chunks.fetch_add(1, Ordering::Relaxed);
                            s.bytes.fetch_add(file.len() as u64, Ordering::Relaxed);
                            *self.last_progress.lock().expect("progress") = Instant::now();
                            return Ok(From::Store(i));
                        }
                        Err(bad) => {
                            s.corrupt.fetch_add(1, Ordering::Relaxed);
                            crate::runner::log::warn(&format!(
                                "chunk {} from {} is corrupt ({}); asking another store",
                                c.id,
                                s.store.url(),
                                bad.0
                            ));
                            no[i] = Some(format!("{}: corrupt: {}", s.store.url(), bad.0));
                        }
                    },
                    Err(Miss::Absent) => no[i] = Some(format!("{}: not there", s.store.url())),
                    Err(Miss::Failed(cause)) => {
                        s.failed(&cause);
                        transient.push(format!("{}: {cause}", s.store.url()));
                    }
                }
            }
            if no.iter().all(Option::is_some) {
                let why: Vec<String> = no.into_iter().flatten().collect();
                return Err(why.join("; "));
            }
            let quiet = self.last_progress.lock().expect("progress").elapsed();
            if quiet >= self.retry.outage {
                let mut why: Vec<String> = no.into_iter().flatten().collect();
                why.extend(transient);
                return Err(format!(
                    "no store answered for {} s: {}",
                    quiet.as_secs(),
                    why.join("; ")
                ));
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(self.retry.max_backoff);
        }
    }
}
