//! Where the served bytes come from: one session per image, over its URLs
//! (mirrors, tried in turn). The session streams the file once, from byte 0 to
//! its end ([`fetch`]), and reads it at chosen offsets for containers that need
//! that ([`random`]), both through the same origins and HTTP client.
//!
//! Each URL scheme is an [`origin::Origin`]: `http`/`https` ([`http`]) and
//! `file` ([`file`]). A registry blob or a chunk store would be one more module
//! implementing it and one more arm in [`Session::origin`].

mod fetch;
mod file;
mod http;
mod origin;
mod random;

pub(crate) use fetch::Fetcher;
pub(crate) use random::RandomAccess;

use super::channel::ChannelReader;
use super::error::ImageError;
use super::options::FetchConfig;
use super::stages::{Shared, FETCH_DEPTH};
use crate::plan::Digest;
use http::SharedClient;
use origin::Origin;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

/// The image's URLs, its expected digest, and what every request shares.
pub(crate) struct Session {
    urls: Vec<String>,
    digest: Digest,
    cfg: FetchConfig,
    client: Arc<SharedClient>,
}

/// Opens the gate of a stream held after its first buffer (also on drop).
pub(crate) struct Gate(Option<SyncSender<()>>);

impl Gate {
    /// Lets the download read on.
    pub(crate) fn open(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.try_send(());
        }
    }
}

/// A stream of the served file, not started yet.
pub(crate) struct Stream {
    /// Runs the download (on its own thread).
    pub fetcher: Fetcher,
    /// The counters the download updates.
    pub shared: Arc<Shared>,
    /// The served bytes, checked against the digest at their end.
    pub input: ChannelReader,
    /// Holds the download after its first buffer until the writer is chosen.
    pub gate: Gate,
}

impl Session {
    /// A session over `urls` (in order of preference) expecting `digest`.
    pub(crate) fn new(urls: &[String], digest: &Digest, cfg: FetchConfig) -> Session {
        Session {
            urls: urls.to_vec(),
            digest: digest.clone(),
            client: Arc::new(SharedClient::new(cfg.clone())),
            cfg,
        }
    }

    /// How many URLs the session has.
    pub(crate) fn len(&self) -> usize {
        self.urls.len()
    }

    /// The origin serving `url`, by its scheme.
    fn origin(&self, url: &str) -> Box<dyn Origin> {
        if url.starts_with("http://") || url.starts_with("https://") {
            Box::new(http::HttpOrigin::new(url, self.client.clone()))
        } else if url.starts_with("file:") {
            Box::new(file::FileOrigin::new(url))
        } else {
            Box::new(origin::Unsupported {
                url: url.to_string(),
            })
        }
    }

    /// The whole file, once, from its first byte (every URL in turn as needed).
    pub(crate) fn stream(&self) -> Stream {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = sync_channel(FETCH_DEPTH);
        let (gate_tx, gate_rx) = sync_channel(1);
        let origins = self.urls.iter().map(|u| self.origin(u)).collect();
        let fetcher = Fetcher::new(
            origins,
            self.digest.algorithm,
            self.cfg.clone(),
            shared.clone(),
            tx,
            gate_rx,
        );
        Stream {
            fetcher,
            shared,
            input: ChannelReader::new(rx, self.digest.clone()),
            gate: Gate(Some(gate_tx)),
        }
    }

    /// The first URL that answers, with the file's size when it said; nothing is
    /// downloaded (one byte at most). Every URL's failure when none answers.
    pub(crate) fn probe(&self) -> Result<(String, Option<u64>), ImageError> {
        let mut attempts = Vec::new();
        for idx in 0..self.urls.len() {
            let mut r = self.random_access(idx);
            match r.probe() {
                Ok(size) => return Ok((r.url().to_string(), size)),
                Err(e) => attempts.push(e),
            }
        }
        Err(match attempts.len() {
            0 => ImageError::NoSource,
            1 => attempts.remove(0),
            _ => ImageError::AllSourcesFailed {
                attempts: attempts.iter().map(ToString::to_string).collect(),
            },
        })
    }

    /// Reads at chosen offsets of URL number `idx`.
    pub(crate) fn random_access(&self, idx: usize) -> RandomAccess {
        RandomAccess::new(self.origin(&self.urls[idx]), self.cfg.retry.clone())
    }
}
