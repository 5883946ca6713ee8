//! TPM presence from `/sys/class/tpm/tpm0` and its device node, and the endorsement
//! key's fingerprint (the TCG default RSA EK, created and flushed again:
//! [`crate::binding::tpm2::ek`]).

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
    /// The endorsement key (TCG default RSA 2048 template): its SHA-256 fingerprint over
    /// the DER SubjectPublicKeyInfo, as `tpm2_createek -G rsa -f der` writes the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsement_key: Option<crate::binding::tpm2::ek::EndorsementKey>,
    /// Why the endorsement key could not be read, when a TPM is there but did not give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsement_key_error: Option<String>,
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
        endorsement_key: None,
        endorsement_key_error: None,
    }
}

/// Reads the endorsement key of the TPM at `loc` into `tpm` (this machine's TPM only:
/// not for an inventory read under another root).
pub fn read_endorsement_key(tpm: &mut Tpm, loc: &crate::binding::TpmLocation) {
    match crate::binding::tpm2::ek::endorsement_key(loc) {
        Ok(ek) => tpm.endorsement_key = Some(ek),
        Err(e) => {
            crate::runner::log::warn(&format!("inventory: the TPM's endorsement key: {e}"));
            tpm.endorsement_key_error = Some(e);
        }
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
