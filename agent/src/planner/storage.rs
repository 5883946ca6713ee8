//! The storage steps, layer by layer: partitions, the block stack (md, LUKS, LVM),
//! filesystems and mounts, the image, finalize, the configdrive, the firmware's boot
//! entries; with device paths, sizes and UUIDs decided. Each layer is its own module;
//! this one orders them.

use super::backend::Backend;
use super::boot_entries;
use super::chosen::Chosen;
use super::configdrive;
use super::devices::Devices;
use super::error::PlanError;
use super::filesystems;
use super::finalize;
use super::image;
use super::partitions;
use super::stack;
use super::targets::Targets;
use crate::config::Document;
use crate::plan::{ImageFormat, Plan, Step};

/// Appends every storage and image step to `plan`.
pub(super) fn steps(
    doc: &Document,
    chosen: &[Chosen],
    seed: &str,
    backend: &dyn Backend,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    let st = crate::config::expand_storage(doc)?;
    let targets = Targets::decide(doc, &st, chosen);
    partitions::wipe(doc, &st, chosen, plan);
    let mut dev = Devices::default();
    let laid = partitions::lay_out(doc, &st, chosen, &targets, backend, &mut dev, plan)?;
    stack::raid(&st, seed, &mut dev, plan);
    stack::luks(&st, seed, &mut dev, plan);
    stack::lvm(&st, &mut dev, plan)?;
    let uuids = filesystems::mkfs(doc, &st, seed, &dev, plan);
    if let Some(img) = &doc.image {
        let mounted = filesystems::mounted(&st);
        let rootfs = img.format == ImageFormat::Rootfs;
        if rootfs {
            filesystems::mounts(&mounted, &dev, plan);
        }
        plan.steps
            .push(image::write(img, &st, chosen, &targets, &dev));
        if let Some(a) = laid.appended {
            image::move_after_image(a, plan);
        }
        if rootfs {
            let fin = finalize::finalize(doc, &st, &dev, &uuids, plan, &mounted);
            plan.steps.push(Step::Finalize(fin));
        }
    }
    configdrive::push(doc, plan, &targets.cd_disks, &laid.configdrive, chosen);
    if let Some(b) = boot_entries::plan(doc, &st, chosen, &targets) {
        plan.steps.push(Step::BootEntries(b));
    }
    Ok(())
}
