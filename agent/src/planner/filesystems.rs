//! Filesystems and mounts: one mkfs per filesystem (not the volume a filesystem image
//! fills), and for a rootfs image the mounts it is extracted across, parents first.

use super::devices::{Devices, Mounted};
use super::ids::derived_uuid;
use crate::config::{Document, ExplicitStorage, Filesystem, FsType, Origin};
use crate::plan::{ImageFormat, MkfsPlan, MountPlan, Plan, Step};
use std::collections::HashMap;

/// One mkfs step per filesystem; the UUID of each, by device name.
pub(super) fn mkfs(
    doc: &Document,
    st: &ExplicitStorage,
    seed: &str,
    dev: &Devices,
    plan: &mut Plan,
) -> HashMap<String, String> {
    let image_target = doc
        .image
        .as_ref()
        .filter(|i| i.format == ImageFormat::Filesystem)
        .and_then(|i| i.target.as_ref());
    let mut uuids: HashMap<String, String> = HashMap::new();
    for (f, _) in &st.filesystems {
        if image_target.is_some_and(|t| *t == f.device) {
            continue;
        }
        let uuid = fs_uuid(f, seed);
        uuids.insert(f.device.to_string(), uuid.clone());
        plan.steps.push(Step::Mkfs(MkfsPlan {
            name: f.device.to_string(),
            device: dev.path[f.device.as_str()].clone(),
            fstype: f.fstype,
            label: f.label.clone(),
            uuid,
            mount: f.mount.as_ref().map(|m| m.to_string()),
        }));
    }
    uuids
}

/// The filesystem's UUID; vfat has a 32-bit volume id, written `XXXX-XXXX`.
fn fs_uuid(f: &Filesystem, seed: &str) -> String {
    let u = derived_uuid(seed, &format!("fs:{}", f.device));
    if f.fstype == FsType::Vfat {
        let h = u.simple().to_string().to_ascii_uppercase();
        format!("{}-{}", &h[..4], &h[4..8])
    } else {
        u.to_string()
    }
}

/// The filesystems the deployed system mounts (swap excluded), parents first.
pub(super) fn mounted(st: &ExplicitStorage) -> Vec<&(Filesystem, Origin)> {
    let mut mounted: Vec<_> = st
        .filesystems
        .iter()
        .filter(|(f, _)| f.mount.is_some() && f.fstype != FsType::Swap)
        .collect();
    mounted.sort_by_key(|(f, _)| {
        let m = f.mount.as_ref().expect("filtered").as_str().to_string();
        (if m == "/" { 0 } else { m.matches('/').count() }, m)
    });
    mounted
}

/// One mount step per mounted filesystem, in order.
pub(super) fn mounts(mounted: &Mounted, dev: &Devices, plan: &mut Plan) {
    for (f, _) in mounted {
        plan.steps.push(Step::Mount(MountPlan {
            device: dev.path[f.device.as_str()].clone(),
            mountpoint: f.mount.as_ref().expect("filtered").to_string(),
            fstype: f.fstype,
            options: f.options.clone(),
        }));
    }
}
