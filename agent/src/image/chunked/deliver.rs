//! Fetching and writing at once: threads fetch (and decode, and check) the chunks to
//! get in image order, at most [`WINDOW`] ahead of the writer; the writer takes the
//! image piece by piece (kept, zeros, fetched) and hands it to the [`RunWriter`], so
//! the device sees large aligned writes. A chunk needed at several places is kept in
//! memory until its last place (within [`REPEAT_BYTES`]), else got again.

use super::fetch::{From, Getter, Scratch, StoreState};
use super::index::{Chunk, Index};
use super::report::ChunkReport;
use super::runs::RunWriter;
use crate::image::error::ImageError;
use crate::image::sink::Sink;
use crate::image::stages::{progress, Run};
use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Chunks fetched at most ahead of the one the writer waits for.
const WINDOW: usize = 12;
/// Bytes of chunks kept for their later places.
const REPEAT_BYTES: u64 = 2 << 20;
/// Most chunk requests at once.
pub const CONNECTIONS: usize = 6;

/// A chunk id to fetch once and write at each of its places.
pub(crate) struct Job {
    pub chunk: Chunk,
    /// Its places in the image, in order.
    pub places: Vec<u64>,
    /// Where the scan saw its bytes on the target.
    pub copy_from: Option<u64>,
}

/// What is at one chunk's place.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Piece {
    /// Already there.
    Keep,
    /// Zeros.
    Zero,
    /// The bytes of job `n`.
    Fetch(usize),
}

/// A fetched job: its number, its bytes and where they came from.
type Got = Result<(usize, Vec<u8>, From), ImageError>;

/// Chunk buffers the writer is done with, for the fetchers to fill again (the static
/// binary's allocator maps and unmaps every large buffer: reusing them is much cheaper).
#[derive(Default)]
struct Spare(Mutex<Vec<Vec<u8>>>);

impl Spare {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .expect("spare buffers")
            .pop()
            .unwrap_or_default()
    }

    fn give(&self, v: Vec<u8>) {
        let mut spare = self.0.lock().expect("spare buffers");
        if spare.len() < WINDOW + CONNECTIONS {
            spare.push(v);
        }
    }
}

/// Jobs the writer has taken, for the fetchers to stay within the window.
struct Window {
    taken: Mutex<usize>,
    moved: Condvar,
}

impl Window {
    /// Waits until job `j` is inside the window (or the write was cancelled).
    fn enter(&self, j: usize, cancelled: &dyn Fn() -> bool) {
        let mut taken = self.taken.lock().expect("window");
        while j >= *taken + WINDOW && !cancelled() {
            taken = self
                .moved
                .wait_timeout(taken, Duration::from_millis(100))
                .expect("window")
                .0;
        }
    }

    fn advance(&self, taken: usize) {
        *self.taken.lock().expect("window") = taken;
        self.moved.notify_all();
    }
}

/// Fetches every job on a bounded number of threads and writes the image in order.
pub(crate) fn fetch_and_write(
    index: &Index,
    stores: &[StoreState],
    jobs: &[Job],
    pieces: &[Piece],
    sink: &mut Sink,
    run: &Run,
    report: &mut ChunkReport,
) -> Result<(), ImageError> {
    let target = run.target;
    let open = || {
        crate::blockdev::open_direct(target, false)
            .map(|d| d.file)
            .map_err(|e| ImageError::Target {
                path: target.to_path_buf(),
                cause: e.to_string(),
            })
    };
    let disk = open()?;
    let workers = CONNECTIONS.min(jobs.len()).max(1);
    let last_progress = Mutex::new(Instant::now());
    let getter = Getter {
        stores,
        digest: index.digest,
        retry: &run.opts.retry,
        timeout: run.opts.stall_timeout.max(Duration::from_secs(10)) * 2,
        cancel: &run.shared.cancel,
        last_progress: &last_progress,
    };
    let window = Window {
        taken: Mutex::new(0),
        moved: Condvar::new(),
    };
    let next = AtomicUsize::new(0);
    let spare = Spare::default();
    let (tx, rx) = sync_channel::<Got>(workers);
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (getter, next, window, spare) = (&getter, &next, &window, &spare);
            let disk = open();
            s.spawn(move || {
                let disk = match disk {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let cancelled = || getter.cancel.load(Ordering::Relaxed);
                let mut scratch = Scratch::new();
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(j) else { return };
                    window.enter(j, &cancelled);
                    let mut out = spare.take();
                    let got = get(
                        getter,
                        &job.chunk,
                        job.copy_from,
                        &disk,
                        j,
                        &mut scratch,
                        &mut out,
                    )
                    .map(|from| (out, from));
                    let failed = got.is_err();
                    if cancelled() || tx.send(got.map(|(d, f)| (j, d, f))).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut writer = Writer {
            index,
            jobs,
            stores,
            getter: &getter,
            disk: &disk,
            rx: &rx,
            window: &window,
            spare: &spare,
            scratch: Scratch::new(),
            run,
            arrived: HashMap::new(),
            repeats: HashMap::new(),
            repeat_bytes: 0,
            taken: 0,
        };
        let result = writer.write(pieces, sink, report);
        if result.is_err() {
            run.shared.cancel.store(true, Ordering::Relaxed);
        }
        window.advance(usize::MAX / 2);
        drop(rx);
        result
    })
}

fn get(
    getter: &Getter,
    c: &Chunk,
    copy_from: Option<u64>,
    disk: &File,
    j: usize,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<From, ImageError> {
    getter
        .get(c, copy_from, disk, j, scratch, out)
        .map_err(|cause| ImageError::Chunk {
            id: c.id.to_string(),
            start: c.start,
            size: c.size,
            cause,
        })
}

/// A chunk's bytes for the writer: its own, or kept for its later places.
enum Held {
    Owned(Vec<u8>),
    Kept,
}

/// The writing side: the image's pieces in order.
struct Writer<'a> {
    index: &'a Index,
    jobs: &'a [Job],
    stores: &'a [StoreState],
    getter: &'a Getter<'a>,
    disk: &'a File,
    rx: &'a Receiver<Got>,
    window: &'a Window,
    spare: &'a Spare,
    /// For chunks got again by the writer.
    scratch: Scratch,
    run: &'a Run<'a>,
    /// Jobs fetched ahead of the one the writer waits for.
    arrived: HashMap<usize, (Vec<u8>, From)>,
    /// Chunks with places still to write, and how many.
    repeats: HashMap<usize, (Vec<u8>, From, usize)>,
    repeat_bytes: u64,
    /// Jobs taken so far (the next one to wait for).
    taken: usize,
}

impl Writer<'_> {
    fn write(
        &mut self,
        pieces: &[Piece],
        sink: &mut Sink,
        report: &mut ChunkReport,
    ) -> Result<(), ImageError> {
        let mut out = RunWriter::new(sink, self.disk);
        let mut last_report = Instant::now();
        // Neighbouring zero chunks go down as one range.
        let mut zeros = 0;
        for (c, piece) in self.index.chunks.iter().zip(pieces) {
            if let Piece::Zero = piece {
                zeros += c.size;
                report.zero_bytes += c.size;
                placed(self.run, c.size);
                continue;
            }
            if zeros > 0 {
                out.zero(std::mem::take(&mut zeros))?;
            }
            match *piece {
                Piece::Keep => out.keep(c.size)?,
                Piece::Zero => unreachable!("zero chunks are gathered above"),
                Piece::Fetch(j) => {
                    let (held, from) = self.bytes_of(j)?;
                    match held {
                        Held::Owned(data) => {
                            out.data(&data)?;
                            self.spare.give(data);
                        }
                        Held::Kept => out.data(&self.repeats[&j].0)?,
                    }
                    match from {
                        From::Disk => report.disk_bytes += c.size,
                        From::Store(i) if self.stores[i].store.is_local() => {
                            report.local_bytes += c.size
                        }
                        From::Store(_) => report.network_bytes += c.size,
                    }
                    placed(self.run, c.size);
                }
            }
            if let Some(cb) = self
                .run
                .opts
                .progress
                .filter(|_| last_report.elapsed() >= self.run.opts.progress_interval)
            {
                cb(&progress(self.run.shared, self.run.started, false));
                last_report = Instant::now();
            }
        }
        if zeros > 0 {
            out.zero(zeros)?;
        }
        out.finish()?;
        report.network_compressed_bytes = self
            .stores
            .iter()
            .filter(|s| !s.store.is_local())
            .map(|s| s.report().bytes)
            .sum();
        Ok(())
    }

    /// Job `j`'s bytes for its next place: the first time as they arrive, later from
    /// memory or got again.
    fn bytes_of(&mut self, j: usize) -> Result<(Held, From), ImageError> {
        if j < self.taken {
            let job = &self.jobs[j];
            let Some((data, from, left)) = self.repeats.remove(&j) else {
                // Not kept: from its first place on the disk if it is there, else a store.
                let mut out = self.spare.take();
                let (getter, scratch) = (self.getter, &mut self.scratch);
                let from = get(
                    getter,
                    &job.chunk,
                    Some(job.places[0]),
                    self.disk,
                    j,
                    scratch,
                    &mut out,
                )?;
                return Ok((Held::Owned(out), from));
            };
            if left > 1 {
                self.repeats.insert(j, (data, from, left - 1));
                return Ok((Held::Kept, from));
            }
            self.repeat_bytes -= data.len() as u64;
            return Ok((Held::Owned(data), from));
        }
        debug_assert_eq!(j, self.taken, "jobs are numbered in image order");
        let (data, from) = self.wait_for(j)?;
        self.taken = j + 1;
        self.window.advance(self.taken);
        let later = self.jobs[j].places.len() - 1;
        if later > 0 && self.repeat_bytes + data.len() as u64 <= REPEAT_BYTES {
            self.repeat_bytes += data.len() as u64;
            self.repeats.insert(j, (data, from, later));
            return Ok((Held::Kept, from));
        }
        Ok((Held::Owned(data), from))
    }

    /// Waits for job `j`, keeping the jobs that arrive before it.
    fn wait_for(&mut self, j: usize) -> Result<(Vec<u8>, From), ImageError> {
        loop {
            if let Some(got) = self.arrived.remove(&j) {
                return Ok(got);
            }
            let (k, data, from) = self.rx.recv().map_err(|_| ImageError::Cancelled)??;
            self.arrived.insert(k, (data, from));
        }
    }
}

/// Counts `n` more bytes of the image in place, for the progress reports.
pub(crate) fn placed(run: &Run, n: u64) {
    run.shared.written.fetch_add(n, Ordering::Relaxed);
    run.shared.downloaded.fetch_add(n, Ordering::Relaxed);
}
