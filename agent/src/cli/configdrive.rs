//! `imprint configdrive`: the configdrive step alone, onto a device or file (asked for
//! and refused while in use, like `apply`) or into a seed directory.

use super::exit::{self, Exit};
use super::{document, safety};
use imprint::runner::log;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ConfigdriveArgs {
    /// The document whose `configdrive` section is written.
    document: String,
    /// Device, partition or file to format as the configdrive.
    #[arg(long, conflicts_with = "dir", required_unless_present = "dir")]
    target: Option<PathBuf>,
    /// Write the files into this directory instead (a seed directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Byte offset inside the target.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Size in bytes (default: the target's size from the offset on).
    #[arg(long)]
    size: Option<u64>,
    /// Do not ask before formatting the target.
    #[arg(long, short)]
    yes: bool,
    /// Allow a target whose disk has mounted filesystems or holders elsewhere (the target
    /// itself must still be free: it is opened exclusively).
    #[arg(long)]
    force: bool,
}

/// Writes the document's configdrive.
pub fn configdrive(a: ConfigdriveArgs) -> Result<(), Exit> {
    let (text, source) = document::read(&a.document, None)?;
    let doc = document::parse(&text, &source)?;
    let cd = imprint::planner::configdrive_plan(&doc, &super::provision::plan_options(false))
        .ok_or_else(|| {
            Exit::new(
                exit::INVALID_DOCUMENT,
                format!("{source}: the document has no configdrive section"),
            )
        })?;
    if let Some(dir) = &a.dir {
        imprint::configdrive::write_dir(dir, &cd)
            .map_err(|e| Exit::new(exit::PROVISION_FAILED, e.to_string()))?;
        log::info(&format!("configdrive files written to {}", dir.display()));
        return Ok(());
    }
    let target = a
        .target
        .as_deref()
        .expect("clap requires --target or --dir");
    // Held until the write is done: nobody mounts or assembles the device meanwhile.
    let _claim = if imprint::blockdev::is_block_device(target) {
        Some(claim_device(target, a.force)?)
    } else {
        None
    };
    if !a.yes {
        confirm_format(target)?;
    }
    let size = match a.size {
        Some(s) => s,
        None => target_size(target)?.saturating_sub(a.offset),
    };
    let out = imprint::configdrive::write(target, a.offset, size, &cd)
        .map_err(|e| Exit::new(exit::PROVISION_FAILED, e.to_string()))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(anyhow::Error::from)?
    );
    Ok(())
}

/// The checks `apply` makes on its disks (boot medium, mounts, holders; `--force`
/// overrides), then an exclusive open of the target itself (nothing overrides).
fn claim_device(target: &Path, force: bool) -> Result<std::fs::File, Exit> {
    let disk = safety::whole_disk(target)?;
    let inventory = imprint::disks::inventory_paths(std::slice::from_ref(&disk)).map_err(|e| {
        Exit::new(
            exit::PROVISION_FAILED,
            format!("reading {}: {e}", disk.display()),
        )
    })?;
    let busy: Vec<String> = inventory.iter().flat_map(safety::busy_reasons).collect();
    safety::refuse_busy(&busy, force)?;
    safety::open_exclusive(target)
}

fn confirm_format(target: &Path) -> Result<(), Exit> {
    safety::confirm(&format!(
        "{} will be formatted as a configdrive; what it holds will be lost.",
        target.display()
    ))
}

fn target_size(target: &Path) -> Result<u64, Exit> {
    let fail = |e: String| Exit::new(exit::PROVISION_FAILED, format!("{}: {e}", target.display()));
    let f = std::fs::File::open(target).map_err(|e| fail(format!("opening: {e}")))?;
    imprint::blockdev::size_bytes(&f).map_err(|e| fail(e.to_string()))
}
