//! What the deployed host reads at its first boot: the configdrive, the finalized
//! tree (fstab, crypttab, boot loader, initramfs) and the firmware's boot entries.

use super::error::StepError;
use super::session::Session;
use crate::plan::{BootEntriesPlan, ConfigdriveFormat, ConfigdrivePlan, FinalizePlan, Plan, Step};
use crate::report::output::ConfigdriveWritten;
use crate::report::StepOutput;

/// Microsoft basic data: what firmware and cloud-init expect a vfat config drive to be.
const BASIC_DATA: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";

/// Formats the configdrive on its reserved partition, or on one appended after a
/// whole-disk image.
pub fn configdrive(cd: &ConfigdrivePlan) -> Result<StepOutput, StepError> {
    let label = match cd.format {
        ConfigdriveFormat::Nocloud => "cidata",
        ConfigdriveFormat::Config2 => "config-2",
    };
    let (node, part) = match &cd.partition {
        // The planner reserved a partition when it wrote the table.
        Some(node) => (node.clone(), None),
        // After a whole-disk image: a new partition after the image's.
        None => {
            let p = crate::storage::partition::append_partition(
                &cd.disk_path,
                cd.size_bytes,
                BASIC_DATA,
                label,
            )?;
            (p.path.clone(), Some(p))
        }
    };
    let size = {
        let f = std::fs::File::open(&node).map_err(StepError::io("opening", &node))?;
        crate::blockdev::size_bytes(&f)?
    };
    let outcome = crate::configdrive::write(&node, 0, size, cd)?;
    Ok(StepOutput::Configdrive(ConfigdriveWritten {
        device: node,
        partition: part,
        configdrive: outcome,
    }))
}

/// Writes the deployed system's boot configuration into the staged tree.
pub fn finalize(f: &FinalizePlan, plan: &Plan, s: &Session) -> Result<StepOutput, StepError> {
    Ok(StepOutput::Finalize(crate::finalize::run(
        plan, f, &s.root,
    )?))
}

/// Makes the firmware's boot entries for the deployed disks' ESPs (nothing when the
/// machine did not boot in UEFI mode). After a rootfs, the entries carry the deployed
/// system's name and prefer the vendor directory finalize installed GRUB into.
pub fn boot_entries(
    b: &BootEntriesPlan,
    plan: &Plan,
    s: &Session,
) -> Result<StepOutput, StepError> {
    let rootfs = plan.steps.iter().any(|s| matches!(s, Step::Finalize(_)));
    let (os, vendor) = if rootfs {
        crate::finalize::deployed_os(&s.root)
    } else {
        (None, None)
    };
    let req = crate::efi::Request {
        firmware: std::path::Path::new(crate::efi::FIRMWARE),
        efivars: &b.efivars,
        disks: &b.disks,
        os,
        vendor,
    };
    Ok(StepOutput::BootEntries(crate::efi::run(&req)?))
}
