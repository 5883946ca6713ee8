//! The writer of a sequential stream (raw, or compressed by a codec): three
//! threads after the download — decode, hash, sink — joined by bounded channels
//! of pooled buffers, so the slowest stage sets the pace and memory is fixed.

use super::buf::Pool;
use super::channel::ChannelReader;
use super::codec::{Compression, Decoder};
use super::container::Container;
use super::error::ImageError;
use super::parallel;
use super::sink::{is_zero, Sink, ZERO_BLOCK};
use super::stages::{
    decode_failure, drain, first_cause, join, report_until_done, stage, Out, Produced, Run, Shared,
    OUT_BUF, OUT_BUFS, OUT_DEPTH,
};
use super::verify;
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Writes the `compression`-compressed stream `input` onto `sink` from byte 0.
/// The head stays held back: the caller commits it once the download's own result is in.
pub(crate) fn write(
    input: ChannelReader,
    compression: Compression,
    sink: &mut Sink,
    run: &Run,
) -> Result<Produced, ImageError> {
    let (dec_tx, dec_rx) = sync_channel(OUT_DEPTH);
    let (hash_tx, hash_rx) = sync_channel(OUT_DEPTH);
    let decoders = run.opts.decoders.unwrap_or_else(parallel::decoders);
    let shared = run.shared;
    let keep = run.opts.readback;
    let (decoded, hashed, sunk) = std::thread::scope(|s| {
        let decode = s.spawn(|| {
            stage(shared, || {
                decode_stage(input, compression, decoders, dec_tx, shared)
            })
        });
        let hash = s.spawn(move || stage(shared, || hash_stage(dec_rx, hash_tx, keep)));
        let write = s.spawn(|| stage(shared, || sink_stage(sink, hash_rx, shared)));
        report_until_done(&write, run);
        (join(decode), join(hash), join(write))
    });
    first_cause([
        decoded.as_ref().err(),
        hashed.as_ref().err(),
        sunk.as_ref().err(),
    ])?;
    let (out_bufs, (written_blake3, blocks)) = (decoded?, hashed?);
    Ok(Produced {
        compression,
        container: Container::Stream(compression),
        written_blake3,
        blocks,
        out_bufs,
        chunked: None,
    })
}

/// Decodes on as many threads as the codec allows; returns the buffers allocated.
fn decode_stage(
    input: ChannelReader,
    compression: Compression,
    decoders: usize,
    tx: SyncSender<Out>,
    shared: &Shared,
) -> Result<usize, ImageError> {
    // zstd streams of several frames decode on every core.
    if compression == Compression::Zstd {
        return parallel::decode_zstd(input, decoders, tx, shared);
    }
    let mut pool = Pool::new(OUT_BUF, OUT_BUFS);
    decode_into(input, compression, &mut pool, tx, shared)?;
    Ok(pool.allocated())
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
        if std::mem::take(&mut first) && Container::random_access_in(&buf).is_some() {
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
                tx.send(Out::Zeros(len))
                    .map_err(|_| ImageError::Cancelled)?;
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
