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
    ) -> Result<(), FrameError> {
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
        loop {
            let mut bh = [0u8; 3];
            self.take(&mut bh, "a block header")?;
            out(&bh)?;
            let bh = u32::from_le_bytes([bh[0], bh[1], bh[2], 0]);
            let last = bh & 1 == 1;
            let size = (bh >> 3) as usize;
            let payload = match (bh >> 1) & 3 {
                0 | 2 if size <= BLOCK_MAX => size,
                1 => 1,
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
            if last {
                break;
            }
        }
        if fhd & 0x04 != 0 {
            self.copy(4, out, "a frame checksum")?;
        }
        Ok(())
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
