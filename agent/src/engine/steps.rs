//! One function per step kind: what it consumes, what it produces.

use super::layout::{self, Session};
use super::progress::Tracker;
use super::Context;
use crate::plan::{AppendPlan, ConfigdrivePlan, ImageFormat, ImagePlan, PartitionPlan, Plan, Step};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// A step's failure, wrapping the module that failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Wipe(#[from] crate::storage::wipe::WipeError),
    #[error(transparent)]
    Partition(#[from] crate::storage::partition::PartitionError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Configdrive(#[from] crate::configdrive::ConfigdriveError),
    #[error("{0}")]
    SectorSize(String),
    #[error(transparent)]
    Raid(#[from] crate::storage::raid::RaidError),
    #[error(transparent)]
    Luks(#[from] crate::storage::luks::LuksError),
    #[error(transparent)]
    Lvm(#[from] crate::storage::lvm::LvmError),
    #[error(transparent)]
    Fs(#[from] crate::storage::fs::FsError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Finalize(#[from] crate::finalize::FinalizeError),
    #[error(transparent)]
    Teardown(#[from] crate::storage::teardown::TeardownError),
    #[error("{0}")]
    Io(String),
}

/// Runs one step; returns what it produced, for the step event and the final report.
pub fn run(step: &Step, plan: &Plan, ctx: &Context, session: &mut Session) -> Result<Value, StepError> {
    match step {
        Step::Wipe { path, policy, .. } => wipe(path, *policy),
        Step::Partition { path, logical_sector, partitions, .. } => partition(path, *logical_sector, partitions),
        Step::WriteImage(img) => match img.format {
            ImageFormat::Disk => write_image(img, plan, ctx),
            ImageFormat::Rootfs => layout::rootfs(img, plan, ctx, session),
            ImageFormat::Filesystem => layout::filesystem(img, plan, ctx),
        },
        Step::AppendPartitions(a) => append(a, session),
        Step::Configdrive(cd) => configdrive(cd),
        Step::Raid(r) => layout::raid(r, plan, session),
        Step::Luks(l) => layout::luks(l, session),
        Step::Lvm(v) => layout::lvm(v, session),
        Step::Mkfs(m) => layout::mkfs(m, session),
        Step::Mount(m) => layout::mount(m, session),
        Step::Finalize(f) => layout::finalize(f, plan, session),
    }
}

fn wipe(disk: &Path, policy: crate::storage::wipe::Policy) -> Result<Value, StepError> {
    // A previous deployment's arrays, mappings and volumes on this disk go first.
    let released = if crate::blockdev::is_block_device(disk) { crate::storage::teardown::release(disk)? } else { Vec::new() };
    // Mounted disks were refused before the run (apply) or are the ramdisk's own
    // (run); the engine does not force.
    let report = crate::storage::wipe::wipe_disk(disk, policy, false)?;
    Ok(json!({ "disk": disk, "released": released, "erased": report }))
}

fn partition(disk: &Path, logical_sector: u64, parts: &[PartitionPlan]) -> Result<Value, StepError> {
    let guid = crate::storage::partition::write_table(disk, logical_sector, parts)?;
    Ok(json!({ "disk": disk, "disk_guid": guid, "partitions": parts }))
}

fn write_image(img: &ImagePlan, plan: &Plan, ctx: &Context) -> Result<Value, StepError> {
    let heartbeat = Duration::from_secs(plan.report.as_ref().map_or(10, |r| r.heartbeat_secs.max(1)));
    let tracker = Tracker::new("write-image", ctx.reporter, ctx.progress, heartbeat, None);
    let progress = |p: &crate::image::Progress| {
        tracker.update(p.bytes_downloaded, p.total, p.bytes_written, p.download_rate as f64);
    };
    let opts = crate::image::WriteOptions { ca_bundle: ctx.ca_bundle.map(Path::to_path_buf), progress: Some(&progress), ..Default::default() };
    let outcome = crate::image::write_image(img, &opts);
    tracker.finish();
    let outcome = outcome?;
    // The image's backup GPT sits where the image ended; move it to the disk's end.
    let relocated = crate::storage::partition::relocate_backup_gpt(&img.target_path)?;
    if !relocated {
        check_sector_size_mismatch(&img.target_path)?;
    }
    // Data partitions and a configdrive appended to this disk next need room after the
    // grown partition (each on its own 1 MiB boundary; validation refuses `rest` here).
    let mib = |b: u64| b.div_ceil(crate::units::MIB) * crate::units::MIB;
    let reserve: u64 = plan
        .steps
        .iter()
        .map(|s| match s {
            Step::Configdrive(cd) if cd.partition.is_none() && cd.disk_path == img.target_path => mib(cd.size_bytes),
            Step::AppendPartitions(a) if a.path == img.target_path => {
                a.partitions.iter().map(|p| mib(p.size_bytes.unwrap_or(0))).sum()
            }
            _ => 0,
        })
        .sum();
    let grown =
        if img.grow && relocated { crate::storage::partition::grow_last_partition(&img.target_path, reserve)? } else { None };
    let table = if relocated { crate::storage::partition::read_table(&img.target_path)? } else { Vec::new() };
    Ok(json!({
        "image": outcome,
        "target": img.target_path,
        "gpt_backup_relocated": relocated,
        "grown_partition": grown.map(|(n, bytes)| json!({"number": n, "size_bytes": bytes})),
        "partitions": table,
    }))
}

/// A GPT written for 512-byte sectors sits at byte 512; on a disk with larger logical
/// sectors no firmware or kernel will find it. Say so instead of failing later.
fn check_sector_size_mismatch(target: &Path) -> Result<(), StepError> {
    use std::io::{Read, Seek, SeekFrom};
    let lsec = crate::blockdev::logical_sector_of(target).unwrap_or(512);
    if lsec == 512 {
        return Ok(());
    }
    let mut f = std::fs::File::open(target).map_err(|e| io_err(target, e))?;
    let mut sig = [0u8; 8];
    f.seek(SeekFrom::Start(512)).and_then(|_| f.read_exact(&mut sig)).map_err(|e| io_err(target, e))?;
    if &sig == b"EFI PART" {
        return Err(StepError::SectorSize(format!(
            "the image's partition table is laid out for 512-byte sectors, but {} has {lsec}-byte logical sectors; \
             no firmware will find it. Use an image built for {lsec}-byte-sector (4Kn) disks",
            target.display()
        )));
    }
    Ok(())
}

fn append(a: &AppendPlan, session: &mut super::Session) -> Result<Value, StepError> {
    let reqs: Vec<crate::storage::partition::PartitionRequest> = a
        .partitions
        .iter()
        .map(|p| crate::storage::partition::PartitionRequest {
            name: p.name.clone(),
            label: p.label.clone(),
            type_guid: p.type_guid.clone(),
            size: p.size_bytes.map_or(crate::units::SizeSpec::Rest, |b| crate::units::SizeSpec::Bytes(crate::units::Bytes(b))),
        })
        .collect();
    let placed = crate::storage::partition::append_partitions(&a.path, &reqs, a.reserve_bytes)?;
    for (want, got) in a.partitions.iter().zip(&placed) {
        session.appended.insert(want.node.clone(), got.path.clone());
    }
    Ok(json!({ "disk": a.path, "appended": placed }))
}

fn configdrive(cd: &ConfigdrivePlan) -> Result<Value, StepError> {
    let label = match cd.format {
        crate::plan::ConfigdriveFormat::Nocloud => "cidata",
        crate::plan::ConfigdriveFormat::Config2 => "config-2",
    };
    // Microsoft basic data: what firmware and cloud-init expect a vfat config drive to be.
    let basic_data = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
    let (node, part) = match &cd.partition {
        // The planner reserved a partition when it wrote the table.
        Some(node) => (node.clone(), None),
        // After a whole-disk image: a new partition after the image's.
        None => {
            let p = crate::storage::partition::append_partition(&cd.disk_path, cd.size_bytes, basic_data, label)?;
            (p.path.clone(), Some(p))
        }
    };
    let size = {
        let f = std::fs::File::open(&node).map_err(|e| io_err(&node, e))?;
        crate::blockdev::size_bytes(&f).map_err(|e| io_err(&node, e))?
    };
    let outcome = crate::configdrive::write(&node, 0, size, cd)?;
    Ok(json!({ "device": node, "partition": part, "configdrive": outcome }))
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> StepError {
    StepError::Partition(crate::storage::partition::PartitionError::Io(format!("{}: {e}", path.display())))
}
