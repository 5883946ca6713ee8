//! The storage steps: wipe, partition table, appended partitions, md, LUKS, LVM, mkfs
//! and mounts. Each consumes devices the plan names and records its undo first.

use super::error::StepError;
use super::session::{Session, Undo};
use crate::kinds::EraseFallback;
use crate::plan::{
    AppendPlan, LuksPlan, LvmPlan, MkfsPlan, MountPlan, PartitionPlan, Plan, RaidPlan,
};
use crate::report::output::{Appended, Made, Mounted, Partitioned, Wiped};
use crate::report::StepOutput;
use crate::storage;
use std::path::Path;

/// Releases what a previous deployment left active on `disk`, then erases it: its
/// signatures, and with `secure` every block first (the device's method or a `fallback`).
pub fn wipe(
    disk: &Path,
    policy: storage::wipe::Policy,
    fallback: &[EraseFallback],
) -> Result<StepOutput, StepError> {
    let secure_wipe = policy == storage::wipe::Policy::Secure;
    if secure_wipe {
        // Preflight decided already; deciding again refuses before anything is released.
        storage::erase::decide(disk, fallback)?;
    }
    // A previous deployment's arrays, mappings and volumes on this disk go first.
    let released = if crate::blockdev::is_block_device(disk) {
        storage::teardown::release(disk)?
    } else {
        Vec::new()
    };
    let secure = if secure_wipe {
        if crate::blockdev::is_block_device(disk) {
            storage::wipe::refuse_if_busy(disk, &disk.display().to_string(), false)?;
        }
        Some(storage::erase::secure_erase(disk, fallback)?)
    } else {
        None
    };
    // Mounted disks were refused before the run (apply) or are the ramdisk's own
    // (run); the engine does not force. After a secure erase this finds no
    // signatures; it is what makes the kernel forget the disk's partitions.
    let report = storage::wipe::wipe_disk(disk, policy, false)?;
    Ok(StepOutput::Wipe(Wiped {
        disk: disk.to_path_buf(),
        released,
        erased: report,
        secure,
    }))
}

/// Writes the planned GPT.
pub fn partition(
    disk: &Path,
    logical_sector: u64,
    parts: &[PartitionPlan],
) -> Result<StepOutput, StepError> {
    let guid = storage::partition::write_table(disk, logical_sector, parts)?;
    Ok(StepOutput::Partition(Partitioned {
        disk: disk.to_path_buf(),
        disk_guid: guid,
        partitions: parts.to_vec(),
    }))
}

/// Appends partitions after a whole-disk image's; later steps find them through the session.
pub fn append(a: &AppendPlan, session: &mut Session) -> Result<StepOutput, StepError> {
    let reqs: Vec<storage::partition::PartitionRequest> = a
        .partitions
        .iter()
        .map(|p| storage::partition::PartitionRequest {
            name: p.name.clone(),
            label: p.label.clone(),
            type_guid: p.type_guid.clone(),
            size: p.size_bytes.map_or(crate::units::SizeSpec::Rest, |b| {
                crate::units::SizeSpec::Bytes(crate::units::Bytes(b))
            }),
        })
        .collect();
    let placed = storage::partition::append_partitions(&a.path, &reqs, a.reserve_bytes)?;
    for (want, got) in a.partitions.iter().zip(&placed) {
        session.appended.insert(want.node.clone(), got.path.clone());
    }
    Ok(StepOutput::Append(Appended {
        disk: a.path.clone(),
        appended: placed,
    }))
}

/// Creates an md array.
pub fn raid(r: &RaidPlan, plan: &Plan, s: &mut Session) -> Result<StepOutput, StepError> {
    s.push(Undo::StopMd(r.path.clone(), r.members.clone()));
    Ok(StepOutput::Raid(storage::raid::create(
        r,
        &plan.host.hostname,
    )?))
}

/// Formats and opens a LUKS volume, then adds its tang/TPM2 keyslots.
pub fn luks(l: &LuksPlan, s: &mut Session) -> Result<StepOutput, StepError> {
    let l = &LuksPlan {
        device: s.node(&l.device),
        ..l.clone()
    };
    s.push(Undo::CloseLuks(l.name.clone()));
    let (vol, mut out) = storage::luks::format(l, true)?;
    // Binding point: tang/TPM2 keyslots are added here from the open volume's key.
    out.bindings = storage::luks::bind_pins(&vol, l)?;
    s.volumes.push(vol);
    Ok(StepOutput::Luks(out))
}

/// Creates a volume group and its logical volumes.
pub fn lvm(v: &LvmPlan, s: &mut Session) -> Result<StepOutput, StepError> {
    s.push(Undo::DeactivateVg(v.vg.clone()));
    Ok(StepOutput::Lvm(storage::lvm::create(v)?))
}

/// Makes a filesystem.
pub fn mkfs(m: &MkfsPlan, s: &Session) -> Result<StepOutput, StepError> {
    let m = &MkfsPlan {
        device: s.node(&m.device),
        ..m.clone()
    };
    storage::fs::mkfs(m)?;
    Ok(StepOutput::Mkfs(Made {
        device: m.device.clone(),
        fstype: m.fstype,
        label: m.label.clone(),
        uuid: m.uuid.clone(),
        mount: m.mount.clone(),
    }))
}

/// Mounts a filesystem under the staging root.
pub fn mount(m: &MountPlan, s: &mut Session) -> Result<StepOutput, StepError> {
    std::fs::create_dir_all(&s.root).map_err(StepError::io("creating", &s.root))?;
    let at = storage::fs::mount(m, &s.root)?;
    s.push(Undo::Unmount(at.clone()));
    Ok(StepOutput::Mount(Mounted {
        device: m.device.clone(),
        mountpoint: m.mountpoint.clone(),
        staged_at: at,
        options: m.options.clone(),
    }))
}
