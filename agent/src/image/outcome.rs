//! What a write did, and the steps after the stages: the read-back, the last
//! progress call, the log line.

use super::channel::Served;
use super::codec::Compression;
use super::container::Container;
use super::error::ImageError;
use super::readback::{read_back, Written};
use super::sink::Sink;
use super::stages::{progress, PoolUse, Produced, Run};
use crate::plan::Digest;
use crate::units::Bytes;
use serde::Serialize;
use std::time::{Duration, Instant};

/// What a write did.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct WriteOutcome {
    /// The URL that delivered the end of the stream.
    pub url_used: String,
    /// Compression of the served file (`none` for qcow2: its clusters may be compressed).
    pub compression: Compression,
    /// What the served file was; reported as `"qcow2": true` for a qcow2 file
    /// (written as the disk it describes), and not at all for a stream.
    #[serde(
        rename = "qcow2",
        serialize_with = "is_qcow2",
        deserialize_with = "from_qcow2",
        default = "stream",
        skip_serializing_if = "Container::is_not_qcow2"
    )]
    #[schemars(with = "bool")]
    pub container: Container,
    /// For an `oci://` URL: the manifest (and index) it resolved to and the layer
    /// served, all checked against their digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<Box<crate::oci::Resolved>>,
    /// Size of the served file.
    pub bytes_downloaded: u64,
    /// Decompressed size written to the target.
    pub bytes_written: u64,
    /// The digest of the served file (verified when the document gave one).
    pub digest: Digest,
    /// For a signed image: who signed it (and minisign's trusted comment), verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
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
    /// For a casync index: where the image's bytes came from (the disk, local stores,
    /// the network) and what each chunk store did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Box<crate::image::chunked::ChunkReport>>,
    /// Bytes of zero runs not written as data (zeroed by the device or punched).
    pub zero_bytes_skipped: u64,
    /// Connections resumed with `Range` (or restarted) after a failure.
    pub resumes: u32,
    /// Seconds the write took.
    #[serde(serialize_with = "seconds", deserialize_with = "from_seconds")]
    #[schemars(with = "f64")]
    pub duration: Duration,
}

fn from_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = <f64 as serde::Deserialize>::deserialize(d)?;
    Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
}

/// A report read back names only qcow2; a stream's compression is the `compression` field.
fn stream() -> Container {
    Container::Stream(Compression::None)
}

fn from_qcow2<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Container, D::Error> {
    let qcow2 = <bool as serde::Deserialize>::deserialize(d)?;
    Ok(if qcow2 { Container::Qcow2 } else { stream() })
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn is_qcow2<S: serde::Serializer>(c: &Container, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(*c == Container::Qcow2)
}

/// After the head was committed: the read-back (if asked), the last progress call, the outcome.
pub(crate) fn finish(
    sink: &mut Sink,
    served: Served,
    produced: Produced,
    fetch_bufs: usize,
    run: &Run,
) -> Result<(WriteOutcome, PoolUse), ImageError> {
    let Produced {
        compression,
        container,
        written_blake3,
        blocks,
        out_bufs,
        chunked,
    } = produced;
    let (readback_blake3, mut readback_seconds) =
        read_back_if_asked(sink, blocks.as_deref(), written_blake3.as_deref(), run)?;
    let chunks = match chunked {
        Some(mut done) => {
            if run.opts.readback {
                let t = Instant::now();
                crate::image::chunked::read_back(run.target, &mut done)?;
                readback_seconds = Some(t.elapsed().as_secs_f64());
            }
            Some(Box::new(done.report))
        }
        None => None,
    };
    let fetched_chunks = chunks
        .as_ref()
        .map_or(0, |c| c.stores.iter().map(|s| s.bytes).sum::<u64>());
    let final_progress = progress(run.shared, run.started, true);
    if let Some(cb) = run.opts.progress {
        cb(&final_progress);
    }
    let outcome = WriteOutcome {
        url_used: served.url,
        compression,
        container,
        registry: served.registry,
        bytes_downloaded: served.bytes + fetched_chunks,
        bytes_written: sink.offset(),
        digest: Digest {
            algorithm: served.algorithm,
            hex: served.actual_hex,
        },
        signed_by: served.signature.and_then(|(_, v)| v.ok()),
        written_blake3,
        readback_blake3,
        readback_seconds,
        chunks,
        zero_bytes_skipped: sink.zero_skipped(),
        resumes: served.resumes,
        duration: run.started.elapsed(),
    };
    crate::runner::log::info(&format!(
        "wrote {} ({} compressed, {compression}) to {} in {:.1} s, {} zero bytes skipped, {} resumes",
        Bytes(outcome.bytes_written).human(),
        Bytes(outcome.bytes_downloaded).human(),
        run.target.display(),
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

/// The read-back's hash list and seconds, when the options ask for one.
fn read_back_if_asked(
    sink: &Sink,
    blocks: Option<&[u64]>,
    written_blake3: Option<&str>,
    run: &Run,
) -> Result<(Option<String>, Option<f64>), ImageError> {
    let (Some(blocks), Some(hex), true) = (blocks, written_blake3, run.opts.readback) else {
        return Ok((None, None));
    };
    if let Some(hook) = run.opts.before_readback {
        hook();
    }
    let t = Instant::now();
    let written = Written {
        len: sink.offset(),
        hex,
        blocks,
    };
    let read = read_back(run.target, &written)?;
    crate::runner::log::info(&format!(
        "read {} back from {} in {:.1} s: identical",
        Bytes(sink.offset()).human(),
        run.target.display(),
        t.elapsed().as_secs_f64()
    ));
    Ok((Some(read), Some(t.elapsed().as_secs_f64())))
}
