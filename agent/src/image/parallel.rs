//! zstd decoding on every core: a stream of independent frames (what `pzstd`
//! writes) is cut into frames by [`super::frames`], each frame decoded by one of
//! several decoder threads, and the output put back in stream order.
//!
//! ```text
//! served bytes → cutter ─ frame 0, 2, 4 … → decoder 0 ─┐
//!                       └ frame 1, 3, 5 … → decoder 1 ─┴→ merge (in order) → hash → sink
//! ```
//!
//! Frames go to the decoders in turn and the merge takes them back in the same
//! turn, so no frame needs a number. Each decoder has its own buffers, so one
//! that runs ahead waits for the merge without starving the one it waits on.
//! A single-frame stream is decoded by the first decoder alone.

use super::buf::{Pool, Pooled};
use super::channel::ChannelReader;
use super::codec::Compression;
use super::container::Container;
use super::error::ImageError;
use super::frames::{zero_frame, FrameError, FrameWalker, Next, ZeroProbe};
use super::sink::ZERO_BLOCK;
use super::stages::{drain, image_error, join, Out, Shared};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

/// Decoder threads at most (one per core up to this).
pub(super) const MAX_DECODERS: usize = 4;
/// Size of one decoded buffer.
pub(super) const DEC_BUF: usize = 2 << 20;
/// Decoded buffers each decoder may have out at once.
pub(super) const DEC_BUFS: usize = 3;
/// Size of one piece of compressed frame handed to a decoder.
pub(super) const CHUNK: usize = 512 << 10;
/// Compressed pieces queued for each decoder.
const CHUNK_DEPTH: usize = 2;
/// Buffers the merge may use to realign frames that are not whole MiBs.
pub(super) const MERGE_BUFS: usize = 2;

/// Upper bound of this stage's buffer memory.
pub(super) const BUFFER_BYTES: usize =
    MAX_DECODERS * (DEC_BUF * DEC_BUFS + CHUNK * (CHUNK_DEPTH + 1)) + CHUNK + DEC_BUF * MERGE_BUFS;

/// To a decoder: compressed bytes of a frame (the flag marks the frame's last piece).
enum Job {
    Piece(Pooled, bool),
    /// A frame that decodes to this many zero bytes (seen without decoding it).
    Zeros(u64),
    /// No more frames.
    Finish,
}

/// From a decoder: decoded bytes, the end of the current frame, or the end of all.
enum Decoded {
    Data(Pooled),
    Zeros(u64),
    FrameEnd,
    Finished,
}

/// Fills pooled buffers one after another, handing each on as it fills.
struct Filler {
    pool: Pool,
    cur: Option<Pooled>,
}

impl Filler {
    fn new(size: usize, count: usize) -> Filler {
        Filler {
            pool: Pool::new(size, count),
            cur: None,
        }
    }

    /// Appends `len` bytes, `fill(dst, from)` writing those from `from` on into
    /// `dst`; `full` takes each buffer that fills. `None` once cancelled.
    fn append<E>(
        &mut self,
        len: usize,
        cancel: &AtomicBool,
        mut fill: impl FnMut(&mut [u8], usize),
        mut full: impl FnMut(Pooled) -> Result<(), E>,
    ) -> Option<Result<(), E>> {
        let mut done = 0;
        while done < len {
            let b = match self.cur.as_mut() {
                Some(b) => b,
                None => self.cur.insert(self.pool.get(cancel)?),
            };
            let at = b.len();
            let n = (len - done).min(b.capacity() - at);
            fill(&mut b.spare()[at..at + n], done);
            b.set_len(at + n);
            done += n;
            if b.len() == b.capacity() {
                if let Err(e) = full(self.cur.take().expect("a full buffer")) {
                    return Some(Err(e));
                }
            }
        }
        Some(Ok(()))
    }

    /// The buffer being filled, if any.
    fn take(&mut self) -> Option<Pooled> {
        self.cur.take()
    }
}

/// How many decoders to run here.
pub(super) fn decoders() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_DECODERS)
}

/// Decodes the zstd stream `input` onto `tx` with `n` decoder threads; returns how
/// many output buffers were allocated. A decoding error is reported as the digest
/// mismatch instead when the download itself was corrupt.
pub(super) fn decode_zstd(
    mut input: ChannelReader,
    n: usize,
    tx: SyncSender<Out>,
    shared: &Shared,
) -> Result<usize, ImageError> {
    let n = n.max(1);
    let (job_txs, job_rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| sync_channel(CHUNK_DEPTH)).unzip();
    let (dec_txs, dec_rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| sync_channel(DEC_BUFS)).unzip();
    let (cut, decoded, merged) = std::thread::scope(|s| {
        let input = &mut input;
        let cutter = s.spawn(move || cut(input, job_txs, shared));
        let workers: Vec<_> = job_rxs
            .into_iter()
            .zip(dec_txs)
            .map(|(rx, tx)| s.spawn(move || decode_frames(rx, tx, shared)))
            .collect();
        // The merge only borrows `tx`: until the stream is drained below, the
        // stages after it must wait, not end and cancel the download.
        let merged = merge(dec_rxs, &tx, shared);
        let cut = join(cutter);
        let decoded: Vec<_> = workers.into_iter().map(join).collect();
        (cut, decoded, merged)
    });
    let mut errors = vec![cut.as_ref().err(), merged.as_ref().err()];
    errors.extend(decoded.iter().map(|d| d.as_ref().err()));
    if let Some(e) = errors
        .into_iter()
        .flatten()
        .find(|e| !matches!(e, ImageError::Cancelled))
    {
        // A frame that does not decode may be a corrupt download: the digest says
        // which, once the rest of the stream has been read.
        if matches!(e, ImageError::Decode { .. }) {
            if let Err(
                ie @ (ImageError::DigestMismatch { .. } | ImageError::SignatureMismatch { .. }),
            ) = drain(&mut input, Compression::Zstd)
            {
                return Err(ie);
            }
        }
        return Err(e.clone());
    }
    cut?;
    let mut allocated = merged?;
    for d in decoded {
        allocated += d?;
    }
    Ok(allocated)
}

fn decode_error(cause: String) -> ImageError {
    ImageError::Decode {
        compression: Compression::Zstd,
        cause,
    }
}

/// Cuts the stream into frames and hands them to the decoders in turn. Returns
/// once the stream ended and its digest matched.
fn cut(
    input: &mut ChannelReader,
    jobs: Vec<SyncSender<Job>>,
    shared: &Shared,
) -> Result<(), ImageError> {
    let mut pieces = Filler::new(CHUNK, jobs.len() * (CHUNK_DEPTH + 1) + 1);
    let mut walker = FrameWalker::new(input);
    let cancelled = || FrameError::Read(std::io::Error::other(ImageError::Cancelled));
    let mut frame = 0usize;
    let mut probe = ZeroProbe::default();
    let result = loop {
        match walker.next_frame() {
            Ok(Next::End) => break Ok(()),
            Ok(Next::Frame) => {}
            Err(e) => break Err(e),
        }
        let to = &jobs[frame % jobs.len()];
        let mut whole = true;
        let outline = walker.frame(&mut |bytes: &[u8]| {
            let copy =
                |dst: &mut [u8], from: usize| dst.copy_from_slice(&bytes[from..from + dst.len()]);
            let send = |p| {
                whole = false;
                to.send(Job::Piece(p, false))
            };
            match pieces.append(bytes.len(), &shared.cancel, copy, send) {
                Some(Ok(())) => Ok(()),
                _ => Err(cancelled()),
            }
        });
        let outline = match outline {
            Ok(o) => o,
            Err(e) => break Err(e),
        };
        // The frame's last piece, to be marked so (empty if the frame filled its pieces).
        let last = match pieces.take() {
            Some(p) => p,
            None => match pieces.pool.get(&shared.cancel) {
                Some(p) => p,
                None => break Err(cancelled()),
            },
        };
        let job = match whole
            .then(|| zero_frame(&outline, &last, &mut probe))
            .flatten()
        {
            Some(len) => Job::Zeros(len),
            None => Job::Piece(last, true),
        };
        if to.send(job).is_err() {
            break Err(cancelled());
        }
        frame += 1;
    };
    match result {
        Ok(()) => {
            for to in &jobs {
                to.send(Job::Finish).map_err(|_| ImageError::Cancelled)?;
            }
            Ok(())
        }
        Err(FrameError::Read(e)) => {
            Err(image_error(e).unwrap_or_else(|e| decode_error(e.to_string())))
        }
        Err(FrameError::Format(m)) => Err(decode_error(m)),
    }
}

/// One decoder: decodes each frame it is handed into its own buffers.
fn decode_frames(
    rx: Receiver<Job>,
    tx: SyncSender<Decoded>,
    shared: &Shared,
) -> Result<usize, ImageError> {
    let mut pool = Pool::new(DEC_BUF, DEC_BUFS);
    let mut decoder = Decoder::new().map_err(|e| decode_error(e.to_string()))?;
    let mut out: Option<Pooled> = None;
    let send = |d: Decoded| tx.send(d).map_err(|_| ImageError::Cancelled);
    loop {
        let (piece, last) = match rx.recv() {
            Ok(Job::Piece(p, last)) => (p, last),
            Ok(Job::Zeros(len)) => {
                send(Decoded::Zeros(len))?;
                send(Decoded::FrameEnd)?;
                continue;
            }
            Ok(Job::Finish) => {
                // The merge stops at the first decoder with nothing left, which may
                // not be this one: it need not hear from this one again.
                let _ = tx.send(Decoded::Finished);
                return Ok(pool.allocated());
            }
            Err(_) => return Err(ImageError::Cancelled),
        };
        let mut input = InBuffer::around(&piece[..]);
        // Sticky: once the frame is complete, a further call (made when the
        // output filled exactly at its end) asks for the next frame's header.
        let mut frame_done = false;
        loop {
            if out.as_ref().is_some_and(|b| b.len() == b.capacity()) {
                send(Decoded::Data(out.take().expect("a full buffer")))?;
            }
            if out.is_none() {
                out = Some(pool.get(&shared.cancel).ok_or(ImageError::Cancelled)?);
            }
            let buf = out.as_mut().expect("a buffer being filled");
            let len = buf.len();
            let mut output = OutBuffer::around_pos(buf.spare(), len);
            let hint = decoder
                .run(&mut input, &mut output)
                .map_err(|e| decode_error(e.to_string()))?;
            let (filled, room) = (output.pos(), output.pos() < output.capacity());
            buf.set_len(filled);
            frame_done |= hint == 0;
            // Done with this piece once it is consumed and the decoder had room to spare.
            if input.pos() == piece.len() && room {
                break;
            }
        }
        if last {
            if !frame_done {
                return Err(decode_error(
                    "a frame ends before its last block is complete".into(),
                ));
            }
            if let Some(b) = out.take().filter(|b| !b.is_empty()) {
                send(Decoded::Data(b))?;
            }
            send(Decoded::FrameEnd)?;
        }
    }
}

/// Takes the decoders' output back in stream order and passes it on in buffers
/// that start on a [`ZERO_BLOCK`] boundary (as the sink needs); a frame whose size
/// is not whole MiBs is realigned by copying, whole ones pass as they are.
fn merge(
    from: Vec<Receiver<Decoded>>,
    tx: &SyncSender<Out>,
    shared: &Shared,
) -> Result<usize, ImageError> {
    let mut staged = Filler::new(DEC_BUF, MERGE_BUFS);
    let mut first = true;
    let mut turn = 0;
    let send = |b: Pooled| tx.send(Out::Data(b, 0)).map_err(|_| ImageError::Cancelled);
    loop {
        let b = match from[turn].recv() {
            Ok(Decoded::Data(b)) => b,
            Ok(Decoded::Zeros(len)) => {
                first = false;
                if staged.cur.is_none() && len % ZERO_BLOCK as u64 == 0 {
                    tx.send(Out::Zeros(len))
                        .map_err(|_| ImageError::Cancelled)?;
                } else {
                    // Not whole MiBs, or after such a frame: zeros written out as data.
                    let len = usize::try_from(len).map_err(|_| ImageError::Cancelled)?;
                    let zero = |dst: &mut [u8], _| dst.fill(0);
                    staged
                        .append(len, &shared.cancel, zero, send)
                        .ok_or(ImageError::Cancelled)??;
                }
                continue;
            }
            Ok(Decoded::FrameEnd) => {
                turn = (turn + 1) % from.len();
                continue;
            }
            Ok(Decoded::Finished) => break,
            Err(_) => return Err(ImageError::Cancelled),
        };
        // Written raw, a compressed qcow2 file would be garbage on the disk.
        if std::mem::take(&mut first) && Container::random_access_in(&b).is_some() {
            return Err(ImageError::Qcow2Compressed {
                compression: Compression::Zstd,
            });
        }
        if staged.cur.is_none() && b.len() % ZERO_BLOCK == 0 {
            send(b)?;
            continue;
        }
        let copy = |dst: &mut [u8], from: usize| dst.copy_from_slice(&b[from..from + dst.len()]);
        staged
            .append(b.len(), &shared.cancel, copy, send)
            .ok_or(ImageError::Cancelled)??;
    }
    if let Some(s) = staged.take().filter(|s| !s.is_empty()) {
        send(s)?;
    }
    tx.send(Out::End).map_err(|_| ImageError::Cancelled)?;
    Ok(staged.pool.allocated())
}
