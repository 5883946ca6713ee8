//! Finalize: make the extracted system boot from the layout. Writes /etc/fstab,
//! /etc/crypttab, mdadm.conf and the kernel command line into the target, then runs the
//! image's own tools in a chroot: regenerate the initramfs, install GRUB on every boot
//! disk (BIOS: each disk with a BIOS boot partition; UEFI: each ESP, as the removable
//! `\EFI\BOOT\BOOTX64.EFI` so firmware finds it without NVRAM entries, and in the
//! vendor directory `\EFI\debian` or `\EFI\redhat` that the boot-entries step makes
//! the firmware's entries for; no command here writes NVRAM), write the GRUB
//! configuration.
//!
//! Commands come from `boot.finalize` when the document has them, else from the
//! built-in set for the family `/etc/os-release` names (Debian/Ubuntu, RHEL/Fedora).

mod chroot;

use crate::arch::Arch;
use crate::plan::{FinalizePlan, Plan, Step};
use chroot::Chroot;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a finalize command may run unless the document says (`boot.finalize_timeout`):
/// an initramfs rebuild with a generic kernel on a slow or emulated machine takes tens
/// of minutes.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(3600);
const BIOS_BOOT_GUID: &str = "21686148-6449-6E6F-744E-656564454649";
const ESP_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Output kept per command in the report.
const OUTPUT_TAIL: usize = 4000;

/// Why finalize failed.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error("writing {} in the target: {cause}", path.display())]
    Write { path: PathBuf, cause: String },
    #[error("the target's /etc/os-release names {0:?}, which has no built-in boot setup: give boot.finalize commands")]
    UnknownFamily(String),
    #[error(transparent)]
    Fs(#[from] crate::storage::fs::FsError),
    #[error("finalize command in the target failed: {0}")]
    Command(#[from] crate::runner::RunError),
    #[error("keeping the ESPs in step: {0}")]
    Esp(String),
}

/// Distribution families with built-in commands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Debian,
    Rhel,
}

/// The family from the text of an os-release file.
pub fn family(os_release: &str) -> Result<Family, FinalizeError> {
    let field = |k: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_ascii_lowercase())
            .unwrap_or_default()
    };
    let ids = format!("{} {}", field("ID"), field("ID_LIKE"));
    let has = |w: &str| ids.split_whitespace().any(|x| x == w);
    if has("debian") || has("ubuntu") {
        Ok(Family::Debian)
    } else if has("rhel") || has("fedora") || has("centos") {
        Ok(Family::Rhel)
    } else {
        Err(FinalizeError::UnknownFamily(ids.trim().to_string()))
    }
}

/// The vendor directory under `\EFI` the built-in GRUB install uses.
pub fn bootloader_id(fam: Family) -> &'static str {
    match fam {
        Family::Debian => "debian",
        Family::Rhel => "redhat",
    }
}

/// The name of the system extracted under `root` (os-release `NAME`) and the vendor
/// directory the built-in GRUB install puts its loader in, as far as they are known.
pub fn deployed_os(root: &Path) -> (Option<String>, Option<&'static str>) {
    let text = read_os_release(root);
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty());
    (name, family(&text).ok().map(bootloader_id))
}

fn read_os_release(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/os-release"))
        .or_else(|_| std::fs::read_to_string(root.join("usr/lib/os-release")))
        .unwrap_or_default()
}

/// `/dev/mapper/` name of an LVM volume: dashes inside names doubled.
fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// md UUID as mdadm and dracut print it (`xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`).
fn md_uuid(u: &str) -> String {
    let h = u.replace('-', "");
    if h.len() != 32 {
        return u.to_string();
    }
    format!("{}:{}:{}:{}", &h[..8], &h[8..16], &h[16..24], &h[24..])
}

/// The kernel arguments the deployed system needs to find its root, then `boot.kernel_args`.
pub fn kernel_cmdline(plan: &Plan, fin: &FinalizePlan, fam: Family) -> Vec<String> {
    let mut args = Vec::new();
    let root = plan.steps.iter().find_map(|s| match s {
        Step::Mkfs(m) if m.mount.as_deref() == Some("/") => Some(m),
        _ => None,
    });
    let lv = root.and_then(|r| {
        plan.steps.iter().find_map(|s| match s {
            Step::Lvm(g) => g
                .volumes
                .iter()
                .find(|v| v.path == r.device)
                .map(|v| (g.vg.clone(), v.name.clone())),
            _ => None,
        })
    });
    match (&lv, root) {
        (Some((vg, name)), _) => args.push(format!("root=/dev/mapper/{}", dm_name(vg, name))),
        (None, Some(r)) => args.push(format!("root=UUID={}", r.uuid)),
        (None, None) => {}
    }
    if fam == Family::Rhel {
        for s in &plan.steps {
            match s {
                Step::Raid(r) => args.push(format!("rd.md.uuid={}", md_uuid(&r.uuid))),
                Step::Luks(l) => args.push(format!("rd.luks.uuid={}", l.uuid)),
                _ => {}
            }
        }
        if let Some((vg, name)) = &lv {
            args.push(format!("rd.lvm.lv={vg}/{name}"));
        }
        if fin.kernel_args.iter().any(|a| a.starts_with("ip=")) {
            args.push("rd.neednet=1".into());
        }
    }
    for a in &fin.kernel_args {
        // Debian's clevis initramfs script reads field 6 of `ip=` as the interface to
        // wait for, so a bare `ip=dhcp` makes it wait for an interface named "dhcp".
        // The nfsroot form with every field empty means the same to initramfs-tools.
        let a = if fam == Family::Debian && a == "ip=dhcp" {
            "ip=::::::dhcp".to_string()
        } else {
            a.clone()
        };
        if !args.contains(&a) {
            args.push(a);
        }
    }
    args
}

/// /etc/default/grub with GRUB_CMDLINE_LINUX set: the image's own arguments kept, ours
/// (root and rd.* hints) replacing theirs, then the derived ones.
pub fn grub_defaults(existing: &str, derived: &[String]) -> String {
    let ours = ["root=", "rd.md.uuid=", "rd.luks.uuid=", "rd.lvm.lv="];
    let mut kept: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for l in existing.lines() {
        if let Some(v) = l.strip_prefix("GRUB_CMDLINE_LINUX=") {
            kept = v
                .trim_matches('"')
                .split_whitespace()
                .filter(|t| !ours.iter().any(|o| t.starts_with(o)))
                .map(String::from)
                .collect();
        } else {
            out.push(l.to_string());
        }
    }
    for d in derived {
        if !kept.contains(d) {
            kept.push(d.clone());
        }
    }
    out.push(format!("GRUB_CMDLINE_LINUX=\"{}\"", kept.join(" ")));
    out.join("\n") + "\n"
}

fn write(root: &Path, rel: &str, text: &str) -> Result<(), FinalizeError> {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| FinalizeError::Write {
            path: p.clone(),
            cause: e.to_string(),
        })?;
    }
    std::fs::write(&p, text).map_err(|e| FinalizeError::Write {
        path: p,
        cause: e.to_string(),
    })
}

/// The configuration files, with their paths in the target.
pub fn files(
    fin: &FinalizePlan,
    fam: Family,
    grub_existing: &str,
    cmdline: &[String],
) -> Vec<(String, String)> {
    let head = "# Written by imprint at deployment.\n";
    let mut v = vec![(
        "etc/fstab".to_string(),
        format!("{head}{}\n", fin.fstab.join("\n")),
    )];
    if !fin.crypttab.is_empty() {
        // Debian's initramfs hook includes entries marked `initramfs` even when it cannot
        // trace the root device through a chroot's view of the stack.
        let lines: Vec<String> = fin
            .crypttab
            .iter()
            .map(|l| {
                if fam == Family::Debian && !l.contains("initramfs") {
                    format!("{l},initramfs")
                } else {
                    l.clone()
                }
            })
            .collect();
        v.push((
            "etc/crypttab".into(),
            format!("{head}{}\n", lines.join("\n")),
        ));
    }
    if !fin.mdadm.is_empty() {
        let path = if fam == Family::Debian {
            "etc/mdadm/mdadm.conf"
        } else {
            "etc/mdadm.conf"
        };
        v.push((
            path.into(),
            format!(
                "{head}HOMEHOST <system>\nMAILADDR root\n{}\n",
                fin.mdadm.join("\n")
            ),
        ));
    }
    v.push((
        "etc/default/grub".into(),
        grub_defaults(grub_existing, cmdline),
    ));
    v
}

/// What [`run`] did, for the step's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Finalized {
    pub family: Family,
    /// The deployed kernel's extra arguments, one per item.
    pub kernel_cmdline: Vec<String>,
    /// Files written in the target, as absolute paths inside it.
    pub files: Vec<String>,
    pub bios_disks: Vec<PathBuf>,
    pub esps: Vec<Esp>,
    /// The boot setup commands run in the chroot, in order.
    pub commands: Vec<CommandRun>,
}

/// An EFI system partition the boot loader went to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Esp {
    pub device: PathBuf,
    /// Its mount point inside the target.
    pub mounted_at: String,
    /// Files copied from the first ESP (`/boot/efi`) after the boot loader was installed
    /// there: every other ESP holds the same `EFI` tree. Absent on the first ESP and when
    /// the document's own finalize commands replaced the built-in ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_files: Option<u64>,
}

/// One command run in the chroot; the output is its tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandRun {
    pub command: Vec<String>,
    pub ok: bool,
    /// How long it ran.
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Why an optional command failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where the boot loader goes: BIOS disks and the ESPs (device, mount point in the target).
struct Targets {
    bios_disks: Vec<PathBuf>,
    esps: Vec<(PathBuf, String)>,
}

fn targets(plan: &Plan, fin: &FinalizePlan) -> Targets {
    let mut bios_disks = Vec::new();
    let mut esp_devices = Vec::new();
    for s in &plan.steps {
        if let Step::Partition {
            path, partitions, ..
        } = s
        {
            if !fin.boot_disks.contains(path) {
                continue;
            }
            if partitions
                .iter()
                .any(|p| p.type_guid.eq_ignore_ascii_case(BIOS_BOOT_GUID))
            {
                bios_disks.push(path.clone());
            }
            esp_devices.extend(
                partitions
                    .iter()
                    .filter(|p| p.type_guid.eq_ignore_ascii_case(ESP_GUID))
                    .map(|p| p.path.clone()),
            );
        }
    }
    let mounted = plan.steps.iter().find_map(|s| match s {
        Step::Mount(m) if m.mountpoint == "/boot/efi" => Some(m.device.clone()),
        _ => None,
    });
    let mut esps = Vec::new();
    if let Some(m) = &mounted {
        esps.push((m.clone(), "/boot/efi".to_string()));
    }
    for (i, d) in esp_devices
        .iter()
        .filter(|d| Some(*d) != mounted.as_ref())
        .enumerate()
    {
        if mounted.is_some() && fin.esp_copies.contains(d) {
            esps.push((d.clone(), format!("/run/imprint-esp{}", i + 1)));
        }
    }
    Targets { bios_disks, esps }
}

/// The built-in commands for a deployed system of architecture `arch`: (argv, required).
fn builtin(fam: Family, arch: Arch, t: &Targets) -> Vec<(Vec<String>, bool)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (mkinitrd, install, mkconfig): (Vec<String>, &str, Vec<String>) = match fam {
        Family::Debian => (
            s(&["update-initramfs", "-u", "-k", "all"]),
            "grub-install",
            s(&["update-grub"]),
        ),
        Family::Rhel => (
            s(&["dracut", "-f", "--regenerate-all"]),
            "grub2-install",
            s(&["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]),
        ),
    };
    let mut v = vec![(mkinitrd, true)];
    // GRUB for BIOS where the architecture has one (x86); Arm servers boot UEFI only.
    if let Some(bios) = arch.grub_bios_target() {
        for d in &t.bios_disks {
            v.push((
                s(&[
                    install,
                    &format!("--target={bios}"),
                    &d.display().to_string(),
                ]),
                true,
            ));
        }
    }
    // The first ESP gets the removable path (found by firmware without any entry) and the
    // vendor directory the boot-entries step points the firmware at; neither touches
    // NVRAM: that step writes the entries itself, one per ESP. The other ESPs get a copy
    // of its `EFI` tree afterwards ([`copy_esp`]): the loader is the same file for every
    // disk (it finds /boot by UUID), and a copy takes a fraction of a grub-install.
    let id = format!("--bootloader-id={}", bootloader_id(fam));
    for (_, dir) in t.esps.iter().take(1) {
        let efi_dir = format!("--efi-directory={dir}");
        for placement in ["--removable", id.as_str()] {
            v.push((
                s(&[
                    install,
                    &format!("--target={}", arch.grub_efi_target()),
                    &efi_dir,
                    placement,
                    "--no-nvram",
                ]),
                true,
            ));
        }
    }
    v.push((mkconfig, true));
    v
}

/// Replaces the tree `to` with a copy of `from` (an ESP's `EFI` directory: plain files
/// and directories, vfat has nothing else), each file synced; the number of files.
fn copy_esp(from: &Path, to: &Path) -> std::io::Result<u64> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            n += copy_esp(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
            n += 1;
        }
    }
    Ok(n)
}

fn tail(s: &str) -> &str {
    let cut = s.len().saturating_sub(OUTPUT_TAIL);
    let mut i = cut;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Writes the configuration and runs the boot setup in a chroot of `root`.
pub fn run(plan: &Plan, fin: &FinalizePlan, root: &Path) -> Result<Finalized, FinalizeError> {
    let fam = family(&read_os_release(root));
    let fam = match (fam, fin.commands.is_empty()) {
        (Ok(f), _) => f,
        // Custom commands do not need a known family; files follow Debian's paths.
        (Err(_), false) => Family::Debian,
        (Err(e), true) => return Err(e),
    };
    let cmdline = kernel_cmdline(plan, fin, fam);
    let grub_existing = std::fs::read_to_string(root.join("etc/default/grub")).unwrap_or_default();
    let files = files(fin, fam, &grub_existing, &cmdline);
    for (rel, text) in &files {
        write(root, rel, text)?;
    }
    let t = targets(plan, fin);
    let mut ch = Chroot::enter(root)?;
    for (dev, dir) in t.esps.iter().skip(1) {
        ch.mount_extra(dev, dir.trim_start_matches('/'))?;
    }
    let commands: Vec<(Vec<String>, bool)> = if fin.commands.is_empty() {
        builtin(fam, fin.arch, &t)
    } else {
        fin.commands.iter().map(|c| (c.clone(), true)).collect()
    };
    let mut ran = Vec::new();
    for (argv, required) in &commands {
        crate::runner::log::info(&format!("finalize: {}", argv.join(" ")));
        let started = std::time::Instant::now();
        let result = ch.run(argv, Duration::from_secs(fin.command_timeout_secs));
        let duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(o) => ran.push(CommandRun {
                command: argv.clone(),
                ok: true,
                duration_ms,
                stdout: Some(tail(&o.stdout).to_string()),
                stderr: Some(tail(&o.stderr).to_string()),
                error: None,
            }),
            Err(e) if !required => {
                crate::runner::log::warn(&format!("finalize: optional step failed: {e}"));
                ran.push(CommandRun {
                    command: argv.clone(),
                    ok: false,
                    duration_ms,
                    stdout: None,
                    stderr: None,
                    error: Some(tail(&e.to_string()).to_string()),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut copied = vec![None; t.esps.len()];
    if fin.commands.is_empty() {
        if let Some(((_, first), rest)) = t.esps.split_first() {
            let from = root.join(first.trim_start_matches('/')).join("EFI");
            for (i, (_, dir)) in rest.iter().enumerate() {
                let to = root.join(dir.trim_start_matches('/')).join("EFI");
                copied[i + 1] = Some(copy_esp(&from, &to).map_err(|e| {
                    FinalizeError::Esp(format!(
                        "copying {} to {}: {e}",
                        from.display(),
                        to.display()
                    ))
                })?);
            }
        }
    }
    drop(ch);
    Ok(Finalized {
        family: fam,
        kernel_cmdline: cmdline,
        files: files.iter().map(|(p, _)| format!("/{p}")).collect(),
        bios_disks: t.bios_disks,
        esps: t
            .esps
            .into_iter()
            .zip(copied)
            .map(|((device, mounted_at), copied_files)| Esp {
                device,
                mounted_at,
                copied_files,
            })
            .collect(),
        commands: ran,
    })
}

#[cfg(test)]
mod tests;
