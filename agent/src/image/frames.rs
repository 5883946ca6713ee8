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
pub enum FrameError {
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

/// What [`FrameWalker::next_frame`] found.
pub enum Next {
    /// A frame follows: its bytes come through [`FrameWalker::frame`].
    Frame,
    /// The stream ended cleanly, between frames.
    End,
}

/// What the walker learnt of a frame while passing it on: enough to tell a frame
/// of zeros (most of a disk image) without decoding all of it.
pub struct Outline {
    /// The frame header descriptor's flags.
    fhd: u8,
    /// Bytes before the first block (magic, descriptor, window, dictionary id, size).
    header_len: usize,
    /// Bytes of the first block, its header included.
    first_block_len: usize,
    /// If every block after the first is an RLE block of zero bytes: what they decode to.
    zeros_after_first: Option<u64>,
    /// The size the header declares the frame decodes to, if it does.
    content_size: Option<u64>,
    /// The frame's checksum: the low 32 bits of XXH64 (seed 0) of what it decodes to.
    checksum: Option<u32>,
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
    pub fn first_block_frame(&self, frame: &[u8]) -> Option<Vec<u8>> {
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
    pub fn zeros_after_first(&self) -> Option<u64> {
        self.zeros_after_first
    }

    /// Whether a frame decoding to `len` zero bytes agrees with the header's size and
    /// the checksum, as a decoder would check them (`zeros_xxh64` gives XXH64 of zeros).
    pub fn zeros_check(&self, len: u64, zeros_xxh64: impl FnOnce(u64) -> u64) -> bool {
        self.content_size.is_none_or(|c| c == len)
            && self.checksum.is_none_or(|c| c == zeros_xxh64(len) as u32)
    }
}

/// Walks a zstd stream frame by frame over a `BufRead`, counting bytes for messages.
pub struct FrameWalker<'a, R: BufRead> {
    input: &'a mut R,
    pos: u64,
}

impl<'a, R: BufRead> FrameWalker<'a, R> {
    /// A walker at the start of `input`.
    pub fn new(input: &'a mut R) -> FrameWalker<'a, R> {
        FrameWalker { input, pos: 0 }
    }

    /// Skips skippable frames; says whether a frame follows or the stream ended.
    pub fn next_frame(&mut self) -> Result<Next, FrameError> {
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

    /// Hands the frame that [`FrameWalker::next_frame`] found, magic included, to `out`
    /// in pieces, in order, up to its last byte.
    pub fn frame(
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
        let size_len = match fhd >> 6 {
            0 => usize::from(single_segment),
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let mut header = [0u8; 13];
        let header = &mut header[..window + dict_id + size_len];
        self.take(header, "a frame header")?;
        out(header)?;
        let mut size = [0u8; 8];
        size[..size_len].copy_from_slice(&header[header.len() - size_len..]);
        let content_size = match size_len {
            0 => None,
            // Two bytes count from 256 (RFC 8878, Frame_Content_Size).
            2 => Some(u64::from_le_bytes(size) + 256),
            _ => Some(u64::from_le_bytes(size)),
        };
        let mut outline = Outline {
            fhd,
            header_len: 5 + header.len(),
            first_block_len: 0,
            zeros_after_first: Some(0),
            content_size,
            checksum: None,
        };
        loop {
            let mut bh = [0u8; 3];
            self.take(&mut bh, "a block header")?;
            out(&bh)?;
            let bh = u32::from_le_bytes([bh[0], bh[1], bh[2], 0]);
            let last = bh & 1 == 1;
            let size = (bh >> 3) as usize;
            let first = outline.first_block_len == 0;
            let kind = (bh >> 1) & 3;
            if kind == 3 {
                return Err(FrameError::Format(format!(
                    "the frame at byte {start} has a block of the reserved type at byte {}",
                    self.pos - 3
                )));
            }
            // Raw and compressed blocks hold at most 128 KiB, an RLE block decodes to as much.
            if size > BLOCK_MAX {
                return Err(FrameError::Format(format!(
                    "the frame at byte {start} has a block of {size} bytes at byte {}, above the format's 128 KiB",
                    self.pos - 3
                )));
            }
            let payload = if kind == 1 { 1 } else { size };
            let mut rle = [0u8; 1];
            if kind == 1 {
                self.take(&mut rle, "a block")?;
                out(&rle)?;
            } else {
                self.copy(payload as u64, out, "a block")?;
            }
            if first {
                outline.first_block_len = 3 + payload;
            } else if kind == 1 && rle[0] == 0 {
                outline.zeros_after_first = outline.zeros_after_first.map(|z| z + size as u64);
            } else if !(kind == 0 && size == 0) {
                // (An empty raw block, which streaming compressors end frames with, adds
                // nothing; an empty compressed block is corrupt, for a decoder to say.)
                outline.zeros_after_first = None;
            }
            if last {
                break;
            }
        }
        if fhd & 0x04 != 0 {
            let mut checksum = [0u8; 4];
            self.take(&mut checksum, "a frame checksum")?;
            out(&checksum)?;
            outline.checksum = Some(u32::from_le_bytes(checksum));
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

/// Tells frames of zeros from their outline and first block (see [`zero_frame`]).
#[derive(Default)]
pub struct ZeroProbe {
    /// Where a first block is decoded.
    block: Vec<u8>,
    /// XXH64 of so many zero bytes: frames of zeros come in few sizes.
    xxh64: std::collections::HashMap<u64, u64>,
}

/// XXH64 (seed 0) of `len` zero bytes.
fn xxh64_of_zeros(len: u64) -> u64 {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    let mut left = len;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..n]);
        left -= n as u64;
    }
    h.digest()
}

/// If the frame in `bytes` decodes to zeros only, how many: its first block is
/// decoded alone, the rest are RLE blocks of zeros by its outline, and its
/// declared size and checksum must agree, as a decoder would check them.
/// Anything else (including a frame that is wrong) goes to a decoder.
pub fn zero_frame(outline: &Outline, bytes: &[u8], probe: &mut ZeroProbe) -> Option<u64> {
    let rest = outline.zeros_after_first()?;
    let mini = outline.first_block_frame(bytes)?;
    probe.block.clear();
    probe.block.reserve(BLOCK_MAX);
    let n = zstd::bulk::Decompressor::new()
        .ok()?
        .decompress_to_buffer(&mini, &mut probe.block)
        .ok()?;
    if !super::sink::is_zero(&probe.block[..n]) {
        return None;
    }
    let len = n as u64 + rest;
    let cache = &mut probe.xxh64;
    outline
        .zeros_check(len, |len| {
            *cache.entry(len).or_insert_with(|| xxh64_of_zeros(len))
        })
        .then_some(len)
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
            match w.next_frame() {
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
        assert!(matches!(w.next_frame(), Ok(Next::Frame)));
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
            assert_eq!(
                zstd::bulk::decompress(&f, 8 << 20).unwrap(),
                vec![0u8; 8 << 20]
            );
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

#[cfg(test)]
mod zero_tests {
    use super::*;

    fn probe_frame(frame: &[u8]) -> Option<u64> {
        let mut input = frame;
        let mut w = FrameWalker::new(&mut input);
        assert!(matches!(w.next_frame(), Ok(Next::Frame)));
        let outline = w.frame(&mut |_| Ok(())).unwrap();
        zero_frame(&outline, frame, &mut ZeroProbe::default())
    }

    fn zeros_frame(len: usize, checksum: bool) -> Vec<u8> {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        c.include_checksum(checksum).unwrap();
        c.compress(&vec![0u8; len]).unwrap()
    }

    #[test]
    fn a_frame_of_zeros_counts_only_if_its_size_and_checksum_agree() {
        let len = 3 << 20;
        let good = zeros_frame(len, true);
        let checksum = u32::from_le_bytes(good[good.len() - 4..].try_into().unwrap());
        assert_eq!(
            checksum,
            xxh64_of_zeros(len as u64) as u32,
            "zstd's checksum"
        );
        assert_eq!(probe_frame(&good), Some(len as u64));
        // A wrong checksum: left to a decoder, which refuses the frame.
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(probe_frame(&bad), None);
        assert!(zstd::bulk::decompress(&bad, len).is_err());
        // A declared size that is not what the blocks make (one byte more).
        let plain = zeros_frame(len, false);
        assert_eq!(probe_frame(&plain), Some(len as u64));
        let fhd = plain[4];
        assert_eq!(fhd >> 6, 2, "a 4-byte content size");
        let at = 5 + usize::from(fhd & 0x20 == 0);
        let mut wrong = plain.clone();
        wrong[at..at + 4].copy_from_slice(&(len as u32 + 1).to_le_bytes());
        assert_eq!(probe_frame(&wrong), None);
        assert!(zstd::bulk::decompress(&wrong, len + 1).is_err());
        // Found by the fuzzer: a raw first block of one zero byte, then an empty
        // compressed block, which the library calls corrupt. Not zeros, then.
        let empty_compressed = b"\x28\xb5\x2f\xfd\x00\x00\x08\x00\x00\x00\x00\x00\x00\x05\x00\x00";
        assert_eq!(probe_frame(empty_compressed), None);
        assert!(zstd::bulk::decompress(empty_compressed, 1).is_err());
        // The same ending on an empty raw block is a frame of one zero byte.
        let empty_raw = b"\x28\xb5\x2f\xfd\x00\x00\x08\x00\x00\x00\x00\x00\x00\x01\x00\x00";
        assert_eq!(probe_frame(empty_raw), Some(1));
        assert_eq!(zstd::bulk::decompress(empty_raw, 1).unwrap(), [0]);
    }
}
