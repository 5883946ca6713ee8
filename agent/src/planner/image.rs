//! The image layer: where the image goes and how it is checked; then the partitions a
//! whole-disk image gets beside its own, and what builds on them.

use super::chosen::{self, Chosen};
use super::devices::{disk_of, Devices};
use super::targets::{root_fs, Targets};
use crate::config::DocError;
use crate::config::{ExplicitStorage, Image, ImageAuth};
use crate::oci::Credentials;
use crate::plan::{
    AppendPlan, Digest, DigestAlgorithm, ImageFormat, ImagePin, ImagePlan, Plan,
    RegistrySignaturePlan, SignaturePlan, Step,
};
use std::collections::HashSet;
use std::path::PathBuf;

/// An image runs only on its own architecture: one built for another is refused before
/// anything is written.
pub(super) fn check_arch(img: &Image, machine: crate::arch::Arch) -> Result<(), DocError> {
    match img.arch {
        Some(a) if a != machine => Err(DocError::new(
            "image.arch",
            format!(
                "the image is built for {a} and this machine is {machine}: an image runs only on \
                 its own architecture; nothing was written"
            ),
        )),
        _ => Ok(()),
    }
}

/// The write-image step of `img`.
pub(super) fn write(
    img: &Image,
    st: &ExplicitStorage,
    chosen: &[Chosen],
    targets: &Targets,
    dev: &Devices,
) -> Step {
    let (target_disk, target_path) = match img.format {
        ImageFormat::Disk => {
            let name = targets.image_disk.clone().expect("disk image has a disk");
            let path = chosen::disk(chosen, &name).path.clone();
            (name, path)
        }
        ImageFormat::Filesystem => {
            let t = img.target.as_ref().expect("validated target").to_string();
            (disk_of(st, &t).unwrap_or_default(), dev.path[&t].clone())
        }
        ImageFormat::Rootfs => {
            let (f, _) = root_fs(st).expect("validated / mount");
            (
                disk_of(st, f.device.as_str()).unwrap_or_default(),
                dev.path[f.device.as_str()].clone(),
            )
        }
    };
    Step::WriteImage(ImagePlan {
        urls: std::iter::once(&img.url)
            .chain(&img.mirrors)
            .map(|u| u.to_string())
            .collect(),
        digest: digest(img),
        signature: img.signature.as_ref().and_then(|s| {
            s.url.as_ref().map(|url| SignaturePlan {
                url: url.to_string(),
                keys: s.keys.clone(),
            })
        }),
        registry_signature: img.signature.as_ref().and_then(|s| {
            s.lookaside.as_ref().map(|l| RegistrySignaturePlan {
                lookaside: l.to_string(),
                keys: s.keys.clone(),
            })
        }),
        // `pin` refused an unpinned tag unless `--insecure` allowed it.
        pin: pin(img).unwrap_or(ImagePin::Insecure),
        format: img.format,
        target_disk,
        target_path,
        grow: img.grow,
        verify: img.verify,
        auth: img.auth.as_ref().and_then(credentials),
        stores: img.stores.iter().map(|s| s.to_string()).collect(),
    })
}

/// The document's `image.auth` as credentials (validated: a token, or both
/// username and password).
fn credentials(auth: &ImageAuth) -> Option<Credentials> {
    match (&auth.username, &auth.password, &auth.token) {
        (_, _, Some(token)) => Some(Credentials::Token {
            token: token.clone(),
        }),
        (Some(username), Some(password), None) => Some(Credentials::Password {
            username: username.clone(),
            password: password.clone(),
        }),
        _ => None,
    }
}

/// What pins the image: its digest, its reference's manifest digest, a registry or a
/// detached signature; `None` for an `oci://` tag that nothing pins.
pub(super) fn pin(img: &Image) -> Option<ImagePin> {
    if img.sha256.is_some() || img.sha512.is_some() {
        return Some(ImagePin::Digest);
    }
    if let Ok(r) = crate::oci::Reference::parse(img.url.as_str()) {
        if let Some(d) = &r.digest {
            return Some(ImagePin::Manifest {
                digest: crate::oci::digest::oci_string(d),
            });
        }
    }
    let sig = img.signature.as_ref();
    if sig.is_some_and(|s| s.lookaside.is_some()) {
        Some(ImagePin::RegistrySignature)
    } else if sig.is_some_and(|s| s.url.is_some()) {
        Some(ImagePin::Signature)
    } else {
        None
    }
}

/// An `oci://` tag that nothing pins is refused unless the operator said `--insecure`.
pub(super) fn check_pinned(img: &Image, insecure: bool) -> Result<(), DocError> {
    if pin(img).is_some() || insecure {
        return Ok(());
    }
    Err(DocError::new(
        "image.url",
        format!(
            "{} names a tag without a digest, and nothing else pins the image: a tag can be moved to another image. \
             Pin the manifest digest (oci://…:tag@sha256:<manifest digest>), give image.sha256, or require a registry \
             signature (image.signature.lookaside); to deploy it anyway by hand, run imprint with --insecure",
            img.url.as_str()
        ),
    ))
}

fn digest(img: &Image) -> Option<Digest> {
    match (&img.sha256, &img.sha512) {
        (Some(h), _) => Some(Digest {
            algorithm: DigestAlgorithm::Sha256,
            hex: h.to_string().to_ascii_lowercase(),
        }),
        (None, Some(h)) => Some(Digest {
            algorithm: DigestAlgorithm::Sha512,
            hex: h.to_string().to_ascii_lowercase(),
        }),
        // A container image is pinned by its manifest digest (validated).
        (None, None) if img.format == ImageFormat::Rootfs => {
            crate::oci::Reference::parse(img.url.as_str())
                .ok()
                .and_then(|r| r.digest)
        }
        (None, None) => None,
    }
}

/// Appends the step adding `a`'s partitions, then moves the LUKS and mkfs steps that
/// build on them after it: they were planned in document order, before the image.
pub(super) fn move_after_image(a: AppendPlan, plan: &mut Plan) {
    let mut late: HashSet<PathBuf> = a.partitions.iter().map(|p| p.node.clone()).collect();
    let (mut keep, mut moved) = (Vec::new(), Vec::new());
    for step in plan.steps.drain(..) {
        let on_late = match &step {
            Step::Luks(l) if late.contains(&l.device) => Some(l.path.clone()),
            Step::Mkfs(m) if late.contains(&m.device) => Some(m.device.clone()),
            _ => None,
        };
        match on_late {
            Some(p) => {
                late.insert(p);
                moved.push(step);
            }
            None => keep.push(step),
        }
    }
    keep.push(Step::AppendPartitions(a));
    keep.extend(moved);
    plan.steps = keep;
}
