//! The state one run of the engine carries from step to step: what to undo, which
//! LUKS volumes are open, where the tree is staged, where appended partitions landed.

use crate::storage;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
    pub volumes: Vec<storage::luks::OpenVolume>,
    /// Where the deployed tree is mounted.
    pub root: PathBuf,
    /// Partitions appended after a whole-disk image: the plan's stand-in path → the node.
    pub appended: HashMap<PathBuf, PathBuf>,
}

impl Session {
    /// A fresh session assembling the tree under [`storage::fs::STAGING_ROOT`].
    pub fn new() -> Self {
        Session {
            undo: Vec::new(),
            volumes: Vec::new(),
            root: PathBuf::from(storage::fs::STAGING_ROOT),
            appended: HashMap::new(),
        }
    }

    /// The device the plan calls `path`: the node of an appended partition, or `path`.
    pub fn node(&self, path: &Path) -> PathBuf {
        self.appended
            .get(path)
            .cloned()
            .unwrap_or_else(|| path.to_path_buf())
    }

    /// Records `u` to be undone (once, however often a step asks).
    pub fn push(&mut self, u: Undo) {
        if !self.undo.contains(&u) {
            self.undo.push(u);
        }
    }

    /// Records that `disk` was changed.
    pub fn touched(&mut self, disk: PathBuf) {
        self.push(Undo::Disk(disk));
    }

    /// Takes everything down in reverse order; with `wipe`, also wipes the touched disks
    /// (after a failure). Returns what was done (failures included) and what is left.
    pub fn unwind(&mut self, wipe: bool) -> Unwound {
        // Keys go first: nothing after a failure needs them, and they must not linger.
        self.volumes.clear();
        let mut out = Unwound::default();
        if self.undo.iter().any(|u| matches!(u, Undo::Unmount(_))) {
            let stopped = storage::fs::stop_processes_in(&self.root);
            if !stopped.is_empty() {
                let line = format!(
                    "stopped what was left running in the target: {}",
                    stopped.join(", ")
                );
                crate::runner::log::info(&format!("undo: {line}"));
                out.done.push(line);
            }
        }
        for u in std::mem::take(&mut self.undo).into_iter().rev() {
            for (what, left, result) in undo(u, wipe) {
                let line = match result {
                    Ok(()) => what,
                    Err(e) => {
                        out.remaining.push(format!("{left} ({e})"));
                        format!("FAILED to {what}: {e}")
                    }
                };
                crate::runner::log::info(&format!("undo: {line}"));
                out.done.push(line);
            }
        }
        out
    }
}

/// What an unwind did and what it could not do.
#[derive(Debug, Default)]
pub struct Unwound {
    /// Every undo, in order; failures start with `FAILED to`.
    pub done: Vec<String>,
    /// What is still there because its undo failed: arrays, mappings, mounts, disks.
    pub remaining: Vec<String>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

/// Carries out one undo; returns what was done, what is left if it failed, and its
/// result (nothing for an untouched disk when not wiping).
fn undo(u: Undo, wipe: bool) -> Vec<(String, String, Result<(), String>)> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    match u {
        Undo::Unmount(p) => {
            vec![(
                format!("unmounted {}", p.display()),
                format!("{} still mounted", p.display()),
                storage::fs::unmount(&p).map_err(|e| err(&e)),
            )]
        }
        Undo::CloseLuks(n) => vec![(
            format!("closed LUKS mapping {n}"),
            format!("LUKS mapping /dev/mapper/{n} still open"),
            storage::luks::close(&n).map_err(|e| err(&e)),
        )],
        Undo::DeactivateVg(vg) => {
            vec![(
                format!("deactivated volume group {vg}"),
                format!("volume group {vg} still active"),
                storage::lvm::deactivate(&vg).map_err(|e| err(&e)),
            )]
        }
        Undo::StopMd(p, members) => {
            let mut out = vec![(
                format!("stopped md array {}", p.display()),
                format!("md array {} still running", p.display()),
                storage::raid::stop(&p).map_err(|e| err(&e)),
            )];
            if wipe {
                let failed = storage::raid::zero_superblocks(&members);
                let names: Vec<String> = members.iter().map(|m| m.display().to_string()).collect();
                let result = if failed.is_empty() {
                    Ok(())
                } else {
                    Err(failed.join("; "))
                };
                out.push((
                    format!("erased md superblocks on {}", names.join(", ")),
                    format!("md superblocks on {}", names.join(", ")),
                    result,
                ));
            }
            out
        }
        Undo::Disk(p) if wipe => vec![(
            format!("wiped {} (signatures, partition tables)", p.display()),
            format!(
                "{} not wiped: its partition table and signatures remain",
                p.display()
            ),
            storage::wipe::wipe_disk(&p, storage::wipe::Policy::Signatures, true)
                .map(|_| ())
                .map_err(|e| err(&e)),
        )],
        Undo::Disk(_) => Vec::new(),
    }
}
