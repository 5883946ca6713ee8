//! The storage steps: wipe, partition, md, LUKS, LVM, mkfs, mounts, image, finalize,
//! configdrive; with device paths, sizes and UUIDs decided.

use super::{derived_uuid, Backend, Chosen, PlanError};
use crate::config::{Document, ExplicitStorage, FsType, Origin};
use crate::disks::Disk;
use crate::storage::partition::PartitionRequest;
use crate::plan::*;
use crate::units::{Bytes, SizeSpec, MIB};
use std::collections::HashMap;
use std::path::PathBuf;

/// The name of the partition the planner reserves for the configdrive (not a valid
/// document name, so it cannot collide with one).
const CONFIGDRIVE_PART: &str = "_configdrive";
/// LVM extent size (lvcreate's default).
const EXTENT: u64 = 4 * MIB;

/// What the planner knows about every named device.
#[derive(Default)]
pub(super) struct Devices {
    pub path: HashMap<String, PathBuf>,
    /// Usable bytes (an estimate below md and LUKS).
    pub size: HashMap<String, u64>,
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Appends every storage and image step to `plan`.
pub(super) fn steps(
    doc: &Document,
    chosen: &[Chosen],
    seed: &str,
    backend: &dyn Backend,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    let st = crate::config::expand_storage(doc)?;
    let disk_by_name = |n: &str| {
        chosen
            .iter()
            .find(|c| c.name == n)
            .map(|c| c.disk)
            .expect("validated disk reference")
    };
    for c in chosen {
        plan.steps.push(Step::Wipe {
            disk: c.name.clone(),
            path: c.disk.path.clone(),
            policy: st.wipe,
        });
    }
    let image = doc.image.as_ref();
    let image_disk = image
        .filter(|i| i.format == ImageFormat::Disk)
        .map(|i| match &i.target {
            Some(t) => t.to_string(),
            None => chosen[0].name.clone(),
        });
    let root_fs = st
        .filesystems
        .iter()
        .find(|(f, _)| f.mount.as_ref().is_some_and(|m| m.as_str() == "/"));
    // The configdrive goes where the root is: on every disk of a mirrored root, so the
    // host keeps its identity (instance id, hostname, network) when a disk is gone.
    let cd_disks: Vec<String> = match &doc.configdrive {
        None => Vec::new(),
        Some(cd) => {
            if let Some(d) = cd.disk.as_ref().map(|d| d.to_string()).or_else(|| image_disk.clone()) {
                vec![d]
            } else if let Some((f, _)) = root_fs {
                disks_of(&st, f.device.as_str())
            } else {
                vec![st
                    .partitions
                    .first()
                    .map(|(p, _)| p.disk.to_string())
                    .unwrap_or_else(|| chosen[0].name.clone())]
            }
        }
    };

    let mut dev = Devices::default();
    // Data partitions after a whole-disk image, and the steps that build on them.
    let mut appended: Option<AppendPlan> = None;
    let mut cd_partitions: HashMap<String, PathBuf> = HashMap::new();
    for c in chosen {
        let reserve_cd = cd_disks.contains(&c.name)
            && image_disk.as_deref() != Some(c.name.as_str());
        let mut reqs: Vec<(PartitionRequest, String)> = st
            .partitions
            .iter()
            .filter(|(p, _)| p.disk.as_str() == c.name)
            .map(|(p, o)| {
                let req = PartitionRequest {
                    name: p.name.to_string(),
                    label: p.label.clone().unwrap_or_else(|| p.name.to_string()),
                    type_guid: p.ptype.guid(),
                    size: p.size,
                };
                (req, o.field("size"))
            })
            .collect();
        if reserve_cd {
            let cd = doc.configdrive.as_ref().expect("configdrive present");
            let label = match cd.format {
                ConfigdriveFormat::Nocloud => "cidata",
                ConfigdriveFormat::Config2 => "config-2",
            };
            let req = PartitionRequest {
                name: CONFIGDRIVE_PART.into(),
                label: label.into(),
                type_guid: crate::config::PartitionType::default().guid(),
                size: SizeSpec::Bytes(cd.size),
            };
            // Before the partition taking the rest, so `rest` stays last.
            let at = reqs
                .iter()
                .position(|(r, _)| r.size == SizeSpec::Rest)
                .unwrap_or(reqs.len());
            reqs.insert(at, (req, "configdrive.size".into()));
        }
        if reqs.is_empty() {
            continue;
        }
        check_fit(&c.name, c.disk, &reqs)?;
        if image_disk.as_deref() == Some(c.name.as_str()) {
            // After the image's own partitions, once it is written: numbers and sectors
            // are decided then; later steps use stand-in paths until they exist.
            let partitions: Vec<AppendedPartition> = reqs
                .iter()
                .map(|(r, _)| {
                    let node = appended_node(&c.disk.path, &r.name);
                    dev.path.insert(r.name.clone(), node.clone());
                    let size_bytes = match r.size {
                        SizeSpec::Bytes(b) => Some(b.0),
                        SizeSpec::Rest => None,
                    };
                    dev.size.insert(r.name.clone(), size_bytes.unwrap_or(c.disk.size_bytes));
                    AppendedPartition {
                        name: r.name.clone(),
                        label: r.label.clone(),
                        type_guid: r.type_guid.clone(),
                        size_bytes,
                        node,
                    }
                })
                .collect();
            let rest = partitions.iter().any(|p| p.size_bytes.is_none());
            let reserve_bytes = match &doc.configdrive {
                Some(cd) if rest && cd_disks.contains(&c.name) => cd.size.0,
                _ => 0,
            };
            appended = Some(AppendPlan {
                disk: c.name.clone(),
                path: c.disk.path.clone(),
                partitions,
                reserve_bytes,
            });
            continue;
        }
        let only: Vec<PartitionRequest> = reqs.iter().map(|(r, _)| r.clone()).collect();
        let placed = backend
            .place(
                &c.disk.path,
                c.disk.size_bytes,
                c.disk.logical_sector,
                &only,
            )
            .map_err(|message| PlanError::Layout {
                path: reqs[0].1.clone(),
                message,
            })?;
        for p in &placed {
            dev.path.insert(p.name.clone(), p.path.clone());
            dev.size.insert(
                p.name.clone(),
                (p.last_lba + 1 - p.first_lba) * c.disk.logical_sector,
            );
            if p.name == CONFIGDRIVE_PART {
                cd_partitions.insert(c.name.clone(), p.path.clone());
            }
        }
        plan.steps.push(Step::Partition {
            disk: c.name.clone(),
            path: c.disk.path.clone(),
            logical_sector: c.disk.logical_sector,
            partitions: placed,
        });
    }

    for (r, _) in &st.raid {
        let members: Vec<PathBuf> = r
            .members
            .iter()
            .map(|m| dev.path[m.as_str()].clone())
            .collect();
        let smallest = r
            .members
            .iter()
            .map(|m| dev.size[m.as_str()])
            .min()
            .unwrap_or(0);
        // Conservative: superblock, bitmap and mdadm's reshape headroom (up to 128 MiB for 1.2).
        let overhead = match r.metadata.as_str() {
            "1.0" => 8 * MIB,
            _ => 8 * MIB + (smallest / 512).min(128 * MIB),
        };
        let path = PathBuf::from(format!("/dev/md/{}", r.name));
        dev.path.insert(r.name.to_string(), path.clone());
        dev.size
            .insert(r.name.to_string(), smallest.saturating_sub(overhead));
        plan.steps.push(Step::Raid(RaidPlan {
            name: r.name.to_string(),
            level: 1,
            metadata: r.metadata.as_str().into(),
            members,
            path,
            uuid: derived_uuid(seed, &format!("md:{}", r.name)).to_string(),
        }));
    }
    for (l, _) in &st.luks {
        let path = PathBuf::from(format!("/dev/mapper/{}", l.name));
        let under = dev.size[l.device.as_str()];
        dev.size
            .insert(l.name.to_string(), under.saturating_sub(16 * MIB));
        plan.steps.push(Step::Luks(LuksPlan {
            name: l.name.to_string(),
            device: dev.path[l.device.as_str()].clone(),
            path: path.clone(),
            cipher: l.cipher.clone(),
            key_size: l.key_size,
            label: l.label.clone(),
            uuid: derived_uuid(seed, &format!("luks:{}", l.name)).to_string(),
            tang: l
                .tang
                .iter()
                .map(|t| TangPin {
                    url: t.url.to_string(),
                    thumbprint: t.thumbprint.as_ref().map(|t| t.to_string()),
                    trust_on_first_use: t.trust_on_first_use,
                })
                .collect(),
            tpm2: l.tpm2.as_ref().map(|t| Tpm2Pin {
                pcrs: t.pcrs.clone(),
                bank: match t.bank {
                    crate::config::PcrBank::Sha256 => "sha256".into(),
                    crate::config::PcrBank::Sha1 => "sha1".into(),
                },
            }),
            threshold: l.threshold,
            recovery_passphrase: l.recovery_passphrase.clone(),
        }));
        dev.path.insert(l.name.to_string(), path);
    }
    for (vg, _, origins) in &st.lvm {
        lvm_step(vg, origins, &mut dev, plan)?;
    }

    let image_target = image
        .filter(|i| i.format == ImageFormat::Filesystem)
        .and_then(|i| i.target.as_ref());
    let mut uuids: HashMap<String, String> = HashMap::new();
    for (f, _) in &st.filesystems {
        if image_target.is_some_and(|t| *t == f.device) {
            continue;
        }
        let u = derived_uuid(seed, &format!("fs:{}", f.device));
        let uuid = if f.fstype == FsType::Vfat {
            let h = u.simple().to_string().to_ascii_uppercase();
            format!("{}-{}", &h[..4], &h[4..8])
        } else {
            u.to_string()
        };
        uuids.insert(f.device.to_string(), uuid.clone());
        plan.steps.push(Step::Mkfs(MkfsPlan {
            name: f.device.to_string(),
            device: dev.path[f.device.as_str()].clone(),
            fstype: f.fstype.as_str().into(),
            label: f.label.clone(),
            uuid,
            mount: f.mount.as_ref().map(|m| m.to_string()),
        }));
    }

    let Some(img) = image else {
        push_configdrive(doc, plan, &cd_disks, &cd_partitions, disk_by_name);
        return Ok(());
    };
    let mut mounted: Vec<_> = st
        .filesystems
        .iter()
        .filter(|(f, _)| f.mount.is_some() && f.fstype != FsType::Swap)
        .collect();
    mounted.sort_by_key(|(f, _)| {
        let m = f.mount.as_ref().expect("filtered").as_str().to_string();
        (if m == "/" { 0 } else { m.matches('/').count() }, m)
    });
    if img.format == ImageFormat::Rootfs {
        for (f, _) in &mounted {
            plan.steps.push(Step::Mount(MountPlan {
                device: dev.path[f.device.as_str()].clone(),
                mountpoint: f.mount.as_ref().expect("filtered").to_string(),
                fstype: f.fstype.as_str().into(),
                options: f.options.clone(),
            }));
        }
    }
    let (target_disk, target_path) = match img.format {
        ImageFormat::Disk => {
            let name = image_disk.clone().expect("disk image has a disk");
            let path = disk_by_name(&name).path.clone();
            (name, path)
        }
        ImageFormat::Filesystem => {
            let t = img.target.as_ref().expect("validated target").to_string();
            (disk_of(&st, &t).unwrap_or_default(), dev.path[&t].clone())
        }
        ImageFormat::Rootfs => {
            let (f, _) = root_fs.expect("validated / mount");
            (
                disk_of(&st, f.device.as_str()).unwrap_or_default(),
                dev.path[f.device.as_str()].clone(),
            )
        }
    };
    let digest = match (&img.sha256, &img.sha512) {
        (Some(h), _) => Digest {
            algorithm: DigestAlgorithm::Sha256,
            hex: h.to_string().to_ascii_lowercase(),
        },
        (None, Some(h)) => Digest {
            algorithm: DigestAlgorithm::Sha512,
            hex: h.to_string().to_ascii_lowercase(),
        },
        (None, None) => unreachable!("validated: one digest"),
    };
    plan.steps.push(Step::WriteImage(ImagePlan {
        urls: std::iter::once(&img.url)
            .chain(&img.mirrors)
            .map(|u| u.to_string())
            .collect(),
        digest,
        format: img.format,
        target_disk,
        target_path,
        grow: img.grow,
        verify: img.verify,
    }));
    if let Some(a) = appended {
        move_after_image(a, plan);
    }
    if img.format == ImageFormat::Rootfs {
        plan.steps.push(Step::Finalize(super::finalize::finalize(
            doc, &st, &dev, &uuids, plan, &mounted,
        )));
    }
    push_configdrive(doc, plan, &cd_disks, &cd_partitions, disk_by_name);
    Ok(())
}

/// Appends the step adding `a`'s partitions, then moves the LUKS and mkfs steps that
/// build on them after it: they were planned in document order, before the image.
fn move_after_image(a: AppendPlan, plan: &mut Plan) {
    let mut late: std::collections::HashSet<PathBuf> =
        a.partitions.iter().map(|p| p.node.clone()).collect();
    let (mut keep, mut moved) = (Vec::new(), Vec::new());
    for step in plan.steps.drain(..) {
        let on_late = match &step {
            Step::Luks(l) if late.contains(&l.device) => Some(l.path.clone()),
            Step::Mkfs(m) if late.contains(&m.device) => Some(m.device.clone()),
            _ => None,
        };
        match on_late {
            Some(p) => {
                late.insert(p);
                moved.push(step);
            }
            None => keep.push(step),
        }
    }
    keep.push(Step::AppendPartitions(a));
    keep.extend(moved);
    plan.steps = keep;
}

/// The document disk a device ends up on (the first, for md and LVM).
/// Every disk `name` sits on (all members of an array), in document order.
fn disks_of(st: &ExplicitStorage, name: &str) -> Vec<String> {
    let below: Vec<String> = if let Some((p, _)) = st.partitions.iter().find(|(p, _)| p.name.as_str() == name) {
        return vec![p.disk.to_string()];
    } else if let Some((r, _)) = st.raid.iter().find(|(r, _)| r.name.as_str() == name) {
        r.members.iter().map(|m| m.to_string()).collect()
    } else if let Some((l, _)) = st.luks.iter().find(|(l, _)| l.name.as_str() == name) {
        vec![l.device.to_string()]
    } else if let Some((vg, _, _)) = st.lvm.iter().find(|(g, _, _)| g.volumes.iter().any(|v| v.name.as_str() == name)) {
        vg.pvs.iter().map(|p| p.to_string()).collect()
    } else {
        Vec::new()
    };
    let mut out: Vec<String> = Vec::new();
    for d in below.iter().flat_map(|b| disks_of(st, b)) {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

fn disk_of(st: &ExplicitStorage, name: &str) -> Option<String> {
    if let Some((p, _)) = st.partitions.iter().find(|(p, _)| p.name.as_str() == name) {
        return Some(p.disk.to_string());
    }
    if let Some((r, _)) = st.raid.iter().find(|(r, _)| r.name.as_str() == name) {
        return disk_of(st, r.members.first()?.as_str());
    }
    if let Some((l, _)) = st.luks.iter().find(|(l, _)| l.name.as_str() == name) {
        return disk_of(st, l.device.as_str());
    }
    let (vg, _, _) = st
        .lvm
        .iter()
        .find(|(g, _, _)| g.volumes.iter().any(|v| v.name.as_str() == name))?;
    disk_of(st, vg.pvs.first()?.as_str())
}

/// Refuses partitions that cannot fit, naming the one that overflows. `place` decides
/// the sectors; this gives the operator the path and the arithmetic.
fn check_fit(
    name: &str,
    disk: &Disk,
    reqs: &[(PartitionRequest, String)],
) -> Result<(), PlanError> {
    // 1 MiB before the first partition, and room for the backup GPT at the end.
    let usable = disk.size_bytes.saturating_sub(2 * MIB);
    let mut used = 0u64;
    let describe = || {
        format!(
            "disk {name:?} ({}, {})",
            disk.path.display(),
            Bytes(disk.size_bytes).human()
        )
    };
    for (r, path) in reqs {
        if let SizeSpec::Bytes(b) = r.size {
            used += round_up(b.0, MIB);
            if used > usable {
                return Err(PlanError::Layout {
                    path: path.clone(),
                    message: format!(
                        "{b} for partition {:?} does not fit on {}: the partitions up to it need {} of {} usable",
                        r.name,
                        describe(),
                        Bytes(used).human(),
                        Bytes(usable).human()
                    ),
                });
            }
        }
    }
    if let Some((r, path)) = reqs.iter().find(|(r, _)| r.size == SizeSpec::Rest) {
        if usable - used < MIB {
            return Err(PlanError::Layout {
                path: path.clone(),
                message: format!(
                    "partition {:?} takes the rest of {}, but nothing is left",
                    r.name,
                    describe()
                ),
            });
        }
    }
    Ok(())
}

fn lvm_step(
    vg: &crate::config::VolumeGroup,
    origins: &[Origin],
    dev: &mut Devices,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    let capacity: u64 = vg
        .pvs
        .iter()
        .map(|p| (dev.size[p.as_str()].saturating_sub(MIB) / EXTENT) * EXTENT)
        .sum();
    let mut used = 0u64;
    let mut volumes = Vec::new();
    for (v, o) in vg.volumes.iter().zip(origins) {
        if let SizeSpec::Bytes(b) = v.size {
            used += round_up(b.0, EXTENT);
            if used > capacity {
                return Err(PlanError::Layout {
                    path: o.field("size"),
                    message: format!(
                        "{b} for volume {:?} does not fit in volume group {:?}: about {} is available after md, LUKS and LVM overhead, and the volumes up to it need {}",
                        v.name.as_str(),
                        vg.vg.as_str(),
                        Bytes(capacity).human(),
                        Bytes(used).human()
                    ),
                });
            }
        }
    }
    for (v, o) in vg.volumes.iter().zip(origins) {
        let size = match v.size {
            SizeSpec::Bytes(b) => Some(b.0),
            SizeSpec::Rest if capacity - used < EXTENT => {
                return Err(PlanError::Layout {
                    path: o.field("size"),
                    message: format!(
                        "volume {:?} takes the rest of volume group {:?}, but nothing is left",
                        v.name.as_str(),
                        vg.vg.as_str()
                    ),
                })
            }
            SizeSpec::Rest => None,
        };
        let path = PathBuf::from(format!("/dev/{}/{}", vg.vg, v.name));
        dev.path.insert(v.name.to_string(), path.clone());
        dev.size
            .insert(v.name.to_string(), size.unwrap_or(capacity - used));
        volumes.push(LvPlan {
            name: v.name.to_string(),
            path,
            size_bytes: size,
        });
    }
    plan.steps.push(Step::Lvm(LvmPlan {
        vg: vg.vg.to_string(),
        pvs: vg
            .pvs
            .iter()
            .map(|p| dev.path[p.as_str()].clone())
            .collect(),
        volumes,
    }));
    Ok(())
}

pub(super) type Mounted<'a> = [&'a (crate::config::Filesystem, Origin)];

fn push_configdrive<'a>(
    doc: &Document,
    plan: &mut Plan,
    cd_disks: &[String],
    partitions: &HashMap<String, PathBuf>,
    disk_by_name: impl Fn(&str) -> &'a Disk,
) {
    for (i, disk) in cd_disks.iter().enumerate() {
        let path = disk_by_name(disk).path.clone();
        if let Some(mut cd) = configdrive_for(doc, &plan.host, disk, path, partitions.get(disk).cloned()) {
            cd.copy = i > 0;
            plan.steps.push(Step::Configdrive(cd));
        }
    }
}

/// The document's configdrive for `host`, on `disk` (document name) at `disk_path`.
pub(super) fn configdrive_for(
    doc: &Document,
    host: &crate::plan::HostPlan,
    disk: &str,
    disk_path: PathBuf,
    partition: Option<PathBuf>,
) -> Option<ConfigdrivePlan> {
    let cd = doc.configdrive.as_ref()?;
    let mut meta = cd.meta_data.clone().unwrap_or_default();
    meta.entry("instance-id")
        .or_insert_with(|| host.instance_id.clone().into());
    meta.entry("local-hostname")
        .or_insert_with(|| host.hostname.clone().into());
    Some(ConfigdrivePlan {
        disk: disk.to_string(),
        disk_path,
        format: cd.format,
        size_bytes: cd.size.0,
        hostname: host.hostname.clone(),
        instance_id: host.instance_id.clone(),
        meta_data: serde_json::Value::Object(meta),
        user_data: cd.user_data.clone(),
        network_config: cd.network_config.clone(),
        vendor_data: cd.vendor_data.clone(),
        partition,
        copy: false,
    })
}
