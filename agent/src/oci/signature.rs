//! Registry image signatures in containers/image "simple signing" form, read from a
//! lookaside store: what `skopeo copy --sign-by <fingerprint>` and `skopeo
//! standalone-sign` write. A signature is an OpenPGP signed message whose payload
//! (JSON) names the manifest digest and the image's identity; it is fetched from
//! `<lookaside>/<repository>@sha256=<hex>/signature-<n>` (n = 1, 2, … until the first
//! that does not exist), verified with an allowed key before its JSON is read, and
//! then read strictly (`critical` holds exactly `type`, `image` and `identity`).
//!
//! The signed digest is the one the reference names: an index's when it names an
//! index (what `skopeo copy --all --sign-by` signs), else the manifest's. The
//! identity must name the same repository path (the registry host is not compared,
//! so a mirror serves the same signature) and, for a reference without a digest,
//! the same tag.

use super::reference::Reference;
use crate::trust::openpgp::message::MessageError;
use crate::trust::TrustRoot;
use serde::Deserialize;
use std::path::PathBuf;

/// Signatures read per image at most (`signature-1` … `signature-16`).
pub const MAX_SIGNATURES: u32 = 16;
/// `critical.type` of a containers/image signature.
pub const SIGNATURE_TYPE: &str = "atomic container signature";

/// How a registry image's signature is checked: the lookaside store and the keys
/// that may sign.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Base URL of the lookaside store (`http(s)://` or `file://`).
    pub lookaside: String,
    /// The keys that may sign (their OpenPGP certificates are used).
    pub keys: TrustRoot,
    /// The keys are the document's own (`image.signature.keys`), not the trust root.
    pub listed: bool,
    /// PEM bundle for an https lookaside store.
    pub ca_bundle: Option<PathBuf>,
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `openpgp:<fingerprint>` of the signing key.
    pub signer: String,
    /// The manifest (or index) digest it signs.
    pub digest: String,
    /// Where it was read.
    pub url: String,
}

impl Policy {
    /// The URL of signature number `n` (from 1) of `digest` in `repository`.
    pub fn signature_url(&self, repository: &str, digest: &str, n: u32) -> String {
        format!(
            "{}/{repository}@{}/signature-{n}",
            self.lookaside.trim_end_matches('/'),
            digest.replacen(':', "=", 1)
        )
    }

    /// Finds a signature of `digest` (what `reference` names) by an allowed key; any
    /// one suffices. `now` (unix seconds) judges key expiry.
    pub fn verify(
        &self,
        reference: &Reference,
        digest: &str,
        now: u32,
    ) -> Result<Verified, String> {
        let mut refused = Vec::new();
        for n in 1..=MAX_SIGNATURES {
            let url = self.signature_url(&reference.repository, digest, n);
            let bytes = match crate::trust::document::fetch(&url, self.ca_bundle.as_deref()) {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    return Err(format!(
                        "fetching the image's signature {url}: {e} (the lookaside store must answer, or say 404 after the last signature)"
                    ))
                }
            };
            match self.check_one(&bytes, reference, digest, now) {
                Ok(signer) => {
                    return Ok(Verified {
                        signer,
                        digest: digest.to_string(),
                        url,
                    })
                }
                Err(why) => refused.push(format!("{url}: {why}")),
            }
        }
        if refused.is_empty() {
            return Err(format!(
                "the image {reference} (manifest {digest}) is not signed: {} does not exist; sign it (skopeo copy --sign-by <fingerprint>, or skopeo standalone-sign) and publish the signature in the lookaside store {}",
                self.signature_url(&reference.repository, digest, 1),
                self.lookaside
            ));
        }
        Err(format!(
            "no signature of the image {reference} (manifest {digest}) is acceptable: {}",
            refused.join("; ")
        ))
    }

    /// One signature blob: verified first, then its payload read; the signer.
    fn check_one(
        &self,
        bytes: &[u8],
        reference: &Reference,
        digest: &str,
        now: u32,
    ) -> Result<String, String> {
        let opened = self
            .keys
            .open_signed_message(bytes, now)
            .map_err(|e| match e {
                MessageError::OtherKey { signer, allowed } if self.listed => format!(
                    "signed by key {signer}, which is not one of the keys image.signature.keys lists ({allowed})"
                ),
                MessageError::OtherKey { signer, allowed } => format!(
                    "signed by key {signer}, which is not in the trust root (trusted OpenPGP keys: {allowed})"
                ),
                MessageError::Refused(crate::trust::openpgp::OpenPgpError::Mismatch(k)) => format!(
                    "the signature by openpgp:{k} does not verify (the signature was changed, or damaged in the store)"
                ),
                e => e.to_string(),
            })?;
        check_payload(&opened.payload, reference, digest)?;
        Ok(format!("openpgp:{}", opened.signer))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    critical: Critical,
    /// Free-form (creator, timestamp): accepted, never trusted for anything.
    #[serde(default, rename = "optional")]
    _optional: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: SignedImage,
    identity: Identity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    reference: String,
}

/// Reads a verified payload strictly and checks it signs `digest` for `reference`.
pub fn check_payload(payload: &[u8], reference: &Reference, digest: &str) -> Result<(), String> {
    let p: Payload = serde_json::from_slice(payload).map_err(|e| {
        format!("its payload is not a containers signature (critical: type, image, identity): {e}")
    })?;
    let c = p.critical;
    if c.kind != SIGNATURE_TYPE {
        return Err(format!(
            "its payload is of type {:?}, not {SIGNATURE_TYPE:?}",
            c.kind
        ));
    }
    if c.image.digest != digest {
        return Err(format!(
            "it signs manifest {}, not {digest} (the signature is for another image, or for an earlier push of this tag)",
            c.image.digest
        ));
    }
    identity_matches(&c.identity.reference, reference)
}

/// The signed identity names `reference`'s repository (any registry host) and, when
/// the reference has no digest, its tag.
fn identity_matches(signed: &str, reference: &Reference) -> Result<(), String> {
    let (repository, tag) = split_identity(signed)
        .ok_or_else(|| format!("its identity {signed:?} is not an image reference"))?;
    if repository != reference.repository {
        return Err(format!(
            "its identity {signed} names repository {repository}, not {} (the signature is for another image)",
            reference.repository
        ));
    }
    if reference.digest.is_none() && tag != reference.tag.as_deref() {
        return Err(format!(
            "its identity {signed} names tag {}, not {} (a tag without a digest needs a signature for that tag)",
            tag.unwrap_or("(none)"),
            reference.tag.as_deref().unwrap_or("(none)")
        ));
    }
    Ok(())
}

/// `[host/]path[:tag][@digest]` → the repository path (host removed, Docker Hub's
/// `library/` added to a one-component name) and the tag.
fn split_identity(text: &str) -> Option<(String, Option<&str>)> {
    let named = text.split('@').next().filter(|n| !n.is_empty())?;
    let last = named.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match named[last..].rfind(':') {
        Some(i) => (&named[..last + i], Some(&named[last + i + 1..])),
        None => (named, None),
    };
    let path = match name.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest.to_string(),
        Some(_) => name.to_string(),
        None => format!("library/{name}"),
    };
    (!path.is_empty()).then_some((path, tag))
}

#[cfg(test)]
mod tests;
