//! `format: rootfs` from a container image (`oci://`): the image resolved (manifest
//! pinned by digest, config, layers), then each layer in order streamed (checked
//! against its digest), decompressed as its media type says, hashed as uncompressed
//! tar against its diff_id, and extracted over the layers below with its whiteouts.

use super::extraction::{Extracted, Extraction, RootfsError};
use super::whiteout;
use crate::image::{ContainerPull, ImageError, VerifiedStream, WriteOptions};
use crate::oci::{ContainerImage, ImageLayer, LayerCodec};
use crate::plan::ImagePlan;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::cell::Cell;
use std::io::{self, Read};
use std::path::Path;

/// What was deployed from a registry, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ContainerDeployed {
    /// The `oci://` reference as given.
    pub reference: String,
    /// Digest of the image manifest (of the `linux/amd64` child of an index).
    pub manifest: String,
    /// Digest of the index the manifest was chosen from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Digest of the image config.
    pub config: String,
    /// The layers, base first, as applied.
    pub layers: Vec<LayerApplied>,
    /// Who signed the manifest, when a registry signature was required (it pins a tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// One layer as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LayerApplied {
    /// `sha256:<hex>` of the blob, verified.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its compression, from the media type (the first bytes agreed).
    pub codec: LayerCodec,
    /// Bytes of the blob downloaded.
    pub bytes: u64,
    /// `sha256:<hex>` of the uncompressed tar, verified.
    pub diff_id: String,
    /// Tar entries read (markers included).
    pub entries: u64,
    /// Whiteouts (`.wh.<name>`) applied.
    pub whiteouts: u64,
    /// Opaque markers (`.wh..wh..opq`) applied.
    pub opaque: u64,
}

/// Pulls the container image of `img` and lays its layers down under `root`;
/// `progress` gets the bytes downloaded, the bytes of every layer blob, and the tar
/// bytes read, across layers.
pub fn extract_container(
    img: &ImagePlan,
    root: &Path,
    opts: &WriteOptions,
    progress: impl Fn(u64, u64, u64),
) -> Result<(Extracted, ContainerDeployed, u64), RootfsError> {
    let pull = ContainerPull::new(&img.urls, opts)?;
    let image = pull.image()?;
    let total = image.download_bytes();
    let mut x = Extraction::new(root);
    let mut applied: Vec<LayerApplied> = Vec::new();
    for (index, layer) in image.layers.iter().enumerate() {
        let which = Which {
            image: &image,
            index,
            layer,
        };
        // Where the layers before this one left the counters.
        let downloaded: u64 = applied.iter().map(|l| l.bytes).sum();
        let read: u64 = x.archive_bytes;
        let done = apply_one(&pull, &which, &mut x, &|d, b| {
            progress(downloaded + d, total, read + b)
        })?;
        progress(downloaded + done.bytes, total, x.archive_bytes);
        crate::runner::log::info(&format!(
            "{} applied: {} entries, {} whiteouts, {} opaque directories",
            which.short(),
            done.entries,
            done.whiteouts,
            done.opaque
        ));
        applied.push(done);
    }
    let archive_bytes = x.archive_bytes;
    let (entries, counts) = x.finish()?;
    let downloaded = applied.iter().map(|l| l.bytes).sum();
    let deployed = ContainerDeployed {
        reference: image.reference.clone(),
        manifest: image.manifest.clone(),
        index: image.index.clone(),
        config: image.config.clone(),
        layers: applied,
        signed_by: image.signed_by.clone(),
    };
    let extracted = Extracted {
        entries,
        counts,
        archive_bytes,
    };
    Ok((extracted, deployed, downloaded))
}

/// Streams one layer, extracts it with its whiteouts and checks its diff_id;
/// `progress` gets the blob bytes downloaded and the tar bytes read within it.
fn apply_one(
    pull: &ContainerPull,
    which: &Which,
    x: &mut Extraction,
    progress: &dyn Fn(u64, u64),
) -> Result<LayerApplied, RootfsError> {
    let layer = which.layer;
    let served = Cell::new(0u64);
    let mut stream = Hashed {
        inner: pull.layer(which.image, layer).map_err(|e| which.error(e))?,
        hasher: sha2::Sha256::new(),
        served: &served,
    };
    let entries_before = x.entries;
    let mut wl = whiteout::Layer::new(x.root);
    x.archive(&mut stream, Some(&mut wl), &mut |b| {
        progress(served.get(), b)
    })
    .map_err(|e| match e {
        RootfsError::Image(ie) => which.error(ie),
        other => RootfsError::Layer {
            layer: which.name(),
            cause: other.to_string(),
        },
    })?;
    let diff_id = format!("sha256:{}", hex::encode(stream.hasher.finalize_reset()));
    if diff_id != layer.diff_id {
        return Err(which.diff_id(&diff_id));
    }
    Ok(LayerApplied {
        digest: layer.digest.clone(),
        media_type: layer.media_type.clone(),
        codec: layer.codec,
        bytes: layer.size,
        diff_id,
        entries: x.entries - entries_before,
        whiteouts: wl.whiteouts,
        opaque: wl.opaque,
    })
}

/// Applies uncompressed layer tars in order under `root`, whiteouts included, as
/// [`extract_container`] does with the layers it streams; each layer's (whiteouts,
/// opaque markers) applied.
pub fn apply_layers<R: Read>(
    layers: impl IntoIterator<Item = R>,
    root: &Path,
) -> Result<Vec<(u64, u64)>, RootfsError> {
    let mut x = Extraction::new(root);
    let mut applied = Vec::new();
    for r in layers {
        let mut l = whiteout::Layer::new(root);
        x.archive(r, Some(&mut l), &mut |_| {})?;
        applied.push((l.whiteouts, l.opaque));
    }
    x.finish()?;
    Ok(applied)
}

/// The layer being applied, for messages.
struct Which<'a> {
    image: &'a ContainerImage,
    index: usize,
    layer: &'a ImageLayer,
}

impl Which<'_> {
    /// `layer 2 of 3 (sha256:…)`.
    fn short(&self) -> String {
        format!(
            "layer {} of {} ({})",
            self.index + 1,
            self.image.layers.len(),
            self.layer.digest
        )
    }

    /// The layer, its image and manifest.
    fn name(&self) -> String {
        format!(
            "{} of {} (manifest {})",
            self.short(),
            self.image.reference,
            self.image.manifest
        )
    }

    /// A download error of this layer, with the layer named; a digest mismatch says
    /// that the manifest, not the document, named the digest.
    fn error(&self, e: ImageError) -> RootfsError {
        let cause = match e {
            ImageError::DigestMismatch { actual, .. } => format!(
                "the blob served has digest {actual}, not the one its manifest names: the registry's storage (or a mirror's) is damaged; push the image again"
            ),
            other => other.to_string(),
        };
        RootfsError::Layer {
            layer: self.name(),
            cause,
        }
    }

    fn diff_id(&self, actual: &str) -> RootfsError {
        RootfsError::Layer {
            layer: self.name(),
            cause: format!(
                "its uncompressed tar has digest {actual}, but the image config's diff_id is {}: the image is damaged or was assembled wrongly; build and push it again (what was extracted is wiped with the disks)",
                self.layer.diff_id
            ),
        }
    }
}

/// A layer's decompressed tar, hashed as it is read (its diff_id), with the bytes of
/// the blob downloaded so far.
struct Hashed<'a> {
    inner: VerifiedStream,
    hasher: sha2::Sha256,
    served: &'a Cell<u64>,
}

impl Read for Hashed<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(b)?;
        self.hasher.update(&b[..n]);
        self.served.set(self.inner.bytes_downloaded());
        Ok(n)
    }
}
