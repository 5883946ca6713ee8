//! An EFI system partition looked at read-only, and the loader an entry should start
//! from it: a vendor's shim, else its GRUB, else the removable-media path.

use nix::errno::Errno;
use nix::mount::MsFlags;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where ESPs are mounted while their loaders are looked for.
const MOUNT_BASE: &str = "/run/imprint-efi";

/// Which kind of loader an entry starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoaderKind {
    /// `\EFI\<vendor>\shimx64.efi`: boots with Secure Boot on.
    Shim,
    /// `\EFI\<vendor>\grubx64.efi`.
    Grub,
    /// `\EFI\BOOT\BOOTX64.EFI` (`BOOTAA64.EFI` on Arm), the path firmware also tries
    /// without any entry.
    Removable,
}

/// The loader chosen on an ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loader {
    /// Path on the ESP with backslashes, in the case the ESP spells it.
    pub path: String,
    pub kind: LoaderKind,
    /// The vendor directory (`debian`), for a shim or GRUB.
    pub vendor: Option<String>,
}

/// The loader this machine's firmware should boot from the ESP mounted at `root`:
/// [`choose_for`] its architecture.
pub fn choose(root: &Path, preferred: Option<&str>) -> Option<Loader> {
    choose_for(root, preferred, crate::arch::Arch::host())
}

/// The loader for `arch` on the ESP mounted at `root`: the shim (`shimx64.efi`,
/// `shimaa64.efi`), then GRUB (`grubx64.efi`, `grubaa64.efi`), in the `preferred` vendor
/// directory first and then any other (in name order), else the removable path
/// (`\EFI\BOOT\BOOTX64.EFI`, `BOOTAA64.EFI`). Names compare as FAT does, ignoring case.
pub fn choose_for(root: &Path, preferred: Option<&str>, arch: crate::arch::Arch) -> Option<Loader> {
    let efi_name = find(root, "EFI", true)?;
    let efi = root.join(&efi_name);
    let mut vendors: Vec<String> = std::fs::read_dir(&efi)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.eq_ignore_ascii_case("BOOT"))
        .collect();
    vendors.sort_by_key(|v| {
        let first = preferred.is_some_and(|p| v.eq_ignore_ascii_case(p));
        (!first, v.to_ascii_lowercase())
    });
    for (file, kind) in [
        (arch.shim(), LoaderKind::Shim),
        (arch.grub(), LoaderKind::Grub),
    ] {
        for v in &vendors {
            if let Some(f) = find(&efi.join(v), &file, false) {
                return Some(Loader {
                    path: format!("\\{efi_name}\\{v}\\{f}"),
                    kind,
                    vendor: Some(v.clone()),
                });
            }
        }
    }
    let boot = find(&efi, "BOOT", true)?;
    let f = find(&efi.join(&boot), &arch.removable_loader(), false)?;
    Some(Loader {
        path: format!("\\{efi_name}\\{boot}\\{f}"),
        kind: LoaderKind::Removable,
        vendor: None,
    })
}

/// The name in `dir` equal to `name` ignoring case, a directory or a regular file.
fn find(dir: &Path, name: &str, directory: bool) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_type()
                .is_ok_and(|t| if directory { t.is_dir() } else { t.is_file() })
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|n| n.eq_ignore_ascii_case(name))
}

/// An ESP mounted read-only under `/run/imprint-efi` until dropped.
pub struct EspMount {
    dir: PathBuf,
}

impl EspMount {
    /// Mounts the vfat on `device` read-only. When it is already mounted read-write (a
    /// rootfs deployment's `/boot/efi`), the kernel refuses a read-only superblock, so
    /// it is mounted sharing that one and the new mount made read-only.
    pub fn read_only(device: &Path) -> Result<EspMount, String> {
        let name = device
            .file_name()
            .map_or_else(|| "esp".into(), |n| n.to_string_lossy().into_owned());
        let dir = Path::new(MOUNT_BASE).join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let mount =
            |flags| nix::mount::mount(Some(device), &dir, Some("vfat"), flags, None::<&str>);
        let mounted = match mount(safe | MsFlags::MS_RDONLY) {
            Err(Errno::EBUSY) => mount(safe).and_then(|()| {
                let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | safe;
                nix::mount::mount(None::<&str>, &dir, None::<&str>, ro, None::<&str>)
            }),
            other => other,
        };
        let m = EspMount { dir };
        match mounted {
            Ok(()) => Ok(m),
            Err(e) => Err(format!(
                "mounting {} (vfat, read-only) at {}: {e}",
                device.display(),
                m.dir.display()
            )),
        }
    }

    /// Where the ESP's files are.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for EspMount {
    fn drop(&mut self) {
        if let Err(e) = crate::storage::fs::unmount(&self.dir) {
            crate::runner::log::warn(&e.to_string());
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    fn choose(root: &Path, preferred: Option<&str>) -> Option<Loader> {
        choose_for(root, preferred, Arch::X86_64)
    }

    fn esp(files: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in files {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"MZ").unwrap();
        }
        d
    }

    #[test]
    fn prefers_shim_then_grub_then_the_removable_path() {
        let all = [
            "EFI/BOOT/BOOTX64.EFI",
            "EFI/debian/grubx64.efi",
            "EFI/debian/shimx64.efi",
        ];
        let d = esp(&all);
        let l = choose(d.path(), None).unwrap();
        assert_eq!(l.path, "\\EFI\\debian\\shimx64.efi");
        assert_eq!(
            (l.kind, l.vendor.as_deref()),
            (LoaderKind::Shim, Some("debian"))
        );
        let d = esp(&all[..2]);
        let l = choose(d.path(), None).unwrap();
        assert_eq!(
            (l.path.as_str(), l.kind),
            ("\\EFI\\debian\\grubx64.efi", LoaderKind::Grub)
        );
        let d = esp(&all[..1]);
        let l = choose(d.path(), None).unwrap();
        assert_eq!(
            (l.path.as_str(), l.kind, l.vendor),
            ("\\EFI\\BOOT\\BOOTX64.EFI", LoaderKind::Removable, None)
        );
        assert_eq!(choose(esp(&["EFI/debian/readme.txt"]).path(), None), None);
    }

    #[test]
    fn a_shim_anywhere_beats_grub_and_the_preferred_vendor_goes_first() {
        let d = esp(&[
            "EFI/centos/grubx64.efi",
            "EFI/ubuntu/shimx64.efi",
            "EFI/debian/shimx64.efi",
        ]);
        assert_eq!(
            choose(d.path(), None).unwrap().path,
            "\\EFI\\debian\\shimx64.efi"
        );
        assert_eq!(
            choose(d.path(), Some("UBUNTU")).unwrap().path,
            "\\EFI\\ubuntu\\shimx64.efi"
        );
    }

    #[test]
    fn names_match_ignoring_case_and_keep_the_esps_spelling() {
        let d = esp(&["efi/Boot/bootx64.efi", "efi/Fedora/SHIMX64.EFI"]);
        assert_eq!(
            choose(d.path(), None).unwrap().path,
            "\\efi\\Fedora\\SHIMX64.EFI"
        );
    }

    #[test]
    fn arm64_boots_its_own_loaders_and_not_x86_ones() {
        let d = esp(&[
            "EFI/BOOT/BOOTX64.EFI",
            "EFI/debian/grubx64.efi",
            "EFI/BOOT/BOOTAA64.EFI",
        ]);
        let l = choose_for(d.path(), None, Arch::Aarch64).unwrap();
        assert_eq!(
            (l.path.as_str(), l.kind),
            ("\\EFI\\BOOT\\BOOTAA64.EFI", LoaderKind::Removable)
        );
        let d = esp(&["EFI/debian/grubaa64.efi", "EFI/debian/shimaa64.efi"]);
        assert_eq!(
            choose_for(d.path(), None, Arch::Aarch64).unwrap().path,
            "\\EFI\\debian\\shimaa64.efi"
        );
        assert_eq!(
            choose_for(esp(&["EFI/debian/grubx64.efi"]).path(), None, Arch::Aarch64),
            None
        );
    }
}
