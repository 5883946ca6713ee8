//! Boot firmware: UEFI when the kernel exposes `/sys/firmware/efi`, else BIOS; the Secure
//! Boot state from the `SecureBoot` EFI variable.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// EFI_GLOBAL_VARIABLE's `SecureBoot`, under the root the inventory reads.
const SECURE_BOOT_VAR: &str =
    "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// How the machine booted.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// UEFI (`/sys/firmware/efi` exists).
    Uefi,
    /// Legacy BIOS (or a kernel without EFI support).
    #[default]
    Bios,
}

/// The boot firmware.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
pub struct Firmware {
    /// `uefi` or `bios`.
    pub mode: Mode,
    /// Secure Boot enforced; null under BIOS or when the variable cannot be read.
    pub secure_boot: Option<bool>,
}

/// Reads the firmware mode and Secure Boot state under `root`.
pub fn collect(root: &Path) -> Firmware {
    if !root.join("sys/firmware/efi").is_dir() {
        return Firmware::default();
    }
    Firmware {
        mode: Mode::Uefi,
        secure_boot: std::fs::read(root.join(SECURE_BOOT_VAR))
            .ok()
            .and_then(|v| secure_boot(&v)),
    }
}

/// An efivarfs file is 4 bytes of attributes, then the value: one byte, 1 = enabled.
pub fn secure_boot(var: &[u8]) -> Option<bool> {
    var.get(4).map(|&b| b == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_efi_it_is_bios_and_secure_boot_unknown() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(collect(dir.path()), Firmware::default());
        assert_eq!(
            serde_json::to_value(collect(dir.path())).unwrap(),
            serde_json::json!({"mode": "bios", "secure_boot": null})
        );
    }

    #[test]
    fn the_fifth_byte_of_the_efivar_is_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("sys/firmware/efi/efivars")).unwrap();
        assert_eq!(
            collect(r),
            Firmware {
                mode: Mode::Uefi,
                secure_boot: None
            }
        );
        std::fs::write(r.join(SECURE_BOOT_VAR), [6, 0, 0, 0, 1]).unwrap();
        assert_eq!(collect(r).secure_boot, Some(true));
        std::fs::write(r.join(SECURE_BOOT_VAR), [6, 0, 0, 0, 0]).unwrap();
        assert_eq!(collect(r).secure_boot, Some(false));
        std::fs::write(r.join(SECURE_BOOT_VAR), [6, 0, 0, 0]).unwrap();
        assert_eq!(collect(r).secure_boot, None, "truncated");
    }
}
