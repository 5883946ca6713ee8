//! TPM presence from `/sys/class/tpm/tpm0` and its device node.
//!
//! The endorsement key's fingerprint is not read yet: it needs TPM2_NV_ReadPublic and
//! TPM2_NV_Read of the EK certificate index (0x01c00002), or a CreatePrimary under the
//! endorsement hierarchy with the TCG EK template, neither of which the tpm2 code of
//! [`crate::binding`] has (it creates primaries in the owner hierarchy only).

use super::{read_number, read_trimmed};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Whether a TPM is there and which.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
pub struct Tpm {
    /// The kernel knows a TPM (`/sys/class/tpm/tpm0`).
    pub present: bool,
    /// `tpm_version_major` (2 for TPM 2.0); null when the kernel does not say.
    pub version_major: Option<u32>,
    /// The device node commands go to (`/dev/tpmrm0`, else `/dev/tpm0`), when it exists.
    pub device: Option<String>,
    /// Manufacturer from `device/description` or the ACPI/TIS `device/hid`, when given.
    pub description: Option<String>,
}

/// Reads the first TPM under `root`.
pub fn collect(root: &Path) -> Tpm {
    let dir = "sys/class/tpm/tpm0";
    if !root.join(dir).exists() {
        return Tpm::default();
    }
    let device = ["dev/tpmrm0", "dev/tpm0"]
        .into_iter()
        .find(|d| root.join(d).exists())
        .map(|d| format!("/{d}"));
    Tpm {
        present: true,
        version_major: read_number(root, &format!("{dir}/tpm_version_major")),
        device,
        description: read_trimmed(root, &format!("{dir}/device/description"))
            .or_else(|| read_trimmed(root, &format!("{dir}/device/hid"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testtree::put;
    use super::*;

    #[test]
    fn no_tpm_is_absent_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(collect(dir.path()), Tpm::default());
    }

    #[test]
    fn a_tpm2_with_its_resource_manager_node() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "sys/class/tpm/tpm0/tpm_version_major", "2\n");
        put(
            r,
            "sys/class/tpm/tpm0/device/description",
            "TPM 2.0 Device\n",
        );
        put(r, "dev/tpm0", "");
        put(r, "dev/tpmrm0", "");
        let t = collect(r);
        assert!(t.present);
        assert_eq!(t.version_major, Some(2));
        assert_eq!(t.device.as_deref(), Some("/dev/tpmrm0"));
        assert_eq!(t.description.as_deref(), Some("TPM 2.0 Device"));
    }
}
