//! The writer's pipeline: four threads joined by bounded channels of pooled
//! buffers; the held-back head is committed only after every stage succeeded.

use super::buf::{self, Pool};
use super::channel::ChannelReader;
use super::decode::{self, detect, Compression, Decoder};
use super::readback::{read_back, Written};
use super::sink::{is_zero, Sink, ZERO_BLOCK};
use super::source::{self, Fetcher, Shared};
use super::{parallel, qcow2, verify, ImageError, Progress, WriteOptions, WriteOutcome};
use crate::plan::Digest;
use crate::units::Bytes;
use std::io::{self, BufRead, Read};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

/// Size of one decompressed buffer (the unit of writing).
pub(super) const OUT_BUF: usize = 4 << 20;
/// Decompressed buffers in circulation (decoding, hashing, writing, queued).
pub(super) const OUT_BUFS: usize = 6;
/// Depth of each channel after the decoder.
pub(super) const OUT_DEPTH: usize = 2;

/// Buffers the pipeline's pools allocated (for the memory-bound test).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
pub(super) struct PoolUse {
    pub fetch: usize,
    pub out: usize,
}

/// A message after the decoder: a buffer of output, or the verified end.
pub(super) enum Out {
    /// Output, and a mask of its all-zero blocks once the hash stage looked.
    Data(buf::Pooled, u64),
    /// This many zero bytes, whole [`ZERO_BLOCK`]s from a block boundary, never materialised.
    Zeros(u64),
    End,
}

pub(super) fn run_pipeline(
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
    let (fetcher, shared, input) = Fetcher::for_image(urls, digest, opts);
    let (dec_tx, dec_rx) = sync_channel(OUT_DEPTH);
    let (hash_tx, hash_rx) = sync_channel(OUT_DEPTH);
    let decoders = opts.decoders.unwrap_or_else(parallel::decoders);

    let (fetched, decoded, hashed, sunk) = std::thread::scope(|s| {
        let fetch = s.spawn(move || fetcher.run());
        let decode = s.spawn(|| stage(&shared, || decode_stage(input, decoders, dec_tx, &shared)));
        let keep = opts.readback;
        let shared_ref = &*shared;
        let hash = s.spawn(move || stage(shared_ref, || hash_stage(dec_rx, hash_tx, keep)));
        let write = s.spawn(|| stage(&shared, || sink_stage(&mut sink, hash_rx, &shared)));
        report_until_done(&write, &shared, started, opts);
        (join(fetch), join(decode), join(hash), join(write))
    });
    let (served, fetch_bufs) = fetched;
    first_cause([served.as_ref().err(), decoded.as_ref().err(), hashed.as_ref().err(), sunk.as_ref().err()])?;
    let (served, (compression, out_bufs), (written_blake3, blocks)) = (served?, decoded?, hashed?);
    sunk?;
    // Verified: now the partition table and boot code may go down.
    sink.commit_head()?;
    let produced = Produced {
        served,
        compression,
        qcow2: false,
        written_blake3,
        blocks,
        pools: PoolUse {
            fetch: fetch_bufs,
            out: out_bufs,
        },
    };
    finish_outcome(&mut sink, target, opts, &shared, started, produced)
}

/// The first real failure of the stages, in stream order; `Cancelled` only echoes it.
pub(super) fn first_cause(stages: [Option<&ImageError>; 4]) -> Result<(), ImageError> {
    match stages
        .into_iter()
        .flatten()
        .find(|e| !matches!(e, ImageError::Cancelled))
    {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

/// Calls the progress callback every `progress_interval` until `write` finished.
pub(super) fn report_until_done<T>(
    write: &std::thread::ScopedJoinHandle<'_, T>,
    shared: &Shared,
    started: Instant,
    opts: &WriteOptions,
) {
    let mut last_report = Instant::now();
    while !write.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        if let Some(cb) = opts
            .progress
            .filter(|_| last_report.elapsed() >= opts.progress_interval)
        {
            cb(&progress(shared, started, false));
            last_report = Instant::now();
        }
    }
}

/// What the stages produced, for the outcome.
pub(super) struct Produced {
    pub served: source::Served,
    pub compression: Compression,
    pub qcow2: bool,
    pub written_blake3: Option<String>,
    pub blocks: Option<Vec<u64>>,
    pub pools: PoolUse,
}

/// After the head was committed: the read-back (if asked), the last progress call, the outcome.
pub(super) fn finish_outcome(
    sink: &mut Sink,
    target: &Path,
    opts: &WriteOptions,
    shared: &Shared,
    started: Instant,
    produced: Produced,
) -> Result<(WriteOutcome, PoolUse), ImageError> {
    let Produced {
        served,
        compression,
        qcow2,
        written_blake3,
        blocks,
        pools,
    } = produced;
    let (readback_blake3, readback_seconds) = match (blocks, &written_blake3) {
        (Some(blocks), Some(written_blake3)) if opts.readback => {
            if let Some(hook) = opts.before_readback {
                hook();
            }
            let t = Instant::now();
            let written = Written {
                len: sink.offset(),
                hex: written_blake3,
                blocks: &blocks,
            };
            let hex = read_back(target, &written)?;
            crate::runner::log::info(&format!(
                "read {} back from {} in {:.1} s: identical",
                Bytes(sink.offset()).human(),
                target.display(),
                t.elapsed().as_secs_f64()
            ));
            (Some(hex), Some(t.elapsed().as_secs_f64()))
        }
        _ => (None, None),
    };
    let final_progress = progress(shared, started, true);
    if let Some(cb) = opts.progress {
        cb(&final_progress);
    }
    let outcome = WriteOutcome {
        url_used: served.url,
        compression,
        qcow2,
        bytes_downloaded: served.bytes,
        bytes_written: sink.offset(),
        digest: Digest {
            algorithm: served.algorithm,
            hex: served.actual_hex,
        },
        written_blake3,
        readback_blake3,
        readback_seconds,
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
    crate::runner::log::debug(&format!("image pipeline buffers allocated: {pools:?}"));
    Ok((outcome, pools))
}

/// Joins a stage's thread, passing a panic on.
pub(super) fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Runs a stage; a failure cancels the others.
pub(super) fn stage<T>(
    shared: &Shared,
    f: impl FnOnce() -> Result<T, ImageError>,
) -> Result<T, ImageError> {
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
pub(super) fn image_error(e: io::Error) -> Result<ImageError, io::Error> {
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
pub(super) fn decode_failure(
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
pub(super) fn drain(input: &mut ChannelReader, compression: Compression) -> Result<(), ImageError> {
    io::copy(input, &mut io::sink()).map(drop).map_err(|e| {
        image_error(e).unwrap_or_else(|e| ImageError::Decode {
            compression,
            cause: e.to_string(),
        })
    })
}

fn decode_stage(
    mut input: ChannelReader,
    decoders: usize,
    tx: SyncSender<Out>,
    shared: &Shared,
) -> Result<(Compression, usize), ImageError> {
    let prefix = input
        .fill_buf()
        .map_err(|e| image_error(e).unwrap_or(ImageError::Cancelled))?;
    let compression = detect(&prefix[..prefix.len().min(decode::MAGIC_LEN)]);
    // An uncompressed qcow2 file goes to its own writer before anything else is read.
    if compression == Compression::None && qcow2::is_qcow2(prefix) {
        return Err(ImageError::Qcow2Detected);
    }
    if compression == Compression::Zstd {
        let allocated = parallel::decode_zstd(input, decoders, tx, shared)?;
        return Ok((compression, allocated));
    }
    let mut pool = Pool::new(OUT_BUF, OUT_BUFS);
    decode_into(input, compression, &mut pool, tx, shared)?;
    Ok((compression, pool.allocated()))
}

/// Decodes on this thread (xz, gzip, or nothing to decode).
fn decode_into(
    input: ChannelReader,
    compression: Compression,
    pool: &mut Pool,
    tx: SyncSender<Out>,
    shared: &Shared,
) -> Result<Compression, ImageError> {
    let mut decoder = Decoder::new(compression, input).map_err(|e| ImageError::Decode {
        compression,
        cause: e.to_string(),
    })?;
    let mut first = true;
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
        // Written raw, a compressed qcow2 file would be garbage on the disk: refuse it
        // before any write.
        if std::mem::take(&mut first) && qcow2::is_qcow2(&buf) {
            return Err(ImageError::Qcow2Compressed { compression });
        }
        if !buf.is_empty() {
            tx.send(Out::Data(buf, 0))
                .map_err(|_| ImageError::Cancelled)?;
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

/// Takes the written bytes' hash list, and notes which blocks are zero so the sink need not look.
/// Marks the all-zero blocks of each buffer for the sink and, for a read-back
/// (`readback`), takes the hash list of the written bytes. Without a read-back the
/// written bytes need no digest of their own: they are the decoder's output of a
/// stream whose digest was verified.
fn hash_stage(
    rx: Receiver<Out>,
    tx: SyncSender<Out>,
    readback: bool,
) -> Result<(Option<String>, Option<Vec<u64>>), ImageError> {
    let mut digest = verify::BlockDigest::new(readback);
    loop {
        match rx.recv() {
            Ok(Out::Data(b, _)) => {
                let mut zeros = 0u64;
                for (i, block) in b.chunks(ZERO_BLOCK).enumerate() {
                    let zero = block.len() == ZERO_BLOCK && is_zero(block);
                    zeros |= (zero as u64) << i;
                    if readback {
                        digest.push(block, zero);
                    }
                }
                tx.send(Out::Data(b, zeros))
                    .map_err(|_| ImageError::Cancelled)?;
            }
            Ok(Out::Zeros(len)) => {
                if readback {
                    (0..len / ZERO_BLOCK as u64).for_each(|_| digest.push_zero());
                }
                tx.send(Out::Zeros(len)).map_err(|_| ImageError::Cancelled)?;
            }
            Ok(Out::End) => {
                tx.send(Out::End).map_err(|_| ImageError::Cancelled)?;
                if !readback {
                    return Ok((None, None));
                }
                let (hex, blocks) = digest.finish();
                return Ok((Some(hex), blocks));
            }
            Err(_) => return Err(ImageError::Cancelled),
        }
    }
}

fn sink_stage(sink: &mut Sink, rx: Receiver<Out>, shared: &Shared) -> Result<(), ImageError> {
    loop {
        match rx.recv() {
            Ok(Out::Data(b, zeros)) => {
                sink.write_blocks(&b, Some(zeros))?;
                shared.written.store(sink.offset(), Ordering::Relaxed);
            }
            Ok(Out::Zeros(len)) => {
                sink.write_zeros(len)?;
                shared.written.store(sink.offset(), Ordering::Relaxed);
            }
            Ok(Out::End) => return sink.finish(),
            Err(_) => return Err(ImageError::Cancelled),
        }
    }
}
