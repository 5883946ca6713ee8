//! qcow2 images, written without staging them in memory or on disk.
//!
//! One download of the served file, with a look aside at its tables:
//!
//! 1. **Metadata** (`tables.rs`, `map.rs`): the header from the stream's first
//!    bytes (which chose this writer), then `Range` reads of the L1 table and
//!    every L2 table through the same session, while the stream waits; anything
//!    this writer does not handle (backing file, encryption, external data file,
//!    extended L2, unknown features, damage) is refused here, before a byte is
//!    written.
//! 2. **Data** (`extract.rs`): the same stream read on (resumed and mirrored
//!    like any image, its sha256/sha512 taken over every byte as served), cut
//!    into clusters as they stream by and written at their disk offsets; the
//!    tables must stream by unchanged; the gaps become zero runs.
//!
//! The written bytes' hash list is assembled per disk MiB (`digest.rs`), so a
//! read-back checks a qcow2 write exactly as it checks a raw one.

mod digest;
mod extract;
pub(super) mod header;
mod map;
mod tables;
#[cfg(test)]
mod testfile;

pub use header::{is_qcow2, parse_header, ClusterCompression, Header, Qcow2Error, MAGIC};
pub use map::{layout_of, Cluster, Layout};

use super::buf::{Pool, ALIGN};
use super::channel::ChannelReader;
use super::codec::Compression;
use super::container::Container;
use super::error::ImageError;
use super::sink::{Sink, ZERO_BLOCK};
use super::source::{Gate, Session};
use super::stages::{
    first_cause, join, report_until_done, stage, Produced, Run, Shared, OUT_BUF, OUT_BUFS,
    OUT_DEPTH,
};
use super::verify::block_digest;
use digest::GuestDigest;
use extract::{Extractor, Op};
use std::collections::HashMap;
use std::io::BufRead;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Writes the qcow2 file streaming in on `input` onto `sink`: its disk, not its file.
/// The download waits behind `gate` while the tables are read; the head stays held
/// back for the caller to commit.
pub(crate) fn write(
    session: &Session,
    mut input: ChannelReader,
    mut gate: Gate,
    sink: &mut Sink,
    run: &Run,
) -> Result<Produced, ImageError> {
    let head = input.fill_buf().map_err(|_| ImageError::Cancelled)?;
    let head = head[..head.len().min(tables::HEAD_BYTES)].to_vec();
    let (layout, url) = tables::read_tables(session, &head, run.shared.total())?;
    let h = &layout.header;
    crate::runner::log::info(&format!(
        "{url} is qcow2 v{}: a {}-byte disk in {} KiB clusters, {} of them with data",
        h.version,
        h.size,
        h.cluster_size() >> 10,
        layout.clusters.len()
    ));
    // Clusters smaller than a page would make unaligned direct writes: go through the cache.
    if h.cluster_size() < ALIGN as u64 {
        sink.buffered();
    }
    sink.begin_random(h.size)?;
    gate.open();
    let (ext_tx, ext_rx) = sync_channel(OUT_DEPTH);
    let (hash_tx, hash_rx) = sync_channel(OUT_DEPTH);
    let extractor = Extractor::new(&layout, input, &url, Pool::new(OUT_BUF, OUT_BUFS), ext_tx);
    // The written bytes' hash list is for the read-back only (see the sequential writer).
    let mut guest = run
        .opts
        .readback
        .then(|| GuestDigest::new(h.size, h.cluster_size(), &layout.guest_data));
    let sh = run.shared;
    let (extracted, hashed, sunk) = std::thread::scope(|s| {
        let extract = s.spawn(move || stage(sh, || extractor.run(&sh.cancel)));
        let hash = s.spawn(|| stage(sh, || hash_stage(guest.as_mut(), ext_rx, hash_tx)));
        let write = s.spawn(|| stage(sh, || sink_stage(sink, hash_rx, sh)));
        report_until_done(&write, run);
        (join(extract), join(hash), join(write))
    });
    first_cause([
        extracted.as_ref().err(),
        hashed.as_ref().err(),
        sunk.as_ref().err(),
    ])?;
    let out_bufs = extracted?;
    let (written_blake3, blocks) = match guest {
        None => (None, None),
        Some(guest) => written_hash_list(guest, run.target, h.size, &url)?,
    };
    Ok(Produced {
        compression: Compression::None,
        container: Container::Qcow2,
        written_blake3,
        blocks,
        out_bufs,
        chunked: None,
    })
}

/// The hash list of the disk written, from the stream and, for MiBs too
/// scattered in the file to hash as they came, from the target.
fn written_hash_list(
    guest: GuestDigest,
    target: &Path,
    size: u64,
    url: &str,
) -> Result<(Option<String>, Option<Vec<u64>>), ImageError> {
    let evicted = guest.evicted();
    if !evicted.is_empty() {
        crate::runner::log::warn(&format!(
            "{} MiB of the disk came in too scattered to hash as they streamed: their digests are read from {}",
            evicted.len(),
            target.display()
        ));
    }
    let from_target = hash_from_target(target, size, &evicted)?;
    let (hex, blocks) = guest
        .finish(true, &from_target)
        .map_err(|block| ImageError::Qcow2 {
            url: url.to_string(),
            cause: Qcow2Error::Damaged(format!(
                "the stream ended before all of MiB {block} of the disk came"
            )),
        })?;
    Ok((Some(hex), blocks))
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
    let mut buf = vec![0u8; ZERO_BLOCK];
    for &b in blocks {
        let at = b * ZERO_BLOCK as u64;
        let len = (size - at).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..len], at).map_err(fail)?;
        out.insert(b, block_digest(&buf[..len]));
    }
    Ok(out)
}
