//! Stage plumbing shared by every writer: the counters the threads share, the
//! buffer budget, the message between decoder and sink, and joining stages so
//! that the first real failure is the one reported.

use super::buf;
use super::channel::ChannelReader;
use super::codec::{Compression, Decoder};
use super::container::Container;
use super::error::ImageError;
use super::options::{Progress, WriteOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Size of one download buffer.
pub(crate) const FETCH_BUF: usize = 1 << 20;
/// Download buffers in circulation (filling, queued, being decoded).
pub(crate) const FETCH_BUFS: usize = 4;
/// Depth of the channel from the download to the decoder.
pub(crate) const FETCH_DEPTH: usize = 2;
/// Bytes of the served file the writer is chosen from (a qcow2 header with its
/// extensions fits); the download holds after them until the choice is made.
pub(crate) const PROBE_BYTES: usize = 64 << 10;
/// Size of one decompressed buffer (the unit of writing).
pub(crate) const OUT_BUF: usize = 4 << 20;
/// Decompressed buffers in circulation (decoding, hashing, writing, queued).
pub(crate) const OUT_BUFS: usize = 6;
/// Depth of each channel after the decoder.
pub(crate) const OUT_DEPTH: usize = 2;

/// Counters shared by the stages, read by the progress reporter.
#[derive(Default)]
pub(crate) struct Shared {
    /// Bytes of the served file received.
    pub downloaded: AtomicU64,
    /// Size of the served file; 0 while unknown.
    pub total: AtomicU64,
    /// Bytes handed to the target.
    pub written: AtomicU64,
    /// Set when any stage fails, so the others stop waiting.
    pub cancel: AtomicBool,
}

impl Shared {
    /// Size of the served file, once the source said.
    pub(crate) fn total(&self) -> Option<u64> {
        Some(self.total.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }
}

/// A message after a sequential decoder: a buffer of output, or the verified end.
pub(crate) enum Out {
    /// Output, and a mask of its all-zero blocks once the hash stage looked.
    Data(buf::Pooled, u64),
    /// This many zero bytes, whole zero blocks from a block boundary, never materialised.
    Zeros(u64),
    /// Everything was sent and the served digest matched.
    End,
}

/// Buffers the pools allocated (for the memory-bound test).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct PoolUse {
    /// Download buffers.
    pub fetch: usize,
    /// Output buffers (decoded or extracted).
    pub out: usize,
}

/// What a writer's stages produced, for the outcome.
pub(crate) struct Produced {
    /// Compression of the served file.
    pub compression: Compression,
    /// What the served file was.
    pub container: Container,
    /// Hash list of the written bytes (with a read-back only).
    pub written_blake3: Option<String>,
    /// Block digests behind `written_blake3`, when kept for the read-back.
    pub blocks: Option<Vec<u64>>,
    /// Output buffers the writer allocated.
    pub out_bufs: usize,
    /// For a chunked image: where its bytes came from, and its index for the read-back.
    pub chunked: Option<Box<super::chunked::report::Done>>,
}

/// What every writer is handed besides its input and sink.
pub(crate) struct Run<'a> {
    /// The device or file written.
    pub target: &'a Path,
    /// The counters of the download and the writer.
    pub shared: &'a Shared,
    /// How to write.
    pub opts: &'a WriteOptions<'a>,
    /// When the write began (for rates and the outcome).
    pub started: Instant,
}

/// The first real failure of the stages, in stream order; `Cancelled` only echoes it.
pub(crate) fn first_cause<const N: usize>(
    stages: [Option<&ImageError>; N],
) -> Result<(), ImageError> {
    match stages
        .into_iter()
        .flatten()
        .find(|e| !matches!(e, ImageError::Cancelled))
    {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

/// Joins a stage's thread, passing a panic on.
pub(crate) fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Runs a stage; a failure cancels the others.
pub(crate) fn stage<T>(
    shared: &Shared,
    f: impl FnOnce() -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    let r = f();
    if r.is_err() {
        shared.cancel.store(true, Ordering::SeqCst);
    }
    r
}

/// Calls the progress callback every `progress_interval` until `write` finished.
pub(crate) fn report_until_done<T>(write: &std::thread::ScopedJoinHandle<'_, T>, run: &Run) {
    let mut last_report = Instant::now();
    while !write.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        if let Some(cb) = run
            .opts
            .progress
            .filter(|_| last_report.elapsed() >= run.opts.progress_interval)
        {
            cb(&progress(run.shared, run.started, false));
            last_report = Instant::now();
        }
    }
}

/// A snapshot of the counters.
pub(crate) fn progress(shared: &Shared, started: Instant, done: bool) -> Progress {
    let elapsed = started.elapsed();
    let secs = elapsed.as_secs_f64().max(1e-3);
    let downloaded = shared.downloaded.load(Ordering::Relaxed);
    let written = shared.written.load(Ordering::Relaxed);
    let total = shared.total.load(Ordering::Relaxed);
    Progress {
        bytes_downloaded: downloaded,
        total: (total > 0).then_some(total),
        bytes_written: written,
        download_rate: (downloaded as f64 / secs) as u64,
        write_rate: (written as f64 / secs) as u64,
        elapsed,
        done,
    }
}

/// Unwraps an [`ImageError`] carried through `io::Error` by the channel reader.
pub(crate) fn image_error(e: io::Error) -> Result<ImageError, io::Error> {
    if !e.get_ref().is_some_and(|i| i.is::<ImageError>()) {
        return Err(e);
    }
    match e.into_inner().map(|i| i.downcast::<ImageError>()) {
        Some(Ok(ie)) => Ok(*ie),
        Some(Err(other)) => Err(io::Error::other(other)),
        None => Err(io::Error::other("unknown error")),
    }
}

/// A decoder failure; if the download itself was corrupt, the digest says so and wins.
pub(crate) fn decode_failure(
    e: io::Error,
    compression: Compression,
    decoder: Decoder<ChannelReader>,
) -> ImageError {
    match image_error(e) {
        Ok(ie) => ie,
        Err(e) => {
            let mut rest = decoder.into_inner();
            match io::copy(&mut rest, &mut io::sink()).map_err(image_error) {
                Err(Ok(
                    ie @ (ImageError::DigestMismatch { .. } | ImageError::SignatureMismatch { .. }),
                )) => ie,
                _ => ImageError::Decode {
                    compression,
                    cause: e.to_string(),
                },
            }
        }
    }
}

/// Reads the rest of the served bytes so the digest is checked at their end.
pub(crate) fn drain(input: &mut ChannelReader, compression: Compression) -> Result<(), ImageError> {
    io::copy(input, &mut io::sink()).map(drop).map_err(|e| {
        image_error(e).unwrap_or_else(|e| ImageError::Decode {
            compression,
            cause: e.to_string(),
        })
    })
}
