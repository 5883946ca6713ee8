//! The finalize step: fstab, crypttab, mdadm.conf and boot loader targets of a rootfs deployment.

use super::devices::{Devices, Mounted};
use crate::config::{Document, ExplicitStorage, FsType, Partition, PartitionType};
use crate::plan::{FinalizePlan, Plan, Step};
use std::collections::HashMap;
use std::path::PathBuf;

/// What makes the extracted root boot: the files finalize writes and where the boot
/// loader goes. `uuids` are the filesystems' by device name.
pub(super) fn finalize(
    doc: &Document,
    st: &ExplicitStorage,
    dev: &Devices,
    uuids: &HashMap<String, String>,
    plan: &Plan,
    mounted: &Mounted,
) -> FinalizePlan {
    FinalizePlan {
        fstab: fstab(st, uuids, mounted),
        crypttab: crypttab(st, plan),
        mdadm: mdadm(plan),
        boot_disks: boot_disks(st, plan),
        esp_copies: esp_copies(st, dev),
        kernel_args: kernel_args(st, plan),
        commands: doc
            .boot
            .as_ref()
            .map(|b| b.finalize.clone())
            .unwrap_or_default(),
        command_timeout_secs: doc
            .boot
            .as_ref()
            .and_then(|b| b.finalize_timeout)
            .unwrap_or(crate::finalize::DEFAULT_COMMAND_TIMEOUT.as_secs()),
        arch: doc.image_arch(),
    }
}

fn fstab(st: &ExplicitStorage, uuids: &HashMap<String, String>, mounted: &Mounted) -> Vec<String> {
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
    fstab
}

fn crypttab(st: &ExplicitStorage, plan: &Plan) -> Vec<String> {
    let luks_uuids: HashMap<&str, &str> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Luks(l) => Some((l.name.as_str(), l.uuid.as_str())),
            _ => None,
        })
        .collect();
    st.luks
        .iter()
        .map(|(l, _)| {
            format!(
                "{} UUID={} none luks,discard",
                l.name,
                luks_uuids[l.name.as_str()]
            )
        })
        .collect()
}

fn mdadm(plan: &Plan) -> Vec<String> {
    plan.steps
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
        .collect()
}

/// The partitions of type `alias` (`esp`, `bios-boot`), in document order.
fn boot_parts<'a>(st: &'a ExplicitStorage, alias: &str) -> impl Iterator<Item = &'a Partition> {
    let guid = PartitionType::alias(alias).guid();
    st.partitions
        .iter()
        .filter(move |(p, _)| p.ptype.guid() == guid)
        .map(|(p, _)| p)
}

/// Every disk with a BIOS boot partition or an ESP: the boot loader goes on each.
fn boot_disks(st: &ExplicitStorage, plan: &Plan) -> Vec<PathBuf> {
    let mut boot_disks: Vec<PathBuf> = Vec::new();
    for p in boot_parts(st, "bios-boot").chain(boot_parts(st, "esp")) {
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
    boot_disks
}

/// With an ESP mounted at /boot/efi, the unmounted ESPs kept as copies of it.
fn esp_copies(st: &ExplicitStorage, dev: &Devices) -> Vec<PathBuf> {
    let esp_mounted = st
        .filesystems
        .iter()
        .any(|(f, _)| f.mount.as_ref().is_some_and(|m| m.as_str() == "/boot/efi"));
    if !esp_mounted {
        return Vec::new();
    }
    boot_parts(st, "esp")
        .filter(|p| {
            st.filesystems
                .iter()
                .any(|(f, _)| f.device == p.name && f.mount.is_none())
        })
        .map(|p| dev.path[p.name.as_str()].clone())
        .collect()
}

/// Tang pins are reached from the deployed initramfs: it needs the network before
/// the root volume opens (initramfs-tools and dracut both bring it up for `ip=dhcp`;
/// finalize adds `rd.neednet=1` for dracut). A document's own `ip=` wins.
fn kernel_args(st: &ExplicitStorage, plan: &Plan) -> Vec<String> {
    let mut kernel_args = plan.kernel_args.clone();
    let tang = st.luks.iter().any(|(l, _)| !l.tang.is_empty());
    if tang && !kernel_args.iter().any(|a| a.starts_with("ip=")) {
        kernel_args.push("ip=dhcp".into());
    }
    kernel_args
}
