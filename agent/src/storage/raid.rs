//! md arrays (RAID0, 1, 5, 6, 10) through `mdadm`: create, stop, forget.
//!
//! Initial resync: arrays are created *without* `--assume-clean` and the resync runs in
//! the background; nothing waits for it. md RAID1 serves a read from either member, so
//! blocks never written since creation may read differently from one read to the next,
//! and `mdadm --action=check` (Debian's monthly `checkarray`) would report mismatches.
//! `--assume-clean` would only be safe if both members were known to read as zeroes
//! (a zeroing wipe or a discard that guarantees zeroes), which the default signature
//! wipe does not give; RAID5, 6 and 10 have the same reason (parity or copies computed
//! from whatever the members held). The resync is throttled by md when other I/O runs, so it costs the
//! image write little; the agent stops arrays cleanly at the end of the run so md records
//! the checkpoint and the deployed system resumes the resync where it stopped. Every
//! array gets an internal write-intent bitmap: a member that returns after an absence
//! (the degraded boot) resyncs only what changed. RAID0 has neither: nothing to resync,
//! and md refuses a bitmap on it.

use crate::plan::RaidPlan;
use crate::runner::{self, RunError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// mdadm is quick; the bound covers slow disks answering superblock writes.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Why an md operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RaidError {
    #[error("creating md array {name}: {source}")]
    Create { name: String, source: RunError },
    #[error("md array {name} was created but {path} did not appear: {cause}")]
    Node {
        name: String,
        path: PathBuf,
        cause: String,
    },
    #[error("stopping md array {}: {source}", path.display())]
    Stop { path: PathBuf, source: RunError },
}

/// What `create` made, for the step's report.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Created {
    pub name: String,
    /// `/dev/md/<name>`.
    pub path: PathBuf,
    /// The kernel's device, e.g. `/dev/md127`.
    pub device: PathBuf,
    pub uuid: String,
    pub metadata: String,
    pub members: Vec<PathBuf>,
    /// The md level (0, 1, 5, 6, 10).
    pub level: u8,
    /// What the plan said the array holds at least.
    pub size_bytes: u64,
    /// How the initial resync is handled.
    pub resync: String,
}

/// The mdadm arguments that create `plan`'s array: its level, layout and chunk as the
/// plan states them; a write-intent bitmap where the level is redundant (md refuses one
/// on RAID0, which has nothing to resync).
pub fn create_args(plan: &RaidPlan, homehost: &str) -> Vec<String> {
    let mut a = vec![
        "--create".to_string(),
        plan.path.display().to_string(),
        "--run".into(),
        format!("--level={}", plan.level.number()),
        format!("--raid-devices={}", plan.members.len()),
    ];
    if let Some(l) = &plan.layout {
        a.push(format!("--layout={l}"));
    }
    if let Some(c) = plan.chunk_bytes {
        // mdadm reads a bare number as KiB.
        a.push(format!("--chunk={}", c / 1024));
    }
    a.extend([
        format!("--metadata={}", plan.metadata),
        format!("--uuid={}", plan.uuid),
        format!("--name={}", plan.name),
        format!("--homehost={homehost}"),
    ]);
    if plan.level.redundant() {
        a.push("--bitmap=internal".into());
    }
    a.extend(plan.members.iter().map(|m| m.display().to_string()));
    a
}

/// Creates the array and waits for its node.
pub fn create(plan: &RaidPlan, homehost: &str) -> Result<Created, RaidError> {
    runner::run("mdadm", create_args(plan, homehost), TIMEOUT).map_err(|source| {
        RaidError::Create {
            name: plan.name.clone(),
            source,
        }
    })?;
    crate::blockdev::wait_for_node(&plan.path, Duration::from_secs(10)).map_err(|e| {
        RaidError::Node {
            name: plan.name.clone(),
            path: plan.path.clone(),
            cause: e.to_string(),
        }
    })?;
    let device = std::fs::canonicalize(&plan.path).unwrap_or_else(|_| plan.path.clone());
    Ok(Created {
        name: plan.name.clone(),
        path: plan.path.clone(),
        device,
        uuid: plan.uuid.clone(),
        metadata: plan.metadata.as_str().into(),
        members: plan.members.clone(),
        level: plan.level.number(),
        size_bytes: plan.size_bytes,
        resync: if plan.level.redundant() {
            "background (not awaited; resumes in the deployed system)"
        } else {
            "none (RAID0 has no redundancy to resync)"
        }
        .into(),
    })
}

/// Stops the array at `path` (`/dev/md/<name>` or `/dev/mdN`).
pub fn stop(path: &Path) -> Result<(), RaidError> {
    runner::run("mdadm", ["--stop".as_ref(), path.as_os_str()], TIMEOUT)
        .map(|_| ())
        .map_err(|source| RaidError::Stop {
            path: path.to_path_buf(),
            source,
        })
}

/// Erases the md superblocks of `members` (best effort: a member may already be blank).
pub fn zero_superblocks(members: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for m in members {
        if let Err(e) = runner::run(
            "mdadm",
            ["--zero-superblock".as_ref(), m.as_os_str()],
            TIMEOUT,
        ) {
            failed.push(format!("{}: {e}", m.display()));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RaidLevel;

    fn plan(level: RaidLevel, members: usize) -> RaidPlan {
        let chunk = level.striped().then_some(512 * 1024);
        RaidPlan {
            name: "md-root".into(),
            level,
            metadata: crate::plan::MdMetadata::V1_2,
            members: (0..members)
                .map(|i| PathBuf::from(format!("/dev/vd{}5", (b'a' + i as u8) as char)))
                .collect(),
            path: "/dev/md/md-root".into(),
            uuid: "89b3bf0d-f454-489c-8a34-d835ca7ecde6".into(),
            size_bytes: 0,
            layout: level.md_layout().map(String::from),
            chunk_bytes: chunk,
        }
    }

    #[test]
    fn create_names_uuid_metadata_and_members() {
        let plan = RaidPlan {
            name: "md-boot".into(),
            level: RaidLevel::Raid1,
            metadata: crate::plan::MdMetadata::V1_0,
            members: vec!["/dev/vda3".into(), "/dev/vdb3".into()],
            path: "/dev/md/md-boot".into(),
            uuid: "89b3bf0d-f454-489c-8a34-d835ca7ecde6".into(),
            size_bytes: 0,
            layout: None,
            chunk_bytes: None,
        };
        let a = create_args(&plan, "db-17").join(" ");
        assert_eq!(
            a,
            "--create /dev/md/md-boot --run --level=1 --raid-devices=2 --metadata=1.0 \
             --uuid=89b3bf0d-f454-489c-8a34-d835ca7ecde6 --name=md-boot --homehost=db-17 \
             --bitmap=internal /dev/vda3 /dev/vdb3"
        );
        assert!(!a.contains("assume-clean"), "the initial resync runs");
    }

    #[test]
    fn raid10_is_created_near_2_with_its_chunk() {
        let a = create_args(&plan(RaidLevel::Raid10, 4), "db-17").join(" ");
        assert_eq!(
            a,
            "--create /dev/md/md-root --run --level=10 --raid-devices=4 --layout=n2 \
             --chunk=512 --metadata=1.2 --uuid=89b3bf0d-f454-489c-8a34-d835ca7ecde6 \
             --name=md-root --homehost=db-17 --bitmap=internal \
             /dev/vda5 /dev/vdb5 /dev/vdc5 /dev/vdd5"
        );
    }

    #[test]
    fn parity_levels_get_a_bitmap_and_raid0_none() {
        for (level, n) in [(RaidLevel::Raid5, 3), (RaidLevel::Raid6, 4)] {
            let a = create_args(&plan(level, n), "h");
            assert!(a.contains(&format!("--level={}", level.number())), "{a:?}");
            assert!(a.contains(&format!("--raid-devices={n}")), "{a:?}");
            assert!(a.contains(&"--bitmap=internal".to_string()), "{a:?}");
            assert!(!a.iter().any(|x| x.starts_with("--layout")), "{a:?}");
        }
        let a = create_args(&plan(RaidLevel::Raid0, 2), "h");
        assert!(a.contains(&"--level=0".to_string()), "{a:?}");
        assert!(!a.iter().any(|x| x.starts_with("--bitmap")), "{a:?}");
    }

    /// The array really forms from two loop-device members — where the kernel has md.
    /// This host has none; the QEMU suite covers creation there.
    #[test]
    fn zeroing_superblocks_of_blank_members_reports_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("blank");
        std::fs::write(&f, vec![0u8; 1 << 20]).unwrap();
        // mdadm on a blank file: "Unrecognised md component device" — reported, not fatal.
        let failed = zero_superblocks(&[f]);
        assert!(failed.len() <= 1);
    }
}
