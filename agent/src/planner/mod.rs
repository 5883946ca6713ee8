//! The planner: a validated document plus a disk inventory becomes a [`Plan`]: disks
//! chosen, sectors placed, device paths and UUIDs decided, every step in order.
//!
//! Disk selection and partition placement come through [`Backend`], so the planner can
//! be tested alone; [`build`] uses the real ones ([`crate::disks::select`],
//! [`crate::storage::partition::place`]).

mod chosen;
mod finalize;
mod render;
mod storage;

use crate::config::{self, DocError, Document};
use crate::disks::{Disk, Hints};
use crate::storage::partition::PartitionRequest;
use crate::plan::{ConfigdrivePlan, HostPlan, PartitionPlan, Plan, ReportPlan};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

/// Options that come from the machine rather than the document.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `/etc/machine-id` or the DMI product UUID: seeds the instance id and generated UUIDs.
    pub machine_id: Option<String>,
    /// Accept `<...>` placeholders (digests, thumbprints): for `plan` and `validate`,
    /// never for `apply`.
    pub allow_placeholders: bool,
}

/// Why a document cannot be planned on this machine. Every variant names a JSON path.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The document itself is invalid.
    #[error("{0}")]
    Document(#[from] DocError),
    /// A disk could not be chosen.
    #[error("{path}: {message}")]
    Disk { path: String, message: String },
    /// Sizes do not fit.
    #[error("{path}: {message}")]
    Layout { path: String, message: String },
    /// An inventory file could not be read.
    #[error("reading the disk inventory: {0}; give the JSON `imprint disks --json` prints")]
    Inventory(String),
}

/// Disk selection and partition placement, as the planner needs them.
pub trait Backend {
    /// Chooses exactly one disk; the error lists the candidates.
    fn select<'a>(&self, hints: &Hints, disks: &'a [Disk]) -> Result<&'a Disk, String>;
    /// Places partitions (1 MiB alignment, one `rest`) on a disk.
    fn place(
        &self,
        disk_path: &Path,
        disk_bytes: u64,
        logical_sector: u64,
        reqs: &[PartitionRequest],
    ) -> Result<Vec<PartitionPlan>, String>;
}

/// The real [`Backend`]: [`crate::disks::select`] and [`crate::storage::partition::place`].
pub struct System;

impl Backend for System {
    fn select<'a>(&self, hints: &Hints, disks: &'a [Disk]) -> Result<&'a Disk, String> {
        crate::disks::select(hints, disks).map_err(|e| e.to_string())
    }
    fn place(
        &self,
        disk_path: &Path,
        disk_bytes: u64,
        logical_sector: u64,
        reqs: &[PartitionRequest],
    ) -> Result<Vec<PartitionPlan>, String> {
        crate::storage::partition::place(disk_path, disk_bytes, logical_sector, reqs)
            .map_err(|e| e.to_string())
    }
}

/// Plans `doc` on a machine with disks `inventory`.
pub fn build(doc: &Document, inventory: &[Disk], opts: &PlanOptions) -> Result<Plan, PlanError> {
    build_with(doc, inventory, opts, &System)
}

/// Reads an inventory as `imprint disks --json` prints it (a list of disks), to plan
/// for another host.
pub fn load_inventory(json: &str) -> Result<Vec<Disk>, PlanError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de)
        .map_err(|e| PlanError::Inventory(format!("{}: {}", e.path(), e.inner())))
}

/// A disk the document named, and the inventory disk chosen for it.
pub(crate) struct Chosen<'a> {
    pub name: String,
    pub disk: &'a Disk,
}

/// [`build`] with a given [`Backend`].
pub fn build_with(
    doc: &Document,
    inventory: &[Disk],
    opts: &PlanOptions,
    backend: &dyn Backend,
) -> Result<Plan, PlanError> {
    config::validate(doc)?;
    if !opts.allow_placeholders {
        if let Some((path, value)) = config::placeholders(doc).into_iter().next() {
            return Err(DocError::new(
                path,
                format!("{value} is a placeholder; put the real value in before applying"),
            )
            .into());
        }
    }
    let mut chosen: Vec<Chosen> = Vec::new();
    for (i, spec) in doc.disks.iter().enumerate() {
        let disk = backend
            .select(&spec.hints, inventory)
            .map_err(|message| PlanError::Disk {
                path: format!("disks[{i}].match"),
                message,
            })?;
        if let Some((j, other)) = chosen
            .iter()
            .enumerate()
            .find(|(_, c)| c.disk.path == disk.path)
        {
            return Err(PlanError::Disk {
                path: format!("disks[{i}].match"),
                message: format!(
                    "chooses {}, which disks[{j}] ({:?}) already chose; add a hint that tells them apart (serial, wwn, by_path)",
                    disk.path.display(),
                    other.name
                ),
            });
        }
        chosen.push(Chosen {
            name: spec.name.to_string(),
            disk,
        });
    }
    let host = host_plan(doc, &chosen, opts);
    let seed = format!("{}\0{}", host.instance_id, identity(&chosen));
    let mut plan = Plan {
        host,
        disks: chosen
            .iter()
            .map(|c| {
                chosen::disk_plan(
                    &c.name,
                    c.disk,
                    &doc.disks
                        .iter()
                        .find(|d| d.name.as_str() == c.name)
                        .expect("chosen from doc")
                        .hints,
                )
            })
            .collect(),
        steps: Vec::new(),
        report: doc.report.as_ref().map(|r| ReportPlan {
            url: r.url.to_string(),
            token: r.token.clone(),
            heartbeat_secs: r.heartbeat,
        }),
        finish: doc.finish,
        kernel_args: doc
            .boot
            .as_ref()
            .map(|b| b.kernel_args.0.clone())
            .unwrap_or_default(),
    };
    storage::steps(doc, &chosen, &seed, backend, &mut plan)?;
    Ok(plan)
}

/// The configdrive alone (for `imprint configdrive`): no disks are chosen, so the
/// instance id comes from the document or the machine id.
pub fn configdrive_plan(doc: &Document, opts: &PlanOptions) -> Option<ConfigdrivePlan> {
    let host = host_plan(doc, &[], opts);
    storage::configdrive_for(doc, &host, "", PathBuf::new(), None)
}

/// The chosen disks' serials (or paths), in document order.
fn identity(chosen: &[Chosen]) -> String {
    chosen
        .iter()
        .map(|c| {
            c.disk
                .serial
                .clone()
                .unwrap_or_else(|| c.disk.path.display().to_string())
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn host_plan(doc: &Document, chosen: &[Chosen], opts: &PlanOptions) -> HostPlan {
    let hostname = doc.host.hostname.to_string();
    let from_meta = doc
        .configdrive
        .as_ref()
        .and_then(|c| c.meta_data.as_ref())
        .and_then(|m| m.get("instance-id"))
        .and_then(|v| v.as_str())
        .map(String::from);
    let instance_id = doc
        .host
        .instance_id
        .clone()
        .or(from_meta)
        .unwrap_or_else(|| {
            let basis = opts.machine_id.clone().unwrap_or_else(|| identity(chosen));
            let h = hex::encode(Sha256::digest(basis.as_bytes()));
            format!("iid-{hostname}-{}", &h[..12])
        });
    HostPlan {
        hostname,
        instance_id,
    }
}

/// A UUID derived from the plan's seed, stable across reruns of the same plan on the
/// same host, different between hosts.
pub(crate) fn derived_uuid(seed: &str, purpose: &str) -> uuid::Uuid {
    let h = Sha256::digest(format!("imprint\0{seed}\0{purpose}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

#[cfg(test)]
mod tests;
