//! What one place serving the image (a URL) offers the download: the file from
//! a given byte to its end, and single reads at chosen offsets. A new kind of
//! source (a registry blob, a chunk store) is one more implementation of
//! [`Origin`]; the fetcher, the channel and the writers do not change.

use crate::image::error::ImageError;
use std::io::Read;
use std::time::Duration;

/// One URL of the image.
pub(crate) trait Origin: Send {
    /// The URL, for messages and the outcome.
    fn url(&self) -> &str;

    /// Opens the file for reading from byte `offset` to its end (one attempt).
    fn open(&mut self, offset: u64) -> Result<Opened, Failure>;

    /// Bytes `offset..offset + len`, fewer only where the file ends (one attempt).
    fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, Failure>;

    /// Size of the file, once an answer said.
    fn len(&self) -> Option<u64>;

    /// Whether the file is there, asking for as little of it as the origin allows (one
    /// attempt); its size when the answer said.
    fn probe(&mut self) -> Result<Option<u64>, Failure> {
        self.read_range(0, 1)?;
        Ok(self.len())
    }

    /// What a registry reference resolved to (manifest, layer), for the report;
    /// `None` for other URLs.
    fn registry(&self) -> Option<crate::oci::Resolved> {
        None
    }
}

/// A body being served from some offset.
pub(crate) struct Opened {
    /// The bytes, from the offset asked for (after `skip`).
    pub body: Box<dyn Read + Send>,
    /// Bytes of `body` to skip: a server that ignored `Range` resends from byte 0.
    pub skip: u64,
    /// Size of the whole file, when the source said.
    pub total: Option<u64>,
}

/// What to do after an attempt failed.
pub(crate) enum Next {
    /// Try the same URL again, after this wait (else the backoff).
    Retry(Option<Duration>),
    /// This URL will not work: go to the next mirror.
    NextSource,
}

/// A failed attempt, and what to do about it.
pub(crate) struct Failure {
    /// What went wrong.
    pub error: ImageError,
    /// Whether to retry this URL or go to the next.
    pub next: Next,
    /// Nothing answered: no connection, or no response to the request.
    pub no_answer: bool,
}

/// A failure worth another try of the same URL.
pub(crate) fn retry(error: ImageError) -> Failure {
    Failure {
        error,
        next: Next::Retry(None),
        no_answer: false,
    }
}

/// A failure that no retry of this URL would mend.
pub(crate) fn next_source(error: ImageError) -> Failure {
    Failure {
        error,
        next: Next::NextSource,
        no_answer: false,
    }
}

/// A URL whose scheme no origin serves: every attempt says so.
pub(crate) struct Unsupported {
    /// The URL as given.
    pub url: String,
}

impl Origin for Unsupported {
    fn url(&self) -> &str {
        &self.url
    }

    fn open(&mut self, _offset: u64) -> Result<Opened, Failure> {
        Err(next_source(self.error()))
    }

    fn read_range(&mut self, _offset: u64, _len: u64) -> Result<Vec<u8>, Failure> {
        Err(next_source(self.error()))
    }

    fn len(&self) -> Option<u64> {
        None
    }
}

impl Unsupported {
    fn error(&self) -> ImageError {
        ImageError::Fetch {
            url: self.url.clone(),
            cause: "unsupported URL scheme (use http, https, file or oci)".to_string(),
        }
    }
}
