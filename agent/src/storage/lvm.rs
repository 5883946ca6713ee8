//! LVM through the `lvm` tool: one volume group on its physical volumes, logical volumes
//! sized in bytes or taking the rest; deactivation for teardown.
//!
//! Every call carries a `--config` that works without udev (the ramdisk has none):
//! libdevmapper then makes the `/dev/mapper` nodes and lvm the `/dev/<vg>/<lv>` links.

use crate::plan::LvmPlan;
use crate::runner::{self, RunError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);
/// No udev: no device list from it, no waiting for its rules.
pub const NO_UDEV_CONFIG: &str = "devices { obtain_device_list_from_udev=0 } \
     activation { udev_sync=0 udev_rules=0 monitoring=0 } global { use_lvmetad=0 }";

/// Why an LVM operation failed.
/// What [`create`] made, for the step's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Created {
    pub vg: String,
    pub pvs: Vec<PathBuf>,
    /// The logical volumes as `lvs` lists them after creation.
    pub volumes: Vec<Volume>,
}

/// One logical volume as `lvs` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Volume {
    pub name: String,
    pub size_bytes: Option<u64>,
    pub lv_uuid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    #[error("{what}: {source}")]
    Tool { what: String, source: RunError },
    #[error("logical volume {} did not appear: {cause}", path.display())]
    Node { path: PathBuf, cause: String },
}

fn lvm(what: impl Into<String>, args: Vec<String>) -> Result<String, LvmError> {
    let mut a = vec![args[0].clone(), "--config".into(), NO_UDEV_CONFIG.into()];
    a.extend(args.into_iter().skip(1));
    runner::run("lvm", &a, TIMEOUT)
        .map(|o| o.stdout)
        .map_err(|source| LvmError::Tool {
            what: what.into(),
            source,
        })
}

/// The lvcreate size argument: exact bytes, or what is left.
pub fn size_args(size_bytes: Option<u64>) -> Vec<String> {
    match size_bytes {
        Some(b) => vec!["-L".into(), format!("{b}b")],
        None => vec!["-l".into(), "100%FREE".into()],
    }
}

/// Creates the physical volumes, the group and its volumes; waits for every volume's node.
pub fn create(plan: &LvmPlan) -> Result<Created, LvmError> {
    let pvs: Vec<String> = plan.pvs.iter().map(|p| p.display().to_string()).collect();
    let mut a = vec!["pvcreate".to_string(), "--yes".into(), "--force".into()];
    a.extend(pvs.iter().cloned());
    lvm(
        format!("creating physical volumes on {}", pvs.join(", ")),
        a,
    )?;
    let mut a = vec!["vgcreate".to_string(), "--yes".into(), plan.vg.clone()];
    a.extend(pvs.iter().cloned());
    lvm(format!("creating volume group {}", plan.vg), a)?;
    // Fixed sizes first, so the one taking the rest gets what they leave.
    let mut order: Vec<_> = plan.volumes.iter().collect();
    order.sort_by_key(|v| v.size_bytes.is_none());
    for v in order {
        let mut a = vec![
            "lvcreate".to_string(),
            "--yes".into(),
            "--wipesignatures".into(),
            "y".into(),
            "--zero".into(),
            "y".into(),
            "-n".into(),
            v.name.clone(),
        ];
        a.extend(size_args(v.size_bytes));
        a.push(plan.vg.clone());
        lvm(format!("creating logical volume {}/{}", plan.vg, v.name), a)?;
    }
    for v in &plan.volumes {
        crate::blockdev::wait_for_node(&v.path, Duration::from_secs(10)).map_err(|e| {
            LvmError::Node {
                path: v.path.clone(),
                cause: e.to_string(),
            }
        })?;
    }
    let listing = lvm(
        format!("listing volume group {}", plan.vg),
        vec![
            "lvs".into(),
            "--noheadings".into(),
            "--units".into(),
            "b".into(),
            "-o".into(),
            "lv_name,lv_size,lv_uuid".into(),
            plan.vg.clone(),
        ],
    )
    .unwrap_or_default();
    let volumes: Vec<Volume> = listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| Volume {
                name: f[0].to_string(),
                size_bytes: f[1].trim_end_matches('B').parse::<u64>().ok(),
                lv_uuid: f[2].to_string(),
            })
        })
        .collect();
    Ok(Created {
        vg: plan.vg.clone(),
        pvs: plan.pvs.clone(),
        volumes,
    })
}

/// Deactivates every volume of `vg`.
pub fn deactivate(vg: &str) -> Result<(), LvmError> {
    lvm(
        format!("deactivating volume group {vg}"),
        vec!["vgchange".into(), "-an".into(), vg.into()],
    )
    .map(|_| ())
}

/// The volume group of a device-mapper name `vg-lv` (LVM doubles dashes inside names).
pub fn vg_of_dm_name(dm_name: &str) -> Option<String> {
    let b = dm_name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            if b.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            return Some(dm_name[..i].replace("--", "-"));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_bytes_or_the_rest() {
        assert_eq!(size_args(Some(4 << 30)), vec!["-L", "4294967296b"]);
        assert_eq!(size_args(None), vec!["-l", "100%FREE"]);
    }

    #[test]
    fn volume_group_is_read_back_from_escaped_dm_names() {
        assert_eq!(vg_of_dm_name("vg0-var_log").as_deref(), Some("vg0"));
        assert_eq!(vg_of_dm_name("my--vg-root").as_deref(), Some("my-vg"));
        assert_eq!(vg_of_dm_name("luks"), None);
    }
}
