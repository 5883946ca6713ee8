//! Reference → the blob that is the disk image: the manifest (checked against the
//! pinned digest, or its digest reported when only a tag names it), the `linux/amd64`
//! child of an index (checked against the index's descriptor), and the layer
//! [`select`](super::select) chooses.

use super::client::Registry;
use super::digest::{oci_string, parse_digest};
use super::error::OciError;
use super::manifest::{parse, Descriptor, Fetched, ImageManifest, TITLE};
use super::select::{disk_layer, platform_child};
use crate::plan::Digest;
use serde::{Deserialize, Serialize};

/// What a registry reference resolved to: reported with the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resolved {
    /// The reference as given.
    pub reference: String,
    /// Digest of the image manifest (of the child, when the reference names an index).
    pub manifest: String,
    /// Digest of the index the manifest was chosen from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// True when the reference pins a digest and the served manifest had it; false
    /// when only a tag named it (then `manifest`/`index` say what the tag named).
    pub pinned: bool,
    /// The layer served as the image.
    pub layer: Layer,
    /// For an image signed in a lookaside store: the key that signed the manifest
    /// (`openpgp:<fingerprint>`), verified before anything was downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// True when `--insecure` accepted a tag that nothing pins (no digest, no
    /// signature): `manifest` is only what the tag named at that moment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// The layer that is the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Layer {
    /// `sha256:<hex>`: the served blob must have it.
    pub digest: String,
    /// Its media type as the manifest says.
    pub media_type: String,
    /// Its size as the manifest says: the served blob must have it.
    pub size: u64,
    /// Its `org.opencontainers.image.title`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl Resolved {
    /// The layer's digest, parsed.
    pub fn layer_digest(&self) -> Option<Digest> {
        parse_digest(&self.layer.digest).ok()
    }

    /// The digest the reference named: the index's when it named one, else the
    /// manifest's. A registry signature signs this one.
    pub fn top_digest(&self) -> &str {
        self.index.as_deref().unwrap_or(&self.manifest)
    }
}

/// The image manifest a reference names: the manifest itself, or an index's
/// `linux/amd64` child checked against its entry.
pub struct ImageOf {
    /// The manifest, parsed from bytes that had `digest`.
    pub manifest: ImageManifest,
    /// Its digest.
    pub digest: Digest,
    /// The digest of the index it was chosen from, if any.
    pub index: Option<String>,
}

/// The image manifest of the reference `registry` was opened for (checked against the
/// pinned digest; an index's child checked against its entry).
pub fn image_manifest(registry: &Registry) -> Result<ImageOf, OciError> {
    let reference = registry.reference().clone();
    let unusable = |reason: String| OciError::Manifest {
        reference: reference.to_string(),
        reason,
    };
    let top = registry.manifest(&reference.manifest_ref(), reference.digest.as_ref())?;
    let fetched = parse(&top.bytes, top.content_type.as_deref()).map_err(&unusable)?;
    Ok(match fetched {
        Fetched::Manifest(m) => ImageOf {
            manifest: *m,
            digest: top.digest,
            index: None,
        },
        Fetched::Index(ix) => {
            let child = platform_child(&ix, crate::arch::Arch::host())
                .map_err(|r| unusable(format!("the index {} {r}", oci_string(&top.digest))))?;
            let (manifest, digest) = child_manifest(registry, child).map_err(|e| match e {
                Child::Registry(e) => e,
                Child::Unusable(r) => unusable(r),
            })?;
            ImageOf {
                manifest,
                digest,
                index: Some(oci_string(&top.digest)),
            }
        }
    })
}

/// Resolves the reference `registry` was opened for.
pub fn resolve(registry: &Registry) -> Result<Resolved, OciError> {
    let reference = registry.reference().clone();
    let shown = reference.to_string();
    let unusable = |reason: String| OciError::Manifest {
        reference: shown.clone(),
        reason,
    };
    let ImageOf {
        manifest,
        digest,
        index,
    } = image_manifest(registry)?;
    let layer = disk_layer(&manifest)
        .map_err(|r| unusable(format!("manifest {} {r}", oci_string(&digest))))?;
    parse_digest(&layer.digest)
        .map_err(|r| unusable(format!("its layer's digest is not usable: {r}")))?;
    Ok(Resolved {
        reference: shown.clone(),
        manifest: oci_string(&digest),
        index,
        pinned: reference.digest.is_some(),
        layer: Layer {
            digest: layer.digest.clone(),
            media_type: layer.media_type.clone(),
            size: layer.size,
            title: layer.annotations.get(TITLE).cloned(),
        },
        signed_by: None,
        insecure: false,
    })
}

enum Child {
    Registry(OciError),
    Unusable(String),
}

/// The index entry's manifest, fetched by its digest and checked against its descriptor.
fn child_manifest(
    registry: &Registry,
    child: &Descriptor,
) -> Result<(ImageManifest, Digest), Child> {
    let want = parse_digest(&child.digest)
        .map_err(|r| Child::Unusable(format!("its index entry's digest is not usable: {r}")))?;
    let raw = registry
        .manifest(&child.digest, Some(&want))
        .map_err(Child::Registry)?;
    if raw.bytes.len() as u64 != child.size {
        return Err(Child::Unusable(format!(
            "the manifest {} has {} bytes but its index entry says {}",
            child.digest,
            raw.bytes.len(),
            child.size
        )));
    }
    match parse(&raw.bytes, raw.content_type.as_deref()) {
        Ok(Fetched::Manifest(m)) => Ok((*m, raw.digest)),
        Ok(Fetched::Index(_)) => Err(Child::Unusable(format!(
            "the linux/amd64 entry {} is itself an index; pin the digest of the image manifest",
            child.digest
        ))),
        Err(r) => Err(Child::Unusable(format!(
            "the manifest {} {r}",
            child.digest
        ))),
    }
}
