//! casync-compatible chunked images: a blob index (`.caibx`) served like any image
//! (pinned by its digest, mirrors, resume), and the chunks it lists from chunk stores.
//!
//! 1. **Index** (`index.rs`): read whole from the stream, whose digest (and signature)
//!    the channel checks at its end, so nothing below runs on an unverified index.
//! 2. **Scan** (`scan.rs`): every chunk's place on the target is read and hashed; a
//!    chunk already there is neither fetched nor written, bytes another chunk needs
//!    are copied from where they were seen.
//! 3. **Fetch** (`fetch.rs`, `store.rs`): the rest from the stores, on a bounded
//!    number of threads that also decode (chunks are independent); each chunk is
//!    checked against its id before it is written; zero chunks are never fetched.
//! 4. **Write** (`deliver.rs`, `runs.rs`): one thread takes the image in order — kept,
//!    zeros, fetched — and writes it in large aligned runs; the first MiB stays held
//!    back until every chunk is in, as for a stream.

mod deliver;
mod fetch;
pub mod index;
pub(crate) mod report;
mod runs;
mod scan;
mod store;

pub use deliver::CONNECTIONS;
pub use index::{is_index, ChunkDigest, Index, IndexError};
pub use report::{ChunkReport, Done, StoreReport};

use super::channel::ChannelReader;
use super::codec::Compression;
use super::container::Container;
use super::error::ImageError;
use super::sink::Sink;
use super::source::{Gate, Session};
use super::stages::{image_error, Produced, Run};
use deliver::{placed, Job, Piece};
use fetch::StoreState;
use index::{Chunk, ChunkId};
use scan::{Depth, ZeroIds};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Writes the image whose index streams in on `input` onto `sink`.
pub(crate) fn write(
    session: &Session,
    mut input: ChannelReader,
    mut gate: Gate,
    sink: &mut Sink,
    run: &Run,
) -> Result<Produced, ImageError> {
    gate.open();
    let url = session.url(0).to_string();
    let mut bytes = Vec::new();
    (&mut input)
        .take(index::MAX_INDEX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| image_error(e).unwrap_or(ImageError::Cancelled))?;
    let index = Arc::new(Index::parse(&bytes).map_err(|e| ImageError::Index {
        url: url.clone(),
        cause: e.to_string(),
    })?);
    crate::runner::log::info(&format!(
        "{url} is a casync index: {} in {} chunks ({:?} ids, sizes {}:{}:{})",
        crate::units::Bytes(index.len()).human(),
        index.chunks.len(),
        index.digest,
        index.min,
        index.avg,
        index.max
    ));
    let stores = open_stores(run, &url)?;
    // From here progress counts the image's bytes in place (kept or written), of its size.
    run.shared.total.store(index.len(), Ordering::Relaxed);
    run.shared.downloaded.store(0, Ordering::Relaxed);
    sink.begin_random(index.len())?;
    sink.hold_current_head()?;
    let report = write_chunks(&index, &stores.states, sink, run)?;
    sink.finish()?;
    Ok(Produced {
        compression: Compression::None,
        container: Container::Casync,
        written_blake3: None,
        blocks: None,
        out_bufs: 0,
        chunked: Some(Box::new(Done { report, index })),
    })
}

/// The stores to read from and, for `medium:` ones, the mounted medium.
struct Stores {
    states: Vec<StoreState>,
    _medium: Option<crate::boot::discover::ReadOnlyMount>,
}

/// The document's stores, or casync's default: `default.castr` beside the index.
fn open_stores(run: &Run, index_url: &str) -> Result<Stores, ImageError> {
    let urls: Vec<String> = if run.opts.stores.is_empty() {
        vec![default_store(index_url)]
    } else {
        run.opts.stores.clone()
    };
    let medium_dir = std::path::PathBuf::from("/run/imprint/medium-store");
    let medium = urls
        .iter()
        .any(|u| u.starts_with(store::MEDIUM))
        .then(|| crate::boot::discover::mount_medium(&medium_dir))
        .flatten();
    let conf = http_conf(run.opts);
    let states = urls
        .iter()
        .map(|u| {
            store::Store::new(u, &conf, medium.is_some().then_some(&medium_dir))
                .map(StoreState::new)
                .map_err(|cause| ImageError::Stores { cause })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Stores {
        states,
        _medium: medium,
    })
}

/// How chunk stores are reached over http(s): the session's trust and connect timeout.
fn http_conf(opts: &super::WriteOptions) -> store::HttpConf {
    let cfg = opts.fetch_config();
    store::HttpConf {
        ca_bundle: cfg.ca_bundle,
        connect_timeout: cfg.connect_timeout,
    }
}

/// Whether `url` names a casync blob index by its suffix.
pub fn is_index_url(url: &str) -> bool {
    url.split(['?', '#'])
        .next()
        .is_some_and(|p| p.ends_with(".caibx"))
}

/// The check made before any disk is touched: the index is fetched (checked against
/// its digest) and every store is asked for one of its chunks, which must decode to its
/// id. Passes when at least one store gives it (the others are named); `Ok(None)` when
/// the image is not an index and no stores were given.
pub fn check_stores(
    urls: &[String],
    digest: Option<&crate::plan::Digest>,
    opts: &super::WriteOptions,
) -> Result<Option<String>, ImageError> {
    let session = Session::new(urls, digest, opts.fetch_config());
    let super::source::Stream {
        fetcher,
        mut input,
        mut gate,
        ..
    } = session.stream()?;
    gate.open();
    let (served, read) = std::thread::scope(|s| {
        let fetch = s.spawn(move || fetcher.run());
        let mut bytes = Vec::new();
        let read = (&mut input)
            .take(index::MAX_INDEX_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map(|_| bytes);
        drop(input);
        (super::stages::join(fetch).0, read)
    });
    let bytes = match (served, read) {
        (Err(e), _) => return Err(e),
        (Ok(_), Err(e)) => return Err(image_error(e).unwrap_or(ImageError::Cancelled)),
        (Ok(_), Ok(b)) => b,
    };
    if !is_index(&bytes) {
        if opts.stores.is_empty() {
            return Ok(None);
        }
        return Err(ImageError::Index {
            url: urls[0].clone(),
            cause: "image.stores are given, but this is not a casync blob index (.caibx)".into(),
        });
    }
    let index = Index::parse(&bytes).map_err(|e| ImageError::Index {
        url: urls[0].clone(),
        cause: e.to_string(),
    })?;
    let zero = ZeroIds::default().get(index.max, index.digest);
    let Some(probe) = index.chunks.iter().find(|c| c.id != zero) else {
        return Ok(Some(format!("{} chunks, all zero", index.chunks.len())));
    };
    let urls_of_stores = if opts.stores.is_empty() {
        vec![default_store(&urls[0])]
    } else {
        opts.stores.clone()
    };
    let medium_dir = std::path::PathBuf::from("/run/imprint/medium-store");
    let _medium = urls_of_stores
        .iter()
        .any(|u| u.starts_with(store::MEDIUM))
        .then(|| crate::boot::discover::mount_medium(&medium_dir))
        .flatten();
    let conf = http_conf(opts);
    let mut conn = store::Conn::default();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for u in &urls_of_stores {
        let result = store::Store::new(u, &conf, _medium.is_some().then_some(&medium_dir))
            .and_then(|s| {
                let mut file = Vec::new();
                let limit = probe.size * 2 + 4096;
                s.get(&probe.id, limit, opts.stall_timeout, &mut file, &mut conn)
                    .map_err(|m| match m {
                        store::Miss::Absent => "does not have it".to_string(),
                        store::Miss::Failed(cause) => cause,
                    })?;
                store::decode(&file, probe.size, &probe.id, index.digest)
                    .map_err(|c| format!("its copy is corrupt: {}", c.0))
            });
        match result {
            Ok(_) => ok.push(u.clone()),
            Err(e) => failed.push(format!("{u}: {e}")),
        }
    }
    if ok.is_empty() {
        return Err(ImageError::Stores {
            cause: format!(
                "no store gives chunk {} (image bytes {}..{}): {}",
                probe.id,
                probe.start,
                probe.end(),
                failed.join("; ")
            ),
        });
    }
    let mut found = format!(
        "a casync index of {} chunks ({}); chunk {} served by {}",
        index.chunks.len(),
        crate::units::Bytes(index.len()).human(),
        probe.id,
        ok.join(", ")
    );
    if !failed.is_empty() {
        found.push_str(&format!(" (not by {})", failed.join("; ")));
    }
    Ok(Some(found))
}

/// `default.castr` in the index's folder (casync's convention).
pub fn default_store(index_url: &str) -> String {
    let base = index_url.split(['?', '#']).next().unwrap_or(index_url);
    match base.rfind('/') {
        Some(i) => format!("{}default.castr/", &base[..=i]),
        None => "default.castr/".into(),
    }
}

/// Scans the target, then fetches and writes what is not there yet.
fn write_chunks(
    index: &Index,
    stores: &[StoreState],
    sink: &mut Sink,
    run: &Run,
) -> Result<ChunkReport, ImageError> {
    let zeros = ZeroIds::default();
    let zero_max = zeros.get(index.max, index.digest);
    let is_zero_chunk = |c: &Chunk| c.size == index.max && c.id == zero_max;
    // Where zeros cost nothing to make, casync's zero chunks are zeroed, not read.
    let cheap = sink.zeroes_cheaply();
    let skip = |c: &Chunk| cheap && is_zero_chunk(c);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let t = Instant::now();
    let scan = scan::scan(
        run.target,
        index,
        &zeros,
        threads,
        &run.shared.cancel,
        &skip,
        Depth::SampleFirst,
    )
    .map_err(|e| ImageError::Target {
        path: run.target.to_path_buf(),
        cause: format!("reading it to find the chunks it already holds: {e}"),
    })?;
    let mut report = ChunkReport {
        chunks: index.chunks.len() as u64,
        digest: match index.digest {
            ChunkDigest::Sha256 => "sha256",
            ChunkDigest::Sha512_256 => "sha512-256",
        }
        .into(),
        scanned_bytes: scan.bytes_read,
        scan_seconds: t.elapsed().as_secs_f64(),
        scan_sampled: scan.sampled,
        ..ChunkReport::default()
    };
    let mut jobs: Vec<Job> = Vec::new();
    let mut job_of: HashMap<ChunkId, usize> = HashMap::new();
    let mut ids: HashSet<ChunkId> = HashSet::new();
    let mut pieces = Vec::with_capacity(index.chunks.len());
    for (c, &here) in index.chunks.iter().zip(&scan.in_place) {
        ids.insert(c.id);
        pieces.push(if here {
            report.in_place_bytes += c.size;
            Piece::Keep
        } else if is_zero_chunk(c) {
            Piece::Zero
        } else {
            // Jobs are numbered in the order of their first place.
            let n = *job_of.entry(c.id).or_insert_with(|| {
                jobs.push(Job {
                    chunk: *c,
                    places: Vec::new(),
                    copy_from: scan.found.get(&c.id).copied(),
                });
                jobs.len() - 1
            });
            jobs[n].places.push(c.start);
            Piece::Fetch(n)
        });
    }
    report.unique = ids.len() as u64;
    placed(run, report.in_place_bytes);
    crate::runner::log::info(&match scan.sampled {
        Some(n) => format!(
            "at most 2 of {n} places sampled on {} hold a chunk of the image: not reading the rest; {} distinct chunks to get",
            run.target.display(),
            jobs.len()
        ),
        None => format!(
            "{} of the image already on {} ({} read in {:.1} s); {} distinct chunks to get",
            crate::units::Bytes(report.in_place_bytes).human(),
            run.target.display(),
            crate::units::Bytes(scan.bytes_read).human(),
            report.scan_seconds,
            jobs.len()
        ),
    });
    deliver::fetch_and_write(index, stores, &jobs, &pieces, sink, run, &mut report)?;
    report.stores = stores.iter().map(StoreState::report).collect();
    Ok(report)
}

/// After the head is down: every chunk read back from the target must match its id.
pub(crate) fn read_back(target: &std::path::Path, done: &mut Done) -> Result<(), ImageError> {
    let never = std::sync::atomic::AtomicBool::new(false);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let scan = scan::scan(
        target,
        &done.index,
        &ZeroIds::default(),
        threads,
        &never,
        &|_| false,
        Depth::Full,
    )
    .map_err(|e| ImageError::Readback {
        path: target.to_path_buf(),
        cause: e.to_string(),
    })?;
    let bad: Vec<&Chunk> = done
        .index
        .chunks
        .iter()
        .zip(&scan.in_place)
        .filter(|(_, &ok)| !ok)
        .map(|(c, _)| c)
        .collect();
    if let Some(first) = bad.first() {
        return Err(ImageError::Readback {
            path: target.to_path_buf(),
            cause: format!(
                "{} chunks differ from the index after writing, the first at byte {} \
                 ({} bytes, id {}): the device lost or changed writes",
                bad.len(),
                first.start,
                first.size,
                first.id
            ),
        });
    }
    done.report.readback_chunks = Some(done.index.chunks.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_store_sits_beside_the_index() {
        assert_eq!(
            super::default_store("http://h/img/v2.caibx"),
            "http://h/img/default.castr/"
        );
        assert_eq!(
            super::default_store("file:///srv/v2.caibx?x=1"),
            "file:///srv/default.castr/"
        );
    }
}
