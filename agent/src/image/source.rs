//! The served bytes: http(s) and file URLs, mirrors in turn, resumed with
//! `Range` after a drop or stall, retried with bounded backoff, hashed as they
//! arrive and handed on in pooled buffers.

use super::buf::{Pool, Pooled};
use super::channel::ChannelReader;
use super::verify::Hasher;
use super::{ImageError, RetryPolicy, WriteOptions};
use crate::plan::{Digest, DigestAlgorithm};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of one download buffer.
pub(crate) const FETCH_BUF: usize = 1 << 20;
/// Download buffers in circulation (filling, queued, being decoded).
pub(crate) const FETCH_BUFS: usize = 4;
/// Depth of the channel from the download to the decoder.
pub(crate) const FETCH_DEPTH: usize = 2;

/// What the fetch stage needs from the options (owned: it may outlive the caller's borrow).
#[derive(Clone, Debug)]
pub(crate) struct FetchConfig {
    pub ca_bundle: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub stall_timeout: Duration,
    pub retry: RetryPolicy,
}

/// Counters shared by the stages, read by the progress reporter.
#[derive(Default)]
pub(crate) struct Shared {
    pub downloaded: AtomicU64,
    /// Size of the served file; 0 while unknown.
    pub total: AtomicU64,
    pub written: AtomicU64,
    /// Set when any stage fails, so the others stop waiting.
    pub cancel: AtomicBool,
}

/// A message from the download to the decoder.
pub(crate) enum Msg {
    Data(Pooled),
    End(Served),
}

/// The download's summary, sent after the last byte.
#[derive(Clone, Debug)]
pub(crate) struct Served {
    pub url: String,
    pub bytes: u64,
    pub algorithm: DigestAlgorithm,
    pub actual_hex: String,
    pub resumes: u32,
}

/// What to do after an attempt failed.
enum Next {
    /// Try the same URL again, after this wait (else the backoff).
    Retry(Option<Duration>),
    /// This URL will not work: go to the next mirror.
    NextSource,
}

struct Failure {
    error: ImageError,
    next: Next,
    /// Nothing answered: no connection, or no response to the request.
    no_answer: bool,
}

fn retry(error: ImageError) -> Failure {
    Failure {
        error,
        next: Next::Retry(None),
        no_answer: false,
    }
}

/// A URL's last failure after its retries ran out, and whether anything answered.
struct GaveUp {
    error: ImageError,
    no_answer: bool,
}

fn next_source(error: ImageError) -> Failure {
    Failure {
        error,
        next: Next::NextSource,
        no_answer: false,
    }
}

/// The download stage: owns the position, the digest and the buffer being filled.
pub(crate) struct Fetcher {
    urls: Vec<String>,
    cfg: FetchConfig,
    shared: Arc<Shared>,
    tx: SyncSender<Msg>,
    pool: Pool,
    client: Option<reqwest::blocking::Client>,
    hasher: Option<Hasher>,
    algorithm: DigestAlgorithm,
    /// Bytes received, hashed and kept so far: where a resume starts.
    offset: u64,
    total: Option<u64>,
    buf: Option<Pooled>,
    /// Strong validator (ETag or Last-Modified) per URL, for `If-Range`.
    validators: Vec<Option<String>>,
    resumes: u32,
    /// When the last byte arrived (None before the first).
    last_byte: Option<Instant>,
}

impl Fetcher {
    /// A download of `urls` (tried in order), not started yet: the fetcher, the state it
    /// shares with the other stages, and the reader its bytes come out of, checked
    /// against `digest` at their end.
    pub(crate) fn for_image(
        urls: &[String],
        digest: &Digest,
        opts: &WriteOptions,
    ) -> (Fetcher, Arc<Shared>, ChannelReader) {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = sync_channel(FETCH_DEPTH);
        let fetcher = Fetcher::new(
            urls.to_vec(),
            digest.algorithm,
            opts.fetch_config(),
            shared.clone(),
            tx,
        );
        (fetcher, shared, ChannelReader::new(rx, digest.clone()))
    }

    /// A fetcher for `urls` (tried in order) sending to `tx`.
    fn new(
        urls: Vec<String>,
        algorithm: DigestAlgorithm,
        cfg: FetchConfig,
        shared: Arc<Shared>,
        tx: SyncSender<Msg>,
    ) -> Fetcher {
        let n = urls.len();
        Fetcher {
            urls,
            cfg,
            shared,
            tx,
            pool: Pool::new(FETCH_BUF, FETCH_BUFS),
            client: None,
            hasher: Some(Hasher::new(algorithm)),
            algorithm,
            offset: 0,
            total: None,
            buf: None,
            validators: vec![None; n],
            resumes: 0,
            last_byte: None,
        }
    }

    /// Expects a file of `total` bytes (known from an earlier look at it): a source
    /// serving another size is serving another file.
    pub(crate) fn expect_total(mut self, total: u64) -> Fetcher {
        self.total = Some(total);
        self.shared.total.store(total, Ordering::Relaxed);
        self
    }

    /// Runs to the end of the stream; returns its summary and how many buffers it allocated.
    pub(crate) fn run(mut self) -> (Result<Served, ImageError>, usize) {
        let result = self.run_sources();
        if result.is_err() {
            self.shared.cancel.store(true, Ordering::SeqCst);
        }
        (result, self.pool.allocated())
    }

    fn run_sources(&mut self) -> Result<Served, ImageError> {
        let policy = self.cfg.retry.clone();
        loop {
            let mut failures: Vec<GaveUp> = Vec::new();
            for idx in 0..self.urls.len() {
                match self.run_one(idx) {
                    Ok(()) => return self.finish(idx),
                    Err(g) if matches!(g.error, ImageError::Cancelled) => return Err(g.error),
                    Err(g) => {
                        crate::runner::log::warn(&format!("image source failed: {}", g.error));
                        failures.push(g);
                    }
                }
            }
            // A download that had begun and now reaches nobody is a network outage, not
            // a wrong URL: keep trying every source for a while, then give up.
            let quiet = self.last_byte.map(|t| t.elapsed());
            if failures.iter().all(|g| g.no_answer) && quiet.is_some_and(|q| q < policy.outage) {
                let left = policy.outage - quiet.unwrap_or_default();
                crate::runner::log::warn(&format!(
                    "no image source answers {} into the download; trying them again for up to {} s more",
                    crate::units::Bytes(self.offset).human(),
                    left.as_secs()
                ));
                self.sleep(policy.max_backoff.min(left))?;
                continue;
            }
            let mut errors: Vec<ImageError> = failures.into_iter().map(|g| g.error).collect();
            if errors.len() == 1 {
                return Err(errors.remove(0));
            }
            return Err(ImageError::AllSourcesFailed {
                attempts: errors.iter().map(|e| e.to_string()).collect(),
            });
        }
    }

    /// Tries one URL until the stream ends, it fails for good, or its retries run out.
    fn run_one(&mut self, idx: usize) -> Result<(), GaveUp> {
        let policy = self.cfg.retry.clone();
        let mut failed_in_a_row = 0u32;
        let mut backoff = policy.initial_backoff;
        let cancelled = || GaveUp { error: ImageError::Cancelled, no_answer: false };
        loop {
            self.check_cancel().map_err(|_| cancelled())?;
            let before = self.offset;
            let failure = match self.attempt(idx) {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            if matches!(failure.error, ImageError::Cancelled) {
                return Err(cancelled());
            }
            let gave_up = |f: Failure| GaveUp { error: f.error, no_answer: f.no_answer };
            let wait = match failure.next {
                Next::NextSource => return Err(gave_up(failure)),
                Next::Retry(wait) => wait,
            };
            // Progress resets the budget: a flaky link that keeps delivering is not a dead one.
            let progressed = self.offset > before;
            if progressed {
                failed_in_a_row = 0;
                backoff = policy.initial_backoff;
            }
            failed_in_a_row += 1;
            if failed_in_a_row > policy.attempts {
                return Err(gave_up(failure));
            }
            let wait = match wait {
                Some(w) => w.min(policy.max_retry_after),
                // A connection that delivered and then dropped is resumed at once;
                // backoff is for sources that deliver nothing.
                None if progressed => Duration::ZERO,
                None => {
                    let w = backoff;
                    backoff = (backoff * 2).min(policy.max_backoff);
                    w
                }
            };
            crate::runner::log::warn(&format!(
                "{}; retrying in {:.1} s ({failed_in_a_row} of {})",
                failure.error,
                wait.as_secs_f64(),
                policy.attempts
            ));
            self.sleep(wait).map_err(|_| cancelled())?;
        }
    }

    fn finish(&mut self, idx: usize) -> Result<Served, ImageError> {
        self.emit()?;
        let hasher = self.hasher.take().ok_or(ImageError::Cancelled)?;
        let served = Served {
            url: self.urls[idx].clone(),
            bytes: self.offset,
            algorithm: self.algorithm,
            actual_hex: hasher.finish_hex(),
            resumes: self.resumes,
        };
        self.tx
            .send(Msg::End(served.clone()))
            .map_err(|_| ImageError::Cancelled)?;
        Ok(served)
    }

    fn check_cancel(&self) -> Result<(), ImageError> {
        if self.shared.cancel.load(Ordering::Relaxed) {
            return Err(ImageError::Cancelled);
        }
        Ok(())
    }

    fn sleep(&self, d: Duration) -> Result<(), ImageError> {
        let until = Instant::now() + d;
        loop {
            self.check_cancel()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    /// Sends the buffer being filled downstream (if it holds anything).
    fn emit(&mut self) -> Result<(), ImageError> {
        match self.buf.take() {
            Some(b) if !b.is_empty() => self
                .tx
                .send(Msg::Data(b))
                .map_err(|_| ImageError::Cancelled),
            _ => Ok(()),
        }
    }

    /// One connection: open at the current offset and read until EOF or failure.
    fn attempt(&mut self, idx: usize) -> Result<(), Failure> {
        let url = self.urls[idx].clone();
        // Dropped right after the last byte: there is nothing left to ask for.
        if self.total.is_some_and(|t| t == self.offset) {
            return Ok(());
        }
        let resuming = self.offset > 0;
        let (body, skip) = if url.starts_with("http://") || url.starts_with("https://") {
            self.open_http(idx, &url)?
        } else if url.starts_with("file:") {
            self.open_file(&url)?
        } else {
            let cause = "unsupported URL scheme (use http, https or file)".to_string();
            return Err(next_source(ImageError::Fetch { url, cause }));
        };
        if resuming {
            self.resumes += 1;
        }
        self.read_body(&url, body, skip)
    }

    fn http_client(&mut self, url: &str) -> Result<reqwest::blocking::Client, Failure> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let opts = crate::http::ClientOptions {
            ca_bundle: self.cfg.ca_bundle.as_deref(),
            connect_timeout: Some(self.cfg.connect_timeout),
            read_timeout: Some(self.cfg.stall_timeout),
        };
        let client = crate::http::client(&opts).map_err(|e| {
            next_source(ImageError::Fetch {
                url: url.to_string(),
                cause: e.to_string(),
            })
        })?;
        self.client = Some(client.clone());
        Ok(client)
    }

    fn open_http(&mut self, idx: usize, url: &str) -> Result<(Box<dyn Read + Send>, u64), Failure> {
        use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE, RETRY_AFTER};
        let client = self.http_client(url)?;
        let mut req = client.get(url);
        if self.offset > 0 {
            req = req.header(RANGE, format!("bytes={}-", self.offset));
            if let Some(v) = &self.validators[idx] {
                req = req.header(IF_RANGE, v.as_str());
            }
        }
        let resp = req.send().map_err(|e| Failure { no_answer: true, ..retry(self.request_error(url, e)) })?;
        let status = resp.status().as_u16();
        match status {
            200 | 206 => {}
            429 | 503 => {
                let after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.trim().parse().ok());
                let error = ImageError::Status {
                    url: url.to_string(),
                    status,
                };
                return Err(Failure {
                    error,
                    next: Next::Retry(after.map(Duration::from_secs)),
                    no_answer: false,
                });
            }
            408 | 500 | 502 | 504 => {
                return Err(retry(ImageError::Status {
                    url: url.to_string(),
                    status,
                }))
            }
            _ => {
                return Err(next_source(ImageError::Status {
                    url: url.to_string(),
                    status,
                }))
            }
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
        };
        // If-Range needs a strong validator: a weak ETag may not be used.
        let validator = header(ETAG)
            .filter(|e| !e.starts_with("W/"))
            .or_else(|| header(LAST_MODIFIED))
            .map(str::to_string);
        let fetch_error = |cause: String| ImageError::Fetch {
            url: url.to_string(),
            cause,
        };
        let (start, total) = if status == 206 {
            let range = header(CONTENT_RANGE).unwrap_or("");
            let (start, total) = parse_content_range(range).ok_or_else(|| {
                next_source(fetch_error(format!("unusable Content-Range {range:?}")))
            })?;
            if start != self.offset {
                let cause = format!(
                    "asked for bytes from {} but got a range from {start}",
                    self.offset
                );
                return Err(next_source(fetch_error(cause)));
            }
            (start, total)
        } else {
            (0, resp.content_length())
        };
        if status == 200 && self.offset > 0 {
            let known = self.validators[idx].as_deref();
            if known.is_some() && validator.is_some() && known != validator.as_deref() {
                let cause =
                    "the file changed on the server during the download; start the write again";
                return Err(next_source(fetch_error(cause.into())));
            }
        }
        self.set_total(url, total)?;
        if validator.is_some() {
            self.validators[idx] = validator;
        }
        // A server that ignored Range resends from byte 0: skip what we already have.
        let skip = self.offset - start;
        Ok((Box::new(resp), skip))
    }

    fn open_file(&mut self, url: &str) -> Result<(Box<dyn Read + Send>, u64), Failure> {
        let fail = |cause: String| {
            next_source(ImageError::Fetch {
                url: url.to_string(),
                cause,
            })
        };
        let path = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| fail("not a valid file URL (file:///absolute/path)".into()))?;
        let mut f = std::fs::File::open(&path)
            .map_err(|e| fail(format!("opening {}: {e}", path.display())))?;
        let len = f.metadata().map_err(|e| fail(e.to_string()))?.len();
        self.set_total(url, Some(len))?;
        f.seek(SeekFrom::Start(self.offset))
            .map_err(|e| fail(e.to_string()))?;
        Ok((Box::new(f), 0))
    }

    /// Records the served size; a different size from a later source means a different file.
    fn set_total(&mut self, url: &str, total: Option<u64>) -> Result<(), Failure> {
        match (self.total, total) {
            (Some(a), Some(b)) if a != b => {
                let cause =
                    format!("serves {b} bytes, but the download began on a file of {a} bytes");
                Err(next_source(ImageError::Fetch {
                    url: url.to_string(),
                    cause,
                }))
            }
            (None, Some(b)) => {
                self.total = Some(b);
                self.shared.total.store(b, Ordering::Relaxed);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn request_error(&self, url: &str, e: reqwest::Error) -> ImageError {
        if e.is_timeout() && !e.is_connect() {
            return ImageError::Stalled {
                url: url.to_string(),
                after: self.cfg.stall_timeout,
                offset: self.offset,
            };
        }
        ImageError::Fetch {
            url: url.to_string(),
            cause: error_chain(&e.without_url()),
        }
    }

    fn read_body(
        &mut self,
        url: &str,
        mut body: Box<dyn Read + Send>,
        mut skip: u64,
    ) -> Result<(), Failure> {
        let mut scratch = [0u8; 64 * 1024];
        while skip > 0 {
            let want = skip.min(scratch.len() as u64) as usize;
            match body.read(&mut scratch[..want]) {
                Ok(0) => return Err(retry(self.early_eof(url))),
                Ok(n) => skip -= n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(retry(self.read_error(url, e))),
            }
        }
        loop {
            self.check_cancel().map_err(retry)?;
            if self.buf.is_none() {
                let b = self
                    .pool
                    .get(&self.shared.cancel)
                    .ok_or(ImageError::Cancelled)
                    .map_err(retry)?;
                self.buf = Some(b);
            }
            let buf = self.buf.as_mut().expect("buffer ensured above");
            let len = buf.len();
            let spare = &mut buf.spare()[len..];
            match body.read(spare) {
                Ok(0) => {
                    return match self.total {
                        Some(t) if self.offset < t => Err(retry(self.early_eof(url))),
                        _ => Ok(()),
                    };
                }
                Ok(n) => {
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&spare[..n]);
                    }
                    buf.set_len(len + n);
                    let full = buf.len() == buf.capacity();
                    self.offset += n as u64;
                    self.last_byte = Some(Instant::now());
                    self.shared.downloaded.store(self.offset, Ordering::Relaxed);
                    if let Some(t) = self.total.filter(|&t| self.offset > t) {
                        let cause = format!("sent more than the {t} bytes it announced");
                        return Err(next_source(ImageError::Fetch {
                            url: url.to_string(),
                            cause,
                        }));
                    }
                    if full {
                        self.emit().map_err(retry)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(retry(self.read_error(url, e))),
            }
        }
    }

    fn early_eof(&self, url: &str) -> ImageError {
        let of = self.total.map(|t| format!(" of {t}")).unwrap_or_default();
        ImageError::Fetch {
            url: url.to_string(),
            cause: format!("connection closed after byte {}{of}", self.offset),
        }
    }

    fn read_error(&self, url: &str, e: io::Error) -> ImageError {
        let timed_out = e.kind() == io::ErrorKind::TimedOut
            || e.get_ref()
                .and_then(|i| i.downcast_ref::<reqwest::Error>())
                .is_some_and(|r| r.is_timeout());
        if timed_out {
            return ImageError::Stalled {
                url: url.to_string(),
                after: self.cfg.stall_timeout,
                offset: self.offset,
            };
        }
        let cause = format!("reading at byte {}: {}", self.offset, error_chain(&e));
        ImageError::Fetch {
            url: url.to_string(),
            cause,
        }
    }
}

/// `bytes S-E/T` → (S, Some(T)) (T may be `*`).
pub(crate) fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

/// An error and its sources, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 0-9/*"), Some((0, None)));
        assert_eq!(parse_content_range("items 0-9/10"), None);
    }
}
