//! UEFI boot entries for the deployed disks, written natively through efivarfs: one
//! `Boot####` per EFI system partition with a loader, first in `BootOrder`, replacing
//! the entries imprint made for the same disk before.
//!
//! `load_option` encodes and decodes the variables' values, `vars` reads and writes
//! them, `entries` decides which to delete and create, `esp` picks each ESP's loader.

pub mod entries;
pub mod esp;
pub mod load_option;
pub mod vars;

use crate::plan::BootEntryDisk;
use crate::storage::partition::{gpt_entries, GptEntry, PartitionError};
use entries::NewEntry;
use esp::{EspMount, LoaderKind};
use load_option::HardDrive;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use vars::{boot_name, Efivars, VarError};

/// Present only when the running kernel was booted by UEFI firmware.
pub const FIRMWARE: &str = "/sys/firmware/efi";
/// The EFI system partition's type GUID.
const ESP_TYPE: uuid::Uuid = uuid::uuid!("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");

/// Why boot entries could not be made on a machine booted in UEFI mode.
#[derive(Debug, thiserror::Error)]
pub enum EfiError {
    #[error("the machine booted in UEFI mode, but no variables are readable in {}: mount efivarfs there (mount -t efivarfs efivarfs {}) or set boot.uefi_entries: false", dir.display(), dir.display())]
    NotMounted { dir: PathBuf },
    #[error("efivarfs is mounted read-only at {}: boot entries cannot be written; remount it (mount -o remount,rw {}) or set boot.uefi_entries: false", dir.display(), dir.display())]
    ReadOnly { dir: PathBuf },
    #[error(transparent)]
    Var(#[from] VarError),
    #[error("reading the GPT of {} to find its EFI system partitions: {source}", disk.display())]
    Gpt {
        disk: PathBuf,
        source: PartitionError,
    },
}

/// What the `boot-entries` step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BootEntries {
    /// Why nothing was done (the machine did not boot in UEFI mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The entries made, in the order they now lead `BootOrder`.
    pub entries: Vec<BootEntry>,
    /// imprint's earlier entries for the same disks, deleted (`0004`).
    pub replaced: Vec<String>,
    /// EFI system partitions that got no entry, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed_over: Vec<String>,
    /// `BootOrder` afterwards, as efibootmgr prints it (`0003`, `0001`, …).
    pub boot_order: Vec<String>,
}

/// One `Boot####` entry made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BootEntry {
    /// The option number in hex, as in `Boot0003`.
    pub number: String,
    pub description: String,
    pub disk: PathBuf,
    /// The ESP the loader is on.
    pub partition: PathBuf,
    pub partition_number: u32,
    /// The ESP's unique GUID, which the entry names it by.
    #[schemars(with = "String", extend("format" = "uuid"))]
    pub partition_guid: uuid::Uuid,
    /// The loader's path on the ESP.
    pub loader: String,
    pub loader_kind: LoaderKind,
}

/// What the step needs besides the plan.
pub struct Request<'a> {
    /// `/sys/firmware/efi`, or a stand-in.
    pub firmware: &'a Path,
    /// Where efivarfs is mounted.
    pub efivars: &'a Path,
    pub disks: &'a [BootEntryDisk],
    /// The deployed system's name, when imprint extracted it (os-release `NAME`).
    pub os: Option<String>,
    /// The vendor directory finalize installed GRUB into, looked at first.
    pub vendor: Option<&'a str>,
}

/// Before any disk is touched: booted in UEFI mode, the variables are there, writable
/// and `BootOrder` reads; what was found, in words.
pub fn check(firmware: &Path, efivars: &Path) -> Result<String, EfiError> {
    if !firmware.is_dir() {
        return Ok(format!(
            "not booted in UEFI mode ({} is absent): boot-entries will be skipped",
            firmware.display()
        ));
    }
    readable(efivars)?;
    let read_only = nix::sys::statvfs::statvfs(efivars)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    if read_only {
        return Err(EfiError::ReadOnly {
            dir: efivars.to_path_buf(),
        });
    }
    let vars = Efivars::at(efivars);
    let order: Vec<String> = vars
        .boot_order()?
        .iter()
        .map(|n| format!("{n:04X}"))
        .collect();
    Ok(format!(
        "{} boot entries, BootOrder {}",
        vars.boot_numbers()?.len(),
        if order.is_empty() {
            "empty".to_string()
        } else {
            order.join(",")
        }
    ))
}

/// efivarfs lists variables at `dir` (it always has some when mounted).
fn readable(dir: &Path) -> Result<(), EfiError> {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        Ok(())
    } else {
        Err(EfiError::NotMounted {
            dir: dir.to_path_buf(),
        })
    }
}

/// An ESP with the loader chosen on it.
struct Found {
    disk: PathBuf,
    esp: GptEntry,
    loader: esp::Loader,
}

/// Makes an entry for the loader of every ESP on `req.disks`, first in `BootOrder`.
/// Not booted in UEFI mode: nothing to do, and not an error.
pub fn run(req: &Request) -> Result<BootEntries, EfiError> {
    if !req.firmware.is_dir() {
        let why = format!(
            "the machine did not boot in UEFI mode ({} is absent): there are no boot entries to make",
            req.firmware.display()
        );
        crate::runner::log::info(&format!("boot-entries: {why}"));
        return Ok(BootEntries {
            skipped: Some(why),
            entries: Vec::new(),
            replaced: Vec::new(),
            passed_over: Vec::new(),
            boot_order: Vec::new(),
        });
    }
    readable(req.efivars)?;
    let mut found = Vec::new();
    let mut passed_over = Vec::new();
    for d in req.disks {
        find_loaders(d, req.vendor, &mut found, &mut passed_over)?;
    }
    for p in &passed_over {
        crate::runner::log::warn(&format!("boot-entries: no entry for {p}"));
    }
    let identity = |disk: &Path| {
        req.disks
            .iter()
            .find(|d| d.path == disk)
            .map_or_else(String::new, |d| d.identity.clone())
    };
    let wanted: Vec<NewEntry> = found
        .iter()
        .map(|f| {
            let os = req.os.as_deref().or(f.loader.vendor.as_deref());
            NewEntry {
                description: entries::description(os.unwrap_or("imprint"), &identity(&f.disk)),
                partition: HardDrive {
                    partition_number: f.esp.number,
                    start_lba: f.esp.first_lba,
                    size_lba: f.esp.last_lba + 1 - f.esp.first_lba,
                    partition_guid: f.esp.unique_guid,
                },
                loader: f.loader.path.clone(),
            }
        })
        .collect();
    let identities: Vec<String> = req.disks.iter().map(|d| d.identity.clone()).collect();
    let done = entries::install(&Efivars::at(req.efivars), &identities, &wanted)?;
    let hex = |n: &u16| format!("{n:04X}");
    let made = done.made.iter().zip(found).zip(wanted).map(|((n, f), w)| {
        crate::runner::log::info(&format!(
            "boot-entries: {} {:?}: {} on {}",
            boot_name(*n),
            w.description,
            w.loader,
            f.esp.path.display()
        ));
        BootEntry {
            number: hex(n),
            description: w.description,
            disk: f.disk,
            partition: f.esp.path,
            partition_number: f.esp.number,
            partition_guid: f.esp.unique_guid,
            loader: w.loader,
            loader_kind: f.loader.kind,
        }
    });
    Ok(BootEntries {
        skipped: None,
        entries: made.collect(),
        replaced: done.replaced.iter().map(hex).collect(),
        passed_over,
        boot_order: done.boot_order.iter().map(hex).collect(),
    })
}

/// The loader on each ESP of `d`, or why an ESP has none.
fn find_loaders(
    d: &BootEntryDisk,
    vendor: Option<&str>,
    found: &mut Vec<Found>,
    passed_over: &mut Vec<String>,
) -> Result<(), EfiError> {
    let table = gpt_entries(&d.path).map_err(|source| EfiError::Gpt {
        disk: d.path.clone(),
        source,
    })?;
    let esps: Vec<GptEntry> = table
        .into_iter()
        .filter(|e| e.type_guid == ESP_TYPE)
        .collect();
    if esps.is_empty() {
        passed_over.push(format!(
            "{}: its GPT has no EFI system partition",
            d.path.display()
        ));
    }
    for e in esps {
        let chosen = EspMount::read_only(&e.path).map(|m| esp::choose(m.path(), vendor));
        match chosen {
            Ok(Some(loader)) => found.push(Found {
                disk: d.path.clone(),
                esp: e,
                loader,
            }),
            Ok(None) => {
                let arch = crate::arch::Arch::host();
                passed_over.push(format!(
                    "{}: no \\EFI\\<vendor>\\{}, {} or \\EFI\\BOOT\\{} on it",
                    e.path.display(),
                    arch.shim(),
                    arch.grub(),
                    arch.removable_loader()
                ))
            }
            Err(why) => passed_over.push(format!("{}: {why}", e.path.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_uefi_firmware_the_step_is_skipped_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        let disks = [BootEntryDisk {
            disk: "root".into(),
            path: "/dev/sda".into(),
            identity: "serial A".into(),
        }];
        let req = Request {
            firmware: &dir.path().join("efi"),
            efivars: &dir.path().join("efi/efivars"),
            disks: &disks,
            os: None,
            vendor: None,
        };
        let out = run(&req).unwrap();
        assert!(out.skipped.unwrap().contains("did not boot in UEFI mode"));
        assert!(out.entries.is_empty());
        // Booted in UEFI mode without efivarfs: an error that says what to mount.
        std::fs::create_dir_all(dir.path().join("efi/efivars")).unwrap();
        let e = run(&req).unwrap_err().to_string();
        assert!(e.contains("mount -t efivarfs"), "{e}");
        let e = check(req.firmware, req.efivars).unwrap_err().to_string();
        assert!(e.contains("mount -t efivarfs"), "{e}");
    }

    #[test]
    fn the_check_before_any_disk_says_what_it_found() {
        let dir = tempfile::tempdir().unwrap();
        let (fw, vars) = (dir.path().join("efi"), dir.path().join("efi/efivars"));
        let found = check(&fw, &vars).unwrap();
        assert!(found.contains("boot-entries will be skipped"), "{found}");
        std::fs::create_dir_all(&vars).unwrap();
        let v = Efivars::at(&vars);
        v.write("Boot0001", b"x").unwrap();
        v.set_boot_order(&[1, 0x1a]).unwrap();
        assert_eq!(
            check(&fw, &vars).unwrap(),
            "1 boot entries, BootOrder 0001,001A"
        );
    }
}
