//! The partition layer: wipe every chosen disk, then lay out its GPT, the configdrive's
//! partition included; on a whole-disk image's disk, the partitions added after it.

use super::backend::Backend;
use super::chosen::Chosen;
use super::devices::Devices;
use super::error::PlanError;
use super::targets::Targets;
use crate::config::{Document, ExplicitStorage, PartitionType, WipePolicy};
use crate::disks::Disk;
use crate::plan::{appended_node, AppendPlan, AppendedPartition, Plan, Step};
use crate::storage::partition::PartitionRequest;
use crate::units::{Bytes, SizeSpec, MIB};
use std::collections::HashMap;
use std::path::PathBuf;

/// The name of the partition the planner reserves for the configdrive (not a valid
/// document name, so it cannot collide with one).
const CONFIGDRIVE_PART: &str = "_configdrive";

/// A partition request with the JSON path its size came from.
type Request = (PartitionRequest, String);

/// What the partition layer leaves for later layers.
#[derive(Default)]
pub(super) struct Laid {
    /// Partitions added after a whole-disk image, once it is written.
    pub appended: Option<AppendPlan>,
    /// The configdrive partition reserved on each disk (document name → node).
    pub configdrive: HashMap<String, PathBuf>,
}

/// One wipe step per chosen disk: the disk's own `wipe`, else `storage.wipe`; a
/// `secure` one carries the document's fallbacks.
pub(super) fn wipe(doc: &Document, st: &ExplicitStorage, chosen: &[Chosen], plan: &mut Plan) {
    for c in chosen {
        let policy = doc
            .disks
            .iter()
            .find(|d| d.name.as_str() == c.name)
            .and_then(|d| d.wipe)
            .unwrap_or(st.wipe);
        let fallback = match (policy, &st.erase) {
            (WipePolicy::Secure, Some(e)) => e.fallback.clone(),
            _ => Vec::new(),
        };
        plan.steps.push(Step::Wipe {
            disk: c.name.clone(),
            path: c.disk.path.clone(),
            policy,
            fallback,
        });
    }
}

/// Lays out the partitions of every chosen disk, recording each in `dev`.
pub(super) fn lay_out(
    doc: &Document,
    st: &ExplicitStorage,
    chosen: &[Chosen],
    targets: &Targets,
    backend: &dyn Backend,
    dev: &mut Devices,
    plan: &mut Plan,
) -> Result<Laid, PlanError> {
    let mut laid = Laid::default();
    for c in chosen {
        let reserve_cd = targets.cd_disks.contains(&c.name) && !targets.image_on(&c.name);
        let reqs = requests(doc, st, &c.name, reserve_cd);
        if reqs.is_empty() {
            continue;
        }
        check_fit(&c.name, c.disk, &reqs)?;
        if targets.image_on(&c.name) {
            // After the image's own partitions, once it is written: numbers and sectors
            // are decided then; later steps use stand-in paths until they exist.
            let reserve_bytes = match &doc.configdrive {
                Some(cd) if targets.cd_disks.contains(&c.name) => cd.size.0,
                _ => 0,
            };
            laid.appended = Some(append(c, &reqs, reserve_bytes, dev));
            continue;
        }
        let placed = backend
            .place(
                &c.disk.path,
                c.disk.size_bytes,
                c.disk.logical_sector,
                &reqs.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
            )
            .map_err(|message| PlanError::Layout {
                path: reqs[0].1.clone(),
                message,
            })?;
        for p in &placed {
            let size = (p.last_lba + 1 - p.first_lba) * c.disk.logical_sector;
            dev.insert(&p.name, p.path.clone(), size);
            if p.name == CONFIGDRIVE_PART {
                laid.configdrive.insert(c.name.clone(), p.path.clone());
            }
        }
        plan.steps.push(Step::Partition {
            disk: c.name.clone(),
            path: c.disk.path.clone(),
            logical_sector: c.disk.logical_sector,
            partitions: placed,
        });
    }
    Ok(laid)
}

/// The partitions the document puts on `disk`, and the configdrive's when it is reserved there.
fn requests(doc: &Document, st: &ExplicitStorage, disk: &str, reserve_cd: bool) -> Vec<Request> {
    let mut reqs: Vec<Request> = st
        .partitions
        .iter()
        .filter(|(p, _)| p.disk.as_str() == disk)
        .map(|(p, o)| {
            let req = PartitionRequest {
                name: p.name.to_string(),
                label: p.label.clone().unwrap_or_else(|| p.name.to_string()),
                type_guid: p.ptype.guid(),
                size: p.size,
            };
            (req, o.field("size"))
        })
        .collect();
    if let Some(cd) = doc.configdrive.as_ref().filter(|_| reserve_cd) {
        let req = PartitionRequest {
            name: CONFIGDRIVE_PART.into(),
            label: cd.format.label().into(),
            type_guid: PartitionType::default().guid(),
            size: SizeSpec::Bytes(cd.size),
        };
        // Before the partition taking the rest, so `rest` stays last.
        let at = reqs
            .iter()
            .position(|(r, _)| r.size == SizeSpec::Rest)
            .unwrap_or(reqs.len());
        reqs.insert(at, (req, "configdrive.size".into()));
    }
    reqs
}

/// The partitions added after the whole-disk image on `c`, under stand-in device paths.
/// `reserve_bytes` is kept free for a configdrive when one of them takes the rest.
fn append(c: &Chosen, reqs: &[Request], reserve_bytes: u64, dev: &mut Devices) -> AppendPlan {
    let partitions: Vec<AppendedPartition> = reqs
        .iter()
        .map(|(r, _)| {
            let node = appended_node(&c.disk.path, &r.name);
            let size_bytes = match r.size {
                SizeSpec::Bytes(b) => Some(b.0),
                SizeSpec::Rest => None,
            };
            dev.insert(
                &r.name,
                node.clone(),
                size_bytes.unwrap_or(c.disk.size_bytes),
            );
            AppendedPartition {
                name: r.name.clone(),
                label: r.label.clone(),
                type_guid: r.type_guid.clone(),
                size_bytes,
                node,
            }
        })
        .collect();
    let rest = partitions.iter().any(|p| p.size_bytes.is_none());
    AppendPlan {
        disk: c.name.clone(),
        path: c.disk.path.clone(),
        partitions,
        reserve_bytes: if rest { reserve_bytes } else { 0 },
    }
}

/// Refuses partitions that cannot fit, naming the one that overflows. `place` decides
/// the sectors; this gives the operator the path and the arithmetic.
fn check_fit(name: &str, disk: &Disk, reqs: &[Request]) -> Result<(), PlanError> {
    // 1 MiB before the first partition, and room for the backup GPT at the end.
    let usable = disk.size_bytes.saturating_sub(2 * MIB);
    let mut used = 0u64;
    let describe = || {
        format!(
            "disk {name:?} ({}, {})",
            disk.path.display(),
            Bytes(disk.size_bytes).human()
        )
    };
    for (r, path) in reqs {
        if let SizeSpec::Bytes(b) = r.size {
            used += b.0.div_ceil(MIB) * MIB;
            if used > usable {
                return Err(PlanError::Layout {
                    path: path.clone(),
                    message: format!(
                        "{b} for partition {:?} does not fit on {}: the partitions up to it need {} of {} usable",
                        r.name,
                        describe(),
                        Bytes(used).human(),
                        Bytes(usable).human()
                    ),
                });
            }
        }
    }
    if let Some((r, path)) = reqs.iter().find(|(r, _)| r.size == SizeSpec::Rest) {
        if usable - used < MIB {
            return Err(PlanError::Layout {
                path: path.clone(),
                message: format!(
                    "partition {:?} takes the rest of {}, but nothing is left",
                    r.name,
                    describe()
                ),
            });
        }
    }
    Ok(())
}
