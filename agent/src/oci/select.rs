//! Which child of an index, and which layer of a manifest, is the disk image.
//!
//! **Index → manifest.** Entries whose platform is `linux/amd64` (`x86_64` is the same
//! architecture; the variant is ignored). When several match, the Ironic `disktype`
//! annotation ranks them: `raw`, then `applehv` (raw), then `qcow2`, then `qemu`
//! (qcow2), then entries without one; the single best is taken and a tie is refused.
//! An index of exactly one entry without a platform is taken as that entry.
//!
//! **Manifest → layer**, rules in this order, the first that decides wins:
//! 1. A container image (an image config, no `artifactType`, no layer titled with
//!    `org.opencontainers.image.title`) is refused: its layers are a root filesystem,
//!    not a disk image.
//! 2. Exactly one layer: that layer (ORAS single-file artifacts, Ironic's rule).
//! 3. Several layers, exactly one titled: that one (oci2disk discards untitled layers).
//! 4. Anything else is ambiguous and refused with every layer listed.
//!
//! The layer's media type never chooses: oci2disk pulls only
//! `application/vnd.oci.image.layer.v1.tar` (the `oras push` default) while Ironic
//! reads the compression from a `+gzip`/`+zstd` suffix, so no single value suits both;
//! imprint accepts any and detects the compression from the bytes.

use super::manifest::{Descriptor, ImageManifest, Index, TITLE};
use crate::units::Bytes;

/// Config types of container images (root filesystem layers).
pub const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The index entry for `linux/<arch>` (`amd64`, `arm64`), or why none or several.
pub fn platform_child(index: &Index, arch: crate::arch::Arch) -> Result<&Descriptor, String> {
    if let [only] = index.manifests.as_slice() {
        if only.platform.is_none() {
            return Ok(only);
        }
    }
    let matching: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == "linux" && crate::arch::Arch::parse(&p.architecture) == Some(arch)
            })
        })
        .collect();
    let Some(best) = matching.iter().map(|d| disk_rank(d)).min() else {
        return Err(format!(
            "has no linux/{} entry ({})",
            arch.oci(),
            list(&index.manifests, describe_entry)
        ));
    };
    let top: Vec<&Descriptor> = matching
        .into_iter()
        .filter(|d| disk_rank(d) == best)
        .collect();
    match top.as_slice() {
        [one] => Ok(one),
        many => Err(format!(
            "has {} linux/{} entries that nothing tells apart ({}); pin the digest of the one to write",
            many.len(),
            arch.oci(),
            list(many.iter().copied(), describe_entry)
        )),
    }
}

/// Ironic's ranking of `annotations.disktype` (lower is preferred).
fn disk_rank(d: &Descriptor) -> u32 {
    match d.annotations.get("disktype").map(String::as_str) {
        Some("raw") => 1,
        Some("applehv") => 2,
        Some("qcow2") => 3,
        Some("qemu") => 4,
        _ => 100,
    }
}

/// The layer that is the disk image (rules in the module comment).
pub fn disk_layer(m: &ImageManifest) -> Result<&Descriptor, String> {
    let titled: Vec<&Descriptor> = m
        .layers
        .iter()
        .filter(|l| l.annotations.contains_key(TITLE))
        .collect();
    if m.artifact_type.is_none()
        && IMAGE_CONFIGS.contains(&m.config.media_type.as_str())
        && titled.is_empty()
    {
        return Err(format!(
            "is a container image ({} layers of a root filesystem, config {}), not a disk image: deploy it with format: rootfs, or push the disk image as a single-file artifact",
            m.layers.len(),
            m.config.media_type
        ));
    }
    match (m.layers.as_slice(), titled.as_slice()) {
        ([], _) => Err("has no layers".into()),
        ([one], _) => Ok(one),
        (_, [one]) => Ok(one),
        (all, _) => Err(format!(
            "has {} layers and no single one is the disk image ({}); push the disk image alone, as a single-layer artifact",
            all.len(),
            list(all, describe_layer)
        )),
    }
}

fn list<'a>(ds: impl IntoIterator<Item = &'a Descriptor>, f: fn(&Descriptor) -> String) -> String {
    ds.into_iter().map(f).collect::<Vec<_>>().join("; ")
}

fn describe_entry(d: &Descriptor) -> String {
    let platform = d
        .platform
        .as_ref()
        .map_or("no platform".to_string(), |p| p.describe());
    match d.annotations.get("disktype") {
        Some(t) => format!("{} {platform} disktype {t}", d.digest),
        None => format!("{} {platform}", d.digest),
    }
}

fn describe_layer(d: &Descriptor) -> String {
    let title = d
        .annotations
        .get(TITLE)
        .map_or("untitled".to_string(), |t| format!("{t:?}"));
    format!(
        "{title} {} {} {}",
        d.media_type,
        d.digest,
        Bytes(d.size).human()
    )
}
