//! The CPU architectures imprint provisions, and the names each is known by where they
//! differ: images and registries (`amd64`/`arm64`), GRUB's targets, the loaders on an
//! EFI system partition. An image runs only on its own architecture, so the agent writes
//! images of the architecture it runs as ([`Arch::host`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Arch {
    /// 64-bit x86 (also written `amd64`).
    #[serde(rename = "x86_64", alias = "amd64")]
    X86_64,
    /// 64-bit Arm (also written `arm64`).
    #[serde(rename = "aarch64", alias = "arm64")]
    Aarch64,
}

impl Arch {
    /// The architecture this agent was built for, which is the machine's.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    /// From the kernel's or a registry's name (`uname -m`, an OCI platform).
    pub fn parse(name: &str) -> Option<Arch> {
        match name.trim().to_ascii_lowercase().as_str() {
            "x86_64" | "amd64" | "x86-64" => Some(Arch::X86_64),
            "aarch64" | "arm64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// The kernel's name (`uname -m`), as documents and reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The OCI platform architecture (`linux/<this>`).
    pub fn oci(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// GRUB's UEFI target (`grub-install --target=`).
    pub fn grub_efi_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-efi",
            Arch::Aarch64 => "arm64-efi",
        }
    }

    /// GRUB's BIOS target; Arm servers boot UEFI only.
    pub fn grub_bios_target(self) -> Option<&'static str> {
        match self {
            Arch::X86_64 => Some("i386-pc"),
            Arch::Aarch64 => None,
        }
    }

    /// The suffix of this architecture's EFI loader names (`x64`, `aa64`).
    fn efi_suffix(self) -> &'static str {
        match self {
            Arch::X86_64 => "x64",
            Arch::Aarch64 => "aa64",
        }
    }

    /// The removable-media loader firmware starts without any entry: `BOOTX64.EFI`,
    /// `BOOTAA64.EFI` (in `\EFI\BOOT`).
    pub fn removable_loader(self) -> String {
        format!("BOOT{}.EFI", self.efi_suffix().to_ascii_uppercase())
    }

    /// A distribution's shim in its vendor directory: `shimx64.efi`, `shimaa64.efi`.
    pub fn shim(self) -> String {
        format!("shim{}.efi", self.efi_suffix())
    }

    /// GRUB in a vendor directory: `grubx64.efi`, `grubaa64.efi`.
    pub fn grub(self) -> String {
        format!("grub{}.efi", self.efi_suffix())
    }

    /// The Discoverable Partitions type alias of a root partition (`root-x86-64`,
    /// `root-aarch64`; `storage::partition::type_guid` resolves it).
    pub fn root_type(self) -> &'static str {
        match self {
            Arch::X86_64 => "root-x86-64",
            Arch::Aarch64 => "root-aarch64",
        }
    }

    /// The Discoverable Partitions type alias of a `/usr` partition.
    pub fn usr_type(self) -> &'static str {
        match self {
            Arch::X86_64 => "usr-x86-64",
            Arch::Aarch64 => "usr-aarch64",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_architecture_has_its_loader_and_grub_names() {
        assert_eq!(Arch::X86_64.removable_loader(), "BOOTX64.EFI");
        assert_eq!(Arch::Aarch64.removable_loader(), "BOOTAA64.EFI");
        assert_eq!(Arch::X86_64.shim(), "shimx64.efi");
        assert_eq!(Arch::Aarch64.grub(), "grubaa64.efi");
        assert_eq!(Arch::Aarch64.grub_efi_target(), "arm64-efi");
        assert_eq!(Arch::Aarch64.grub_bios_target(), None);
        assert_eq!(Arch::X86_64.grub_bios_target(), Some("i386-pc"));
    }

    #[test]
    fn names_from_kernels_registries_and_documents() {
        for (n, a) in [
            ("x86_64", Arch::X86_64),
            ("amd64", Arch::X86_64),
            ("AARCH64", Arch::Aarch64),
            ("arm64", Arch::Aarch64),
        ] {
            assert_eq!(Arch::parse(n), Some(a), "{n}");
        }
        assert_eq!(Arch::parse("riscv64"), None);
        let a: Arch = serde_norway::from_str("arm64").unwrap();
        assert_eq!(a, Arch::Aarch64);
        assert_eq!(
            serde_json::to_string(&Arch::Aarch64).unwrap(),
            "\"aarch64\""
        );
        assert_eq!(Arch::parse(std::env::consts::ARCH), Some(Arch::host()));
    }

    #[test]
    fn root_types_are_the_discoverable_partitions_guids() {
        use crate::storage::partition::type_guid;
        assert_eq!(
            type_guid(Arch::Aarch64.root_type()).unwrap(),
            "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"
        );
        assert_eq!(
            type_guid(Arch::X86_64.root_type()).unwrap(),
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
        );
        assert_eq!(
            type_guid(Arch::Aarch64.usr_type()).unwrap(),
            "B0E01050-EE5F-4390-949A-9101B17104E9"
        );
    }
}
