//! The validation checks of LUKS volumes and of the image (see [`super::validate`]).

use super::expand::{ExplicitStorage, Origin};
use super::model::*;
use super::types::Name;
use super::validate::{by, known, Checker};
use crate::plan::ImageFormat;

impl Checker {
    /// Partitions on a disk image's disk are added after the image's own; they hold a
    /// filesystem or a LUKS volume. Mount points are refused: the image's /etc/fstab is
    /// its own.
    fn beside_disk_image(&mut self, img: &Image, st: &ExplicitStorage, target: &Name) {
        // The layout lays a whole OS out; it does not go beside one.
        if let Some((_, o)) = st.partitions.iter().find(|(p, o)| p.disk == *target && !o.fields) {
            self.err(
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
                .or_else(|| st.lvm.iter().find(|(g, _, _)| g.pvs.contains(&p.name)).map(|(_, go, _)| go));
            if let Some(other) = member {
                self.err(
                    o.path.clone(),
                    format!(
                        "partition {:?} is added after the disk image on disk {:?}; it can hold a filesystem or a LUKS volume, not be a member of {}",
                        p.name.as_str(),
                        target.as_str(),
                        by(other)
                    ),
                );
            }
            if img.grow && p.size == crate::units::SizeSpec::Rest {
                self.err(
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
                self.err(
                    o.field("mount"),
                    "a disk image brings its own /etc/fstab, which imprint does not edit; remove mount and mount the volume by its label from user_data (cloud-init mounts)",
                );
            }
        }
    }

    pub(super) fn luks(&mut self, o: &Origin, l: &Luks) {
        let pins = l.tang.len() + usize::from(l.tpm2.is_some());
        if pins == 0 && l.recovery_passphrase.is_none() {
            self.err(
                o.path.clone(),
                "nothing could unlock this volume; add tang, tpm2 or recovery_passphrase",
            );
        }
        if l.threshold == 0 {
            self.err(o.field("threshold"), "must be at least 1");
        } else if pins > 0 && l.threshold as usize > pins {
            self.err(
                o.field("threshold"),
                format!("threshold {} is more than the {pins} pin(s) given; it must be between 1 and {pins}", l.threshold),
            );
        } else if pins == 0 && l.threshold > 1 {
            self.err(o.field("threshold"), "a threshold needs tang or tpm2 pins");
        }
        for (i, t) in l.tang.iter().enumerate() {
            if t.thumbprint.is_none() && !t.trust_on_first_use {
                self.err(
                    o.field(&format!("tang[{i}].thumbprint")),
                    "required: the thumbprint of the tang server's signing key (tang-show-keys), or trust_on_first_use: true",
                );
            }
        }
        if let Some(tpm) = &l.tpm2 {
            for (i, pcr) in tpm.pcrs.iter().enumerate() {
                if *pcr > 23 {
                    self.err(
                        o.field(&format!("tpm2.pcrs[{i}]")),
                        format!("PCR {pcr} does not exist; PCRs are 0 to 23"),
                    );
                } else if tpm.pcrs[..i].contains(pcr) {
                    self.err(
                        o.field(&format!("tpm2.pcrs[{i}]")),
                        format!("PCR {pcr} is listed twice"),
                    );
                }
            }
        }
        if !matches!(l.key_size, 256 | 512) {
            self.err(
                o.field("key_size"),
                format!(
                    "expected 256 or 512 (bits; XTS splits it in two keys), got {}",
                    l.key_size
                ),
            );
        }
        if l.cipher.trim().is_empty() {
            self.err(o.field("cipher"), "is empty; remove it for aes-xts-plain64");
        }
    }

    pub(super) fn image(&mut self, doc: &Document, st: &ExplicitStorage) {
        let Some(img) = &doc.image else { return };
        match (&img.sha256, &img.sha512) {
            (None, None) => self.err("image", "give the image's digest as sha256 or sha512; imprint writes nothing it cannot verify"),
            (Some(_), Some(_)) => self.err("image.sha512", "give sha256 or sha512, not both"),
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
                            self.err("image.target", msg);
                            return;
                        }
                        t.clone()
                    }
                    None if doc.disks.len() == 1 => doc.disks[0].name.clone(),
                    None => {
                        let msg = format!("the document lists {} disks; say which one the disk image goes to ({})", doc.disks.len(), disk_names());
                        self.err("image.target", msg);
                        return;
                    }
                };
                self.beside_disk_image(img, st, &target);
            }
            ImageFormat::Filesystem => {
                let Some(t) = &img.target else {
                    self.err("image.target", "a filesystem image needs a target volume: a partition, md array, LUKS volume or logical volume name");
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
                    self.err("image.target", format!("unknown volume {:?}; a filesystem image goes to a declared partition or volume", t.as_str()));
                } else if let Some((_, o)) = st.filesystems.iter().find(|(f, _)| f.device == *t) {
                    self.err(
                        "image.target",
                        format!("{:?} is also formatted by {}; the filesystem image brings its own filesystem", t.as_str(), by(o)),
                    );
                }
            }
            ImageFormat::Rootfs => {
                if img.target.is_some() {
                    self.err(
                        "image.target",
                        "a rootfs image is extracted across the mounted filesystems; remove target",
                    );
                }
                if !st
                    .filesystems
                    .iter()
                    .any(|(f, _)| f.mount.as_ref().is_some_and(|m| m.as_str() == "/"))
                {
                    self.err(
                        "image.format",
                        "a rootfs image is extracted onto the filesystem mounted at /, and storage declares none; add one (or use storage.layout)",
                    );
                }
            }
        }
    }
}
