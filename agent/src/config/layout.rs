//! The short form: `storage.layout` becomes the explicit partitions, md arrays, LUKS
//! volume, volume group and filesystems someone could have written by hand; one
//! function per layer.

use super::error::DocError;
use super::explicit::{ExplicitStorage, Origin};
use super::model::*;
use super::types::*;
use crate::kinds::{FsType, MdMetadata, RaidLevel};
use crate::units::{Bytes, SizeSpec, GIB, MIB};

/// The logical volume name a short-form entry gets: `/` → `root`, `/var/log/audit` →
/// `var_log_audit`, swap → `swap`.
pub fn lv_name_for(vol: &LayoutVolume) -> Option<String> {
    if let Some(n) = &vol.name {
        return Some(n.to_string());
    }
    if vol.swap {
        return Some("swap".into());
    }
    let m = vol.mount.as_ref()?.as_str();
    if m == "/" {
        return Some("root".into());
    }
    // A mount point may hold characters a volume name may not (found by fuzzing: "/v`r").
    let mut n: String = m
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !n.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        n.insert_str(0, "lv");
    }
    n.truncate(64);
    Some(n)
}

fn name(s: impl Into<String>) -> Name {
    Name::derived(s.into())
}

/// The disks a layout uses: the mirror, `layout.raid.disks`, `layout.disk`, or the only disk.
pub(super) fn layout_disks(doc: &Document, layout: &Layout) -> Result<Vec<Name>, DocError> {
    if let Some(m) = &layout.mirror {
        return Ok(m.clone());
    }
    if let Some(r) = &layout.raid {
        return Ok(r.disks.clone());
    }
    if let Some(d) = &layout.disk {
        return Ok(vec![d.clone()]);
    }
    match doc.disks.as_slice() {
        [only] => Ok(vec![only.name.clone()]),
        _ => Err(DocError::new(
            "storage.layout.disk",
            format!(
                "the document lists {} disks; say which one the layout uses (disk: <name>), mirror two of them (mirror: [a, b]) or build an array of them (raid: {{ level: 10, disks: [a, b, c, d] }})",
                doc.disks.len()
            ),
        )),
    }
}

/// Adds the explicit items of `layout` to `out`, layer by layer.
pub(super) fn expand_layout(
    doc: &Document,
    layout: &Layout,
    out: &mut ExplicitStorage,
) -> Result<(), DocError> {
    let disks = layout_disks(doc, layout)?;
    let origin = Origin::derived(match (&layout.mirror, &layout.raid) {
        (Some(_), _) => "storage.layout.mirror",
        (None, Some(_)) => "storage.layout.raid",
        (None, None) => "storage.layout",
    });
    let arch = doc.image_arch();
    partitions(
        layout,
        &disks,
        arch.grub_bios_target().is_some(),
        &origin,
        out,
    );
    esps(&disks, &origin, out);
    let (boot_dev, root_dev) = arrays(layout, &disks, &origin, out);
    let boot_fs = Filesystem {
        device: boot_dev,
        fstype: FsType::Ext4,
        label: Some("boot".into()),
        mount: Some(MountPoint::parse("/boot").expect("valid mount point")),
        options: vec![],
    };
    out.filesystems.push((boot_fs, origin.clone()));
    let root_dev = luks(layout, root_dev, out);
    if layout.lvm.as_deref().unwrap_or(&[]).is_empty() {
        root(layout, root_dev, &origin, out);
    } else {
        volumes(layout, root_dev, out);
    }
    out.layout_disks = disks;
    Ok(())
}

/// Per disk: BIOS boot (where the architecture has BIOS: x86), ESP, /boot and the root
/// partition.
fn partitions(
    layout: &Layout,
    disks: &[Name],
    bios: bool,
    origin: &Origin,
    out: &mut ExplicitStorage,
) {
    let mirrored = disks.len() > 1;
    let lvm = layout.lvm.as_deref().unwrap_or(&[]);
    let root_size = match (&layout.root, lvm.is_empty()) {
        (Some(LayoutRoot { size: Some(s), .. }), true) => *s,
        _ => SizeSpec::Rest,
    };
    // What the root partition holds decides its type on a single disk.
    let root_type = match (mirrored, layout.luks.is_some(), !lvm.is_empty()) {
        (true, _, _) => "raid",
        (false, true, _) => "luks",
        (false, false, true) => "lvm",
        (false, false, false) => "linux",
    };
    let part = |disk: &Name, role: &str, size: SizeSpec, ptype: &str| Partition {
        name: name(format!("{disk}-{role}")),
        disk: disk.clone(),
        size,
        ptype: PartitionType::alias(ptype),
        label: None,
    };
    let boot_type = if mirrored { "raid" } else { "linux" };
    for d in disks {
        let bios_part = bios.then(|| part(d, "bios", SizeSpec::Bytes(Bytes(MIB)), "bios-boot"));
        for p in bios_part.into_iter().chain([
            part(d, "esp", SizeSpec::Bytes(Bytes(512 * MIB)), "esp"),
            part(d, "boot", SizeSpec::Bytes(Bytes(GIB)), boot_type),
            part(d, "root", root_size, root_type),
        ]) {
            out.partitions.push((p, origin.clone()));
        }
    }
}

/// One ESP per disk: the first is mounted; finalize copies it onto the others.
/// Mirrored, the mounted ESP lives on one disk only: `nofail` (and a short device
/// wait) lets the system boot from the other disk when that one is gone.
fn esps(disks: &[Name], origin: &Origin, out: &mut ExplicitStorage) {
    let esp_options: Vec<String> = if disks.len() > 1 {
        vec![
            "umask=0077".into(),
            "nofail".into(),
            "x-systemd.device-timeout=10s".into(),
        ]
    } else {
        vec!["umask=0077".into()]
    };
    for (i, d) in disks.iter().enumerate() {
        let fs = Filesystem {
            device: name(format!("{d}-esp")),
            fstype: FsType::Vfat,
            label: None,
            mount: (i == 0).then(|| MountPoint::parse("/boot/efi").expect("valid mount point")),
            options: esp_options.clone(),
        };
        out.filesystems.push((fs, origin.clone()));
    }
}

/// On more than one disk: md arrays for /boot (RAID1 across every disk) and root (RAID1,
/// or `raid.level`). The devices /boot and root go on.
fn arrays(
    layout: &Layout,
    disks: &[Name],
    origin: &Origin,
    out: &mut ExplicitStorage,
) -> (Name, Name) {
    if disks.len() <= 1 {
        return (
            name(format!("{}-boot", disks[0])),
            name(format!("{}-root", disks[0])),
        );
    }
    let members = |role: &str| disks.iter().map(|d| name(format!("{d}-{role}"))).collect();
    // Superblock at the end (1.0): firmware and GRUB read a member as a plain filesystem.
    let boot = Raid {
        name: name("md-boot"),
        level: RaidLevel::Raid1,
        members: members("boot"),
        metadata: MdMetadata::V1_0,
        chunk: None,
    };
    let root = Raid {
        name: name("md-root"),
        level: layout.raid.as_ref().map_or(RaidLevel::Raid1, |r| r.level),
        members: members("root"),
        metadata: MdMetadata::V1_2,
        chunk: layout.raid.as_ref().and_then(|r| r.chunk),
    };
    out.raid.push((boot, origin.clone()));
    out.raid.push((root, origin.clone()));
    (name("md-boot"), name("md-root"))
}

/// The LUKS volume over `root_dev`, if the layout encrypts; the device above it.
fn luks(layout: &Layout, root_dev: Name, out: &mut ExplicitStorage) -> Name {
    let Some(l) = &layout.luks else {
        return root_dev;
    };
    let luks = Luks {
        name: name("luks-root"),
        device: root_dev,
        cipher: l.cipher.clone().unwrap_or_else(|| "aes-xts-plain64".into()),
        key_size: l.key_size.unwrap_or(512),
        label: None,
        tang: l.tang.clone(),
        tpm2: l.tpm2.clone(),
        threshold: l.threshold.unwrap_or(1),
        recovery_passphrase: l.recovery_passphrase.clone(),
    };
    out.luks
        .push((luks, Origin::explicit("storage.layout.luks".into())));
    name("luks-root")
}

/// Without `lvm`: the root filesystem on `root_dev`.
fn root(layout: &Layout, root_dev: Name, origin: &Origin, out: &mut ExplicitStorage) {
    let fstype = layout
        .root
        .as_ref()
        .and_then(|r| r.fstype)
        .unwrap_or(FsType::Ext4);
    let fs = Filesystem {
        device: root_dev,
        fstype,
        label: Some("root".into()),
        mount: Some(MountPoint::parse("/").expect("valid mount point")),
        options: vec![],
    };
    let o = if layout.root.is_some() {
        Origin::explicit("storage.layout.root".into())
    } else {
        origin.clone()
    };
    out.filesystems.push((fs, o));
}

/// With `lvm`: volume group `vg0` on `root_dev`, a volume per entry, and the
/// filesystems of the entries that have one.
fn volumes(layout: &Layout, root_dev: Name, out: &mut ExplicitStorage) {
    let lvm = layout.lvm.as_deref().unwrap_or(&[]);
    let mut volumes = Vec::new();
    let mut origins = Vec::new();
    for (i, v) in lvm.iter().enumerate() {
        let o = Origin::explicit(format!("storage.layout.lvm[{i}]"));
        let lv = name(lv_name_for(v).unwrap_or_else(|| format!("lv{i}")));
        volumes.push(LogicalVolume {
            name: lv.clone(),
            size: v.size,
        });
        origins.push(o.clone());
        let fstype = if v.swap {
            FsType::Swap
        } else {
            v.fstype.unwrap_or(FsType::Ext4)
        };
        if v.mount.is_some() || v.swap || v.fstype.is_some() {
            let fs = Filesystem {
                device: lv,
                fstype,
                label: None,
                mount: v.mount.clone(),
                options: v.options.clone(),
            };
            out.filesystems.push((fs, o));
        }
    }
    let vg = VolumeGroup {
        vg: name("vg0"),
        pvs: vec![root_dev],
        volumes,
    };
    out.lvm
        .push((vg, Origin::derived("storage.layout.lvm"), origins));
}
