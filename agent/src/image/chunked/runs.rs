//! Writing the image in its own order, as large aligned runs: chunks land at any byte
//! offset, but the device is written in whole blocks (O_DIRECT, up to [`RUN`] bytes at
//! a time). A block shared with a neighbour that stays as it is (a chunk already in
//! place) is completed with the neighbour's bytes read from the disk; a block shared
//! with zeros is completed with zeros. Zero ranges go down as zeros without data where
//! the target allows (write-zeroes, a punched hole).

use super::scan::read_aligned;
use crate::blockdev::{AlignedBuf, DIRECT_ALIGN};
use crate::image::error::ImageError;
use crate::image::sink::Sink;
use std::fs::File;

/// Bytes gathered before they are written (a multiple of the block size).
pub(crate) const RUN: usize = 2 << 20;
const BLOCK: u64 = DIRECT_ALIGN as u64;

/// Takes the image's pieces in order and writes them in aligned runs.
pub(crate) struct RunWriter<'a> {
    sink: &'a mut Sink,
    /// Reads the blocks a run shares with bytes already on the disk.
    disk: &'a File,
    /// The image's bytes `start..cursor` not written yet; `start` is block-aligned.
    buf: AlignedBuf,
    start: u64,
    cursor: u64,
    /// Parts of the run whose bytes are on the disk already (shared edge blocks).
    from_disk: Vec<(u64, u64)>,
    /// The run holds bytes to write (not only bytes from the disk).
    has_data: bool,
    edge: AlignedBuf,
}

impl<'a> RunWriter<'a> {
    /// A writer at the image's start.
    pub(crate) fn new(sink: &'a mut Sink, disk: &'a File) -> RunWriter<'a> {
        let mut buf = AlignedBuf::with_capacity(RUN);
        buf.set_len(0);
        RunWriter {
            sink,
            disk,
            buf,
            start: 0,
            cursor: 0,
            from_disk: Vec::new(),
            has_data: false,
            edge: AlignedBuf::with_capacity(2 * DIRECT_ALIGN),
        }
    }

    /// The next `bytes` of the image.
    pub(crate) fn data(&mut self, mut bytes: &[u8]) -> Result<(), ImageError> {
        while !bytes.is_empty() {
            let n = (RUN - self.buf.len()).min(bytes.len());
            let at = self.buf.len();
            self.buf.set_len(at + n);
            self.buf[at..].copy_from_slice(&bytes[..n]);
            self.cursor += n as u64;
            self.has_data = true;
            bytes = &bytes[n..];
            if self.buf.len() == RUN {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// The next `len` bytes of the image are zeros.
    pub(crate) fn zero(&mut self, len: u64) -> Result<(), ImageError> {
        let end = self.cursor + len;
        // Zeros up to the next block boundary join the run.
        let upto = end.min(self.cursor.next_multiple_of(BLOCK));
        self.fill_zeros(upto - self.cursor)?;
        if self.cursor == end {
            return Ok(());
        }
        self.flush()?;
        let middle = end / BLOCK * BLOCK;
        if middle > self.cursor {
            self.sink.zero_at(self.cursor, middle - self.cursor)?;
            self.skip_to(middle);
        }
        self.fill_zeros(end - self.cursor)
    }

    /// The next `len` bytes of the image are on the disk already: not written.
    pub(crate) fn keep(&mut self, len: u64) -> Result<(), ImageError> {
        let end = self.cursor + len;
        if !self.buf.is_empty() {
            // The rest of the block the run ends in comes from the disk.
            let upto = end.min(self.cursor.next_multiple_of(BLOCK));
            self.from_disk.push((self.cursor, upto));
            self.extend_to(upto);
            if upto == end {
                return Ok(());
            }
            self.flush()?;
        }
        self.skip_to(end / BLOCK * BLOCK);
        if end > self.cursor {
            // The block the kept bytes end in starts the next run.
            self.from_disk.push((self.cursor, end));
            self.extend_to(end);
        }
        Ok(())
    }

    /// Writes what is left (the image's last, perhaps partial, block).
    pub(crate) fn finish(mut self) -> Result<(), ImageError> {
        self.flush()
    }

    fn fill_zeros(&mut self, n: u64) -> Result<(), ImageError> {
        if n > 0 {
            let at = self.buf.len();
            self.extend_to(self.cursor + n);
            self.buf[at..].fill(0);
            self.has_data = true;
        }
        Ok(())
    }

    fn extend_to(&mut self, end: u64) {
        self.buf.set_len((end - self.start) as usize);
        self.cursor = end;
    }

    /// Moves an empty run to `at` (block-aligned).
    fn skip_to(&mut self, at: u64) {
        debug_assert!(self.buf.is_empty() && at.is_multiple_of(BLOCK));
        self.start = at;
        self.cursor = at;
    }

    /// Writes the run and starts an empty one at the cursor, which is at a block
    /// boundary (or at the image's end, where nothing follows).
    fn flush(&mut self) -> Result<(), ImageError> {
        if self.has_data {
            let ranges = std::mem::take(&mut self.from_disk);
            for (s, e) in ranges {
                let bytes = read_aligned(self.disk, s, e, &mut self.edge).map_err(|e| {
                    ImageError::Target {
                        path: self.sink.path().to_path_buf(),
                        cause: format!("reading the bytes a chunk shares a block with: {e}"),
                    }
                })?;
                let at = (s - self.start) as usize;
                self.buf[at..at + bytes.len()].copy_from_slice(bytes);
            }
            self.sink.write_at(self.start, &self.buf)?;
        }
        self.from_disk.clear();
        self.has_data = false;
        self.buf.set_len(0);
        self.start = self.cursor;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RunWriter;
    use crate::blockdev::testutil::Loop;
    use crate::image::sink::Sink;
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    /// A small deterministic generator (xorshift), so a failure repeats.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    enum Piece {
        Keep(u64),
        Zero(u64),
        Data(Vec<u8>),
    }

    /// Pieces of every size class (tiny ones end inside a block), their kinds mixed.
    fn pieces(g: &mut Gen, len: u64) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < len {
            let size = match g.next() % 4 {
                0 => 1 + g.next() % 700,
                1 => 1 + g.next() % 9000,
                2 => 4096 * (1 + g.next() % 40),
                _ => 1 + g.next() % 600_000,
            }
            .min(len - at);
            out.push(match g.next() % 3 {
                0 => Piece::Keep(size),
                1 => Piece::Zero(size),
                _ => Piece::Data(g.bytes(size as usize)),
            });
            at += size;
        }
        out
    }

    /// Writes `pieces` over `old` on `target` and checks the result byte for byte:
    /// kept ranges keep the old bytes, the rest is the new image, nothing beyond it moves.
    fn check(target: &Path, seed: u64, len: u64, room: u64) {
        let mut g = Gen(seed);
        let old = g.bytes(room as usize);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(target)
            .unwrap();
        file.write_all_at(&old, 0).unwrap();
        file.sync_all().unwrap();
        let pieces = pieces(&mut g, len);
        let mut want = old.clone();
        let mut at = 0usize;
        for p in &pieces {
            match p {
                Piece::Keep(n) => at += *n as usize,
                Piece::Zero(n) => {
                    want[at..at + *n as usize].fill(0);
                    at += *n as usize;
                }
                Piece::Data(d) => {
                    want[at..at + d.len()].copy_from_slice(d);
                    at += d.len();
                }
            }
        }
        let mut sink = Sink::open(target).unwrap();
        sink.begin_random(len).unwrap();
        sink.hold_current_head().unwrap();
        let disk = crate::blockdev::open_direct(target, false).unwrap().file;
        let mut w = RunWriter::new(&mut sink, &disk);
        for p in &pieces {
            match p {
                Piece::Keep(n) => w.keep(*n).unwrap(),
                Piece::Zero(n) => w.zero(*n).unwrap(),
                Piece::Data(d) => w.data(d).unwrap(),
            }
        }
        w.finish().unwrap();
        sink.finish().unwrap();
        sink.commit_head().unwrap();
        drop(sink);
        let mut got = vec![0u8; room as usize];
        let read = crate::blockdev::open_direct(target, false).unwrap().file;
        let mut buf = crate::blockdev::AlignedBuf::with_capacity(room as usize);
        let bytes = super::read_aligned(&read, 0, room, &mut buf).unwrap();
        got.copy_from_slice(bytes);
        if let Some(i) = (0..room as usize).find(|&i| got[i] != want[i]) {
            panic!(
                "seed {seed}: byte {i} is {:#x}, want {:#x} (old {:#x}); image length {len}",
                got[i], want[i], old[i]
            );
        }
    }

    #[test]
    fn runs_leave_kept_bytes_and_write_the_rest_on_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.img");
        for seed in 1..6u64 {
            std::fs::File::create(&path)
                .unwrap()
                .set_len(8 << 20)
                .unwrap();
            // An image length that is no multiple of the block: the tail is partial.
            check(&path, seed * 7919, (6 << 20) + 1234, 8 << 20);
        }
    }

    #[test]
    fn runs_leave_kept_bytes_and_write_the_rest_on_loop_devices() {
        for (sector, seed) in [(512, 11u64), (4096, 12), (512, 13)] {
            let lo = Loop::new(8 << 20, sector);
            let len = (6 << 20) + if sector == 512 { 1536 } else { 8192 };
            check(&lo.dev, seed, len, 8 << 20);
        }
    }
}
