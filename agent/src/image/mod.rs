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
//!
//! A qcow2 file (recognised by its first bytes) is written as the disk it
//! describes by [`qcow2`]: its tables read with `Range` requests, then the whole
//! file streamed once through the same fetch stage, digest and sink.

mod buf;
mod channel;
mod decode;
pub mod frames;
mod parallel;
mod pipeline;
pub mod qcow2;
mod readback;
mod sink;
mod source;
mod stream;
mod verify;

#[cfg(test)]
mod tests;

pub use decode::{detect, Compression};
pub use stream::{open_verified_stream, VerifiedStream};

use crate::plan::{Digest, ImageFormat, ImagePlan, VerifyMode};
use crate::units::Bytes;
use serde::Serialize;
use source::FetchConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Upper bound of the pipeline's buffer memory, whatever the image size
/// (decoder windows excluded: zstd's is capped at 128 MiB by default, usually 8 MiB).
pub const PIPELINE_BUFFER_BYTES: usize = source::FETCH_BUF * source::FETCH_BUFS
    + max(
        pipeline::OUT_BUF * pipeline::OUT_BUFS,
        parallel::BUFFER_BYTES,
    )
    + 2 * sink::HOLD_BACK as usize;

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

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
    #[error("reading {} back to verify it: {cause}", path.display())]
    Readback { path: PathBuf, cause: String },
    #[error(
        "read-back of {} differs from what was written, first in the MiB at byte {offset} \
         (and {more} more MiBs): the device lost or changed writes (hash list written {written}, \
         read {read}); check the disk's health and cabling, then write again",
        path.display()
    )]
    ReadbackMismatch {
        path: PathBuf,
        offset: u64,
        more: u64,
        written: String,
        read: String,
    },
    #[error(
        "the image is qcow2 inside a {compression}-compressed file, which cannot be read at random \
         offsets as qcow2 needs: serve the .qcow2 file itself, uncompressed (its clusters may be \
         compressed: `qemu-img convert -c -O qcow2`), or convert it to raw and compress that; \
         nothing was written"
    )]
    Qcow2Compressed { compression: Compression },
    #[error("{url} is a qcow2 image this agent does not write: {cause}")]
    Qcow2 {
        url: String,
        cause: qcow2::Qcow2Error,
    },
    /// The stream is an uncompressed qcow2 file: `stream_to` writes it with the qcow2 writer.
    /// Never reported.
    #[error("the image is qcow2")]
    Qcow2Detected,
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
    /// When every URL's retries ran out without an answer (a cable pulled, a switch
    /// rebooting) after the download had begun: how long since the last byte the
    /// sources are tried again, round after round, before giving up.
    pub outage: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            outage: Duration::from_secs(300),
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
    /// Read the written bytes back and compare (set by `write_image` from the plan's `verify`).
    pub readback: bool,
    /// Overrides whether a block-device target offloads write-zeroes (`None`: its queue
    /// limits say). `Some(false)` makes zero runs be written as data, as on a device without it.
    pub write_zeroes: Option<bool>,
    /// Called between writing and reading back (tests corrupt the target here).
    pub before_readback: Option<&'a (dyn Fn() + Sync)>,
    /// Threads decoding a zstd stream of several frames (`None`: one per core, at most 4).
    pub decoders: Option<usize>,
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
            readback: false,
            write_zeroes: None,
            before_readback: None,
            decoders: None,
        }
    }
}

impl std::fmt::Debug for WriteOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOptions")
            .field("ca_bundle", &self.ca_bundle)
            .field("stall_timeout", &self.stall_timeout)
            .field("retry", &self.retry)
            .field("readback", &self.readback)
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
    /// Whether the image was qcow2 (written as the disk it describes).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub qcow2: bool,
    /// Size of the served file.
    pub bytes_downloaded: u64,
    /// Decompressed size written to the target.
    pub bytes_written: u64,
    /// The verified digest of the served file.
    pub digest: Digest,
    /// With read-back verification: the hash list of the decompressed bytes written,
    /// BLAKE3 over the BLAKE3 of each 1 MiB block (the last may be shorter). See
    /// `verify.rs` for why a list, and why BLAKE3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_blake3: Option<String>,
    /// The same hash list computed from the target after writing (`verify: readback`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readback_blake3: Option<String>,
    /// Seconds the read-back took (included in `duration`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readback_seconds: Option<f64>,
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
    let mut opts = opts.clone();
    opts.readback |= plan.verify == Some(VerifyMode::Readback);
    stream_to(&plan.urls, &plan.digest, &plan.target_path, &opts)
}

/// Streams the image at `urls` (tried in turn) onto `target` (block device or file) from byte 0.
pub fn stream_to(
    urls: &[String],
    digest: &Digest,
    target: &Path,
    opts: &WriteOptions,
) -> Result<WriteOutcome, ImageError> {
    match pipeline::run_pipeline(urls, digest, target, opts) {
        // Seen in the first bytes, before anything was written: read it as qcow2 instead.
        Err(ImageError::Qcow2Detected) => qcow2::write(urls, digest, target, opts),
        other => other.map(|(outcome, _)| outcome),
    }
}
