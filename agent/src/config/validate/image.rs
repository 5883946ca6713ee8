//! The image has somewhere to go: a whole disk, a declared volume, or the mounted root.

use super::checker::{by, known, Checker};
use crate::config::explicit::ExplicitStorage;
use crate::config::model::{Document, Image};
use crate::config::types::Name;
use crate::kinds::ImageFormat;
use crate::units::SizeSpec;

/// One digest, and a target that fits the image's format.
pub(super) fn check(c: &mut Checker, doc: &Document, st: &ExplicitStorage) {
    let Some(img) = &doc.image else { return };
    match (&img.sha256, &img.sha512) {
        (None, None) => c.err(
            "image",
            "give the image's digest as sha256 or sha512; imprint writes nothing it cannot verify",
        ),
        (Some(_), Some(_)) => c.err("image.sha512", "give sha256 or sha512, not both"),
        _ => {}
    }
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
