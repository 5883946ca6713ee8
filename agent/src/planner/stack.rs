//! The block stack between partitions and filesystems: md arrays, LUKS volumes, LVM
//! volume groups; each recorded in [`Devices`] with a conservative usable size.

use super::devices::Devices;
use super::error::PlanError;
use super::ids::derived_uuid;
use super::md_size;
use crate::config::{ExplicitStorage, Luks, Origin, Raid, VolumeGroup};
use crate::plan::{LuksPlan, LvPlan, LvmPlan, Plan, RaidPlan, Step, TangPin, Tpm2Pin};
use crate::units::{Bytes, SizeSpec, MIB};
use std::path::PathBuf;

/// LVM extent size (lvcreate's default).
const EXTENT: u64 = 4 * MIB;
/// Room LUKS2 takes for its headers and keyslots.
const LUKS_HEADER: u64 = 16 * MIB;

/// One step per md array.
pub(super) fn raid(st: &ExplicitStorage, seed: &str, dev: &mut Devices, plan: &mut Plan) {
    for (r, _) in &st.raid {
        let step = raid_plan(r, seed, dev);
        plan.steps.push(Step::Raid(step));
    }
}

fn raid_plan(r: &Raid, seed: &str, dev: &mut Devices) -> RaidPlan {
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
    let chunk = r
        .level
        .striped()
        .then(|| r.chunk.map_or(md_size::DEFAULT_CHUNK, |c| c.0));
    let size = md_size::usable(
        r.level,
        members.len() as u64,
        smallest,
        r.metadata,
        chunk.unwrap_or(md_size::DEFAULT_CHUNK),
    );
    let path = PathBuf::from(format!("/dev/md/{}", r.name));
    dev.insert(r.name.as_str(), path.clone(), size);
    RaidPlan {
        name: r.name.to_string(),
        level: r.level,
        metadata: r.metadata,
        members,
        path,
        uuid: derived_uuid(seed, &format!("md:{}", r.name)).to_string(),
        size_bytes: size,
        layout: r.level.md_layout().map(String::from),
        chunk_bytes: chunk,
    }
}

/// One step per LUKS volume.
pub(super) fn luks(st: &ExplicitStorage, seed: &str, dev: &mut Devices, plan: &mut Plan) {
    for (l, _) in &st.luks {
        let step = luks_plan(l, seed, dev);
        plan.steps.push(Step::Luks(step));
    }
}

fn luks_plan(l: &Luks, seed: &str, dev: &mut Devices) -> LuksPlan {
    let path = PathBuf::from(format!("/dev/mapper/{}", l.name));
    let under = dev.size[l.device.as_str()];
    let device = dev.path[l.device.as_str()].clone();
    dev.insert(
        l.name.as_str(),
        path.clone(),
        under.saturating_sub(LUKS_HEADER),
    );
    LuksPlan {
        name: l.name.to_string(),
        device,
        path,
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
            bank: t.bank,
        }),
        threshold: l.threshold,
        recovery_passphrase: l.recovery_passphrase.clone(),
    }
}

/// One step per volume group, its volumes sized against what its physical volumes hold.
pub(super) fn lvm(
    st: &ExplicitStorage,
    dev: &mut Devices,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    for (vg, _, origins) in &st.lvm {
        let step = lvm_plan(vg, origins, dev)?;
        plan.steps.push(Step::Lvm(step));
    }
    Ok(())
}

fn lvm_plan(vg: &VolumeGroup, origins: &[Origin], dev: &mut Devices) -> Result<LvmPlan, PlanError> {
    let capacity: u64 = vg
        .pvs
        .iter()
        .map(|p| (dev.size[p.as_str()].saturating_sub(MIB) / EXTENT) * EXTENT)
        .sum();
    let used = check_volumes_fit(vg, origins, capacity)?;
    let mut volumes = Vec::new();
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
        dev.insert(
            v.name.as_str(),
            path.clone(),
            size.unwrap_or(capacity - used),
        );
        volumes.push(LvPlan {
            name: v.name.to_string(),
            path,
            size_bytes: size,
        });
    }
    Ok(LvmPlan {
        vg: vg.vg.to_string(),
        pvs: vg
            .pvs
            .iter()
            .map(|p| dev.path[p.as_str()].clone())
            .collect(),
        volumes,
    })
}

/// Refuses volumes that cannot fit in `capacity`, naming the one that overflows; the
/// bytes the sized volumes take, in whole extents.
fn check_volumes_fit(
    vg: &VolumeGroup,
    origins: &[Origin],
    capacity: u64,
) -> Result<u64, PlanError> {
    let mut used = 0u64;
    for (v, o) in vg.volumes.iter().zip(origins) {
        if let SizeSpec::Bytes(b) = v.size {
            used += b.0.div_ceil(EXTENT) * EXTENT;
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
    Ok(used)
}
