//! The data pass: the whole file streams by once, in file order; the clusters
//! the map names are cut out of it (inflated when compressed) and sent on with
//! their disk offsets, the tables are checked against the metadata pass, and
//! the gaps between data clusters are sent on as zero runs.

use super::header::{ClusterCompression, Qcow2Error};
use super::map::{Cluster, Layout, Table};
use crate::image::buf::{Pool, Pooled};
use crate::image::channel::ChannelReader;
use crate::image::codec::Compression;
use crate::image::error::ImageError;
use crate::image::stages::{drain, image_error};
use sha2::{Digest as _, Sha256};
use std::io::BufRead;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::SyncSender;

/// One instruction for the disk.
pub(super) enum Op {
    /// These bytes at this disk offset.
    Data(u64, Pooled),
    /// Zeros over `len` bytes at this disk offset.
    Zero(u64, u64),
    /// Everything was sent and the served digest matched.
    End,
}

/// The bytes of the file between the start of the current piece and the read position.
struct Window {
    input: ChannelReader,
    bytes: Vec<u8>,
    /// File offset of `bytes[0]`.
    start: u64,
    /// File offset of the next byte from the stream.
    pos: u64,
    url: String,
}

impl Window {
    /// File bytes `start..end`; `start` never goes back between calls.
    fn get(&mut self, start: u64, end: u64) -> Result<&[u8], ImageError> {
        let drop = start
            .saturating_sub(self.start)
            .min(self.bytes.len() as u64);
        self.bytes.drain(..drop as usize);
        self.start += drop;
        if self.bytes.is_empty() {
            self.start = self.pos;
        }
        while self.pos < end {
            let avail = self
                .input
                .fill_buf()
                .map_err(|e| input_error(e, &self.url))?;
            if avail.is_empty() {
                let cause = format!("the file ended at byte {} but its tables need byte {end}: it changed on the server; start the write again", self.pos);
                return Err(ImageError::Fetch {
                    url: self.url.clone(),
                    cause,
                });
            }
            let n = if self.pos < start {
                avail.len().min((start - self.pos) as usize)
            } else {
                let n = avail.len().min((end - self.pos) as usize);
                self.bytes.extend_from_slice(&avail[..n]);
                n
            };
            self.input.consume(n);
            self.pos += n as u64;
            if self.pos <= start {
                self.start = self.pos;
            }
        }
        Ok(&self.bytes[(start - self.start) as usize..(end - self.start) as usize])
    }
}

fn input_error(e: std::io::Error, url: &str) -> ImageError {
    image_error(e).unwrap_or_else(|e| ImageError::Fetch {
        url: url.to_string(),
        cause: e.to_string(),
    })
}

/// Cluster inflaters, reused from one compressed cluster to the next.
struct Inflate {
    deflate: flate2::Decompress,
    zstd: Option<zstd::stream::raw::Decoder<'static>>,
}

impl Inflate {
    /// Fills `out` (one cluster) from `input`; the compressed bytes may be followed by padding.
    fn cluster(
        &mut self,
        kind: ClusterCompression,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<(), String> {
        let filled = match kind {
            ClusterCompression::Deflate => {
                self.deflate.reset(false);
                let before = self.deflate.total_out();
                self.deflate
                    .decompress(input, out, flate2::FlushDecompress::Finish)
                    .map_err(|e| format!("does not inflate: {e}"))?;
                (self.deflate.total_out() - before) as usize
            }
            ClusterCompression::Zstd => {
                use zstd::stream::raw::Operation;
                if self.zstd.is_none() {
                    self.zstd = Some(zstd::stream::raw::Decoder::new().map_err(|e| e.to_string())?);
                }
                let z = self.zstd.as_mut().expect("created above");
                z.reinit().map_err(|e| e.to_string())?;
                let (mut read, mut written) = (0, 0);
                while written < out.len() {
                    let s = z
                        .run_on_buffers(&input[read..], &mut out[written..])
                        .map_err(|e| format!("does not decompress with zstd: {e}"))?;
                    read += s.bytes_read;
                    written += s.bytes_written;
                    if s.remaining == 0 || (s.bytes_read == 0 && s.bytes_written == 0) {
                        break;
                    }
                }
                written
            }
        };
        if filled != out.len() {
            return Err(format!(
                "decompresses to {filled} bytes, not the {}-byte cluster",
                out.len()
            ));
        }
        Ok(())
    }
}

/// Cuts the clusters of `layout` out of the stream and sends them to `tx`.
pub(super) struct Extractor<'a> {
    layout: &'a Layout,
    window: Window,
    inflate: Inflate,
    pool: Pool,
    /// Output being gathered: its disk offset and bytes (contiguous on the disk).
    batch: Option<(u64, Pooled)>,
    /// Next index into `layout.guest_data` and the disk offset up to which zero runs were sent.
    zeroed: (usize, u64),
    tx: SyncSender<Op>,
    url: String,
}

impl<'a> Extractor<'a> {
    /// An extractor reading `input` (the served bytes of `url`), gathering output in `pool`'s buffers.
    pub(super) fn new(
        layout: &'a Layout,
        input: ChannelReader,
        url: &str,
        pool: Pool,
        tx: SyncSender<Op>,
    ) -> Self {
        let window = Window {
            input,
            bytes: Vec::new(),
            start: 0,
            pos: 0,
            url: url.to_string(),
        };
        let inflate = Inflate {
            deflate: flate2::Decompress::new(false),
            zstd: None,
        };
        Extractor {
            layout,
            window,
            inflate,
            pool,
            batch: None,
            zeroed: (0, 0),
            tx,
            url: url.to_string(),
        }
    }

    /// Runs to the end of the stream; the served digest is checked before `Op::End` goes.
    pub(super) fn run(mut self, cancel: &AtomicBool) -> Result<usize, ImageError> {
        let (mut c, mut t) = (0, 0);
        let layout = self.layout;
        let (clusters, tables) = (&layout.clusters, &layout.tables);
        // Tables and clusters merged in file order.
        while c < clusters.len() || t < tables.len() {
            let table_first =
                t < tables.len() && (c == clusters.len() || tables[t].offset <= clusters[c].host);
            if table_first {
                self.check_table(&tables[t])?;
                t += 1;
            } else {
                self.cluster(&clusters[c], cancel)?;
                c += 1;
            }
        }
        self.flush()?;
        self.zeros_before(self.layout.header.size)?;
        drain(&mut self.window.input, Compression::None)?;
        self.send(Op::End)?;
        Ok(self.pool.allocated())
    }

    fn send(&self, op: Op) -> Result<(), ImageError> {
        self.tx.send(op).map_err(|_| ImageError::Cancelled)
    }

    fn check_table(&mut self, t: &Table) -> Result<(), ImageError> {
        let bytes = self.window.get(t.offset, t.offset + t.len)?;
        if <[u8; 32]>::from(Sha256::digest(bytes)) != t.sha256 {
            let cause = Qcow2Error::Changed {
                what: t.what,
                offset: t.offset,
            };
            return Err(ImageError::Qcow2 {
                url: self.url.clone(),
                cause,
            });
        }
        Ok(())
    }

    fn cluster(&mut self, c: &Cluster, cancel: &AtomicBool) -> Result<(), ImageError> {
        let layout = self.layout;
        let h = &layout.header;
        let cs = h.cluster_size() as usize;
        let at = c.guest * cs as u64;
        let out_len = (h.size - at).min(cs as u64) as usize;
        let joins = self
            .batch
            .as_ref()
            .is_some_and(|(g, b)| g + b.len() as u64 == at && b.len() + cs <= b.capacity());
        if !joins {
            self.flush()?;
            let buf = self.pool.get(cancel).ok_or(ImageError::Cancelled)?;
            self.batch = Some((at, buf));
        }
        let (_, buf) = self.batch.as_mut().expect("batch ensured above");
        let len = buf.len();
        let bytes = self.window.get(c.host, c.host + u64::from(c.host_len))?;
        let out = &mut buf.spare()[len..len + cs];
        if c.compressed {
            self.inflate
                .cluster(h.compression, bytes, out)
                .map_err(|cause| ImageError::Qcow2 {
                    url: self.url.clone(),
                    cause: Qcow2Error::BadCompressedCluster {
                        offset: c.host,
                        cause,
                    },
                })?;
        } else {
            // A cluster cut short by the end of the file reads as zeros after it.
            out[..bytes.len()].copy_from_slice(bytes);
            out[bytes.len()..].fill(0);
        }
        buf.set_len(len + out_len);
        Ok(())
    }

    /// Sends the gathered output, then the zero runs on the disk before it.
    fn flush(&mut self) -> Result<(), ImageError> {
        if let Some((at, buf)) = self.batch.take() {
            self.send(Op::Data(at, buf))?;
            self.zeros_before(at)?;
        }
        Ok(())
    }

    /// Sends the runs between data clusters that lie before disk offset `until`.
    fn zeros_before(&mut self, until: u64) -> Result<(), ImageError> {
        let cs = self.layout.header.cluster_size();
        let size = self.layout.header.size;
        let data = &self.layout.guest_data;
        let (mut i, mut from) = self.zeroed;
        while from < until {
            let next = data.get(i).map_or(size, |g| g * cs);
            if next > from {
                let end = next.min(until);
                self.tx
                    .send(Op::Zero(from, end - from))
                    .map_err(|_| ImageError::Cancelled)?;
                from = end;
                continue;
            }
            from = from.max(next + cs).min(size);
            i += 1;
        }
        self.zeroed = (i, from);
        Ok(())
    }
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
