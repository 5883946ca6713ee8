//! The image has somewhere to go: a whole disk, a declared volume, or the mounted root.

use super::checker::{by, known, Checker};
use crate::config::explicit::ExplicitStorage;
use crate::config::model::{Document, Image, ImageSignature};
use crate::config::types::Name;
use crate::kinds::ImageFormat;
use crate::units::SizeSpec;

/// One digest, and a target that fits the image's format.
pub(super) fn check(c: &mut Checker, doc: &Document, st: &ExplicitStorage) {
    let Some(img) = &doc.image else { return };
    registry(c, img);
    if !img.stores.is_empty() && img.format == ImageFormat::Rootfs {
        c.err(
            "image.stores",
            "chunk stores hold a casync blob index's chunks, which make a disk or filesystem \
             image (format: disk or filesystem), not a rootfs",
        );
    }
    if is_container(img) {
        container(c, img);
        return target(c, doc, st, img);
    }
    let oci = img.url.as_str().starts_with(crate::oci::SCHEME);
    match (&img.sha256, &img.sha512) {
        // A registry reference is pinned by its manifest digest or its registry
        // signature; a tag that nothing pins is refused by the planner (unless
        // `--insecure`), which knows the command line.
        (None, None) if img.signature.is_none() && !oci => c.err(
            "image",
            "give the image's digest as sha256 or sha512 (or its signature); imprint writes nothing it cannot verify",
        ),
        (Some(_), Some(_)) => c.err("image.sha512", "give sha256 or sha512, not both"),
        _ => {}
    }
    if let Some(sig) = &img.signature {
        signature(c, sig, oci);
    }
    target(c, doc, st, img);
}

/// `format: rootfs` from an `oci://` reference: a container image's layers.
fn is_container(img: &Image) -> bool {
    img.format == ImageFormat::Rootfs && img.url.as_str().starts_with(crate::oci::SCHEME)
}

/// A container image has no single file to digest or sign: it is pinned by its
/// manifest digest in `image.url`, which `sha256`/`sha512` may repeat; its mirrors
/// are registries too.
fn container(c: &mut Checker, img: &Image) {
    let Ok(reference) = crate::oci::Reference::parse(img.url.as_str()) else {
        return; // said by registry()
    };
    let lookaside = img
        .signature
        .as_ref()
        .is_some_and(|s| s.lookaside.is_some());
    // A tag alone is pinned by the manifest digest a valid registry signature signs.
    if let Some(pin) = reference.digest.as_ref() {
        container_digests(c, img, pin);
    } else if lookaside && (img.sha256.is_some() || img.sha512.is_some()) {
        c.err(
            "image.sha256",
            "a container image has no single file digest: the manifest digest its registry signature signs pins it; remove sha256/sha512",
        );
    } else if !lookaside {
        let r = &reference;
        c.err(
            "image.url",
            format!(
                "a container image is pinned by its manifest digest: oci://{}/{}@sha256:<manifest digest> (skopeo inspect --raw docker://{}/{}{} | sha256sum), or by a registry signature (image.signature.lookaside)",
                r.registry,
                r.repository,
                r.registry,
                r.repository,
                r.tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default()
            ),
        );
    }
    if img.signature.as_ref().is_some_and(|s| s.url.is_some()) {
        c.err(
            "image.signature.url",
            "a detached signature covers one file, and a container image is several layers pinned by its manifest: sign the manifest in a lookaside store (image.signature.lookaside) instead",
        );
    }
    mirrors_are_registries(c, img);
}

/// `sha256`/`sha512` of a container image may only repeat the manifest digest `pin`.
fn container_digests(c: &mut Checker, img: &Image, pin: &crate::plan::Digest) {
    let given = [
        ("image.sha256", img.sha256.as_ref().map(|h| h.to_string())),
        ("image.sha512", img.sha512.as_ref().map(|h| h.to_string())),
    ];
    for (path, hex) in given {
        let Some(hex) = hex else { continue };
        let algorithm = if path.ends_with("256") {
            "sha256"
        } else {
            "sha512"
        };
        let shown = crate::oci::digest::oci_string(pin);
        if !shown.eq_ignore_ascii_case(&format!("{algorithm}:{hex}")) {
            c.err(
                path,
                format!(
                    "a container image has no single file digest: give the manifest digest of image.url ({shown}) or nothing"
                ),
            );
        }
    }
}

/// A container image's mirrors are registries too.
fn mirrors_are_registries(c: &mut Checker, img: &Image) {
    for (i, m) in img.mirrors.iter().enumerate() {
        if !m.as_str().starts_with(crate::oci::SCHEME) {
            c.err(
                format!("image.mirrors[{i}]"),
                "a container image is pulled from registries: a mirror must be an oci:// reference",
            );
        }
    }
}

/// The image's target fits its format.
fn target(c: &mut Checker, doc: &Document, st: &ExplicitStorage, img: &Image) {
    let disk_names = || known(doc.disks.iter().map(|d| d.name.to_string()));
    match img.format {
        ImageFormat::Disk => {
            let target = match &img.target {
                Some(t) => {
                    if !doc.disks.iter().any(|d| d.name == *t) {
                        let msg = format!(
                            "{:?} is not a disk; a disk image goes to a whole disk ({})",
                            t.as_str(),
                            disk_names()
                        );
                        c.err("image.target", msg);
                        return;
                    }
                    t.clone()
                }
                None if doc.disks.len() == 1 => doc.disks[0].name.clone(),
                None => {
                    let msg = format!(
                        "the document lists {} disks; say which one the disk image goes to ({})",
                        doc.disks.len(),
                        disk_names()
                    );
                    c.err("image.target", msg);
                    return;
                }
            };
            beside_disk_image(c, img, st, &target);
        }
        ImageFormat::Filesystem => {
            let Some(t) = &img.target else {
                c.err("image.target", "a filesystem image needs a target volume: a partition, md array, LUKS volume or logical volume name");
                return;
            };
            let exists = st.partitions.iter().any(|(p, _)| p.name == *t)
                || st.raid.iter().any(|(r, _)| r.name == *t)
                || st.luks.iter().any(|(l, _)| l.name == *t)
                || st
                    .lvm
                    .iter()
                    .any(|(g, _, _)| g.volumes.iter().any(|v| v.name == *t));
            if !exists {
                c.err("image.target", format!("unknown volume {:?}; a filesystem image goes to a declared partition or volume", t.as_str()));
            } else if let Some((_, o)) = st.filesystems.iter().find(|(f, _)| f.device == *t) {
                c.err(
                    "image.target",
                    format!("{:?} is also formatted by {}; the filesystem image brings its own filesystem", t.as_str(), by(o)),
                );
            }
        }
        ImageFormat::Rootfs => {
            if img.target.is_some() {
                c.err(
                    "image.target",
                    "a rootfs image is extracted across the mounted filesystems; remove target",
                );
            }
            if !st
                .filesystems
                .iter()
                .any(|(f, _)| f.mount.as_ref().is_some_and(|m| m.as_str() == "/"))
            {
                c.err(
                    "image.format",
                    "a rootfs image is extracted onto the filesystem mounted at /, and storage declares none; add one (or use storage.layout)",
                );
            }
        }
    }
}

/// A detached signature (`url`) or a lookaside store (`lookaside`, for an `oci://`
/// image, whose signatures are OpenPGP), and keys that are keys.
fn signature(c: &mut Checker, sig: &ImageSignature, oci: bool) {
    match (&sig.url, &sig.lookaside) {
        (Some(_), Some(_)) => c.err(
            "image.signature",
            "give url (a detached signature over the file) or lookaside (the registry signatures of an oci:// image), not both",
        ),
        (None, None) => c.err(
            "image.signature",
            "give url (a detached signature over the file) or lookaside (the registry signatures of an oci:// image)",
        ),
        (None, Some(l)) => {
            if !oci {
                c.err(
                    "image.signature.lookaside",
                    "a lookaside store holds the signatures of a registry image: image.url must be an oci:// reference (use signature.url for a detached signature)",
                );
            }
            if l.as_str().starts_with(crate::oci::SCHEME) {
                c.err(
                    "image.signature.lookaside",
                    "a lookaside store is an http(s):// or file:// URL (what registries.d calls lookaside)",
                );
            }
        }
        (Some(u), None) => {
            if u.as_str().starts_with(crate::oci::SCHEME) {
                c.err(
                    "image.signature.url",
                    "a detached signature is read from an http(s):// or file:// URL",
                );
            }
        }
    }
    for (i, key) in sig.keys.iter().enumerate() {
        let path = format!("image.signature.keys[{i}]");
        match crate::trust::root::parse_key(key.as_bytes(), &path) {
            Err(e) => c.err(&path, e.to_string()),
            Ok(crate::trust::TrustedKey::Minisign(_)) if sig.lookaside.is_some() => c.err(
                &path,
                "registry signatures are OpenPGP signed messages: give an armored OpenPGP certificate, not a minisign key",
            ),
            Ok(_) => {}
        }
    }
}

/// `oci://` references parse (the reason at the URL's path), and `auth` goes with one.
fn registry(c: &mut Checker, img: &Image) {
    let urls = std::iter::once(("image.url".to_string(), &img.url)).chain(
        img.mirrors
            .iter()
            .enumerate()
            .map(|(i, u)| (format!("image.mirrors[{i}]"), u)),
    );
    for (path, url) in urls {
        if url.as_str().starts_with(crate::oci::SCHEME) {
            if let Err(e) = crate::oci::Reference::parse(url.as_str()) {
                c.err(path, e.to_string());
            }
        }
    }
    let Some(auth) = &img.auth else { return };
    if !img.url.as_str().starts_with(crate::oci::SCHEME) {
        c.err(
            "image.auth",
            "credentials are for a registry: image.url must be an oci:// reference",
        );
    }
    match (&auth.username, &auth.password, &auth.token) {
        (None, None, Some(_)) | (Some(_), Some(_), None) => {}
        (_, _, Some(_)) => c.err(
            "image.auth",
            "give a token, or a username and password, not both",
        ),
        (Some(_), None, None) => c.err("image.auth.password", "a username needs its password"),
        (None, Some(_), None) => c.err("image.auth.username", "a password needs its username"),
        (None, None, None) => c.err(
            "image.auth",
            "give a username and password, or a token (or remove auth for an anonymous pull)",
        ),
    }
}

/// Partitions on a disk image's disk are added after the image's own; they hold a
/// filesystem or a LUKS volume. Mount points are refused: the image's /etc/fstab is
/// its own.
fn beside_disk_image(c: &mut Checker, img: &Image, st: &ExplicitStorage, target: &Name) {
    // The layout lays a whole OS out; it does not go beside one.
    if let Some((_, o)) = st
        .partitions
        .iter()
        .find(|(p, o)| p.disk == *target && !o.fields)
    {
        c.err(
            "image.target",
            format!("disk {:?} also gets partitions from {}; a whole-disk image brings its own partition table", target.as_str(), by(o)),
        );
        return;
    }
    for (p, o) in st.partitions.iter().filter(|(p, _)| p.disk == *target) {
        let member = st
            .raid
            .iter()
            .find(|(r, _)| r.members.contains(&p.name))
            .map(|(_, ro)| ro)
            .or_else(|| {
                st.lvm
                    .iter()
                    .find(|(g, _, _)| g.pvs.contains(&p.name))
                    .map(|(_, go, _)| go)
            });
        if let Some(other) = member {
            c.err(
                o.path.clone(),
                format!(
                    "partition {:?} is added after the disk image on disk {:?}; it can hold a filesystem or a LUKS volume, not be a member of {}",
                    p.name.as_str(),
                    target.as_str(),
                    by(other)
                ),
            );
        }
        if img.grow && p.size == SizeSpec::Rest {
            c.err(
                "image.grow",
                format!(
                    "the image's last partition cannot grow: partition {:?} ({}) takes the rest of disk {:?}; drop one",
                    p.name.as_str(),
                    by(o),
                    target.as_str()
                ),
            );
        }
    }
    for (f, o) in &st.filesystems {
        if f.mount.is_some() {
            c.err(
                o.field("mount"),
                "a disk image brings its own /etc/fstab, which imprint does not edit; remove mount and mount the volume by its label from user_data (cloud-init mounts)",
            );
        }
    }
}
