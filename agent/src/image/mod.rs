//! Image streaming: source → decode → verify → sink, in constant memory.
//!
//! One download per image ([`source`]: http/file, mirrors, resume, hashed as
//! served); its first bytes choose the writer ([`container`]) before a byte is
//! written; the writer's threads are joined by bounded channels of pooled
//! buffers, so the slowest stage sets the pace and memory is fixed:
//!
//! ```text
//! fetch → probe ─ stream (sequential.rs): decode (codec.rs, parallel.rs for zstd)
//!               │                          → hash → sink (O_DIRECT, zero runs)
//!               ├ qcow2 (qcow2/): tables by Range → extract clusters → hash → sink
//!               └ casync index (chunked/): scan the target → chunks from stores → sink
//! ```
//!
//! The served digest is checked when the stream ends; only then is the held-back
//! first MiB (partition table, boot code) written, so a failed or corrupt
//! download never leaves a disk that boots.

mod buf;
mod channel;
pub mod chunked;
mod codec;
mod container;
mod error;
pub mod frames;
mod layers;
mod options;
mod outcome;
mod parallel;
pub mod qcow2;
mod readback;
mod reader;
mod sequential;
mod signed;
mod sink;
mod source;
mod stages;
mod verify;

#[cfg(test)]
mod tests;

pub use codec::{detect, Compression};
pub use container::Container;
pub use error::ImageError;
pub use layers::{compression as layer_compression, ContainerPull};
pub use options::{Progress, RetryPolicy, WriteOptions};
pub use outcome::WriteOutcome;
pub use reader::{open_verified_stream, VerifiedStream};

use crate::plan::{Digest, ImageFormat, ImagePlan, VerifyMode};
use channel::ChannelReader;
use sink::Sink;
use source::{Gate, Session, Stream};
use stages::{first_cause, image_error, join, stage, PoolUse, Produced, Run};
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

/// Upper bound of the pipeline's buffer memory, whatever the image size
/// (decoder windows excluded: zstd's is capped at 128 MiB by default, usually 8 MiB).
pub const PIPELINE_BUFFER_BYTES: usize = stages::FETCH_BUF * stages::FETCH_BUFS
    + max(stages::OUT_BUF * stages::OUT_BUFS, parallel::BUFFER_BYTES)
    + 2 * sink::HOLD_BACK as usize;

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Writes a whole-disk image (`format: disk`) onto `plan.target_path`.
pub fn write_image(plan: &ImagePlan, opts: &WriteOptions) -> Result<WriteOutcome, ImageError> {
    if plan.format != ImageFormat::Disk {
        return Err(ImageError::Format(plan.format));
    }
    let mut opts = opts.clone();
    opts.readback |= plan.verify == Some(VerifyMode::Readback);
    opts.stores = plan.stores.clone();
    stream_to(&plan.urls, plan.digest.as_ref(), &plan.target_path, &opts)
}

/// Asks the image's URLs in turn, without downloading it, until one answers: the check
/// made before any disk is touched. Returns that URL and the file's size if it said.
pub fn probe(
    urls: &[String],
    digest: Option<&Digest>,
    opts: &WriteOptions,
) -> Result<(String, Option<u64>), ImageError> {
    Session::new(urls, digest, opts.fetch_config()).probe()
}

/// Resolves the first `oci://` URL of `urls` that answers, checking its manifest
/// against its pinned digest and, with `opts.registry_signature`, its signature;
/// nothing is downloaded. `None` when no URL is a registry reference.
pub fn resolve_registry(
    urls: &[String],
    digest: Option<&Digest>,
    opts: &WriteOptions,
) -> Result<Option<crate::oci::Resolved>, ImageError> {
    Session::new(urls, digest, opts.fetch_config()).resolve_registry()
}

/// Streams the image at `urls` (tried in turn) onto `target` (block device or file) from byte 0.
pub fn stream_to(
    urls: &[String],
    digest: Option<&Digest>,
    target: &Path,
    opts: &WriteOptions,
) -> Result<WriteOutcome, ImageError> {
    write_to(urls, digest, target, opts).map(|(outcome, _)| outcome)
}

/// As [`stream_to`], also saying how many buffers the pools allocated.
fn write_to(
    urls: &[String],
    digest: Option<&Digest>,
    target: &Path,
    opts: &WriteOptions,
) -> Result<(WriteOutcome, PoolUse), ImageError> {
    if urls.is_empty() {
        return Err(ImageError::NoSource);
    }
    let started = Instant::now();
    // Open the target first: a wrong target fails before anything is downloaded.
    let mut sink = Sink::open_with(target, opts.write_zeroes)?;
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
    let session = Session::new(urls, digest, opts.fetch_config());
    let Stream {
        fetcher,
        shared,
        input,
        gate,
    } = session.stream()?;
    let run = Run {
        target,
        shared: &shared,
        opts,
        started,
    };
    let (fetched, written) = std::thread::scope(|s| {
        let fetch = s.spawn(move || fetcher.run());
        let written = stage(&shared, || {
            write_container(&session, input, gate, &mut sink, &run)
        });
        (join(fetch), written)
    });
    let (served, fetch_bufs) = fetched;
    first_cause([served.as_ref().err(), written.as_ref().err()])?;
    let (served, produced) = (served?, written?);
    // Verified: now the partition table and boot code may go down.
    sink.commit_head()?;
    outcome::finish(&mut sink, served, produced, fetch_bufs, &run)
}

/// Probes the stream's first bytes and hands it to the writer of what they are:
/// the one place a new container is dispatched.
fn write_container(
    session: &Session,
    mut input: ChannelReader,
    mut gate: Gate,
    sink: &mut Sink,
    run: &Run,
) -> Result<Produced, ImageError> {
    let prefix = input
        .fill_buf()
        .map_err(|e| image_error(e).unwrap_or(ImageError::Cancelled))?;
    match Container::probe(prefix) {
        Container::Stream(compression) => {
            gate.open();
            sequential::write(input, compression, sink, run)
        }
        Container::Qcow2 => qcow2::write(session, input, gate, sink, run),
        Container::Casync => chunked::write(session, input, gate, sink, run),
    }
}
