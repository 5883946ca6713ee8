//! The host inventory a fleet manager needs to recognise a machine: DMI identity, CPUs,
//! memory, firmware, TPM, NICs (with LLDP neighbours when asked) and the disks of
//! [`crate::disks`]. `imprint inventory` prints it; a lookup (`imprint.lookup=`) POSTs it.
//!
//! Everything is read from sysfs and procfs under [`Options::root`], so tests point it at
//! a tree they build. A value that cannot be read is `null`: an unreadable file never
//! fails the whole inventory (arm64 servers without DMI, root-only DMI files).

pub mod cpu;
pub mod dmi;
pub mod firmware;
pub mod lldp;
pub mod memory;
pub mod nic;
pub mod tpm;

use crate::disks::Disk;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The version of the inventory's shape: a field renamed or removed gets a new number.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything imprint knows about this machine before it is provisioned.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, schemars::JsonSchema)]
pub struct Inventory {
    /// Version of this document's shape ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// DMI system identity (`/sys/class/dmi/id/sys_*`, `product_*`).
    pub system: dmi::System,
    /// DMI baseboard (`board_*`).
    pub baseboard: dmi::Baseboard,
    /// DMI chassis (`chassis_*`).
    pub chassis: dmi::Chassis,
    /// Processors.
    pub cpu: cpu::Cpu,
    /// Memory.
    pub memory: memory::Memory,
    /// Boot firmware.
    pub firmware: firmware::Firmware,
    /// TPM presence.
    pub tpm: tpm::Tpm,
    /// Network interfaces (loopback excluded), sorted by name.
    pub nics: Vec<nic::Nic>,
    /// Block devices, as `imprint disks --json` lists them.
    pub disks: Vec<Disk>,
}

/// Where and how much to read.
#[derive(Debug, Clone)]
pub struct Options {
    /// The file system root holding `sys/` and `proc/` (`/` on a real machine).
    pub root: PathBuf,
    /// How long to listen for LLDP frames on each NIC with carrier (zero: not at all).
    pub lldp: Duration,
    /// Read the disks through [`crate::disks::inventory`] (the real machine's only).
    pub disks: bool,
    /// Read the NICs' addresses with `getifaddrs` (the real machine's only).
    pub addresses: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            root: PathBuf::from("/"),
            lldp: Duration::ZERO,
            disks: true,
            addresses: true,
        }
    }
}

/// Reads the whole inventory. Never fails: what cannot be read is left empty or null.
pub fn collect(opts: &Options) -> Inventory {
    let root = opts.root.as_path();
    let cmdline = read_trimmed(root, "proc/cmdline").unwrap_or_default();
    let addresses = if opts.addresses {
        nic::local_addresses()
    } else {
        Vec::new()
    };
    let mut nics = nic::collect(root, &addresses, nic::bootif(&cmdline).as_deref());
    if !opts.lldp.is_zero() {
        lldp::annotate(&mut nics, opts.lldp);
    }
    let disks = if opts.disks {
        crate::disks::inventory().unwrap_or_else(|e| {
            crate::runner::log::warn(&format!("inventory: reading the disks: {e}"));
            Vec::new()
        })
    } else {
        Vec::new()
    };
    Inventory {
        schema_version: SCHEMA_VERSION,
        system: dmi::system(root),
        baseboard: dmi::baseboard(root),
        chassis: dmi::chassis(root),
        cpu: cpu::collect(root),
        memory: memory::collect(root),
        firmware: firmware::collect(root),
        tpm: {
            let mut t = tpm::collect(root);
            if t.present && t.version_major == Some(2) && root == Path::new("/") {
                tpm::read_endorsement_key(&mut t, &crate::binding::TpmLocation::Auto);
            }
            t
        },
        nics,
        disks,
    }
}

/// The trimmed contents of `root/rel`; `None` when it is absent, unreadable or blank.
pub(crate) fn read_trimmed(root: &Path, rel: &str) -> Option<String> {
    let bytes = std::fs::read(root.join(rel)).ok()?;
    let s = String::from_utf8_lossy(&bytes).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// `root/rel` parsed as a number; `None` when absent, unreadable or not a number.
pub(crate) fn read_number<T: std::str::FromStr>(root: &Path, rel: &str) -> Option<T> {
    read_trimmed(root, rel)?.parse().ok()
}

#[cfg(test)]
pub(crate) mod testtree {
    //! A sysfs/procfs tree built by a test.
    use std::path::Path;

    /// Writes `text` at `root/rel`, creating the directories.
    pub fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A symlink at `root/rel` pointing at `target`.
    pub fn link(root: &Path, rel: &str, target: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::testtree::put;
    use super::*;

    fn opts(root: &Path) -> Options {
        Options {
            root: root.to_path_buf(),
            lldp: Duration::ZERO,
            disks: false,
            addresses: false,
        }
    }

    #[test]
    fn an_empty_tree_gives_an_inventory_of_nulls_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let inv = collect(&opts(dir.path()));
        assert_eq!(inv.schema_version, SCHEMA_VERSION);
        assert_eq!(inv.system, dmi::System::default());
        assert_eq!(inv.cpu.logical, None);
        assert_eq!(inv.memory.total_bytes, None);
        assert!(!inv.tpm.present);
        assert!(inv.nics.is_empty());
        let json = serde_json::to_value(&inv).unwrap();
        assert!(json["system"]["serial"].is_null(), "{json:#}");
    }

    #[test]
    fn the_pxe_nic_comes_from_bootif_on_the_tree_s_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(
            r,
            "proc/cmdline",
            "quiet BOOTIF=01-52-54-00-12-34-56 ip=dhcp\n",
        );
        put(r, "sys/class/net/eth0/address", "52:54:00:12:34:56\n");
        put(r, "sys/class/net/eth1/address", "52:54:00:12:34:57\n");
        let inv = collect(&opts(r));
        let pxe: Vec<_> = inv.nics.iter().map(|n| (n.name.as_str(), n.pxe)).collect();
        assert_eq!(pxe, [("eth0", true), ("eth1", false)]);
    }
}
