//! Where the image and the configdrive go, decided before any layer is planned: the
//! partition layer reserves room for them, later layers write them.

use super::chosen::Chosen;
use super::devices::disks_of;
use crate::config::{Document, ExplicitStorage, Filesystem, Origin};
use crate::plan::ImageFormat;

/// The disks the image and the configdrive go to (document names).
pub(super) struct Targets {
    /// The disk a whole-disk image is written to.
    pub image_disk: Option<String>,
    /// The disks that get a configdrive, the first holding the original.
    pub cd_disks: Vec<String>,
}

impl Targets {
    /// Decides the targets of `doc` with the disks `chosen`.
    pub fn decide(doc: &Document, st: &ExplicitStorage, chosen: &[Chosen]) -> Targets {
        let image_disk = doc
            .image
            .as_ref()
            .filter(|i| i.format == ImageFormat::Disk)
            .map(|i| match &i.target {
                Some(t) => t.to_string(),
                None => chosen[0].name.clone(),
            });
        let cd_disks = configdrive_disks(doc, st, chosen, image_disk.as_deref());
        Targets {
            image_disk,
            cd_disks,
        }
    }

    /// Whether a whole-disk image goes to disk `name`.
    pub fn image_on(&self, name: &str) -> bool {
        self.image_disk.as_deref() == Some(name)
    }
}

/// The filesystem mounted at `/`, if the storage declares one.
pub(super) fn root_fs(st: &ExplicitStorage) -> Option<&(Filesystem, Origin)> {
    st.filesystems
        .iter()
        .find(|(f, _)| f.mount.as_ref().is_some_and(|m| m.as_str() == "/"))
}

/// The configdrive goes where the root is: on every disk of a mirrored root, so the
/// host keeps its identity (instance id, hostname, network) when a disk is gone.
fn configdrive_disks(
    doc: &Document,
    st: &ExplicitStorage,
    chosen: &[Chosen],
    image_disk: Option<&str>,
) -> Vec<String> {
    let Some(cd) = &doc.configdrive else {
        return Vec::new();
    };
    if let Some(d) = cd
        .disk
        .as_ref()
        .map(|d| d.to_string())
        .or_else(|| image_disk.map(String::from))
    {
        vec![d]
    } else if let Some((f, _)) = root_fs(st) {
        disks_of(st, f.device.as_str())
    } else {
        vec![st
            .partitions
            .first()
            .map(|(p, _)| p.disk.to_string())
            .unwrap_or_else(|| chosen[0].name.clone())]
    }
}
