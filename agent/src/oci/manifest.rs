//! Manifests and indexes as a puller reads them: OCI image manifest and index,
//! Docker schema 2 manifest and manifest list (the same shapes under other media
//! types). Unknown fields and media types of layers are accepted, as the image spec
//! asks; the manifest's own type must be one of the four.

use serde::Deserialize;
use std::collections::BTreeMap;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The `Accept` header of every manifest request: registries such as distribution 2.8
/// answer 404 or 400 for a stored type the client does not list, even by digest.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// The layer annotation naming the file a layer holds (ORAS, oci2disk, Ironic).
pub const TITLE: &str = "org.opencontainers.image.title";
/// Registries should accept manifests of at least this size; a puller reads no more.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// A content descriptor: what a manifest or index says about a blob or child.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// `sha256:<hex>` as written.
    pub digest: String,
    /// Bytes of the blob.
    pub size: u64,
    /// Free-form metadata (the title of a file, a disk type).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The platform of an index entry.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// The artifact type of an index entry (OCI 1.1).
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64` (also written `x86_64`).
    pub architecture: String,
    /// `v8` for arm64, … (not used to choose).
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// `os/architecture[/variant]`.
    pub fn describe(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// The config blob (empty for most artifacts).
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The artifact's type (OCI 1.1), when set.
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Manifest annotations (`disktype`, …).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// An index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    /// The child manifests.
    pub manifests: Vec<Descriptor>,
}

/// A manifest as fetched, by what it is.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// One image (or artifact).
    Manifest(Box<ImageManifest>),
    /// Several, by platform.
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    schema_version: Option<u64>,
    #[serde(default)]
    media_type: Option<String>,
}

/// Parses manifest `bytes` served with `content_type`; the reason as a sentence when
/// it is not one of the four types or the body and the header disagree.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Fetched, String> {
    let head: Head = serde_json::from_slice(bytes)
        .map_err(|e| format!("the manifest is not JSON of a manifest: {e}"))?;
    if head.schema_version == Some(1) {
        return Err("it is a Docker schema 1 manifest, which is not supported; push the image again with a current client (schema 2 or OCI)".into());
    }
    // Content-Type parameters are ignored; a body type that differs from it is refused.
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty());
    let kind = match (&head.media_type, &header) {
        (Some(body), Some(h)) if body != h && is_known(h) => {
            return Err(format!(
                "the registry served it as {h} but the manifest says it is {body}"
            ))
        }
        (Some(body), _) => body.clone(),
        (None, Some(h)) => h.clone(),
        (None, None) => {
            return Err("neither the registry nor the manifest says what type it is".into())
        }
    };
    let bad = |e: serde_json::Error| format!("the {kind} does not parse: {e}");
    match kind.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(Fetched::Manifest(
            serde_json::from_slice(bytes).map_err(bad)?,
        )),
        OCI_INDEX | DOCKER_LIST => Ok(Fetched::Index(serde_json::from_slice(bytes).map_err(bad)?)),
        other => Err(format!(
            "its media type {other} is not an OCI or Docker schema 2 manifest or index"
        )),
    }
}

fn is_known(t: &str) -> bool {
    matches!(t, OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST)
}
