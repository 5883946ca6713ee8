//! The boot-entries step: which disks get a UEFI boot entry, and what marks it theirs.

use super::chosen::{self, Chosen};
use super::targets::Targets;
use crate::config::{Document, ExplicitStorage, PartitionType};
use crate::plan::{BootEntriesPlan, BootEntryDisk, ImageFormat};

/// The step for `doc`, unless `boot.uefi_entries` is off or no disk firmware could
/// boot gets a loader: the disk of a whole-disk image, or for a rootfs the disks with
/// an ESP. Loop devices are left out: firmware never boots one, and an entry made
/// for one would land in the NVRAM of the machine running a test.
pub(super) fn plan(
    doc: &Document,
    st: &ExplicitStorage,
    chosen: &[Chosen],
    targets: &Targets,
) -> Option<BootEntriesPlan> {
    if !doc.boot.as_ref().is_none_or(|b| b.uefi_entries) {
        return None;
    }
    let names: Vec<String> = match doc.image.as_ref()?.format {
        ImageFormat::Disk => targets.image_disk.clone().into_iter().collect(),
        ImageFormat::Rootfs => {
            let esp = PartitionType::alias("esp").guid();
            let mut v: Vec<String> = Vec::new();
            for (p, _) in st.partitions.iter().filter(|(p, _)| p.ptype.guid() == esp) {
                if !v.iter().any(|d| d == p.disk.as_str()) {
                    v.push(p.disk.to_string());
                }
            }
            v
        }
        ImageFormat::Filesystem => Vec::new(),
    };
    let disks: Vec<BootEntryDisk> = names
        .iter()
        .map(|name| (name, chosen::disk(chosen, name)))
        .filter(|(_, d)| !d.path.to_string_lossy().starts_with("/dev/loop"))
        .map(|(name, d)| BootEntryDisk {
            disk: name.clone(),
            path: d.path.clone(),
            identity: d.boot_identity(),
        })
        .collect();
    (!disks.is_empty()).then(|| BootEntriesPlan {
        disks,
        efivars: crate::efi::vars::EFIVARS.into(),
    })
}
