//! `oci://` references: the disk image is a blob of a registry. The reference is
//! resolved once per session and URL (manifest checked against its pinned digest,
//! platform child, layer; `crate::oci`), then the blob is read like any http URL
//! (`http.rs`: Range, a 200 to a Range skipped, validators), with the registry's
//! credentials and a new token when the last one expired or was refused.
//!
//! The blob must be the layer the manifest names: its size is checked on every
//! answer, and a document digest of the same algorithm must be the layer's digest,
//! so a wrong digest is refused before anything is downloaded; the fetcher hashes
//! every byte and the stream's end checks that digest as for any source.
//!
//! For a container image (`format: rootfs`) the source resolves the manifest, config
//! and layers instead ([`OciSource::container`]), and each layer is streamed by an
//! origin made for that blob ([`OciOrigin::for_blob`]) through the same plumbing.

use super::http::{HttpOrigin, SharedClient};
use super::origin::{next_source, Failure, Next, Opened, Origin};
use crate::image::error::ImageError;
use crate::oci::{self, ContainerImage, Credentials, OciError, Reference, Registry, Resolved};
use crate::plan::Digest;
use std::sync::{Arc, Mutex, OnceLock};

/// One `oci://` URL of a session: its registry and what it resolved to, shared by
/// every origin the session opens on it (the stream and random reads see one blob).
/// What vouches for a registry source's manifest besides a pinned digest.
#[derive(Clone, Default)]
pub(crate) struct SourceTrust {
    /// The lookaside signature the manifest must carry.
    pub signature: Option<Arc<crate::oci::signature::Policy>>,
    /// `--insecure`: a tag nothing pins is accepted (and reported so).
    pub insecure: bool,
}

pub(crate) struct OciSource {
    url: String,
    reference: Result<Reference, String>,
    credentials: Option<Credentials>,
    /// The document's digest, if it gives one: the layer's must be the same.
    expected: Option<Digest>,
    /// The signature the manifest must carry, and whether `--insecure` is in force.
    trust: SourceTrust,
    client: Arc<SharedClient>,
    registry: OnceLock<Arc<Registry>>,
    resolved: Mutex<Option<Arc<Resolved>>>,
    container: Mutex<Option<Arc<ContainerImage>>>,
}

impl OciSource {
    /// The registry source `url`, with `credentials` if the document gives them for it.
    pub(crate) fn new(
        url: &str,
        credentials: Option<Credentials>,
        expected: Option<&Digest>,
        trust: SourceTrust,
        client: Arc<SharedClient>,
    ) -> OciSource {
        OciSource {
            url: url.to_string(),
            reference: Reference::parse(url).map_err(|e| e.to_string()),
            credentials,
            expected: expected.cloned(),
            trust,
            client,
            registry: OnceLock::new(),
            resolved: Mutex::new(None),
            container: Mutex::new(None),
        }
    }

    fn fail(&self, cause: String) -> Failure {
        next_source(ImageError::Fetch {
            url: self.url.clone(),
            cause,
        })
    }

    /// A registry error as an attempt's failure: retried when the registry may
    /// answer better later, else on to the next mirror.
    fn failure(&self, e: OciError) -> Failure {
        let next = match e.transient() {
            Some(wait) => Next::Retry(wait),
            None => Next::NextSource,
        };
        Failure {
            no_answer: e.no_answer(),
            next,
            error: ImageError::Fetch {
                url: self.url.clone(),
                cause: e.to_string(),
            },
        }
    }

    fn registry(&self) -> Result<Arc<Registry>, Failure> {
        if let Some(r) = self.registry.get() {
            return Ok(r.clone());
        }
        let reference = self.reference.clone().map_err(|e| self.fail(e))?;
        let client = self.client.get().map_err(|e| self.fail(e))?;
        let registry = Arc::new(Registry::new(reference, client, self.credentials.clone()));
        Ok(self.registry.get_or_init(|| registry).clone())
    }

    /// The reference resolved (once), its layer checked against the document's digest.
    fn resolve(&self) -> Result<Arc<Resolved>, Failure> {
        let mut held = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = held.as_ref() {
            return Ok(r.clone());
        }
        let registry = self.registry()?;
        let mut resolved = oci::resolve(&registry).map_err(|e| self.failure(e))?;
        self.vouch(&registry, &mut resolved)?;
        let layer = resolved.layer_digest();
        let expected = self.expected.as_ref();
        if let Some((e, l)) =
            expected.and_then(|e| layer.filter(|l| l.algorithm == e.algorithm).map(|l| (e, l)))
        {
            if l.hex != e.hex {
                return Err(self.fail(format!(
                    "the document expects {} but manifest {} names layer {}: the document's digest is wrong or the reference names another image; nothing is downloaded",
                    oci::digest::oci_string(e),
                    resolved.manifest,
                    resolved.layer.digest
                )));
            }
        }
        let what = match (&resolved.signed_by, resolved.pinned) {
            (Some(_), _) => "signed",
            (None, true) => "pinned",
            (None, false) if resolved.insecure => "INSECURE (unpinned) tag",
            (None, false) => "tag",
        };
        crate::runner::log::info(&format!(
            "{}: {what} manifest {}{}, layer {} ({} bytes)",
            self.url,
            resolved.manifest,
            resolved
                .index
                .as_ref()
                .map(|i| format!(" (from index {i})"))
                .unwrap_or_default(),
            resolved.layer.digest,
            resolved.layer.size
        ));
        let resolved = Arc::new(resolved);
        *held = Some(resolved.clone());
        Ok(resolved)
    }
}

impl OciSource {
    /// Checks the manifest's registry signature when one is required (the signed digest
    /// is the one the reference names), and marks an unpinned tag taken by `--insecure`.
    fn vouch(&self, registry: &Registry, resolved: &mut Resolved) -> Result<(), Failure> {
        resolved.signed_by = self.signer(registry, resolved.top_digest())?;
        resolved.insecure = self.trust.insecure
            && !resolved.pinned
            && resolved.signed_by.is_none()
            && self.expected.is_none();
        Ok(())
    }

    /// Who signed manifest `digest` in the lookaside store, when a registry signature is
    /// required (`None` when none is); a missing or bad signature refuses the source.
    fn signer(&self, registry: &Registry, digest: &str) -> Result<Option<String>, Failure> {
        let Some(policy) = &self.trust.signature else {
            return Ok(None);
        };
        let now = crate::timestamp::now().clamp(0, i64::from(u32::MAX)) as u32;
        let v = policy
            .verify(registry.reference(), digest, now)
            .map_err(|cause| {
                next_source(ImageError::Untrusted {
                    url: self.url.clone(),
                    cause,
                })
            })?;
        crate::runner::log::info(&format!(
            "{}: manifest {} signed by {} ({})",
            self.url, v.digest, v.signer, v.url
        ));
        Ok(Some(v.signer))
    }

    /// What the reference resolved to (resolving once).
    pub(crate) fn resolved(&self) -> Result<Resolved, ImageError> {
        self.resolve().map(|r| (*r).clone()).map_err(|f| f.error)
    }

    /// The layer digest of the trusted manifest: what the served bytes must hash to when
    /// the document gives no digest of its own.
    pub(crate) fn layer_digest(&self) -> Result<Digest, ImageError> {
        let resolved = self.resolve().map_err(|f| f.error)?;
        resolved.layer_digest().ok_or_else(|| ImageError::Fetch {
            url: self.url.clone(),
            cause: format!("layer digest {} is not usable", resolved.layer.digest),
        })
    }
}

impl OciSource {
    /// The reference resolved (once) as a container image: manifest, config, layers.
    pub(crate) fn container(&self) -> Result<Arc<ContainerImage>, Failure> {
        let mut held = self.container.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = held.as_ref() {
            return Ok(c.clone());
        }
        let registry = self.registry()?;
        let mut image = oci::resolve_container(&registry).map_err(|e| self.failure(e))?;
        if self.trust.signature.is_some() {
            let top = image
                .index
                .clone()
                .unwrap_or_else(|| image.manifest.clone());
            image.signed_by = self.signer(&registry, &top)?;
        }
        crate::runner::log::info(&format!(
            "{}: container image, manifest {}{}, config {}, {} layers ({} bytes)",
            self.url,
            image.manifest,
            image
                .index
                .as_ref()
                .map(|i| format!(" (from index {i})"))
                .unwrap_or_default(),
            image.config,
            image.layers.len(),
            image.download_bytes()
        ));
        let image = Arc::new(image);
        *held = Some(image.clone());
        Ok(image)
    }

    /// Whether the registry has blob `digest` of `size` bytes (`HEAD`, nothing downloaded).
    pub(crate) fn has_blob(&self, digest: &str, size: u64) -> Result<(), Failure> {
        let registry = self.registry()?;
        match registry.blob_size(digest).map_err(|e| self.failure(e))? {
            Some(n) if n != size => Err(self.fail(format!(
                "the registry has {n} bytes for blob {digest} but the manifest says {size}; its storage is damaged or it serves another blob"
            ))),
            _ => Ok(()),
        }
    }

    /// This URL's view of blob `layer` of the already resolved `image`: the layer
    /// stands where a disk image's layer would.
    pub(crate) fn blob_of(&self, image: &ContainerImage, layer: &oci::ImageLayer) -> Resolved {
        Resolved {
            reference: self.url.clone(),
            manifest: image.manifest.clone(),
            index: image.index.clone(),
            pinned: true,
            layer: oci::Layer {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                size: layer.size,
                title: None,
            },
            signed_by: None,
            insecure: false,
        }
    }
}

/// The blob of an `oci://` URL.
pub(crate) struct OciOrigin {
    source: Arc<OciSource>,
    /// The blob to read when it is not the one the reference resolves to (a layer of a
    /// container image).
    preset: Option<Arc<Resolved>>,
    /// The blob's http origin, once resolved.
    blob: Option<(HttpOrigin, Arc<Resolved>)>,
}

impl OciOrigin {
    /// Reads `source`'s blob.
    pub(crate) fn new(source: Arc<OciSource>) -> OciOrigin {
        OciOrigin {
            source,
            preset: None,
            blob: None,
        }
    }

    /// Reads blob `blob` of `source`'s repository (a layer of a container image).
    pub(crate) fn for_blob(source: Arc<OciSource>, blob: Resolved) -> OciOrigin {
        OciOrigin {
            source,
            preset: Some(Arc::new(blob)),
            blob: None,
        }
    }

    /// What this origin serves: the preset blob, or the reference resolved.
    fn target(&self) -> Result<Arc<Resolved>, Failure> {
        match &self.preset {
            Some(r) => Ok(r.clone()),
            None => self.source.resolve(),
        }
    }

    /// The resolved blob's origin (resolving first).
    fn blob(&mut self) -> Result<(&mut HttpOrigin, Arc<Resolved>), Failure> {
        if self.blob.is_none() {
            let resolved = self.target()?;
            let registry = self.source.registry()?;
            let url = registry.blob_url(&resolved.layer.digest);
            let authorize = Box::new(move || registry.authorization().map_err(|e| e.to_string()));
            let http = HttpOrigin::new(&url, self.source.client.clone())
                .with_authorization(authorize)
                .content_addressed();
            self.blob = Some((http, resolved));
        }
        let (http, resolved) = self.blob.as_mut().expect("set above");
        Ok((http, resolved.clone()))
    }

    /// `op` on the blob; after a 401 (a token that expired early or was revoked),
    /// authenticates again and tries once more. Other answers become sentences
    /// naming the registry, the repository and the blob.
    fn on_blob<T>(
        &mut self,
        op: impl Fn(&mut HttpOrigin) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let (http, resolved) = self.blob()?;
        let first = op(http);
        let result = match first {
            Err(f) if matches!(f.error, ImageError::Status { status: 401, .. }) => {
                let registry = self.source.registry()?;
                match registry.reauthenticate() {
                    Ok(true) => op(self.blob()?.0),
                    Ok(false) => Err(f),
                    Err(e) => Err(self.source.failure(e)),
                }
            }
            other => other,
        };
        result.map_err(|f| self.blob_failure(f, &resolved))
    }

    fn blob_failure(&self, f: Failure, resolved: &Resolved) -> Failure {
        let ImageError::Status { status, .. } = f.error else {
            return Failure {
                error: match f.error {
                    ImageError::Fetch { cause, .. } => ImageError::Fetch {
                        url: self.source.url.clone(),
                        cause: format!("blob {}: {cause}", resolved.layer.digest),
                    },
                    other => other,
                },
                ..f
            };
        };
        let Ok(reference) = &self.source.reference else {
            return f;
        };
        let e = OciError::Refused(Box::new(oci::error::Refusal {
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            reference: reference.manifest_ref(),
            what: format!("blob {}", resolved.layer.digest),
            status,
            errors: Vec::new(),
            retry_after: None,
        }));
        Failure {
            error: ImageError::Fetch {
                url: self.source.url.clone(),
                cause: e.to_string(),
            },
            ..f
        }
    }

    /// A size an answer gave must be the layer's.
    fn check_size(&self, served: Option<u64>, resolved: &Resolved) -> Result<(), Failure> {
        match served {
            Some(n) if n != resolved.layer.size => Err(self.source.fail(format!(
                "the registry serves {n} bytes for blob {} but manifest {} says {}; the registry's storage is damaged or it serves another blob",
                resolved.layer.digest, resolved.manifest, resolved.layer.size
            ))),
            _ => Ok(()),
        }
    }
}

impl Origin for OciOrigin {
    fn url(&self) -> &str {
        &self.source.url
    }

    fn open(&mut self, offset: u64) -> Result<Opened, Failure> {
        let opened = self.on_blob(|h| h.open(offset))?;
        let resolved = self.target()?;
        self.check_size(opened.total, &resolved)?;
        Ok(Opened {
            total: Some(resolved.layer.size),
            ..opened
        })
    }

    fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, Failure> {
        let bytes = self.on_blob(|h| h.read_range(offset, len))?;
        let size = self.blob.as_ref().and_then(|(h, _)| h.len());
        let resolved = self.target()?;
        self.check_size(size, &resolved)?;
        Ok(bytes)
    }

    fn len(&self) -> Option<u64> {
        self.blob.as_ref().map(|(_, r)| r.layer.size)
    }

    /// Resolves the reference (the manifest checked against its pinned digest) and
    /// asks for the blob's first byte.
    fn probe(&mut self) -> Result<Option<u64>, Failure> {
        let size = self.on_blob(|h| h.probe())?;
        let resolved = self.target()?;
        self.check_size(size, &resolved)?;
        Ok(Some(resolved.layer.size))
    }

    fn registry(&self) -> Option<Resolved> {
        self.blob.as_ref().map(|(_, r)| (**r).clone())
    }
}
