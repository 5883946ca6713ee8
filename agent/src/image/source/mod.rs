//! Where the served bytes come from: one session per image, over its URLs
//! (mirrors, tried in turn). The session streams the file once, from byte 0 to
//! its end ([`fetch`]), and reads it at chosen offsets for containers that need
//! that ([`random`]), both through the same origins and HTTP client.
//!
//! Each URL scheme is an [`origin::Origin`]: `http`/`https` ([`http`]), `file`
//! ([`file`]) and `oci` ([`oci`], a registry blob). A chunk store would be one more
//! module implementing it and one more arm in [`Session::origin`].

mod fetch;
mod file;
mod http;
mod oci;
mod origin;
mod random;

pub(crate) use fetch::Fetcher;
pub(crate) use random::RandomAccess;

use super::channel::ChannelReader;
use super::error::ImageError;
use super::options::FetchConfig;
use super::stages::{Shared, FETCH_DEPTH};
use crate::plan::{Digest, DigestAlgorithm};
use http::SharedClient;
use oci::{OciOrigin, OciSource, SourceTrust};
use origin::Origin;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

/// The image's URLs, its expected digest, and what every request shares.
pub(crate) struct Session {
    urls: Vec<String>,
    digest: Option<Digest>,
    cfg: FetchConfig,
    client: Arc<SharedClient>,
    /// Each `oci://` URL's registry and resolution, shared by its origins.
    registries: Vec<Option<Arc<OciSource>>>,
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
    /// A session over `urls` (in order of preference) expecting `digest` (when given)
    /// and the signature of `cfg` (when given). The document's registry credentials go
    /// to the registry of the first URL only (and to mirrors on that same registry),
    /// never to other mirrors.
    pub(crate) fn new(urls: &[String], digest: Option<&Digest>, cfg: FetchConfig) -> Session {
        let client = Arc::new(SharedClient::new(cfg.clone()));
        let registry_of = |u: &str| crate::oci::Reference::parse(u).ok().map(|r| r.registry);
        let first = urls.first().and_then(|u| registry_of(u));
        let registries = urls
            .iter()
            .map(|u| {
                u.starts_with(crate::oci::SCHEME).then(|| {
                    let own = first.is_some() && registry_of(u) == first;
                    let credentials = cfg.credentials.clone().filter(|_| own);
                    let trust = SourceTrust {
                        signature: cfg.registry_signature.clone(),
                        insecure: cfg.insecure,
                    };
                    Arc::new(OciSource::new(
                        u,
                        credentials,
                        digest,
                        trust,
                        client.clone(),
                    ))
                })
            })
            .collect();
        Session {
            urls: urls.to_vec(),
            digest: digest.cloned(),
            client,
            cfg,
            registries,
        }
    }

    /// URL number `idx`.
    pub(crate) fn url(&self, idx: usize) -> &str {
        &self.urls[idx]
    }

    /// How many URLs the session has.
    pub(crate) fn len(&self) -> usize {
        self.urls.len()
    }

    /// The origin serving URL number `idx`, by its scheme.
    fn origin(&self, idx: usize) -> Box<dyn Origin> {
        let url = self.urls[idx].as_str();
        if let Some(source) = &self.registries[idx] {
            Box::new(OciOrigin::new(source.clone()))
        } else if url.starts_with("http://") || url.starts_with("https://") {
            Box::new(http::HttpOrigin::new(url, self.client.clone()))
        } else if url.starts_with("file:") {
            Box::new(file::FileOrigin::new(url))
        } else {
            Box::new(origin::Unsupported {
                url: url.to_string(),
            })
        }
    }

    /// The digest the served bytes must have: the document's; without one, the layer
    /// digest of the first `oci://` URL whose manifest resolves (checked against its
    /// pinned digest or its signature); none for other URLs (a detached signature
    /// then pins the file).
    pub(crate) fn expected(&self) -> Result<Option<Digest>, ImageError> {
        if let Some(d) = &self.digest {
            return Ok(Some(d.clone()));
        }
        self.first_registry(|source| source.layer_digest())
    }

    /// The manifest the first `oci://` URL that answers resolved to (checked against its
    /// pinned digest and, when one is required, its signature).
    pub(crate) fn resolve_registry(&self) -> Result<Option<crate::oci::Resolved>, ImageError> {
        self.first_registry(|source| source.resolved())
    }

    /// What `get` gives for the first `oci://` URL it succeeds on, in the order the
    /// URLs were given; none without registry URLs; else why each one failed.
    fn first_registry<T>(
        &self,
        get: impl Fn(&OciSource) -> Result<T, ImageError>,
    ) -> Result<Option<T>, ImageError> {
        let mut attempts = Vec::new();
        for source in self.registries.iter().flatten() {
            match get(source) {
                Ok(t) => return Ok(Some(t)),
                Err(e) => attempts.push(e),
            }
        }
        match attempts.len() {
            0 => Ok(None),
            1 => Err(attempts.remove(0)),
            _ => Err(ImageError::AllSourcesFailed {
                attempts: attempts.iter().map(ToString::to_string).collect(),
            }),
        }
    }

    /// The whole file, once, from its first byte (every URL in turn as needed), checked
    /// against [`Session::expected`].
    pub(crate) fn stream(&self) -> Result<Stream, ImageError> {
        let expected = self.expected()?;
        let origins = (0..self.urls.len()).map(|i| self.origin(i)).collect();
        Ok(self.stream_of(origins, expected, self.cfg.clone()))
    }

    /// `origins` streamed in turn, the bytes checked against `digest` at their end.
    fn stream_of(
        &self,
        origins: Vec<Box<dyn Origin>>,
        digest: Option<Digest>,
        cfg: FetchConfig,
    ) -> Stream {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = sync_channel(FETCH_DEPTH);
        let (gate_tx, gate_rx) = sync_channel(1);
        let fetcher = Fetcher::new(
            origins,
            digest
                .as_ref()
                .map_or(DigestAlgorithm::Sha256, |d| d.algorithm),
            cfg,
            shared.clone(),
            tx,
            gate_rx,
        );
        Stream {
            fetcher,
            shared,
            input: ChannelReader::new(rx, digest),
            gate: Gate(Some(gate_tx)),
        }
    }

    /// The registry sources of the session's `oci://` URLs, in order.
    fn oci_sources(&self) -> impl Iterator<Item = &Arc<OciSource>> {
        self.registries.iter().flatten()
    }

    /// The URLs' reference resolved as a container image, by the first registry that
    /// answers (a transient refusal retried as a download would be); every failure
    /// when none does.
    pub(crate) fn container(&self) -> Result<Arc<crate::oci::ContainerImage>, ImageError> {
        let mut attempts = Vec::new();
        for source in self.oci_sources() {
            match with_retries(&self.cfg.retry, || source.container()) {
                Ok(image) => return Ok(image),
                Err(e) => attempts.push(e),
            }
        }
        Err(all_failed(attempts))
    }

    /// Blob `layer` of `image` streamed from the `oci://` URLs in turn (a non-registry
    /// URL has no such blob), checked against the layer's digest at its end. The
    /// signature check does not apply: a signature covers one file.
    pub(crate) fn layer_stream(
        &self,
        image: &crate::oci::ContainerImage,
        layer: &crate::oci::ImageLayer,
    ) -> Result<Stream, ImageError> {
        let digest =
            crate::oci::digest::parse_digest(&layer.digest).map_err(|cause| ImageError::Fetch {
                url: image.reference.clone(),
                cause,
            })?;
        let origins = self
            .oci_sources()
            .map(|s| {
                Box::new(OciOrigin::for_blob(s.clone(), s.blob_of(image, layer))) as Box<dyn Origin>
            })
            .collect();
        let cfg = FetchConfig {
            signature: None,
            ..self.cfg.clone()
        };
        Ok(self.stream_of(origins, Some(digest), cfg))
    }

    /// Whether some `oci://` URL has blob `layer` (`HEAD`, nothing downloaded).
    pub(crate) fn has_layer(&self, layer: &crate::oci::ImageLayer) -> Result<(), ImageError> {
        let mut attempts = Vec::new();
        for source in self.oci_sources() {
            match with_retries(&self.cfg.retry, || {
                source.has_blob(&layer.digest, layer.size)
            }) {
                Ok(()) => return Ok(()),
                Err(e) => attempts.push(e),
            }
        }
        Err(all_failed(attempts))
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
        Err(all_failed(attempts))
    }

    /// Reads at chosen offsets of URL number `idx`.
    pub(crate) fn random_access(&self, idx: usize) -> RandomAccess {
        RandomAccess::new(self.origin(idx), self.cfg.retry.clone())
    }
}

/// One error for every URL's failure.
fn all_failed(mut attempts: Vec<ImageError>) -> ImageError {
    match attempts.len() {
        0 => ImageError::NoSource,
        1 => attempts.remove(0),
        _ => ImageError::AllSourcesFailed {
            attempts: attempts.iter().map(ToString::to_string).collect(),
        },
    }
}

/// `op` until it succeeds, fails for good, or `policy`'s retries of a transient
/// failure (a 429, a 5xx, no answer) run out.
fn with_retries<T>(
    policy: &super::options::RetryPolicy,
    mut op: impl FnMut() -> Result<T, origin::Failure>,
) -> Result<T, ImageError> {
    let mut backoff = policy.initial_backoff;
    let mut tries = 0;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(f) => match f.next {
                origin::Next::Retry(wait) if tries < policy.attempts => {
                    tries += 1;
                    let wait = wait.map_or(backoff, |w| w.min(policy.max_retry_after));
                    crate::runner::log::warn(&format!(
                        "{}; retrying in {:.1} s ({tries} of {})",
                        f.error,
                        wait.as_secs_f64(),
                        policy.attempts
                    ));
                    std::thread::sleep(wait);
                    backoff = (backoff * 2).min(policy.max_backoff);
                }
                _ => return Err(f.error),
            },
        }
    }
}
