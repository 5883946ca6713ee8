//! Which function runs which step kind; each states what it consumes and produces.

use super::context::Context;
use super::error::StepError;
use super::session::Session;
use super::{host_steps, image_steps, storage_steps};
use crate::plan::{ImageFormat, Plan, Step};
use crate::report::StepOutput;

/// Runs one step; returns what it produced, for the step event and the final report.
pub fn run(
    step: &Step,
    plan: &Plan,
    ctx: &Context,
    session: &mut Session,
) -> Result<StepOutput, StepError> {
    match step {
        Step::Wipe {
            path,
            policy,
            fallback,
            ..
        } => storage_steps::wipe(path, *policy, fallback),
        Step::Partition {
            path,
            logical_sector,
            partitions,
            ..
        } => storage_steps::partition(path, *logical_sector, partitions),
        Step::WriteImage(img) => match img.format {
            ImageFormat::Disk => image_steps::disk(img, plan, ctx),
            ImageFormat::Filesystem => image_steps::filesystem(img, plan, ctx),
            ImageFormat::Rootfs => image_steps::rootfs(img, plan, ctx, session),
        },
        Step::AppendPartitions(a) => storage_steps::append(a, session),
        Step::Configdrive(cd) => host_steps::configdrive(cd),
        Step::Raid(r) => storage_steps::raid(r, plan, session),
        Step::Luks(l) => storage_steps::luks(l, session),
        Step::Lvm(v) => storage_steps::lvm(v, session),
        Step::Mkfs(m) => storage_steps::mkfs(m, session),
        Step::Mount(m) => storage_steps::mount(m, session),
        Step::Finalize(f) => host_steps::finalize(f, plan, session),
        Step::BootEntries(b) => host_steps::boot_entries(b, plan, session),
    }
}
