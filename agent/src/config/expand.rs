//! Short-form expansion: `storage.layout` becomes the explicit partitions, md arrays,
//! LUKS volume, volume group and filesystems someone could have written by hand.

use super::model::*;
use super::types::*;
use super::DocError;
use crate::units::{Bytes, SizeSpec, GIB, MIB};

/// Where an item of the explicit form came from, so an error points at what the operator wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The item's path: `storage.partitions[2]`, or the layout entry that produced it.
    pub path: String,
    /// Whether the item's field names exist at `path` (false for what a layout derives
    /// from `mirror`/`disk`, whose fields the operator never wrote).
    pub fields: bool,
}

impl Origin {
    fn explicit(path: String) -> Origin {
        Origin { path, fields: true }
    }
    fn derived(path: &str) -> Origin {
        Origin {
            path: path.to_string(),
            fields: false,
        }
    }
    /// The path of `field` of this item, or the item's own path when the operator did not write that field.
    pub fn field(&self, field: &str) -> String {
        if self.fields {
            format!("{}.{field}", self.path)
        } else {
            self.path.clone()
        }
    }
    /// True when the item came from `storage.layout`.
    pub fn is_layout(&self) -> bool {
        self.path.starts_with("storage.layout")
    }
}

/// The explicit storage of a document (layout expanded first, then the explicit items),
/// each item with its [`Origin`].
#[derive(Debug, Clone, Default)]
pub struct ExplicitStorage {
    pub wipe: WipePolicy,
    pub partitions: Vec<(Partition, Origin)>,
    pub raid: Vec<(Raid, Origin)>,
    pub luks: Vec<(Luks, Origin)>,
    /// Each volume group with its origin and one origin per volume.
    pub lvm: Vec<(VolumeGroup, Origin, Vec<Origin>)>,
    pub filesystems: Vec<(Filesystem, Origin)>,
    /// The disks the layout took.
    pub layout_disks: Vec<Name>,
}

impl ExplicitStorage {
    /// The explicit form as a document would write it.
    pub fn to_storage(&self) -> Storage {
        Storage {
            wipe: self.wipe,
            layout: None,
            partitions: self.partitions.iter().map(|(p, _)| p.clone()).collect(),
            raid: self.raid.iter().map(|(r, _)| r.clone()).collect(),
            luks: self.luks.iter().map(|(l, _)| l.clone()).collect(),
            lvm: self.lvm.iter().map(|(v, _, _)| v.clone()).collect(),
            filesystems: self.filesystems.iter().map(|(f, _)| f.clone()).collect(),
        }
    }
}

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
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') { c } else { '_' })
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

/// The disks a layout uses: the mirror, `layout.disk`, or the only disk.
pub(crate) fn layout_disks(doc: &Document, layout: &Layout) -> Result<Vec<Name>, DocError> {
    if let Some(m) = &layout.mirror {
        return Ok(m.clone());
    }
    if let Some(d) = &layout.disk {
        return Ok(vec![d.clone()]);
    }
    match doc.disks.as_slice() {
        [only] => Ok(vec![only.name.clone()]),
        _ => Err(DocError::new(
            "storage.layout.disk",
            format!(
                "the document lists {} disks; say which one the layout uses (disk: <name>) or mirror two of them (mirror: [a, b])",
                doc.disks.len()
            ),
        )),
    }
}

/// Expands `doc.storage` (layout first, then explicit items, in document order).
/// Assumes the layout's own fields were checked (see `validate`); errors only when the
/// layout's disk cannot be determined.
pub fn expand_storage(doc: &Document) -> Result<ExplicitStorage, DocError> {
    let mut out = ExplicitStorage::default();
    let Some(storage) = &doc.storage else {
        return Ok(out);
    };
    out.wipe = storage.wipe;
    if let Some(layout) = &storage.layout {
        expand_layout(doc, layout, &mut out)?;
    }
    let ex = |kind: &str, i: usize| Origin::explicit(format!("storage.{kind}[{i}]"));
    out.partitions.extend(
        storage
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), ex("partitions", i))),
    );
    out.raid.extend(
        storage
            .raid
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), ex("raid", i))),
    );
    out.luks.extend(
        storage
            .luks
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), ex("luks", i))),
    );
    for (g, vg) in storage.lvm.iter().enumerate() {
        let vols = (0..vg.volumes.len())
            .map(|i| Origin::explicit(format!("storage.lvm[{g}].volumes[{i}]")))
            .collect();
        out.lvm.push((vg.clone(), ex("lvm", g), vols));
    }
    out.filesystems.extend(
        storage
            .filesystems
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), ex("filesystems", i))),
    );
    Ok(out)
}

fn expand_layout(
    doc: &Document,
    layout: &Layout,
    out: &mut ExplicitStorage,
) -> Result<(), DocError> {
    let disks = layout_disks(doc, layout)?;
    let mirrored = disks.len() > 1;
    let from = if mirrored {
        "storage.layout.mirror"
    } else {
        "storage.layout"
    };
    let origin = Origin::derived(from);
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
    for d in &disks {
        out.partitions.push((
            part(d, "bios", SizeSpec::Bytes(Bytes(MIB)), "bios-boot"),
            origin.clone(),
        ));
        out.partitions.push((
            part(d, "esp", SizeSpec::Bytes(Bytes(512 * MIB)), "esp"),
            origin.clone(),
        ));
        let boot_type = if mirrored { "raid" } else { "linux" };
        out.partitions.push((
            part(d, "boot", SizeSpec::Bytes(Bytes(GIB)), boot_type),
            origin.clone(),
        ));
        out.partitions
            .push((part(d, "root", root_size, root_type), origin.clone()));
    }
    // One ESP per disk: the first is mounted; finalize copies it onto the others.
    // Mirrored, the mounted ESP lives on one disk only: `nofail` (and a short device
    // wait) lets the system boot from the other disk when that one is gone.
    let esp_options: Vec<String> = if mirrored {
        vec!["umask=0077".into(), "nofail".into(), "x-systemd.device-timeout=10s".into()]
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
    let (boot_dev, mut root_dev) = if mirrored {
        let members = |role: &str| disks.iter().map(|d| name(format!("{d}-{role}"))).collect();
        // Superblock at the end (1.0): firmware and GRUB read a member as a plain filesystem.
        let boot = Raid {
            name: name("md-boot"),
            level: RaidLevel,
            members: members("boot"),
            metadata: MdMetadata::V1_0,
        };
        let root = Raid {
            name: name("md-root"),
            level: RaidLevel,
            members: members("root"),
            metadata: MdMetadata::V1_2,
        };
        out.raid.push((boot, origin.clone()));
        out.raid.push((root, origin.clone()));
        (name("md-boot"), name("md-root"))
    } else {
        (
            name(format!("{}-boot", disks[0])),
            name(format!("{}-root", disks[0])),
        )
    };
    let boot_fs = Filesystem {
        device: boot_dev,
        fstype: FsType::Ext4,
        label: Some("boot".into()),
        mount: Some(MountPoint::parse("/boot").expect("valid mount point")),
        options: vec![],
    };
    out.filesystems.push((boot_fs, origin.clone()));
    if let Some(l) = &layout.luks {
        let luks = Luks {
            name: name("luks-root"),
            device: root_dev.clone(),
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
        root_dev = name("luks-root");
    }
    if lvm.is_empty() {
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
    } else {
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
    out.layout_disks = disks;
    Ok(())
}

/// Validates `doc` and returns it with its storage in the explicit form (no `layout`):
/// what `imprint plan` prints as the expansion, and what parses back to the same plan.
pub fn expand(doc: &Document) -> Result<Document, DocError> {
    super::validate(doc)?;
    let explicit = expand_storage(doc)?;
    let mut out = doc.clone();
    if let Some(storage) = &mut out.storage {
        *storage = explicit.to_storage();
    }
    Ok(out)
}
