//! How to fetch and write, and what the caller hears while it runs.

use crate::trust::detached::Checker;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Retries of one source before moving to the next mirror.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Failed attempts in a row (without new bytes) allowed per URL after the first.
    pub attempts: u32,
    /// First backoff; doubled after each failure up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest backoff between attempts.
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// When every URL's retries ran out without an answer (a cable pulled, a switch
    /// rebooting) after the download had begun: how long since the last byte the
    /// sources are tried again, round after round, before giving up.
    pub outage: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            outage: Duration::from_secs(300),
        }
    }
}

/// A snapshot of a running write.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Bytes of the served (compressed) file received.
    pub bytes_downloaded: u64,
    /// Size of the served file, when the server said.
    pub total: Option<u64>,
    /// Decompressed bytes handed to the target.
    pub bytes_written: u64,
    /// Download rate since the start, bytes per second.
    pub download_rate: u64,
    /// Write rate since the start, bytes per second.
    pub write_rate: u64,
    /// Time since the write began.
    pub elapsed: Duration,
    /// True on the final call.
    pub done: bool,
}

/// How to fetch and write.
#[derive(Clone)]
pub struct WriteOptions<'a> {
    /// PEM bundle to trust for https instead of the built-in roots.
    pub ca_bundle: Option<PathBuf>,
    /// Time allowed to connect to a source.
    pub connect_timeout: Duration,
    /// No byte for this long aborts the connection and resumes.
    pub stall_timeout: Duration,
    /// Retries of each source, and how long an outage is waited out.
    pub retry: RetryPolicy,
    /// Called at most every `progress_interval`, and once at the end.
    pub progress: Option<&'a (dyn Fn(&Progress) + Sync)>,
    /// Least time between two progress calls.
    pub progress_interval: Duration,
    /// Read the written bytes back and compare (set by `write_image` from the plan's `verify`).
    pub readback: bool,
    /// Overrides whether a block-device target offloads write-zeroes (`None`: its queue
    /// limits say). `Some(false)` makes zero runs be written as data, as on a device without it.
    pub write_zeroes: Option<bool>,
    /// Called between writing and reading back (tests corrupt the target here).
    pub before_readback: Option<&'a (dyn Fn() + Sync)>,
    /// Threads decoding a zstd stream of several frames (`None`: one per core, at most 4).
    pub decoders: Option<usize>,
    /// The image's detached signature with its key, checked over the served bytes.
    pub signature: Option<Arc<Checker>>,
    /// Credentials for the registry of an `oci://` image URL (`image.auth`).
    pub credentials: Option<crate::oci::Credentials>,
    /// The registry signature an `oci://` image's manifest must carry (lookaside store).
    pub registry_signature: Option<Arc<crate::oci::signature::Policy>>,
    /// `--insecure`: a tag that nothing pins is accepted (and reported so).
    pub insecure: bool,
    /// Chunk stores for a casync index (casync's `default.castr` beside it when empty).
    pub stores: Vec<String>,
}

impl Default for WriteOptions<'_> {
    fn default() -> Self {
        WriteOptions {
            ca_bundle: None,
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            progress: None,
            progress_interval: Duration::from_millis(500),
            readback: false,
            write_zeroes: None,
            before_readback: None,
            decoders: None,
            signature: None,
            credentials: None,
            registry_signature: None,
            insecure: false,
            stores: Vec::new(),
        }
    }
}

impl std::fmt::Debug for WriteOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOptions")
            .field("ca_bundle", &self.ca_bundle)
            .field("stall_timeout", &self.stall_timeout)
            .field("retry", &self.retry)
            .field("readback", &self.readback)
            .field("signature", &self.signature.as_ref().map(|c| c.signer()))
            .finish_non_exhaustive()
    }
}

impl WriteOptions<'_> {
    /// What the download needs of these options (owned: it runs on its own thread).
    pub(crate) fn fetch_config(&self) -> FetchConfig {
        FetchConfig {
            ca_bundle: self.ca_bundle.clone(),
            connect_timeout: self.connect_timeout,
            stall_timeout: self.stall_timeout,
            retry: self.retry.clone(),
            signature: self.signature.clone(),
            credentials: self.credentials.clone(),
            registry_signature: self.registry_signature.clone(),
            insecure: self.insecure,
        }
    }
}

/// What the fetch stage needs from the options (owned: it may outlive the caller's borrow).
#[derive(Clone, Debug)]
pub(crate) struct FetchConfig {
    /// PEM bundle to trust for https instead of the built-in roots.
    pub ca_bundle: Option<PathBuf>,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// No byte for this long aborts the connection and resumes.
    pub stall_timeout: Duration,
    /// Retries of each source.
    pub retry: RetryPolicy,
    /// The detached signature the served bytes must carry.
    pub signature: Option<Arc<Checker>>,
    /// Credentials for the registry of an `oci://` image URL.
    pub credentials: Option<crate::oci::Credentials>,
    /// The registry signature an `oci://` image's manifest must carry.
    pub registry_signature: Option<Arc<crate::oci::signature::Policy>>,
    /// `--insecure`: a tag that nothing pins is accepted.
    pub insecure: bool,
}
