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
//! 4. **Write**: one thread writes each chunk at every place the index lists it; the
//!    first MiB stays held back until every chunk is in, as for a stream.

mod fetch;
pub mod index;
pub(crate) mod report;
mod scan;
mod store;

pub use index::{is_index, ChunkDigest, Index, IndexError};
pub use report::{ChunkReport, Done, StoreReport};

use super::channel::ChannelReader;
use super::codec::Compression;
use super::container::Container;
use super::error::ImageError;
use super::sink::Sink;
use super::source::{Gate, Session};
use super::stages::{image_error, progress, Produced, Run};
use fetch::{From, Getter, StoreState};
use index::{Chunk, ChunkId};
use scan::ZeroIds;
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Decoded chunk bytes in flight at most (fetching threads × largest chunk).
const IN_FLIGHT_BYTES: u64 = 32 << 20;
/// Most chunk requests at once.
pub const CONNECTIONS: usize = 8;

/// A chunk id to fetch once and write at each of its places.
struct Job {
    chunk: Chunk,
    places: Vec<u64>,
    /// Where the scan saw its bytes on the target.
    copy_from: Option<u64>,
}

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
    let stores = open_stores(session, run, &url)?;
    // From here progress counts the image's bytes in place (kept or written), of its size.
    run.shared.total.store(index.len(), Ordering::Relaxed);
    run.shared.downloaded.store(0, Ordering::Relaxed);
    // Chunks land at any byte offset: through the page cache.
    sink.buffered();
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
fn open_stores(session: &Session, run: &Run, index_url: &str) -> Result<Stores, ImageError> {
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
    let client = session.client().map_err(|cause| ImageError::Fetch {
        url: urls[0].clone(),
        cause,
    })?;
    let states = urls
        .iter()
        .map(|u| {
            store::Store::new(u, &client, medium.is_some().then_some(&medium_dir))
                .map(StoreState::new)
                .map_err(|cause| ImageError::Stores { cause })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Stores {
        states,
        _medium: medium,
    })
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
    let client = session
        .client()
        .map_err(|cause| ImageError::Stores { cause })?;
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for u in &urls_of_stores {
        let result = store::Store::new(u, &client, _medium.is_some().then_some(&medium_dir))
            .and_then(|s| {
                let file = s
                    .get(&probe.id, probe.size * 2 + 4096, opts.stall_timeout)
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
        ..ChunkReport::default()
    };
    let mut jobs: Vec<Job> = Vec::new();
    let mut by_id: HashMap<ChunkId, usize> = HashMap::new();
    let mut zero_places = Vec::new();
    for (c, &here) in index.chunks.iter().zip(&scan.in_place) {
        by_id.entry(c.id).or_insert(usize::MAX);
        if here {
            report.in_place_bytes += c.size;
        } else if is_zero_chunk(c) {
            zero_places.push(*c);
        } else {
            match by_id.get(&c.id) {
                Some(&j) if j != usize::MAX => jobs[j].places.push(c.start),
                _ => {
                    by_id.insert(c.id, jobs.len());
                    jobs.push(Job {
                        chunk: *c,
                        places: vec![c.start],
                        copy_from: scan.found.get(&c.id).copied(),
                    });
                }
            }
        }
    }
    report.unique = by_id.len() as u64;
    placed(run, report.in_place_bytes);
    crate::runner::log::info(&format!(
        "{} of the image already on {} ({} read in {:.1} s); {} distinct chunks to get",
        crate::units::Bytes(report.in_place_bytes).human(),
        run.target.display(),
        crate::units::Bytes(scan.bytes_read).human(),
        report.scan_seconds,
        jobs.len()
    ));
    for (start, len) in runs(&zero_places) {
        zero_range(sink, start, len)?;
        report.zero_bytes += len;
        placed(run, len);
    }
    fetch_and_write(index, stores, &jobs, sink, run, &mut report)?;
    report.stores = stores.iter().map(StoreState::report).collect();
    Ok(report)
}

/// A fetched job: its number, its bytes and where they came from.
type Got = Result<(usize, Vec<u8>, From), ImageError>;

/// Neighbouring chunks merged into (start, length) runs.
fn runs(chunks: &[Chunk]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for c in chunks {
        match out.last_mut() {
            Some((s, l)) if *s + *l == c.start => *l += c.size,
            _ => out.push((c.start, c.size)),
        }
    }
    out
}

/// Makes `len` bytes at `start` zeros: the page-aligned middle without sending them
/// where the target allows (write-zeroes, a punched hole), the edges as data.
fn zero_range(sink: &mut Sink, start: u64, len: u64) -> Result<(), ImageError> {
    const PAGE: u64 = 4096;
    let end = start + len;
    let (mid_start, mid_end) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
    let zeros = [0u8; PAGE as usize];
    if mid_start >= mid_end {
        for at in (start..end).step_by(PAGE as usize) {
            let n = (end - at).min(PAGE) as usize;
            sink.write_at(at, &zeros[..n])?;
        }
        return Ok(());
    }
    sink.write_at(start, &zeros[..(mid_start - start) as usize])?;
    sink.zero_at(mid_start, mid_end - mid_start)?;
    sink.write_at(mid_end, &zeros[..(end - mid_end) as usize])
}

/// Fetches every job on a bounded number of threads and writes each as it comes.
fn fetch_and_write(
    index: &Index,
    stores: &[StoreState],
    jobs: &[Job],
    sink: &mut Sink,
    run: &Run,
    report: &mut ChunkReport,
) -> Result<(), ImageError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let workers = ((IN_FLIGHT_BYTES / index.max.max(1)) as usize)
        .clamp(1, CONNECTIONS)
        .min(jobs.len());
    let cfg = &run.opts.retry;
    let last_progress = Mutex::new(Instant::now());
    let getter = Getter {
        stores,
        digest: index.digest,
        retry: cfg,
        timeout: run.opts.stall_timeout.max(Duration::from_secs(10)) * 2,
        cancel: &run.shared.cancel,
        last_progress: &last_progress,
    };
    let next = AtomicUsize::new(0);
    let (tx, rx) = sync_channel::<Got>(workers);
    let target = run.target;
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (getter, next) = (&getter, &next);
            s.spawn(move || {
                let disk = match std::fs::File::open(target) {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = tx.send(Err(ImageError::Target {
                            path: target.to_path_buf(),
                            cause: e.to_string(),
                        }));
                        return;
                    }
                };
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(j) else { return };
                    let got = getter
                        .get(&job.chunk, job.copy_from, &disk, j)
                        .map(|(data, from)| (j, data, from))
                        .map_err(|cause| ImageError::Chunk {
                            id: job.chunk.id.to_string(),
                            start: job.chunk.start,
                            size: job.chunk.size,
                            cause,
                        });
                    let failed = got.is_err();
                    if tx.send(got).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let result = write_as_they_come(&rx, jobs, stores, sink, run, report);
        if result.is_err() {
            run.shared.cancel.store(true, Ordering::Relaxed);
        }
        drop(rx);
        result
    })
}

fn write_as_they_come(
    rx: &std::sync::mpsc::Receiver<Got>,
    jobs: &[Job],
    stores: &[StoreState],
    sink: &mut Sink,
    run: &Run,
    report: &mut ChunkReport,
) -> Result<(), ImageError> {
    let mut last_report = Instant::now();
    for got in rx {
        let (j, data, from) = got?;
        let job = &jobs[j];
        for &at in &job.places {
            sink.write_at(at, &data)?;
        }
        let n = job.chunk.size * job.places.len() as u64;
        match from {
            From::Disk => report.disk_bytes += n,
            From::Store(i) if stores[i].store.is_local() => report.local_bytes += n,
            From::Store(_) => report.network_bytes += n,
        }
        placed(run, n);
        if let Some(cb) = run
            .opts
            .progress
            .filter(|_| last_report.elapsed() >= run.opts.progress_interval)
        {
            cb(&progress(run.shared, run.started, false));
            last_report = Instant::now();
        }
    }
    report.network_compressed_bytes = stores
        .iter()
        .filter(|s| !s.store.is_local())
        .map(|s| s.report().bytes)
        .sum();
    Ok(())
}

/// Counts `n` more bytes of the image in place, for the progress reports.
fn placed(run: &Run, n: u64) {
    run.shared.written.fetch_add(n, Ordering::Relaxed);
    run.shared.downloaded.fetch_add(n, Ordering::Relaxed);
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
