//! The document-wide checks: disks, host identity and configdrive, boot and report.

use super::checker::Checker;
use crate::config::model::Document;
use crate::kinds::WipePolicy;
use crate::units::MIB;
use std::collections::HashMap;

/// Disk names are unique; size hints leave a disk to match.
pub(super) fn disks(c: &mut Checker, doc: &Document) {
    if doc.disks.is_empty() {
        c.err(
            "disks",
            "list at least one disk, e.g. - { name: root, match: { smallest: true } }",
        );
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, d) in doc.disks.iter().enumerate() {
        if let Some(j) = seen.insert(d.name.as_str(), i) {
            c.err(
                format!("disks[{i}].name"),
                format!(
                    "disk name {:?} is used twice (also disks[{j}])",
                    d.name.as_str()
                ),
            );
        }
        if let (Some(lo), Some(hi)) = (d.hints.min_size, d.hints.max_size) {
            if lo > hi {
                c.err(
                    format!("disks[{i}].match.max_size"),
                    format!("max_size {hi} is below min_size {lo}; no disk can match"),
                );
            }
        }
    }
}

/// `storage.erase` only where some disk's wipe is `secure`, each fallback once.
pub(super) fn erase(c: &mut Checker, doc: &Document) {
    let Some(st) = &doc.storage else { return };
    let Some(erase) = &st.erase else { return };
    let secure = |w: Option<WipePolicy>| w.unwrap_or(st.wipe) == WipePolicy::Secure;
    if !doc.disks.iter().any(|d| secure(d.wipe)) {
        c.err(
            "storage.erase",
            "applies only to a `secure` wipe, and no disk has one; set storage.wipe (or a disk's wipe) to secure, or remove storage.erase",
        );
    }
    for (i, f) in erase.fallback.iter().enumerate() {
        if let Some(j) = erase.fallback[..i].iter().position(|g| g == f) {
            c.err(
                format!("storage.erase.fallback[{i}]"),
                format!("{f:?} is listed twice (also storage.erase.fallback[{j}]); list each fallback once").to_lowercase(),
            );
        }
    }
}

/// One instance id and one host name; the configdrive fits its filesystem.
pub(super) fn host_and_configdrive(c: &mut Checker, doc: &Document) {
    if doc
        .host
        .instance_id
        .as_deref()
        .is_some_and(|s| s.trim().is_empty())
    {
        c.err(
            "host.instance_id",
            "is empty; remove it to have one derived, or give a value",
        );
    }
    let Some(cd) = &doc.configdrive else { return };
    if let Some(d) = &cd.disk {
        c.disk_ref(doc, "configdrive.disk".into(), d);
    }
    if cd.size.0 < MIB {
        c.err(
            "configdrive.size",
            format!(
                "{} is too small for a vfat configdrive; give at least 1MiB",
                cd.size
            ),
        );
    }
    let md = cd.meta_data.as_ref();
    match md.and_then(|m| m.get("instance-id")) {
        Some(serde_json::Value::String(id)) => {
            if let Some(hid) = doc.host.instance_id.as_ref().filter(|h| *h != id) {
                c.err(
                    "configdrive.meta_data.instance-id",
                    format!(
                        "{id:?} differs from host.instance_id {hid:?}; give the instance id once"
                    ),
                );
            }
        }
        Some(other) => c.err(
            "configdrive.meta_data.instance-id",
            format!("expected a string, got {other}"),
        ),
        None => {}
    }
    match md.and_then(|m| m.get("local-hostname")) {
        Some(serde_json::Value::String(h)) if h != doc.host.hostname.as_str() => c.err(
            "configdrive.meta_data.local-hostname",
            format!(
                "{h:?} differs from host.hostname {:?}; give the host name once",
                doc.host.hostname.as_str()
            ),
        ),
        Some(serde_json::Value::String(_)) | None => {}
        Some(other) => c.err(
            "configdrive.meta_data.local-hostname",
            format!("expected a string, got {other}"),
        ),
    }
}

/// Finalize commands name a program; reports have a heartbeat.
pub(super) fn boot_and_report(c: &mut Checker, doc: &Document) {
    if let Some(boot) = &doc.boot {
        for (i, argv) in boot.finalize.iter().enumerate() {
            if argv.first().is_none_or(|p| p.is_empty()) {
                c.err(
                    format!("boot.finalize[{i}]"),
                    "a command needs at least the program to run, e.g. [grub-install, /dev/sda]",
                );
            }
        }
    }
    if doc
        .boot
        .as_ref()
        .and_then(|b| b.finalize_timeout)
        .is_some_and(|t| t == 0 || t > 86_400)
    {
        c.err(
            "boot.finalize_timeout",
            "must be between 1 and 86400 (seconds each finalize command may run)",
        );
    }
    if doc.report.as_ref().is_some_and(|r| r.heartbeat == 0) {
        c.err(
            "report.heartbeat",
            "must be at least 1 (seconds between progress events)",
        );
    }
}
