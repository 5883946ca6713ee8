//! The write-image step in its three formats: a whole-disk image (then its GPT is
//! moved to the disk's end and its last partition grown), a filesystem image onto a
//! partition (then grown), a rootfs archive extracted into the staged tree.

use super::context::Context;
use super::error::StepError;
use super::progress::Tracker;
use super::session::Session;
use crate::image::layer_compression as compression;
use crate::image::Compression;
use crate::plan::{ImageFormat, ImagePlan, Plan, Step};
use crate::report::output::{
    DiskImageWritten, FilesystemImageWritten, GrownPartition, RootfsExtracted,
};
use crate::report::StepOutput;
use crate::storage::partition;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The step's progress: bars or lines on the console, report events at the heartbeat.
fn tracker<'a>(plan: &Plan, ctx: &'a Context) -> Tracker<'a> {
    let heartbeat =
        Duration::from_secs(plan.report.as_ref().map_or(10, |r| r.heartbeat_secs.max(1)));
    Tracker::new("write-image", ctx.reporter, ctx.progress, heartbeat, None)
}

/// The write options every format shares: the CA bundle, the registry credentials,
/// the progress callback and, for a signed image, its signature with the key that
/// must have made it.
fn write_options<'p>(
    img: &ImagePlan,
    ctx: &Context,
    progress: Option<&'p (dyn Fn(&crate::image::Progress) + Sync)>,
) -> Result<crate::image::WriteOptions<'p>, StepError> {
    let signature = match &img.signature {
        Some(sig) => {
            super::signature::digest_rule(img, ctx).map_err(StepError::Signature)?;
            let checker = super::signature::checker(sig, ctx).map_err(StepError::Signature)?;
            crate::runner::log::info(&format!(
                "the image must be signed by {}: checking {} as it streams",
                checker.signer(),
                sig.url
            ));
            Some(Arc::new(checker))
        }
        None => None,
    };
    let registry_signature = match &img.registry_signature {
        Some(sig) => {
            super::signature::registry_rule(img, sig, ctx).map_err(StepError::Signature)?;
            let policy =
                super::signature::registry_policy(sig, ctx).map_err(StepError::Signature)?;
            Some(Arc::new(policy))
        }
        None => None,
    };
    Ok(crate::image::WriteOptions {
        ca_bundle: ctx.ca_bundle.map(Path::to_path_buf),
        credentials: img.auth.clone(),
        progress,
        signature,
        registry_signature,
        insecure: img.pin == crate::plan::ImagePin::Insecure,
        stores: img.stores.clone(),
        ..Default::default()
    })
}

/// Streams a whole-disk image onto its disk, then fits its GPT to the disk.
pub fn disk(img: &ImagePlan, plan: &Plan, ctx: &Context) -> Result<StepOutput, StepError> {
    let tracker = tracker(plan, ctx);
    let progress = |p: &crate::image::Progress| {
        tracker.update(
            p.bytes_downloaded,
            p.total,
            p.bytes_written,
            p.download_rate as f64,
        );
    };
    let outcome = crate::image::write_image(img, &write_options(img, ctx, Some(&progress))?);
    tracker.finish();
    let outcome = outcome?;
    // The image's backup GPT sits where the image ended; move it to the disk's end.
    let relocated = partition::relocate_backup_gpt(&img.target_path)?;
    if !relocated {
        check_sector_size(&img.target_path)?;
    }
    let grown = if img.grow && relocated {
        partition::grow_last_partition(&img.target_path, reserved_after_image(img, plan))?
    } else {
        None
    };
    let table = if relocated {
        partition::read_table(&img.target_path)?
    } else {
        Vec::new()
    };
    Ok(StepOutput::DiskImage(DiskImageWritten {
        image: outcome,
        target: img.target_path.clone(),
        gpt_backup_relocated: relocated,
        grown_partition: grown.map(|(number, size_bytes)| GrownPartition { number, size_bytes }),
        partitions: table,
    }))
}

/// Room that data partitions and a configdrive appended to the image's disk later need
/// after the grown partition (each on its own 1 MiB boundary; validation refuses `rest` here).
fn reserved_after_image(img: &ImagePlan, plan: &Plan) -> u64 {
    let mib = |b: u64| b.div_ceil(crate::units::MIB) * crate::units::MIB;
    plan.steps
        .iter()
        .map(|s| match s {
            Step::Configdrive(cd) if cd.partition.is_none() && cd.disk_path == img.target_path => {
                mib(cd.size_bytes)
            }
            Step::AppendPartitions(a) if a.path == img.target_path => a
                .partitions
                .iter()
                .map(|p| mib(p.size_bytes.unwrap_or(0)))
                .sum(),
            _ => 0,
        })
        .sum()
}

/// A GPT written for 512-byte sectors sits at byte 512; on a disk with larger logical
/// sectors no firmware or kernel will find it. Say so instead of failing later.
fn check_sector_size(target: &Path) -> Result<(), StepError> {
    use std::os::unix::fs::FileExt;
    let sector = crate::blockdev::logical_sector_of(target).unwrap_or(512);
    if sector == 512 {
        return Ok(());
    }
    let f = std::fs::File::open(target).map_err(StepError::io("opening", target))?;
    let mut sig = [0u8; 8];
    f.read_exact_at(&mut sig, 512)
        .map_err(StepError::io("reading", target))?;
    if &sig == b"EFI PART" {
        return Err(StepError::SectorSize {
            path: target.to_path_buf(),
            sector,
        });
    }
    Ok(())
}

/// Streams a filesystem image onto a partition, then grows the filesystem to fill it.
pub fn filesystem(img: &ImagePlan, plan: &Plan, ctx: &Context) -> Result<StepOutput, StepError> {
    let tracker = tracker(plan, ctx);
    let progress = |p: &crate::image::Progress| {
        tracker.update(
            p.bytes_downloaded,
            p.total,
            p.bytes_written,
            p.download_rate as f64,
        )
    };
    let res = crate::image::stream_to(
        &img.urls,
        img.digest.as_ref(),
        &img.target_path,
        &write_options(img, ctx, Some(&progress))?,
    );
    tracker.finish();
    let outcome = res?;
    let fstype = detect_fstype(&img.target_path)?;
    let grown = crate::storage::fs::grow(&img.target_path, &fstype)?;
    Ok(StepOutput::FilesystemImage(FilesystemImageWritten {
        format: ImageFormat::Filesystem,
        image: outcome,
        target: img.target_path.clone(),
        fstype,
        grown,
    }))
}

fn detect_fstype(dev: &Path) -> Result<String, StepError> {
    let f = std::fs::File::open(dev).map_err(StepError::io("opening", dev))?;
    let sigs = crate::disks::probe::signatures(&f, dev, crate::disks::probe::Area::WHOLE).map_err(
        |message| StepError::Probe {
            path: dev.to_path_buf(),
            message,
        },
    )?;
    sigs.into_iter()
        .map(|s| s.kind)
        .find(|k| ["ext4", "ext3", "ext2", "xfs", "vfat"].contains(&k.as_str()))
        .ok_or_else(|| StepError::NoFilesystem(dev.to_path_buf()))
}

/// Extracts a rootfs archive into the staged tree (the filesystems mounted before it).
pub fn rootfs(
    img: &ImagePlan,
    plan: &Plan,
    ctx: &Context,
    s: &Session,
) -> Result<StepOutput, StepError> {
    let tracker = tracker(plan, ctx);
    let t0 = Instant::now();
    let opts = write_options(img, ctx, None)?;
    let signed_by = opts.signature.as_ref().map(|c| c.signer().to_string());
    let update = |down: u64, total: Option<u64>, written: u64| {
        let rate = down as f64 / t0.elapsed().as_secs_f64().max(0.001);
        tracker.update(down, total, written, rate);
    };
    let res = if is_container(img) {
        let update = |down, total, written| update(down, Some(total), written);
        crate::rootfs::extract_container(img, &s.root, &opts, update).map(|(x, c, down)| {
            let base = c.layers.first().map(|l| l.codec);
            (
                x,
                base.map_or(Compression::None, compression),
                down,
                Some(c),
            )
        })
    } else {
        let update = |down, written| update(down, None, written);
        crate::rootfs::extract_image(img, &s.root, &opts, update).map(|(x, c, d)| (x, c, d, None))
    };
    tracker.finish();
    let (x, compression, downloaded, registry) = res?;
    Ok(StepOutput::Rootfs(RootfsExtracted {
        format: ImageFormat::Rootfs,
        root: s.root.clone(),
        compression,
        bytes_downloaded: downloaded,
        digest: img.digest.clone(),
        signed_by,
        verified: true,
        extracted: x,
        registry,
        duration_s: t0.elapsed().as_secs_f64(),
    }))
}

/// Whether `img` is a container image: `format: rootfs` from an `oci://` reference.
pub fn is_container(img: &ImagePlan) -> bool {
    img.format == ImageFormat::Rootfs
        && img
            .urls
            .first()
            .is_some_and(|u| u.starts_with(crate::oci::SCHEME))
}
