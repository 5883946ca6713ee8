//! The finish action after the final report: reboot, poweroff, kexec, none.
//! Only `run` (ramdisk mode) finishes; `apply` never reboots the machine it runs on.

use crate::plan::{Finish, Plan, Step};
use crate::runner::{log, run};
use nix::sys::reboot::{reboot, RebootMode};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the finish action could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error("{action} failed: {source}")]
    Syscall {
        action: &'static str,
        source: nix::Error,
    },
    #[error("kexec: {0}")]
    Kexec(String),
}

/// Carries out `finish`. Returns only for `none` (or on error).
pub fn finish(action: Finish, plan: Option<&Plan>) -> Result<(), FinishError> {
    nix::unistd::sync();
    match action {
        Finish::None => Ok(()),
        Finish::Reboot => {
            log::info("finish: rebooting");
            reboot(RebootMode::RB_AUTOBOOT)
                .map(drop)
                .map_err(|source| FinishError::Syscall {
                    action: "reboot",
                    source,
                })
        }
        Finish::Poweroff => {
            log::info("finish: powering off");
            reboot(RebootMode::RB_POWER_OFF)
                .map(drop)
                .map_err(|source| FinishError::Syscall {
                    action: "poweroff",
                    source,
                })
        }
        Finish::Kexec => {
            let plan = plan.ok_or_else(|| FinishError::Kexec("no plan, nothing to boot".into()))?;
            kexec(plan)?;
            // kexec -e only returns on failure.
            Err(FinishError::Kexec("kexec -e returned".into()))
        }
    }
}

/// Finds the deployed kernel on the target disk's partitions and kexecs into it.
fn kexec(plan: &Plan) -> Result<(), FinishError> {
    let disk = plan
        .steps
        .iter()
        .find_map(|s| match s {
            Step::WriteImage(i) => Some(i.target_path.clone()),
            _ => None,
        })
        .ok_or_else(|| FinishError::Kexec("the plan writes no image".into()))?;
    let mnt = PathBuf::from("/run/imprint/kexec");
    std::fs::create_dir_all(&mnt)
        .map_err(|e| FinishError::Kexec(format!("creating {}: {e}", mnt.display())))?;
    for n in 1..=16u32 {
        let part = crate::blockdev::partition_node(&disk, n);
        if !part.exists() {
            continue;
        }
        if run(
            "mount",
            [Path::new("-o"), Path::new("ro"), &part, &mnt],
            Duration::from_secs(30),
        )
        .is_err()
        {
            continue;
        }
        let found = find_kernel(&mnt);
        if let Some((kernel, initrd, root_prefix)) = found {
            let uuid = run(
                "blkid",
                [
                    Path::new("-s"),
                    Path::new("UUID"),
                    Path::new("-o"),
                    Path::new("value"),
                    &part,
                ],
                Duration::from_secs(10),
            )
            .map(|o| o.stdout.trim().to_string())
            .unwrap_or_default();
            let mut cmdline = if root_prefix {
                format!("root=UUID={uuid} ro")
            } else {
                String::new()
            };
            for a in &plan.kernel_args {
                cmdline.push(' ');
                cmdline.push_str(a);
            }
            let mut args = vec![
                "-l".to_string(),
                kernel.display().to_string(),
                format!("--append={}", cmdline.trim()),
            ];
            if let Some(i) = initrd {
                args.push(format!("--initrd={}", i.display()));
            }
            let loaded = run("kexec", &args, Duration::from_secs(60));
            let _ = run("umount", [&mnt], Duration::from_secs(30));
            loaded.map_err(|e| FinishError::Kexec(e.to_string()))?;
            log::info(&format!(
                "finish: kexec into {} ({})",
                kernel.display(),
                part.display()
            ));
            run("kexec", ["-e"], Duration::from_secs(60))
                .map_err(|e| FinishError::Kexec(e.to_string()))?;
            return Ok(());
        }
        let _ = run("umount", [&mnt], Duration::from_secs(30));
    }
    Err(FinishError::Kexec(format!(
        "no kernel (vmlinuz) found on the partitions of {}",
        disk.display()
    )))
}

/// `(kernel, initrd, is_root_fs)`: `boot/vmlinuz` on a root filesystem, or `vmlinuz` on a /boot one.
fn find_kernel(mnt: &Path) -> Option<(PathBuf, Option<PathBuf>, bool)> {
    for (dir, is_root) in [(mnt.join("boot"), true), (mnt.to_path_buf(), false)] {
        let kernel = dir.join("vmlinuz");
        if kernel.exists() {
            let initrd = dir.join("initrd.img");
            return Some((kernel, initrd.exists().then_some(initrd), is_root));
        }
    }
    None
}
