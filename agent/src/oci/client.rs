//! One repository of one registry, as a puller speaks to it: requests that
//! authenticate when asked, manifests fetched and checked byte for byte, and the
//! blob URLs the image is streamed from.

use super::auth::{Auth, Credentials};
use super::digest::{self, oci_string};
use super::error::{parse_errors, OciError, Refusal};
use super::manifest::{ACCEPT, MAX_MANIFEST_BYTES};
use super::reference::Reference;
use crate::plan::{Digest, DigestAlgorithm};
use crate::secret::Secret;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{
    ACCEPT as ACCEPT_HEADER, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use std::io::Read;

/// Error bodies are read up to this size for their message.
const MAX_ERROR_BYTES: u64 = 64 * 1024;

/// A repository at a registry, with its authentication.
pub struct Registry {
    reference: Reference,
    base: String,
    client: Client,
    auth: Auth,
}

/// A manifest's exact bytes, their type and their (checked) digest.
pub struct RawManifest {
    /// The bytes as served.
    pub bytes: Vec<u8>,
    /// `Content-Type`, if given.
    pub content_type: Option<String>,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl Registry {
    /// The repository `reference` names, reached with `client`.
    pub fn new(reference: Reference, client: Client, credentials: Option<Credentials>) -> Registry {
        let auth = Auth::new(
            &reference.registry,
            &reference.repository,
            &reference.to_string(),
            credentials,
        );
        Registry {
            base: reference.base_url(),
            reference,
            client,
            auth,
        }
    }

    /// The reference this repository was opened for.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The URL of blob `digest` (`…/v2/<name>/blobs/<digest>`).
    pub fn blob_url(&self, digest: &str) -> String {
        format!(
            "{}/v2/{}/blobs/{digest}",
            self.base, self.reference.repository
        )
    }

    /// The `Authorization` value to send now, fetching a new token first if the
    /// last has expired.
    pub fn authorization(&self) -> Result<Option<Secret>, OciError> {
        self.auth.ensure_fresh(&self.client)?;
        Ok(self.auth.header())
    }

    /// After a 401 from a request made outside this client: a new token (or the
    /// credentials) for the next one; `false` when there is nothing new to send.
    pub fn reauthenticate(&self) -> Result<bool, OciError> {
        self.auth.refresh(&self.client, None)
    }

    /// Sends `build`'s request with what the registry asked for; after a 401,
    /// authenticates by its challenge and sends it once more.
    fn send(
        &self,
        what: &str,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, OciError> {
        let mut retried = false;
        loop {
            let mut req = build(&self.client);
            let value = self.authorization()?;
            if let Some(v) = value.as_ref().and_then(crate::http::secret_header) {
                req = req.header(AUTHORIZATION, v);
            }
            let resp = req.send().map_err(|e| OciError::NoAnswer {
                registry: self.reference.registry.clone(),
                what: format!("the {what} of {}", self.reference),
                cause: crate::http::error_chain(&e.without_url()),
            })?;
            if resp.status().as_u16() == 401 && !retried {
                retried = true;
                let challenge = header(&resp, WWW_AUTHENTICATE.as_str());
                if self.auth.refresh(&self.client, challenge.as_deref())? {
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// The error a non-success answer to `what` (asked by `reference`) amounts to.
    pub fn refusal(&self, resp: Response, what: &str, reference: &str) -> OciError {
        let status = resp.status().as_u16();
        let retry_after = header(&resp, RETRY_AFTER.as_str()).and_then(|v| v.trim().parse().ok());
        let mut body = Vec::new();
        let _ = resp.take(MAX_ERROR_BYTES).read_to_end(&mut body);
        OciError::Refused(Box::new(Refusal {
            registry: self.reference.registry.clone(),
            repository: self.reference.repository.clone(),
            reference: reference.to_string(),
            what: what.to_string(),
            status,
            errors: parse_errors(&body),
            retry_after,
        }))
    }

    /// `GET /v2/<name>/manifests/<ref>`; with `expected`, the bytes must have that
    /// digest, else the digest the registry states (if it does) must be theirs.
    pub fn manifest(
        &self,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<RawManifest, OciError> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base, self.reference.repository
        );
        let what = "manifest";
        let resp = self.send(what, |c| c.get(&url).header(ACCEPT_HEADER, ACCEPT))?;
        if !resp.status().is_success() {
            return Err(self.refusal(resp, what, reference));
        }
        let content_type = header(&resp, CONTENT_TYPE.as_str());
        let stated = header(&resp, "docker-content-digest");
        let mut bytes = Vec::new();
        resp.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| OciError::NoAnswer {
                registry: self.reference.registry.clone(),
                what: format!("the manifest {reference}"),
                cause: crate::http::error_chain(&e),
            })?;
        let shown = format!("{}:{reference}", self.reference.repository);
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(OciError::Manifest {
                reference: shown,
                reason: format!("it is larger than {MAX_MANIFEST_BYTES} bytes"),
            });
        }
        let digest = self.check_digest(&bytes, expected, stated.as_deref(), &shown)?;
        Ok(RawManifest {
            bytes,
            content_type,
            digest,
        })
    }

    /// `GET` of a small blob (`kind`: `image config`) of `size` bytes, at most `max`:
    /// the bytes, checked against `digest` and `size`.
    pub fn small_blob(
        &self,
        kind: &str,
        digest: &Digest,
        size: u64,
        max: u64,
    ) -> Result<Vec<u8>, OciError> {
        let shown = oci_string(digest);
        let what = format!("{kind} {shown}");
        if size > max {
            return Err(OciError::Manifest {
                reference: self.reference.to_string(),
                reason: format!("its {what} is {size} bytes, more than the {max} allowed"),
            });
        }
        let url = self.blob_url(&shown);
        let resp = self.send(&what, |c| c.get(&url))?;
        if !resp.status().is_success() {
            return Err(self.refusal(resp, &what, &self.reference.manifest_ref()));
        }
        let mut bytes = Vec::new();
        resp.take(size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| OciError::NoAnswer {
                registry: self.reference.registry.clone(),
                what: format!("the {what} of {}", self.reference),
                cause: crate::http::error_chain(&e),
            })?;
        let got = digest::of(digest.algorithm, &bytes);
        if bytes.len() as u64 != size || &got != digest {
            return Err(OciError::DigestMismatch {
                reference: self.reference.to_string(),
                what: format!("the {what} served ({} bytes)", bytes.len()),
                expected: format!("{shown} ({size} bytes)"),
                actual: oci_string(&got),
                consequence: "the registry's storage is damaged or it serves another blob; nothing is written".into(),
            });
        }
        Ok(bytes)
    }

    /// `HEAD` of blob `digest`: its size when the registry has it (and says).
    pub fn blob_size(&self, digest: &str) -> Result<Option<u64>, OciError> {
        let what = format!("blob {digest}");
        let url = self.blob_url(digest);
        let resp = self.send(&what, |c| c.head(&url))?;
        if !resp.status().is_success() {
            return Err(self.refusal(resp, &what, &self.reference.manifest_ref()));
        }
        Ok(header(&resp, "content-length").and_then(|v| v.trim().parse().ok()))
    }

    fn check_digest(
        &self,
        bytes: &[u8],
        expected: Option<&Digest>,
        stated: Option<&str>,
        shown: &str,
    ) -> Result<Digest, OciError> {
        let mismatch =
            |expected: String, actual: &Digest, consequence: &str| OciError::DigestMismatch {
                reference: format!("{}/{shown}", self.reference.registry),
                what: "the manifest served".into(),
                expected,
                actual: oci_string(actual),
                consequence: consequence.into(),
            };
        if let Some(want) = expected {
            let got = digest::of(want.algorithm, bytes);
            if &got != want {
                return Err(mismatch(
                    oci_string(want),
                    &got,
                    "the registry (or a mirror) serves another image than the pinned one; nothing is written",
                ));
            }
            return Ok(got);
        }
        // By tag: the bytes are the manifest; a digest the registry states must be theirs.
        let stated = stated.and_then(|s| super::digest::parse_digest(s.trim()).ok());
        let algorithm = stated
            .as_ref()
            .map_or(DigestAlgorithm::Sha256, |d| d.algorithm);
        let got = digest::of(algorithm, bytes);
        if let Some(s) = stated {
            if s != got {
                return Err(mismatch(
                    oci_string(&s),
                    &got,
                    "the registry's Docker-Content-Digest does not match what it sent; nothing is written",
                ));
            }
        }
        Ok(got)
    }
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
