//! The storage-stack steps (md, LUKS, LVM, mkfs, mounts, rootfs and filesystem images,
//! finalize) and the state they share across a run: what to undo, what is open.

use super::progress::Tracker;
use super::steps::StepError;
use super::Context;
use crate::plan::{
    FinalizePlan, ImagePlan, LuksPlan, LvmPlan, MkfsPlan, MountPlan, Plan, RaidPlan,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Something started that must be undone if a later step fails (and released at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// The disk's contents were changed: wipe its signatures and tables again.
    Disk(PathBuf),
    /// A filesystem mounted under the staging root.
    Unmount(PathBuf),
    /// An open LUKS mapping.
    CloseLuks(String),
    /// An active volume group.
    DeactivateVg(String),
    /// A running md array and its members.
    StopMd(PathBuf, Vec<PathBuf>),
}

/// State that lives for one run of the engine.
pub struct Session {
    /// What to undo, in the order it was started.
    pub undo: Vec<Undo>,
    /// Open LUKS volumes with their keys (for bindings; zeroized when dropped).
    pub volumes: Vec<crate::storage::luks::OpenVolume>,
    /// Where the deployed tree is mounted.
    pub root: PathBuf,
    /// Partitions appended after a whole-disk image: the plan's stand-in path → the node.
    pub appended: std::collections::HashMap<PathBuf, PathBuf>,
}

impl Session {
    /// A fresh session assembling the tree under [`crate::storage::fs::STAGING_ROOT`].
    pub fn new() -> Self {
        Session {
            undo: Vec::new(),
            volumes: Vec::new(),
            root: PathBuf::from(crate::storage::fs::STAGING_ROOT),
            appended: Default::default(),
        }
    }

    /// The device the plan calls `path`: the node of an appended partition, or `path`.
    pub fn node(&self, path: &Path) -> PathBuf {
        self.appended.get(path).cloned().unwrap_or_else(|| path.to_path_buf())
    }

    fn push(&mut self, u: Undo) {
        if !self.undo.contains(&u) {
            self.undo.push(u);
        }
    }

    /// Records that `disk` was changed.
    pub fn touched(&mut self, disk: PathBuf) {
        self.push(Undo::Disk(disk));
    }

    /// Takes everything down in reverse order; with `wipe`, also wipes the touched disks
    /// (after a failure). Returns what was done, failures included.
    pub fn unwind(&mut self, wipe: bool) -> Vec<String> {
        let mut done = Vec::new();
        let mut note = |what: String, r: Result<(), String>| {
            let line = match r {
                Ok(()) => what,
                Err(e) => format!("FAILED to {what}: {e}"),
            };
            crate::runner::log::info(&format!("undo: {line}"));
            done.push(line);
        };
        self.volumes.clear();
        for u in std::mem::take(&mut self.undo).into_iter().rev() {
            match u {
                Undo::Unmount(p) => note(
                    format!("unmounted {}", p.display()),
                    crate::storage::fs::unmount(&p).map_err(|e| e.to_string()),
                ),
                Undo::CloseLuks(n) => note(
                    format!("closed LUKS mapping {n}"),
                    crate::storage::luks::close(&n).map_err(|e| e.to_string()),
                ),
                Undo::DeactivateVg(vg) => note(
                    format!("deactivated volume group {vg}"),
                    crate::storage::lvm::deactivate(&vg).map_err(|e| e.to_string()),
                ),
                Undo::StopMd(p, members) => {
                    note(
                        format!("stopped md array {}", p.display()),
                        crate::storage::raid::stop(&p).map_err(|e| e.to_string()),
                    );
                    if wipe {
                        let failed = crate::storage::raid::zero_superblocks(&members);
                        note(
                            format!(
                                "erased md superblocks on {}",
                                members
                                    .iter()
                                    .map(|m| m.display().to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            if failed.is_empty() {
                                Ok(())
                            } else {
                                Err(failed.join("; "))
                            },
                        );
                    }
                }
                Undo::Disk(p) if wipe => note(
                    format!("wiped {} (signatures, partition tables)", p.display()),
                    crate::storage::wipe::wipe_disk(&p, crate::storage::wipe::Policy::Signatures, true)
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                ),
                Undo::Disk(_) => {}
            }
        }
        done
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

pub(super) fn raid(r: &RaidPlan, plan: &Plan, s: &mut Session) -> Result<Value, StepError> {
    s.push(Undo::StopMd(r.path.clone(), r.members.clone()));
    Ok(json!(crate::storage::raid::create(r, &plan.host.hostname)?))
}

pub(super) fn luks(l: &LuksPlan, s: &mut Session) -> Result<Value, StepError> {
    let l = &LuksPlan { device: s.node(&l.device), ..l.clone() };
    s.push(Undo::CloseLuks(l.name.clone()));
    let (vol, mut out) = crate::storage::luks::format(l, true)?;
    // Binding point: tang/TPM2 keyslots are added here from the open volume's key.
    out["bindings"] = json!(crate::storage::luks::bind_pins(&vol, l)?);
    s.volumes.push(vol);
    Ok(out)
}

pub(super) fn lvm(v: &LvmPlan, s: &mut Session) -> Result<Value, StepError> {
    s.push(Undo::DeactivateVg(v.vg.clone()));
    Ok(crate::storage::lvm::create(v)?)
}

pub(super) fn mkfs(m: &MkfsPlan, s: &Session) -> Result<Value, StepError> {
    let m = &MkfsPlan { device: s.node(&m.device), ..m.clone() };
    crate::storage::fs::mkfs(m)?;
    Ok(
        json!({ "device": m.device, "fstype": m.fstype, "label": m.label, "uuid": m.uuid, "mount": m.mount }),
    )
}

pub(super) fn mount(m: &MountPlan, s: &mut Session) -> Result<Value, StepError> {
    std::fs::create_dir_all(&s.root)
        .map_err(|e| StepError::Io(format!("creating {}: {e}", s.root.display())))?;
    let at = crate::storage::fs::mount(m, &s.root)?;
    s.push(Undo::Unmount(at.clone()));
    Ok(
        json!({ "device": m.device, "mountpoint": m.mountpoint, "staged_at": at, "options": m.options }),
    )
}

fn tracker<'a>(plan: &Plan, ctx: &'a Context) -> Tracker<'a> {
    let heartbeat =
        Duration::from_secs(plan.report.as_ref().map_or(10, |r| r.heartbeat_secs.max(1)));
    Tracker::new("write-image", ctx.reporter, ctx.progress, heartbeat, None)
}

pub(super) fn rootfs(
    img: &ImagePlan,
    plan: &Plan,
    ctx: &Context,
    s: &Session,
) -> Result<Value, StepError> {
    let tracker = tracker(plan, ctx);
    let opts = crate::image::WriteOptions {
        ca_bundle: ctx.ca_bundle.map(Path::to_path_buf),
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let res = crate::rootfs::extract_image(img, &s.root, &opts, |down, written| {
        let rate = down as f64 / t0.elapsed().as_secs_f64().max(0.001);
        tracker.update(down, None, written, rate);
    });
    tracker.finish();
    let (x, compression, downloaded) = res?;
    Ok(json!({
        "format": "rootfs", "root": s.root, "compression": compression, "bytes_downloaded": downloaded,
        "digest": img.digest, "verified": true, "extracted": x, "duration_s": t0.elapsed().as_secs_f64(),
    }))
}

pub(super) fn filesystem(img: &ImagePlan, plan: &Plan, ctx: &Context) -> Result<Value, StepError> {
    let tracker = tracker(plan, ctx);
    let progress = |p: &crate::image::Progress| {
        tracker.update(
            p.bytes_downloaded,
            p.total,
            p.bytes_written,
            p.download_rate as f64,
        )
    };
    let opts = crate::image::WriteOptions {
        ca_bundle: ctx.ca_bundle.map(Path::to_path_buf),
        progress: Some(&progress),
        ..Default::default()
    };
    let res = crate::image::stream_to(&img.urls, &img.digest, &img.target_path, &opts);
    tracker.finish();
    let outcome = res?;
    let fstype = detect_fstype(&img.target_path)?;
    let grown = crate::storage::fs::grow(&img.target_path, &fstype)?;
    Ok(
        json!({ "format": "filesystem", "image": outcome, "target": img.target_path, "fstype": fstype, "grown": grown }),
    )
}

fn detect_fstype(dev: &Path) -> Result<String, StepError> {
    let f = std::fs::File::open(dev)
        .map_err(|e| StepError::Io(format!("opening {}: {e}", dev.display())))?;
    let sigs = crate::disks::probe::signatures(&f, dev, crate::disks::probe::Area::WHOLE)
        .map_err(StepError::Io)?;
    sigs.into_iter()
        .map(|s| s.kind)
        .find(|k| ["ext4", "ext3", "ext2", "xfs", "vfat"].contains(&k.as_str()))
        .ok_or_else(|| {
            StepError::Io(format!(
                "the image written to {} holds no ext4, xfs or vfat filesystem",
                dev.display()
            ))
        })
}

pub(super) fn finalize(f: &FinalizePlan, plan: &Plan, s: &Session) -> Result<Value, StepError> {
    Ok(crate::finalize::run(plan, f, &s.root)?)
}
