//! The configdrive steps: the original on the first of its disks, copies on the others.

use super::chosen::{self, Chosen};
use crate::config::Document;
use crate::plan::{ConfigdrivePlan, HostPlan, Plan, Step};
use std::collections::HashMap;
use std::path::PathBuf;

/// One configdrive step per disk in `disks`, into the partition reserved there if any.
pub(super) fn push(
    doc: &Document,
    plan: &mut Plan,
    disks: &[String],
    partitions: &HashMap<String, PathBuf>,
    chosen: &[Chosen],
) {
    for (i, disk) in disks.iter().enumerate() {
        let path = chosen::disk(chosen, disk).path.clone();
        if let Some(mut cd) =
            configdrive_for(doc, &plan.host, disk, path, partitions.get(disk).cloned())
        {
            cd.copy = i > 0;
            plan.steps.push(Step::Configdrive(cd));
        }
    }
}

/// The document's configdrive for `host`, on `disk` (document name) at `disk_path`.
pub(super) fn configdrive_for(
    doc: &Document,
    host: &HostPlan,
    disk: &str,
    disk_path: PathBuf,
    partition: Option<PathBuf>,
) -> Option<ConfigdrivePlan> {
    let cd = doc.configdrive.as_ref()?;
    let mut meta = cd.meta_data.clone().unwrap_or_default();
    meta.entry("instance-id")
        .or_insert_with(|| host.instance_id.clone().into());
    meta.entry("local-hostname")
        .or_insert_with(|| host.hostname.clone().into());
    Some(ConfigdrivePlan {
        disk: disk.to_string(),
        disk_path,
        format: cd.format,
        size_bytes: cd.size.0,
        hostname: host.hostname.clone(),
        instance_id: host.instance_id.clone(),
        meta_data: serde_json::Value::Object(meta),
        user_data: cd.user_data.clone(),
        network_config: cd.network_config.clone(),
        vendor_data: cd.vendor_data.clone(),
        partition,
        copy: false,
    })
}
