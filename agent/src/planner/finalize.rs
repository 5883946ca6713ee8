//! The finalize step: fstab, crypttab, mdadm.conf and boot loader targets of a rootfs deployment.

use super::storage::{Devices, Mounted};
use crate::config::{Document, ExplicitStorage, FsType};
use crate::plan::*;
use std::collections::HashMap;
use std::path::PathBuf;

pub(super) fn finalize(
    doc: &Document,
    st: &ExplicitStorage,
    dev: &Devices,
    uuids: &HashMap<String, String>,
    plan: &Plan,
    mounted: &Mounted,
) -> FinalizePlan {
    let mut fstab: Vec<String> = mounted
        .iter()
        .map(|(f, _)| {
            let m = f.mount.as_ref().expect("mounted").as_str();
            let pass = match (f.fstype, m) {
                (FsType::Xfs, _) => 0,
                (_, "/") => 1,
                _ => 2,
            };
            let opts = if f.options.is_empty() {
                "defaults".to_string()
            } else {
                f.options.join(",")
            };
            format!(
                "UUID={} {m} {} {opts} 0 {pass}",
                uuids[f.device.as_str()],
                f.fstype.as_str()
            )
        })
        .collect();
    fstab.extend(
        st.filesystems
            .iter()
            .filter(|(f, _)| f.fstype == FsType::Swap)
            .map(|(f, _)| format!("UUID={} none swap defaults 0 0", uuids[f.device.as_str()])),
    );
    let luks_uuids: HashMap<&str, &str> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Luks(l) => Some((l.name.as_str(), l.uuid.as_str())),
            _ => None,
        })
        .collect();
    let crypttab = st
        .luks
        .iter()
        .map(|(l, _)| {
            format!(
                "{} UUID={} none luks,discard",
                l.name,
                luks_uuids[l.name.as_str()]
            )
        })
        .collect();
    let mdadm = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Raid(r) => {
                let h = r.uuid.replace('-', "");
                let md = format!("{}:{}:{}:{}", &h[..8], &h[8..16], &h[16..24], &h[24..]);
                Some(format!(
                    "ARRAY {} metadata={} UUID={md}",
                    r.path.display(),
                    r.metadata
                ))
            }
            _ => None,
        })
        .collect();
    let boot_parts = |alias: &str| {
        let guid = crate::config::PartitionType::alias(alias).guid();
        st.partitions
            .iter()
            .filter(move |(p, _)| p.ptype.guid() == guid)
            .map(|(p, _)| p.clone())
    };
    let mut boot_disks: Vec<PathBuf> = Vec::new();
    for p in boot_parts("bios-boot").chain(boot_parts("esp")) {
        let path = plan
            .disks
            .iter()
            .find(|d| d.name == p.disk.as_str())
            .map(|d| d.path.clone())
            .unwrap_or_default();
        if !boot_disks.contains(&path) {
            boot_disks.push(path);
        }
    }
    let esp_mounted = st
        .filesystems
        .iter()
        .any(|(f, _)| f.mount.as_ref().is_some_and(|m| m.as_str() == "/boot/efi"));
    let esp_copies = if esp_mounted {
        boot_parts("esp")
            .filter(|p| {
                st.filesystems
                    .iter()
                    .any(|(f, _)| f.device == p.name && f.mount.is_none())
            })
            .map(|p| dev.path[p.name.as_str()].clone())
            .collect()
    } else {
        Vec::new()
    };
    // Tang pins are reached from the deployed initramfs: it needs the network before
    // the root volume opens (initramfs-tools and dracut both bring it up for `ip=dhcp`;
    // finalize adds `rd.neednet=1` for dracut). A document's own `ip=` wins.
    let mut kernel_args = plan.kernel_args.clone();
    let tang = st.luks.iter().any(|(l, _)| !l.tang.is_empty());
    if tang && !kernel_args.iter().any(|a| a.starts_with("ip=")) {
        kernel_args.push("ip=dhcp".into());
    }
    FinalizePlan {
        fstab,
        crypttab,
        mdadm,
        boot_disks,
        esp_copies,
        kernel_args,
        commands: doc
            .boot
            .as_ref()
            .map(|b| b.finalize.clone())
            .unwrap_or_default(),
    }
}
