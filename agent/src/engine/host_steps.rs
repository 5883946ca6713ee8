//! What the deployed host reads at its first boot: the configdrive and the finalized
//! tree (fstab, crypttab, boot loader, initramfs).

use super::error::StepError;
use super::session::Session;
use crate::plan::{ConfigdriveFormat, ConfigdrivePlan, FinalizePlan, Plan};
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
