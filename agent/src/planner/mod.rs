//! The planner: a validated document plus a disk inventory becomes a [`Plan`]: disks
//! chosen, sectors placed, device paths and UUIDs decided, every step in order.
//!
//! Disk selection and partition placement come through [`Backend`], so the planner can
//! be tested alone; [`build`] uses the real ones ([`crate::disks::select`],
//! [`crate::storage::partition::place`]).

mod backend;
mod boot_entries;
mod checks;
mod chosen;
mod configdrive;
mod devices;
mod error;
mod filesystems;
mod finalize;
mod ids;
mod image;
mod md_size;
mod partitions;
mod render;
mod stack;
mod storage;
mod targets;

pub use backend::{Backend, System};
pub use error::PlanError;

use crate::config::{self, DocError, Document};
use crate::disks::Disk;
use crate::plan::{ConfigdrivePlan, HostPlan, Plan, ReportPlan};
use chosen::Chosen;
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;

/// Options that come from the machine rather than the document.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `/etc/machine-id` or the DMI product UUID: seeds the instance id and generated UUIDs.
    pub machine_id: Option<String>,
    /// Accept `<...>` placeholders (digests, thumbprints): for `plan` and `validate`,
    /// never for `apply`.
    pub allow_placeholders: bool,
    /// `--insecure`: accept an `oci://` tag that neither a digest nor a signature pins.
    /// Only ever from the command line, never from the document or kernel arguments.
    pub insecure: bool,
    /// The machine's architecture, when planning for another host (its inventory's);
    /// default: this one's.
    pub arch: Option<crate::arch::Arch>,
}

/// Plans `doc` on a machine with disks `inventory`.
pub fn build(doc: &Document, inventory: &[Disk], opts: &PlanOptions) -> Result<Plan, PlanError> {
    build_with(doc, inventory, opts, &System)
}

/// Reads the disks of an inventory, to plan for another host: a host inventory as
/// `imprint inventory` prints it, or the bare list `imprint disks --json` prints.
pub fn load_inventory(json: &str) -> Result<Vec<Disk>, PlanError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| PlanError::Inventory(e.to_string()))?;
    // A host inventory (`imprint inventory`) carries its disks in `disks`; the bare
    // list is what `imprint disks --json` prints.
    let (disks, prefix) = match value {
        serde_json::Value::Object(mut o) if o.contains_key("schema_version") => {
            (o.remove("disks").unwrap_or_default(), "disks")
        }
        other => (other, ""),
    };
    serde_path_to_error::deserialize(disks)
        .map_err(|e| PlanError::Inventory(format!("{prefix}{}: {}", e.path(), e.inner())))
}

/// The architecture a host inventory (`imprint inventory`) names in `cpu.architecture`;
/// `None` for a bare disk list or a name imprint does not know.
pub fn inventory_arch(json: &str) -> Option<crate::arch::Arch> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    crate::arch::Arch::parse(value.get("cpu")?.get("architecture")?.as_str()?)
}

/// [`build`] with a given [`Backend`].
pub fn build_with(
    doc: &Document,
    inventory: &[Disk],
    opts: &PlanOptions,
    backend: &dyn Backend,
) -> Result<Plan, PlanError> {
    let machine = opts.arch.unwrap_or_else(crate::arch::Arch::host);
    let with_arch;
    let doc = match &doc.image {
        // An image that does not say is for the machine planned for: its layout (a BIOS
        // boot partition or not) and loader are that machine's, also when `plan
        // --inventory` plans another architecture's machine from here.
        Some(img) if img.arch.is_none() => {
            with_arch = doc.with_image_arch(machine);
            &with_arch
        }
        _ => doc,
    };
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
    if let Some(img) = &doc.image {
        image::check_pinned(img, opts.insecure)?;
        image::check_arch(img, machine)?;
    }
    let chosen = choose(doc, inventory, backend)?;
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
        checks: Vec::new(),
        steps: Vec::new(),
        report: doc.report.as_ref().map(|r| ReportPlan {
            url: r.url.to_string(),
            token: r.token.clone(),
            heartbeat_secs: r.heartbeat,
            built: r.built.as_ref().map(|u| u.to_string()),
            failed: r.failed.as_ref().map(|u| u.to_string()),
        }),
        finish: doc.finish,
        kernel_args: doc
            .boot
            .as_ref()
            .map(|b| b.kernel_args.0.clone())
            .unwrap_or_default(),
    };
    storage::steps(doc, &chosen, &seed, backend, &mut plan)?;
    plan.checks = checks::for_steps(&plan.steps);
    Ok(plan)
}

/// Chooses an inventory disk for each disk of the document; two names never get one disk.
fn choose<'a>(
    doc: &Document,
    inventory: &'a [Disk],
    backend: &dyn Backend,
) -> Result<Vec<Chosen<'a>>, PlanError> {
    let mut chosen: Vec<Chosen> = Vec::new();
    for (i, spec) in doc.disks.iter().enumerate() {
        let disk = backend
            .select(&spec.hints, inventory)
            .map_err(|message| PlanError::Disk {
                path: format!("disks[{i}].match"),
                message,
            })?;
        if let Some(why) = crate::disks::multipath_refusal(disk) {
            return Err(PlanError::Disk {
                path: format!("disks[{i}].match"),
                message: format!("chooses {}, but {why}", disk.path.display()),
            });
        }
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
    Ok(chosen)
}

/// The configdrive alone (for `imprint configdrive`): no disks are chosen, so the
/// instance id comes from the document or the machine id.
pub fn configdrive_plan(doc: &Document, opts: &PlanOptions) -> Option<ConfigdrivePlan> {
    let host = host_plan(doc, &[], opts);
    configdrive::configdrive_for(doc, &host, "", PathBuf::new(), None)
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

#[cfg(test)]
mod erase_tests;
#[cfg(test)]
mod raid_tests;
#[cfg(test)]
mod tests;
