//! Image streaming: source → decode → verify → sink, in constant memory.
//!
//! Four threads joined by bounded channels of pooled buffers, so the slowest
//! stage sets the pace and memory is fixed whatever the image size:
//!
//! ```text
//! fetch (http/file, resume, hash as served) → decode (zstd/xz/gzip/none)
//!   → hash written bytes → sink (O_DIRECT, zero runs, first MiB held back)
//! ```
//!
//! The served digest is checked when the stream ends; only then is the held-back
//! first MiB (partition table, boot code) written, so a failed or corrupt
//! download never leaves a disk that boots.

mod buf;
mod decode;
mod ioctl;
mod sink;
mod source;
mod verify;

#[cfg(test)]
mod tests;

pub use decode::{detect, Compression};

use crate::plan::{Digest, ImageFormat, ImagePlan};
use crate::units::Bytes;
use buf::Pool;
use decode::Decoder;
use serde::Serialize;
use sink::Sink;
use source::{ChannelReader, FetchConfig, Fetcher, Shared};
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of one decompressed buffer (the unit of writing).
const OUT_BUF: usize = 4 << 20;
/// Decompressed buffers in circulation (decoding, hashing, writing, queued).
const OUT_BUFS: usize = 6;
/// Depth of each channel after the decoder.
const OUT_DEPTH: usize = 2;

/// Upper bound of the pipeline's buffer memory, whatever the image size
/// (decoder windows excluded: zstd's is capped at 128 MiB by default, usually 8 MiB).
pub const PIPELINE_BUFFER_BYTES: usize =
    source::FETCH_BUF * source::FETCH_BUFS + OUT_BUF * OUT_BUFS + 2 * sink::HOLD_BACK as usize;

/// Why an image could not be written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    #[error("fetching {url}: {cause}")]
    Fetch { url: String, cause: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("no source of the image worked: {}", attempts.join("; "))]
    AllSourcesFailed { attempts: Vec<String> },
    #[error(
        "{algorithm} of {url} is {actual} but the document expects {expected}: \
         the download is corrupt or the document's digest is wrong (nothing bootable was written)"
    )]
    DigestMismatch {
        algorithm: String,
        expected: String,
        actual: String,
        url: String,
    },
    #[error("decompressing the {compression} image: {cause}")]
    Decode {
        compression: Compression,
        cause: String,
    },
    #[error("image is larger than {} ({}): it needs at least {} bytes", path.display(), Bytes(*capacity).human(), needed)]
    TooLarge {
        path: PathBuf,
        capacity: u64,
        needed: u64,
    },
    #[error("target {}: {cause}", path.display())]
    Target { path: PathBuf, cause: String },
    #[error("writing {} at byte {offset}: {cause}", path.display())]
    Write {
        path: PathBuf,
        offset: u64,
        cause: String,
    },
    #[error("no data from {url} for {after:?} at byte {offset}: the connection stalled")]
    Stalled {
        url: String,
        after: Duration,
        offset: u64,
    },
    #[error("the image has no URL")]
    NoSource,
    #[error("image format {0:?} is not a whole-disk image; it is written by its own step")]
    Format(ImageFormat),
    /// A stage stopped because another one failed; never the reported cause.
    #[error("stopped because another stage of the image pipeline failed")]
    Cancelled,
}

/// Retries of one source before moving to the next mirror.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Failed attempts in a row (without new bytes) allowed per URL after the first.
    pub attempts: u32,
    /// First backoff; doubled after each failure up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// A snapshot of a running write.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Bytes of the served (compressed) file received.
    pub bytes_downloaded: u64,
    /// Size of the served file, when the server said.
    pub total: Option<u64>,
    /// Decompressed bytes handed to the target.
    pub bytes_written: u64,
    /// Download rate since the start, bytes per second.
    pub download_rate: u64,
    /// Write rate since the start, bytes per second.
    pub write_rate: u64,
    pub elapsed: Duration,
    /// True on the final call.
    pub done: bool,
}

/// How to fetch and write.
#[derive(Clone)]
pub struct WriteOptions<'a> {
    /// PEM bundle to trust for https instead of the built-in roots.
    pub ca_bundle: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// No byte for this long aborts the connection and resumes.
    pub stall_timeout: Duration,
    pub retry: RetryPolicy,
    /// Called at most every `progress_interval`, and once at the end.
    pub progress: Option<&'a (dyn Fn(&Progress) + Sync)>,
    pub progress_interval: Duration,
}

impl Default for WriteOptions<'_> {
    fn default() -> Self {
        WriteOptions {
            ca_bundle: None,
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            progress: None,
            progress_interval: Duration::from_millis(500),
        }
    }
}

impl std::fmt::Debug for WriteOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOptions")
            .field("ca_bundle", &self.ca_bundle)
            .field("stall_timeout", &self.stall_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl WriteOptions<'_> {
    fn fetch_config(&self) -> FetchConfig {
        FetchConfig {
            ca_bundle: self.ca_bundle.clone(),
            connect_timeout: self.connect_timeout,
            stall_timeout: self.stall_timeout,
            retry: self.retry.clone(),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Serialize)]
pub struct WriteOutcome {
    /// The URL that delivered the end of the stream.
    pub url_used: String,
    pub compression: Compression,
    /// Size of the served file.
    pub bytes_downloaded: u64,
    /// Decompressed size written to the target.
    pub bytes_written: u64,
    /// The verified digest of the served file.
    pub digest: Digest,
    /// sha256 of the decompressed bytes written.
    pub written_sha256: String,
    /// Bytes of zero runs not written as data (zeroed by the device or punched).
    pub zero_bytes_skipped: u64,
    /// Connections resumed with `Range` (or restarted) after a failure.
    pub resumes: u32,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Writes a whole-disk image (`format: disk`) onto `plan.target_path`.
pub fn write_image(plan: &ImagePlan, opts: &WriteOptions) -> Result<WriteOutcome, ImageError> {
    if plan.format != ImageFormat::Disk {
        return Err(ImageError::Format(plan.format));
    }
    stream_to(&plan.urls, &plan.digest, &plan.target_path, opts)
}

/// Streams the image at `urls` (tried in turn) onto `target` (block device or file) from byte 0.
pub fn stream_to(
    urls: &[String],
    digest: &Digest,
    target: &Path,
    opts: &WriteOptions,
) -> Result<WriteOutcome, ImageError> {
    run_pipeline(urls, digest, target, opts).map(|(outcome, _)| outcome)
}

/// Buffers the pipeline's pools allocated (for the memory-bound test).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
struct PoolUse {
    fetch: usize,
    out: usize,
}

/// A message after the decoder: a buffer of output, or the verified end.
enum Out {
    Data(buf::Pooled),
    End,
}

fn run_pipeline(
    urls: &[String],
    digest: &Digest,
    target: &Path,
    opts: &WriteOptions,
) -> Result<(WriteOutcome, PoolUse), ImageError> {
    if urls.is_empty() {
        return Err(ImageError::NoSource);
    }
    let started = Instant::now();
    // Open the target first: a wrong target fails before anything is downloaded.
    let mut sink = Sink::open(target)?;
    crate::runner::log::info(&format!(
        "writing {} to {} ({})",
        urls[0],
        target.display(),
        if sink.is_direct() {
            "direct I/O"
        } else {
            "buffered"
        }
    ));
    let shared = Arc::new(Shared::default());
    let (fetch_tx, fetch_rx) = sync_channel(source::FETCH_DEPTH);
    let (dec_tx, dec_rx) = sync_channel(OUT_DEPTH);
    let (hash_tx, hash_rx) = sync_channel(OUT_DEPTH);
    let fetcher = Fetcher::new(
        urls.to_vec(),
        digest.algorithm,
        opts.fetch_config(),
        shared.clone(),
        fetch_tx,
    );
    let input = ChannelReader::new(fetch_rx, digest.clone());

    let (fetched, decoded, hashed, sunk) = std::thread::scope(|s| {
        let fetch = s.spawn(move || fetcher.run());
        let decode = s.spawn(|| stage(&shared, || decode_stage(input, dec_tx, &shared)));
        let hash = s.spawn(|| stage(&shared, || hash_stage(dec_rx, hash_tx)));
        let write = s.spawn(|| stage(&shared, || sink_stage(&mut sink, hash_rx, &shared)));
        let mut last_report = Instant::now();
        while !write.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
            if let Some(cb) = opts
                .progress
                .filter(|_| last_report.elapsed() >= opts.progress_interval)
            {
                cb(&progress(&shared, started, false));
                last_report = Instant::now();
            }
        }
        (join(fetch), join(decode), join(hash), join(write))
    });
    let (served, fetch_bufs) = fetched;
    // The first real cause, in stream order; `Cancelled` only echoes it.
    let first_error = [
        served.as_ref().err(),
        decoded.as_ref().err(),
        hashed.as_ref().err(),
        sunk.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    .find(|e| !matches!(e, ImageError::Cancelled))
    .cloned();
    if let Some(e) = first_error {
        return Err(e);
    }
    let (served, (compression, out_bufs), written_sha256) = (served?, decoded?, hashed?);
    sunk?;
    // Verified: now the partition table and boot code may go down.
    sink.commit_head()?;
    let final_progress = progress(&shared, started, true);
    if let Some(cb) = opts.progress {
        cb(&final_progress);
    }
    let outcome = WriteOutcome {
        url_used: served.url,
        compression,
        bytes_downloaded: served.bytes,
        bytes_written: sink.offset(),
        digest: Digest {
            algorithm: served.algorithm,
            hex: served.actual_hex,
        },
        written_sha256,
        zero_bytes_skipped: sink.zero_skipped(),
        resumes: served.resumes,
        duration: started.elapsed(),
    };
    crate::runner::log::info(&format!(
        "wrote {} ({} compressed, {compression}) to {} in {:.1} s, {} zero bytes skipped, {} resumes",
        Bytes(outcome.bytes_written).human(),
        Bytes(outcome.bytes_downloaded).human(),
        target.display(),
        outcome.duration.as_secs_f64(),
        Bytes(outcome.zero_bytes_skipped).human(),
        outcome.resumes
    ));
    let pools = PoolUse {
        fetch: fetch_bufs,
        out: out_bufs,
    };
    crate::runner::log::debug(&format!("image pipeline buffers allocated: {pools:?}"));
    Ok((outcome, pools))
}

/// Joins a stage's thread, passing a panic on.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Runs a stage; a failure cancels the others.
fn stage<T>(shared: &Shared, f: impl FnOnce() -> Result<T, ImageError>) -> Result<T, ImageError> {
    let r = f();
    if r.is_err() {
        shared.cancel.store(true, Ordering::SeqCst);
    }
    r
}

fn progress(shared: &Shared, started: Instant, done: bool) -> Progress {
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
fn image_error(e: io::Error) -> Result<ImageError, io::Error> {
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
fn decode_failure(
    e: io::Error,
    compression: Compression,
    decoder: Decoder<ChannelReader>,
) -> ImageError {
    match image_error(e) {
        Ok(ie) => ie,
        Err(e) => {
            let mut rest = decoder.into_inner();
            match io::copy(&mut rest, &mut io::sink()).map_err(image_error) {
                Err(Ok(ie @ ImageError::DigestMismatch { .. })) => ie,
                _ => ImageError::Decode {
                    compression,
                    cause: e.to_string(),
                },
            }
        }
    }
}

/// Reads the rest of the served bytes so the digest is checked at their end.
fn drain(input: &mut ChannelReader, compression: Compression) -> Result<(), ImageError> {
    io::copy(input, &mut io::sink()).map(drop).map_err(|e| {
        image_error(e).unwrap_or_else(|e| ImageError::Decode {
            compression,
            cause: e.to_string(),
        })
    })
}

fn decode_stage(
    input: ChannelReader,
    tx: SyncSender<Out>,
    shared: &Shared,
) -> Result<(Compression, usize), ImageError> {
    let mut pool = Pool::new(OUT_BUF, OUT_BUFS);
    let result = decode_into(input, &mut pool, tx, shared);
    result.map(|c| (c, pool.allocated()))
}

fn decode_into(
    mut input: ChannelReader,
    pool: &mut Pool,
    tx: SyncSender<Out>,
    shared: &Shared,
) -> Result<Compression, ImageError> {
    let prefix = input
        .fill_buf()
        .map_err(|e| image_error(e).unwrap_or(ImageError::Cancelled))?;
    let compression = detect(&prefix[..prefix.len().min(decode::MAGIC_LEN)]);
    let mut decoder = Decoder::new(compression, input).map_err(|e| ImageError::Decode {
        compression,
        cause: e.to_string(),
    })?;
    loop {
        let mut buf = pool.get(&shared.cancel).ok_or(ImageError::Cancelled)?;
        let mut eof = false;
        while buf.len() < buf.capacity() {
            let len = buf.len();
            match decoder.read(&mut buf.spare()[len..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => buf.set_len(len + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(decode_failure(e, compression, decoder)),
            }
        }
        if !buf.is_empty() {
            tx.send(Out::Data(buf)).map_err(|_| ImageError::Cancelled)?;
        }
        if eof {
            break;
        }
    }
    let mut rest = decoder.into_inner();
    drain(&mut rest, compression)?;
    tx.send(Out::End).map_err(|_| ImageError::Cancelled)?;
    Ok(compression)
}

fn hash_stage(rx: Receiver<Out>, tx: SyncSender<Out>) -> Result<String, ImageError> {
    let mut h = verify::Hasher::new(crate::plan::DigestAlgorithm::Sha256);
    loop {
        match rx.recv() {
            Ok(Out::Data(b)) => {
                h.update(&b);
                tx.send(Out::Data(b)).map_err(|_| ImageError::Cancelled)?;
            }
            Ok(Out::End) => {
                tx.send(Out::End).map_err(|_| ImageError::Cancelled)?;
                return Ok(h.finish_hex());
            }
            Err(_) => return Err(ImageError::Cancelled),
        }
    }
}

fn sink_stage(sink: &mut Sink, rx: Receiver<Out>, shared: &Shared) -> Result<(), ImageError> {
    loop {
        match rx.recv() {
            Ok(Out::Data(b)) => {
                sink.write(&b)?;
                shared.written.store(sink.offset(), Ordering::Relaxed);
            }
            Ok(Out::End) => return sink.finish(),
            Err(_) => return Err(ImageError::Cancelled),
        }
    }
}

/// The decompressed image as a reader; reading past the end fails if the digest
/// does not match. Errors are `io::Error`s wrapping an [`ImageError`].
pub struct VerifiedStream {
    decoder: Option<Decoder<ChannelReader>>,
    compression: Compression,
    shared: Arc<Shared>,
    fetch: Option<std::thread::JoinHandle<(Result<source::Served, ImageError>, usize)>>,
    finished: bool,
}

/// Opens the image at `urls` for reading, decompressed; the download runs on its own thread.
pub fn open_verified_stream(
    urls: &[String],
    digest: &Digest,
    opts: &WriteOptions,
) -> Result<VerifiedStream, ImageError> {
    if urls.is_empty() {
        return Err(ImageError::NoSource);
    }
    let shared = Arc::new(Shared::default());
    let (tx, rx) = sync_channel(source::FETCH_DEPTH);
    let fetcher = Fetcher::new(
        urls.to_vec(),
        digest.algorithm,
        opts.fetch_config(),
        shared.clone(),
        tx,
    );
    let fetch = std::thread::Builder::new()
        .name("image-fetch".into())
        .spawn(move || fetcher.run())
        .map_err(|e| ImageError::Fetch {
            url: urls[0].clone(),
            cause: format!("starting the download thread: {e}"),
        })?;
    let mut stream = VerifiedStream {
        decoder: None,
        compression: Compression::None,
        shared,
        fetch: Some(fetch),
        finished: false,
    };
    let mut input = ChannelReader::new(rx, digest.clone());
    let compression = match input.fill_buf() {
        Ok(prefix) => detect(&prefix[..prefix.len().min(decode::MAGIC_LEN)]),
        Err(e) => return Err(stream.explain(e)),
    };
    stream.compression = compression;
    stream.decoder = Some(
        Decoder::new(compression, input).map_err(|e| ImageError::Decode {
            compression,
            cause: e.to_string(),
        })?,
    );
    Ok(stream)
}

impl VerifiedStream {
    /// The compression detected from the magic bytes.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Bytes of the served file received so far.
    pub fn bytes_downloaded(&self) -> u64 {
        self.shared.downloaded.load(Ordering::Relaxed)
    }

    /// The real cause of `e`: if the download stopped, its own error.
    fn explain(&mut self, e: io::Error) -> ImageError {
        match image_error(e) {
            Ok(ImageError::Cancelled) => match self.fetch.take().map(|h| h.join()) {
                Some(Ok((Err(fetch_error), _))) => fetch_error,
                _ => ImageError::Cancelled,
            },
            Ok(ie) => ie,
            Err(e) => ImageError::Decode {
                compression: self.compression,
                cause: e.to_string(),
            },
        }
    }
}

impl Read for VerifiedStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.finished || out.is_empty() {
            return Ok(0);
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Err(io::Error::other(ImageError::Cancelled));
        };
        match decoder.read(out) {
            Ok(0) => {
                let mut rest = self
                    .decoder
                    .take()
                    .map(Decoder::into_inner)
                    .ok_or_else(|| io::Error::other(ImageError::Cancelled))?;
                let compression = self.compression;
                match drain(&mut rest, compression) {
                    Ok(()) => {
                        self.finished = true;
                        Ok(0)
                    }
                    Err(ImageError::Cancelled) => Err(io::Error::other(
                        self.explain(io::Error::other(ImageError::Cancelled)),
                    )),
                    Err(e) => Err(io::Error::other(e)),
                }
            }
            Ok(n) => Ok(n),
            Err(e) => {
                let err = match self.decoder.take() {
                    Some(d) => decode_failure(e, self.compression, d),
                    None => ImageError::Cancelled,
                };
                let err = match err {
                    ImageError::Cancelled => self.explain(io::Error::other(ImageError::Cancelled)),
                    other => other,
                };
                Err(io::Error::other(err))
            }
        }
    }
}

impl Drop for VerifiedStream {
    fn drop(&mut self) {
        // Stop the download; dropping the decoder closes its channel.
        self.shared.cancel.store(true, Ordering::SeqCst);
        self.decoder = None;
    }
}
