//! The download: the session's origins in turn, resumed with `Range` after a
//! drop or stall, retried with bounded backoff, every byte hashed as it arrives
//! (on this thread) and handed on in pooled buffers.

use super::origin::{next_source, retry, Failure, Next, Origin};
use crate::http::error_chain;
use crate::image::buf::{Pool, Pooled};
use crate::image::channel::{Msg, Served};
use crate::image::error::ImageError;
use crate::image::options::FetchConfig;
use crate::image::signed::SignatureStream;
use crate::image::stages::{Shared, FETCH_BUF, FETCH_BUFS, PROBE_BYTES};
use crate::image::verify::Hasher;
use crate::plan::DigestAlgorithm;
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A URL's last failure after its retries ran out, and whether anything answered.
struct GaveUp {
    error: ImageError,
    no_answer: bool,
}

/// The download stage: owns the position, the digest and the buffer being filled.
pub(crate) struct Fetcher {
    origins: Vec<Box<dyn Origin>>,
    cfg: FetchConfig,
    shared: Arc<Shared>,
    tx: SyncSender<Msg>,
    pool: Pool,
    hasher: Option<Hasher>,
    algorithm: DigestAlgorithm,
    /// The signature check fed the same bytes as the hasher, when the image is signed.
    signature: Option<SignatureStream>,
    /// Bytes received, hashed and kept so far: where a resume starts.
    offset: u64,
    total: Option<u64>,
    buf: Option<Pooled>,
    resumes: u32,
    /// When the last byte arrived (None before the first).
    last_byte: Option<Instant>,
    /// Closed until the writer chose itself from the first buffer: no more is read before.
    gate: Option<Receiver<()>>,
}

impl Fetcher {
    /// A download of `origins` (tried in order) sending to `tx`, holding after its
    /// first buffer until `gate` opens (a message, or its sender dropped).
    pub(crate) fn new(
        origins: Vec<Box<dyn Origin>>,
        algorithm: DigestAlgorithm,
        cfg: FetchConfig,
        shared: Arc<Shared>,
        tx: SyncSender<Msg>,
        gate: Receiver<()>,
    ) -> Fetcher {
        let signature = cfg.signature.clone().map(SignatureStream::start);
        Fetcher {
            origins,
            cfg,
            shared,
            tx,
            pool: Pool::new(FETCH_BUF, FETCH_BUFS),
            hasher: Some(Hasher::new(algorithm)),
            algorithm,
            signature,
            offset: 0,
            total: None,
            buf: None,
            resumes: 0,
            last_byte: None,
            gate: Some(gate),
        }
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
            for idx in 0..self.origins.len() {
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
        let cancelled = || GaveUp {
            error: ImageError::Cancelled,
            no_answer: false,
        };
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
            let gave_up = |f: Failure| GaveUp {
                error: f.error,
                no_answer: f.no_answer,
            };
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
        let signature = self.signature.take().map(|s| {
            let signer = self
                .cfg
                .signature
                .as_ref()
                .map(|c| c.signer().to_string())
                .unwrap_or_default();
            (signer, s.finish())
        });
        let served = Served {
            url: self.origins[idx].url().to_string(),
            bytes: self.offset,
            algorithm: self.algorithm,
            actual_hex: hasher.finish_hex(),
            signature,
            resumes: self.resumes,
            registry: self.origins[idx].registry().map(Box::new),
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
        // Dropped right after the last byte: there is nothing left to ask for.
        if self.total.is_some_and(|t| t == self.offset) {
            return Ok(());
        }
        let resuming = self.offset > 0;
        let url = self.origins[idx].url().to_string();
        let opened = self.origins[idx].open(self.offset)?;
        self.set_total(&url, opened.total)?;
        if resuming {
            self.resumes += 1;
        }
        self.read_body(&url, opened.body, opened.skip)
    }

    /// Waits, once, until the writer chose itself from the first buffer.
    fn pass_gate(&mut self) -> Result<(), ImageError> {
        let Some(gate) = self.gate.take() else {
            return Ok(());
        };
        loop {
            self.check_cancel()?;
            match gate.recv_timeout(Duration::from_millis(50)) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
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
                    if let Some(s) = self.signature.as_mut() {
                        s.update(&spare[..n]);
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
                    // The first bytes go on early: the writer is chosen from them, and
                    // until it is, nothing more is read.
                    if full || (self.gate.is_some() && self.offset >= PROBE_BYTES as u64) {
                        self.emit().map_err(retry)?;
                        self.pass_gate().map_err(retry)?;
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
