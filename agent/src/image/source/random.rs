//! Reads at chosen offsets of one origin, for containers read at random
//! (their tables); each read retried a few times, as the stream's attempts are.

use super::origin::{Failure, Next, Origin};
use crate::image::error::ImageError;
use crate::image::options::RetryPolicy;
use std::time::Duration;

/// One URL of the session, read where asked.
pub(crate) struct RandomAccess {
    origin: Box<dyn Origin>,
    retry: RetryPolicy,
}

impl RandomAccess {
    /// Reads of `origin`, retried by `retry`'s count.
    pub(crate) fn new(origin: Box<dyn Origin>, retry: RetryPolicy) -> RandomAccess {
        RandomAccess { origin, retry }
    }

    /// The URL read.
    pub(crate) fn url(&self) -> &str {
        self.origin.url()
    }

    /// Size of the file (asked of the source when no read has said yet).
    pub(crate) fn len(&mut self) -> Result<u64, ImageError> {
        if self.origin.len().is_none() {
            self.attempts(0, 1)?;
        }
        self.origin.len().ok_or_else(|| ImageError::Fetch {
            url: self.url().to_string(),
            cause: "the source does not say the file's size".into(),
        })
    }

    /// Whether the file is there (read as little as the origin allows), retried like a
    /// read; its size when the answer said.
    pub(crate) fn probe(&mut self) -> Result<Option<u64>, ImageError> {
        self.retried(|o| o.probe())
    }

    /// Exactly bytes `offset..offset + len`.
    pub(crate) fn read_exact_at(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, ImageError> {
        let v = self.attempts(offset, len)?;
        if v.len() as u64 != len {
            return Err(ImageError::Fetch {
                url: self.url().to_string(),
                cause: format!("asked for {len} bytes at {offset}, got {}", v.len()),
            });
        }
        Ok(v)
    }

    /// One read, tried again after a dropped connection, a timeout or a 5xx.
    fn attempts(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, ImageError> {
        self.retried(|o| o.read_range(offset, len))
    }

    /// `op` on the origin, tried again after a dropped connection, a timeout or a 5xx.
    fn retried<T>(
        &mut self,
        mut op: impl FnMut(&mut dyn Origin) -> Result<T, Failure>,
    ) -> Result<T, ImageError> {
        let mut attempt = 0;
        loop {
            match op(self.origin.as_mut()) {
                Ok(v) => return Ok(v),
                Err(Failure {
                    error,
                    next: Next::Retry(_),
                    ..
                }) if attempt < self.retry.attempts => {
                    attempt += 1;
                    crate::runner::log::debug(&format!("{error}; retrying"));
                    std::thread::sleep(
                        self.retry.initial_backoff.min(Duration::from_secs(5)) * attempt,
                    );
                }
                Err(f) => return Err(f.error),
            }
        }
    }
}
