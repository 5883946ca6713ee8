//! qcow2 images, written without staging them in memory or on disk.
//!
//! Two passes over the served file:
//!
//! 1. **Metadata** (`map.rs`): `Range` requests for the header, the L1 table and
//!    every L2 table; anything this writer does not handle (backing file,
//!    encryption, external data file, extended L2, unknown features, damage) is
//!    refused here, before a byte is written.
//! 2. **Data** (`extract.rs`): the whole file in one GET (resumed and mirrored
//!    like any image, its sha256/sha512 taken over every byte as served), cut
//!    into clusters as they stream by and written at their disk offsets; the
//!    tables must stream by unchanged; the gaps become zero runs.
//!
//! The written bytes' hash list is assembled per disk MiB (`digest.rs`), so a
//! read-back checks a qcow2 write exactly as it checks a raw one.

mod digest;
mod extract;
mod header;
mod map;
mod range;
#[cfg(test)]
mod testfile;

pub use header::{is_qcow2, parse_header, ClusterCompression, Header, Qcow2Error, MAGIC};
pub use map::{layout_of, Cluster, Layout};

use super::buf::{Pool, ALIGN};
use super::pipeline::{
    finish_outcome, join, stage, PoolUse, Produced, OUT_BUF, OUT_BUFS, OUT_DEPTH,
};
use super::sink::Sink;
use super::source::{Fetcher, Shared};
use super::{Compression, ImageError, WriteOptions, WriteOutcome};
use crate::plan::Digest;
use digest::GuestDigest;
use extract::{Extractor, Op};
use map::LayoutError;
use range::RangeSource;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Instant;

/// The metadata pass over the first URL that answers: its layout and the URL.
fn read_tables(urls: &[String], opts: &WriteOptions) -> Result<(Layout, String), ImageError> {
    let cfg = opts.fetch_config();
    let mut failures = Vec::new();
    for url in urls {
        let attempt = RangeSource::open(url, &cfg).and_then(|(mut src, head)| {
            let len = src.file_len();
            map::read_layout(&mut src, len, &head).map_err(|e| match e {
                LayoutError::Read(e) => e,
                LayoutError::Refused(cause) => ImageError::Qcow2 {
                    url: src.url().to_string(),
                    cause,
                },
            })
        });
        match attempt {
            Ok(layout) => return Ok((layout, url.clone())),
            // What the file holds will not differ on a mirror.
            Err(e @ ImageError::Qcow2 { .. }) => return Err(e),
            Err(e) => {
                crate::runner::log::warn(&format!("reading the qcow2 tables: {e}"));
                failures.push(e.to_string());
            }
        }
    }
    Err(ImageError::AllSourcesFailed { attempts: failures })
}

/// Writes the qcow2 image at `urls` onto `target`: its disk, not its file.
pub(super) fn write(
    urls: &[String],
    digest: &Digest,
    target: &Path,
    opts: &WriteOptions,
) -> Result<WriteOutcome, ImageError> {
    let started = Instant::now();
    let (layout, url) = read_tables(urls, opts)?;
    let h = &layout.header;
    crate::runner::log::info(&format!(
        "{url} is qcow2 v{}: a {}-byte disk in {} KiB clusters, {} of them with data",
        h.version,
        h.size,
        h.cluster_size() >> 10,
        layout.clusters.len()
    ));
    // Clusters smaller than a page would make unaligned direct writes: go through the cache.
    let mut sink = Sink::open_opts(target, opts.write_zeroes, h.cluster_size() >= ALIGN as u64)?;
    sink.begin_random(h.size)?;
    let (fetcher, shared, input) = Fetcher::for_image(urls, digest, opts);
    let fetcher = fetcher.expect_total(layout.file_len);
    let (ext_tx, ext_rx) = sync_channel(OUT_DEPTH);
    let (hash_tx, hash_rx) = sync_channel(OUT_DEPTH);
    let extractor = Extractor::new(&layout, input, &url, Pool::new(OUT_BUF, OUT_BUFS), ext_tx);
    // The written bytes' hash list is for the read-back only (see the raw pipeline).
    let mut guest = opts
        .readback
        .then(|| GuestDigest::new(h.size, h.cluster_size(), &layout.guest_data));
    let (fetched, extracted, hashed, sunk) = std::thread::scope(|s| {
        let sh = &*shared;
        let fetch = s.spawn(move || fetcher.run());
        let extract = s.spawn(move || stage(sh, || extractor.run(&sh.cancel)));
        let hash = s.spawn(|| stage(sh, || hash_stage(guest.as_mut(), ext_rx, hash_tx)));
        let write = s.spawn(|| stage(sh, || sink_stage(&mut sink, hash_rx, sh)));
        super::pipeline::report_until_done(&write, sh, started, opts);
        (join(fetch), join(extract), join(hash), join(write))
    });
    let (served, fetch_bufs) = fetched;
    super::pipeline::first_cause([
        served.as_ref().err(),
        extracted.as_ref().err(),
        hashed.as_ref().err(),
        sunk.as_ref().err(),
    ])?;
    let (served, out_bufs) = (served?, extracted?);
    sunk?;
    let (written_blake3, blocks) = match guest {
        None => (None, None),
        Some(guest) => {
            // Blocks too scattered in the file to hash in memory are hashed from the target.
            let evicted = guest.evicted();
            if !evicted.is_empty() {
                crate::runner::log::warn(&format!(
                    "{} MiB of the disk came in too scattered to hash as they streamed: their digests are read from {}",
                    evicted.len(),
                    target.display()
                ));
            }
            let from_target = hash_from_target(target, h.size, &evicted)?;
            let (hex, blocks) = guest.finish(true, &from_target).map_err(|block| ImageError::Qcow2 {
                url: url.clone(),
                cause: Qcow2Error::Damaged(format!(
                    "the stream ended before all of MiB {block} of the disk came"
                )),
            })?;
            (Some(hex), blocks)
        }
    };
    sink.commit_head()?;
    let produced = Produced {
        served,
        compression: Compression::None,
        qcow2: true,
        written_blake3,
        blocks,
        pools: PoolUse {
            fetch: fetch_bufs,
            out: out_bufs,
        },
    };
    finish_outcome(&mut sink, target, opts, &shared, started, produced).map(|(outcome, _)| outcome)
}

/// Takes the hash list of the written bytes, keyed by disk offset.
fn hash_stage(
    mut guest: Option<&mut GuestDigest>,
    rx: Receiver<Op>,
    tx: SyncSender<Op>,
) -> Result<(), ImageError> {
    loop {
        let op = rx.recv().map_err(|_| ImageError::Cancelled)?;
        let end = matches!(op, Op::End);
        if let (Op::Data(at, b), Some(g)) = (&op, guest.as_mut()) {
            g.add(*at, b);
        }
        tx.send(op).map_err(|_| ImageError::Cancelled)?;
        if end {
            return Ok(());
        }
    }
}

fn sink_stage(sink: &mut Sink, rx: Receiver<Op>, shared: &Shared) -> Result<(), ImageError> {
    loop {
        match rx.recv().map_err(|_| ImageError::Cancelled)? {
            Op::Data(at, b) => {
                sink.write_at(at, &b)?;
                shared.written.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
            Op::Zero(at, len) => {
                sink.zero_at(at, len)?;
                shared.written.fetch_add(len, Ordering::Relaxed);
            }
            Op::End => return sink.finish(),
        }
    }
}

/// The block digest of each listed MiB of `target` (of a `size`-byte image), after the write.
fn hash_from_target(
    target: &Path,
    size: u64,
    blocks: &[u64],
) -> Result<HashMap<u64, [u8; 32]>, ImageError> {
    let mut out = HashMap::new();
    if blocks.is_empty() {
        return Ok(out);
    }
    let fail = |e: std::io::Error| ImageError::Readback {
        path: target.to_path_buf(),
        cause: e.to_string(),
    };
    let f = std::fs::File::open(target).map_err(fail)?;
    let mut buf = vec![0u8; super::sink::ZERO_BLOCK];
    for &b in blocks {
        let at = b * super::sink::ZERO_BLOCK as u64;
        let len = (size - at).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..len], at).map_err(fail)?;
        out.insert(b, super::verify::block_digest(&buf[..len]));
    }
    Ok(out)
}
