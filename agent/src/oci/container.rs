//! Container images as root filesystems (`format: rootfs`): the image config and its
//! `rootfs.diff_ids`, the layers' media types (tar, gzip, zstd; OCI and Docker), and a
//! reference resolved to both: manifest checked against the pinned digest, config
//! checked against its descriptor, one diff_id per layer.

use super::client::Registry;
use super::digest::{oci_string, parse_digest};
use super::error::OciError;
use super::manifest::{Descriptor, ImageManifest};
use super::resolve::{image_manifest, ImageOf};
use super::select::IMAGE_CONFIGS;
use crate::plan::{Digest, DigestAlgorithm};
use serde::{Deserialize, Serialize};

/// An image config larger than this is refused (real ones are a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// How a layer's tar is compressed, as its media type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LayerCodec {
    /// `application/vnd.oci.image.layer.v1.tar`.
    Tar,
    /// `…tar+gzip`, Docker's `…rootfs.diff.tar.gzip`.
    Gzip,
    /// `…tar+zstd`.
    Zstd,
}

/// The codec of a layer of media type `media_type`, or why it cannot be applied.
pub fn layer_codec(media_type: &str) -> Result<LayerCodec, String> {
    const OCI: &str = "application/vnd.oci.image.layer.v1.";
    if media_type.contains("nondistributable") || media_type.contains(".foreign.") {
        return Err(format!(
            "is a non-distributable (foreign) layer ({media_type}), which registries do not serve; rebuild the image without foreign layers"
        ));
    }
    match media_type.strip_prefix(OCI) {
        Some("tar") => return Ok(LayerCodec::Tar),
        Some("tar+gzip") => return Ok(LayerCodec::Gzip),
        Some("tar+zstd") => return Ok(LayerCodec::Zstd),
        _ => {}
    }
    if media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip" {
        return Ok(LayerCodec::Gzip);
    }
    Err(format!(
        "has media type {media_type}, which is not a tar layer (application/vnd.oci.image.layer.v1.tar[+gzip|+zstd] or application/vnd.docker.image.rootfs.diff.tar.gzip)"
    ))
}

/// One layer to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageLayer {
    /// `sha256:<hex>` of the blob as served.
    pub digest: String,
    /// Its media type as the manifest says.
    pub media_type: String,
    /// Bytes of the blob.
    pub size: u64,
    /// Its compression, from the media type.
    pub codec: LayerCodec,
    /// `sha256:<hex>` of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

/// A container image resolved: what is applied, base layer first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ContainerImage {
    /// The reference as given.
    pub reference: String,
    /// Digest of the image manifest (of the `linux/amd64` child of an index).
    pub manifest: String,
    /// Digest of the index the manifest was chosen from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Digest of the image config.
    pub config: String,
    /// The layers, base first.
    pub layers: Vec<ImageLayer>,
    /// Who signed the manifest (the index, when the tag names one), when a registry
    /// signature was required and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

impl ContainerImage {
    /// Bytes of every layer blob.
    pub fn download_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

#[derive(Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

/// The layers of `manifest` paired with the diff_ids of its `config` bytes; the reason
/// as a sentence when the manifest is not a container image or they do not match.
pub fn layers(manifest: &ImageManifest, config: &[u8]) -> Result<Vec<ImageLayer>, String> {
    let c: Config = serde_json::from_slice(config).map_err(|e| {
        format!(
            "its config {} is not an image config: {e}",
            manifest.config.digest
        )
    })?;
    if c.rootfs.kind != "layers" {
        return Err(format!(
            "its config says rootfs.type {:?}, not \"layers\"",
            c.rootfs.kind
        ));
    }
    if c.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(format!(
            "it has {} layers but its config lists {} diff_ids; the image is damaged, build and push it again",
            manifest.layers.len(),
            c.rootfs.diff_ids.len()
        ));
    }
    if manifest.layers.is_empty() {
        return Err("it has no layers".into());
    }
    manifest
        .layers
        .iter()
        .zip(&c.rootfs.diff_ids)
        .enumerate()
        .map(|(i, (l, diff_id))| layer(i, l, diff_id))
        .collect()
}

fn layer(i: usize, l: &Descriptor, diff_id: &str) -> Result<ImageLayer, String> {
    let which = format!("layer {} ({})", i + 1, l.digest);
    let codec = layer_codec(&l.media_type).map_err(|r| format!("its {which} {r}"))?;
    parse_digest(&l.digest).map_err(|r| format!("its {which} has no usable digest: {r}"))?;
    let d = parse_digest(diff_id).map_err(|r| format!("the diff_id of its {which}: {r}"))?;
    if d.algorithm != DigestAlgorithm::Sha256 {
        return Err(format!("the diff_id of its {which} is not sha256"));
    }
    Ok(ImageLayer {
        digest: l.digest.clone(),
        media_type: l.media_type.clone(),
        size: l.size,
        codec,
        diff_id: diff_id.to_string(),
    })
}

/// Resolves the reference `registry` was opened for to a container image: manifest
/// (pinned digest checked), config (digest, size, at most [`MAX_CONFIG_BYTES`]) and layers.
pub fn resolve_container(registry: &Registry) -> Result<ContainerImage, OciError> {
    let shown = registry.reference().to_string();
    let ImageOf {
        manifest,
        digest,
        index,
    } = image_manifest(registry)?;
    let unusable = |reason: String| OciError::Manifest {
        reference: shown.clone(),
        reason: format!("manifest {} {reason}", oci_string(&digest)),
    };
    if !IMAGE_CONFIGS.contains(&manifest.config.media_type.as_str()) {
        return Err(unusable(format!(
            "is not a container image (its config is {}, not an OCI or Docker image config); a disk image is deployed with format: disk or filesystem",
            manifest.config.media_type
        )));
    }
    let config: Digest = parse_digest(&manifest.config.digest)
        .map_err(|r| unusable(format!("names a config with no usable digest: {r}")))?;
    let bytes = registry.small_blob(
        "image config",
        &config,
        manifest.config.size,
        MAX_CONFIG_BYTES,
    )?;
    let layers = layers(&manifest, &bytes).map_err(&unusable)?;
    Ok(ContainerImage {
        reference: shown.clone(),
        manifest: oci_string(&digest),
        index,
        config: oci_string(&config),
        layers,
        signed_by: None,
    })
}
