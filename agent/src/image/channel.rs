//! The served bytes as the decoder sees them: a `BufRead` over the download's
//! buffers that checks the digest when the stream ends.

use super::buf::Pooled;
use super::error::ImageError;
use super::verify::algorithm_name;
use crate::plan::{Digest, DigestAlgorithm};
use std::io::{self, BufRead, Read};
use std::sync::mpsc::Receiver;

/// A message from the download to the decoder.
pub(crate) enum Msg {
    Data(Pooled),
    End(Served),
}

/// The download's summary, sent after the last byte.
#[derive(Clone, Debug)]
pub(crate) struct Served {
    /// The URL that delivered the end of the stream.
    pub url: String,
    /// Size of the served file.
    pub bytes: u64,
    /// Algorithm of `actual_hex`.
    pub algorithm: DigestAlgorithm,
    /// Digest of every byte as served.
    pub actual_hex: String,
    /// For a signed image: the key that must have signed, and the check's verdict (who
    /// signed, or why the signature does not verify).
    pub signature: Option<(String, Result<String, String>)>,
    /// Connections resumed (or restarted) after a failure.
    pub resumes: u32,
    /// What the registry reference resolved to, for an `oci://` URL.
    pub registry: Option<Box<crate::oci::Resolved>>,
}

/// The served bytes as a `BufRead`; at the end it checks the digest and fails on a mismatch.
pub(crate) struct ChannelReader {
    rx: Receiver<Msg>,
    cur: Option<Pooled>,
    pos: usize,
    expected: Option<Digest>,
    served: Option<Served>,
    failed: Option<ImageError>,
}

impl ChannelReader {
    /// Reads what the fetcher sends on `rx`, expecting `expected` (when given) at the end.
    pub(crate) fn new(rx: Receiver<Msg>, expected: Option<Digest>) -> ChannelReader {
        ChannelReader {
            rx,
            cur: None,
            pos: 0,
            expected,
            served: None,
            failed: None,
        }
    }

    /// Makes `cur` hold unread bytes, or notes the verified end.
    fn refill(&mut self) -> io::Result<()> {
        while self.cur.as_ref().is_none_or(|b| self.pos >= b.len()) {
            self.cur = None;
            self.pos = 0;
            if let Some(e) = &self.failed {
                return Err(io::Error::other(e.clone()));
            }
            if self.served.is_some() {
                return Ok(());
            }
            match self.rx.recv() {
                Ok(Msg::Data(b)) => self.cur = Some(b),
                Ok(Msg::End(served)) => {
                    self.failed = verdict(self.expected.as_ref(), &served);
                    if self.failed.is_none() {
                        self.served = Some(served);
                    }
                }
                // The fetcher stopped without an end: its own error says why.
                Err(_) => return Err(io::Error::other(ImageError::Cancelled)),
            }
        }
        Ok(())
    }
}

/// Why the served bytes are not the expected ones (digest first, then signature), if
/// they are not.
fn verdict(expected: Option<&Digest>, served: &Served) -> Option<ImageError> {
    // Measurement builds compare nothing (feature `bench-unverified`).
    if cfg!(feature = "bench-unverified") {
        return None;
    }
    if let Some(e) = expected.filter(|e| !served.actual_hex.eq_ignore_ascii_case(&e.hex)) {
        return Some(ImageError::DigestMismatch {
            algorithm: algorithm_name(served.algorithm).to_string(),
            expected: e.hex.to_ascii_lowercase(),
            actual: served.actual_hex.clone(),
            url: served.url.clone(),
        });
    }
    match &served.signature {
        Some((signer, Err(cause))) => Some(ImageError::SignatureMismatch {
            signer: signer.clone(),
            url: served.url.clone(),
            cause: cause.clone(),
        }),
        _ => None,
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.refill()?;
        Ok(match &self.cur {
            Some(b) => &b[self.pos..],
            None => &[],
        })
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
    }
}
