//! The outline of a zstd stream (RFC 8878): where each frame ends, found from
//! its header and block headers without decoding it, so that independent frames
//! can be decoded side by side ([`super::parallel`]).
//!
//! A stream is frames and skippable frames, one after another. `pzstd` (and the
//! seekable format) write many frames; `zstd` writes one, which then decodes on
//! one thread as before.

use std::io::{self, BufRead};

/// The magic number of a zstd frame (little endian on the wire).
const FRAME_MAGIC: u32 = 0xFD2F_B528;
/// Skippable frames: magic numbers 0x184D2A50..=0x184D2A5F.
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// No block holds more than 128 KiB (RFC 8878, Block_Maximum_Size).
const BLOCK_MAX: usize = 128 << 10;

/// Why the stream is not a sequence of zstd frames.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The served bytes could not be read (the reader's own error).
    Read(io::Error),
    /// The bytes break the format; the message names the offset.
    Format(String),
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> FrameError {
        FrameError::Read(e)
    }
}

/// What [`FrameWalker::next`] found.
pub(crate) enum Next {
    /// A frame follows: its bytes come through [`FrameWalker::frame`].
    Frame,
    /// The stream ended cleanly, between frames.
    End,
}

/// What the walker learnt of a frame while passing it on: enough to tell a frame
/// of zeros (most of a disk image) without decoding all of it.
pub(crate) struct Outline {
    /// The frame header descriptor's flags.
    fhd: u8,
    /// Bytes before the first block (magic, descriptor, window, dictionary id, size).
    header_len: usize,
    /// Bytes of the first block, its header included.
    first_block_len: usize,
    /// If every block after the first is an RLE block of zero bytes: what they decode to.
    zeros_after_first: Option<u64>,
}

impl Outline {
    /// If the frame may be all zeros, a frame of its first block alone (no content
    /// size, no checksum) to decode and look at; `frame` is the whole frame.
    ///
    /// zstd never writes a frame's first block as an RLE block, so a frame of
    /// zeros is a short compressed block and then RLE blocks; decoding the first
    /// block alone (at most 128 KiB) tells whether the frame is zeros. Only for
    /// frames with a window descriptor and no dictionary, whose header can be
    /// reused as it is.
    pub(crate) fn first_block_frame(&self, frame: &[u8]) -> Option<Vec<u8>> {
        self.zeros_after_first?;
        if self.fhd & 0x23 != 0 || frame.len() < self.header_len + self.first_block_len {
            return None;
        }
        let mut mini = FRAME_MAGIC.to_le_bytes().to_vec();
        // Descriptor: no content size, multi-segment, no checksum, no dictionary.
        mini.extend_from_slice(&[0x00, frame[5]]);
        let block = self.header_len..self.header_len + self.first_block_len;
        mini.extend_from_slice(&frame[block]);
        // The first block becomes the last.
        mini[6] |= 1;
        Some(mini)
    }

    /// Bytes the blocks after the first decode to, if all are RLE blocks of zeros.
    pub(crate) fn zeros_after_first(&self) -> Option<u64> {
        self.zeros_after_first
    }
}

/// Walks a zstd stream frame by frame over a `BufRead`, counting bytes for messages.
pub(crate) struct FrameWalker<'a, R: BufRead> {
    input: &'a mut R,
    pos: u64,
}

impl<'a, R: BufRead> FrameWalker<'a, R> {
    /// A walker at the start of `input`.
    pub(crate) fn new(input: &'a mut R) -> FrameWalker<'a, R> {
        FrameWalker { input, pos: 0 }
    }

    /// Skips skippable frames; says whether a frame follows or the stream ended.
    pub(crate) fn next(&mut self) -> Result<Next, FrameError> {
        loop {
            if self.input.fill_buf()?.is_empty() {
                return Ok(Next::End);
            }
            let at = self.pos;
            let mut magic = [0u8; 4];
            self.take(&mut magic, "a frame's magic number")?;
            let magic = u32::from_le_bytes(magic);
            if magic == FRAME_MAGIC {
                return Ok(Next::Frame);
            }
            if magic & SKIPPABLE_MASK != SKIPPABLE_MAGIC {
                return Err(FrameError::Format(format!(
                    "byte {at} starts neither a zstd frame nor a skippable frame (magic {magic:#010x})"
                )));
            }
            let mut size = [0u8; 4];
            self.take(&mut size, "a skippable frame's size")?;
            self.copy(
                u32::from_le_bytes(size) as u64,
                &mut |_| Ok(()),
                "a skippable frame",
            )?;
        }
    }

    /// Hands the frame that [`FrameWalker::next`] found, magic included, to `out`
    /// in pieces, in order, up to its last byte.
    pub(crate) fn frame(
        &mut self,
        out: &mut dyn FnMut(&[u8]) -> Result<(), FrameError>,
    ) -> Result<Outline, FrameError> {
        let start = self.pos - 4;
        out(&FRAME_MAGIC.to_le_bytes())?;
        let mut fhd = [0u8; 1];
        self.take(&mut fhd, "a frame header")?;
        out(&fhd)?;
        let fhd = fhd[0];
        if fhd & 0x08 != 0 {
            return Err(FrameError::Format(format!(
                "the frame at byte {start} sets a reserved header bit"
            )));
        }
        let single_segment = fhd & 0x20 != 0;
        let window = usize::from(!single_segment);
        let dict_id = [0, 1, 2, 4][usize::from(fhd & 0x03)];
        let content_size = match fhd >> 6 {
            0 => usize::from(single_segment),
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let header = (window + dict_id + content_size) as u64;
        self.copy(header, out, "a frame header")?;
        let mut outline = Outline {
            fhd,
            header_len: 5 + header as usize,
            first_block_len: 0,
            zeros_after_first: Some(0),
        };
        loop {
            let mut bh = [0u8; 3];
            self.take(&mut bh, "a block header")?;
            out(&bh)?;
            let bh = u32::from_le_bytes([bh[0], bh[1], bh[2], 0]);
            let last = bh & 1 == 1;
            let size = (bh >> 3) as usize;
            let first = outline.first_block_len == 0;
            let payload = match (bh >> 1) & 3 {
                0 | 2 if size <= BLOCK_MAX => size,
                1 => {
                    let mut byte = [0u8; 1];
                    self.take(&mut byte, "a block")?;
                    out(&byte)?;
                    if first {
                        outline.first_block_len = 4;
                    } else if byte[0] == 0 {
                        outline.zeros_after_first = outline.zeros_after_first.map(|z| z + size as u64);
                    } else {
                        outline.zeros_after_first = None;
                    }
                    if last {
                        break;
                    }
                    continue;
                }
                3 => {
                    return Err(FrameError::Format(format!(
                        "the frame at byte {start} has a block of the reserved type at byte {}",
                        self.pos - 3
                    )))
                }
                _ => {
                    return Err(FrameError::Format(format!(
                        "the frame at byte {start} has a block of {size} bytes at byte {}, above the format's 128 KiB",
                        self.pos - 3
                    )))
                }
            };
            self.copy(payload as u64, out, "a block")?;
            if first {
                outline.first_block_len = 3 + payload;
            } else if payload > 0 {
                // (An empty raw block, which streaming compressors end frames with, adds nothing.)
                outline.zeros_after_first = None;
            }
            if last {
                break;
            }
        }
        if fhd & 0x04 != 0 {
            self.copy(4, out, "a frame checksum")?;
        }
        Ok(outline)
    }

    /// Reads exactly `buf.len()` bytes.
    fn take(&mut self, buf: &mut [u8], what: &str) -> Result<(), FrameError> {
        let mut got = 0;
        while got < buf.len() {
            let avail = self.input.fill_buf()?;
            if avail.is_empty() {
                return Err(self.truncated(what));
            }
            let n = avail.len().min(buf.len() - got);
            buf[got..got + n].copy_from_slice(&avail[..n]);
            self.input.consume(n);
            self.pos += n as u64;
            got += n;
        }
        Ok(())
    }

    /// Passes the next `len` bytes to `out`, as they come.
    fn copy(
        &mut self,
        mut len: u64,
        out: &mut dyn FnMut(&[u8]) -> Result<(), FrameError>,
        what: &str,
    ) -> Result<(), FrameError> {
        while len > 0 {
            let avail = self.input.fill_buf()?;
            if avail.is_empty() {
                return Err(self.truncated(what));
            }
            let n = avail.len().min(usize::try_from(len).unwrap_or(usize::MAX));
            out(&avail[..n])?;
            self.input.consume(n);
            self.pos += n as u64;
            len -= n as u64;
        }
        Ok(())
    }

    fn truncated(&self, what: &str) -> FrameError {
        FrameError::Format(format!(
            "the stream ends at byte {} inside {what}",
            self.pos
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame of `stream`, as the walker cut them.
    fn frames(stream: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut input = stream;
        let mut w = FrameWalker::new(&mut input);
        let mut out = Vec::new();
        loop {
            match w.next() {
                Ok(Next::End) => return Ok(out),
                Ok(Next::Frame) => {
                    let mut f = Vec::new();
                    w.frame(&mut |b| {
                        f.extend_from_slice(b);
                        Ok(())
                    })
                    .map_err(|e| format!("{e:?}"))?;
                    out.push(f);
                }
                Err(e) => return Err(format!("{e:?}")),
            }
        }
    }

    fn sample(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| ((i / 7) ^ seed).wrapping_mul(2_654_435_761).to_le_bytes()[3] & 0x3f)
            .collect()
    }

    #[test]
    fn cuts_concatenated_frames_exactly_whatever_their_kind() {
        // Compressed blocks, an RLE run of zeros, raw (incompressible) blocks, a
        // checksum, a content size, a tiny single-segment frame, and an empty one.
        let a = zstd::bulk::compress(&sample(700_000, 1), 3).unwrap();
        let b = {
            let mut c = zstd::bulk::Compressor::new(1).unwrap();
            c.include_checksum(true).unwrap();
            c.compress(&[vec![0u8; 1 << 20], sample(300_000, 2)].concat())
                .unwrap()
        };
        let random: Vec<u8> = (0..400_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i >> 11) as u8)
            .collect();
        let c = zstd::stream::encode_all(&random[..], 19).unwrap();
        let d = zstd::bulk::compress(b"tiny", 3).unwrap();
        let e = zstd::bulk::compress(b"", 3).unwrap();
        let skip = [0x5Eu8, 0x2A, 0x4D, 0x18, 2, 0, 0, 0, 9, 9];
        let stream = [&skip[..], &a, &b, &skip, &c, &d, &e, &skip].concat();
        let got = frames(&stream).unwrap();
        assert_eq!(got, vec![a, b, c, d, e]);
    }

    /// The frame's outline and, if it may be zeros, what its first block decodes to.
    fn probe(frame: &[u8]) -> (Option<u64>, Option<Vec<u8>>) {
        let mut input = frame;
        let mut w = FrameWalker::new(&mut input);
        assert!(matches!(w.next(), Ok(Next::Frame)));
        let outline = w.frame(&mut |_| Ok(())).unwrap();
        let first = outline
            .first_block_frame(frame)
            .map(|mini| zstd::bulk::decompress(&mini, 128 << 10).unwrap());
        (outline.zeros_after_first(), first)
    }

    #[test]
    fn a_frame_of_zeros_is_told_by_its_first_block_alone() {
        let c = |data: &[u8]| {
            let mut c = zstd::bulk::Compressor::new(3).unwrap();
            c.include_checksum(true).unwrap();
            c.compress(data).unwrap()
        };
        // As compressed in one go, and ending on an empty raw block as streaming
        // compressors (`pzstd`) end frames: the last RLE block is not last any more.
        let streamed = {
            let mut f = zstd::bulk::compress(&vec![0u8; 8 << 20], 3).unwrap();
            let last_rle = f.len() - 4;
            assert_eq!(f[last_rle] & 0b111, 0b011, "the frame ends on an RLE block");
            f[last_rle] &= !1;
            f.extend_from_slice(&[0x01, 0x00, 0x00]);
            assert_eq!(zstd::bulk::decompress(&f, 8 << 20).unwrap(), vec![0u8; 8 << 20]);
            f
        };
        for frame in [c(&vec![0u8; 8 << 20]), streamed] {
            let (rest, first) = probe(&frame);
            let first = first.expect("a frame of zeros is probed");
            assert!(first.iter().all(|&b| b == 0));
            assert_eq!(first.len() as u64 + rest.unwrap(), 8 << 20);
        }
        // Zeros with one byte set near the end: a compressed block there, not RLE.
        let mut nearly = vec![0u8; 8 << 20];
        nearly[(8 << 20) - 1000] = 1;
        assert_eq!(probe(&c(&nearly)).0, None);
        // A constant other than zero is RLE too, but not zeros.
        let (rest, first) = probe(&c(&vec![7u8; 4 << 20]));
        assert!(rest.is_none() || first.is_some_and(|f| f.iter().any(|&b| b != 0)));
        // Data in the first block only: probed, and the probe sees the data.
        let mut head = vec![0u8; 4 << 20];
        head[10] = 9;
        let (rest, first) = probe(&c(&head));
        assert!(rest.is_some() && first.is_some_and(|f| f[10] == 9));
    }

    #[test]
    fn refuses_what_is_not_zstd_naming_the_byte() {
        let a = zstd::bulk::compress(&sample(10_000, 3), 3).unwrap();
        let stream = [&a[..], b"garbage!"].concat();
        let e = frames(&stream).unwrap_err();
        assert!(e.contains(&format!("byte {}", a.len())), "{e}");
        // Cut inside a block: the stream ends inside it.
        let e = frames(&a[..a.len() - 5]).unwrap_err();
        assert!(
            e.contains("ends at byte") && e.contains("inside a block"),
            "{e}"
        );
        // A reserved block type.
        let mut bad = a.clone();
        let fhd = bad[4];
        assert_eq!(fhd >> 6, 1, "the sample frame stores a 2-byte content size");
        // Magic, descriptor, a window byte unless single-segment, the content size.
        let header = 4 + 1 + usize::from(fhd & 0x20 == 0) + 2;
        bad[header] |= 0b110;
        let e = frames(&bad).unwrap_err();
        assert!(e.contains("reserved type"), "{e}");
    }
}
