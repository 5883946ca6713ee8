//! Network interfaces from `/sys/class/net/*` (loopback excluded), their addresses from
//! `getifaddrs`, and which one the machine PXE booted from (`BOOTIF=` on the kernel
//! command line, as PXELINUX and iPXE pass it).

use super::{read_number, read_trimmed};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;

/// One network interface.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
pub struct Nic {
    /// Kernel name (`eth0`, `enp3s0f1`).
    pub name: String,
    /// MAC address, lower case (`address`).
    pub mac: Option<String>,
    /// Driver (the `device/driver` link's name); null for virtual interfaces.
    pub driver: Option<String>,
    /// PCI address (`0000:3b:00.1`) of the device, when it is on PCI.
    pub pci_address: Option<String>,
    /// Link speed in Mb/s; null when unknown (no link, or the driver says -1).
    pub speed_mbps: Option<u32>,
    /// Link detected; null when the interface is down and the kernel cannot say.
    pub carrier: Option<bool>,
    /// `operstate` (`up`, `down`, `unknown`, …).
    pub operstate: Option<String>,
    /// MTU in bytes.
    pub mtu: Option<u32>,
    /// IPv4 addresses with prefix length (`10.0.2.15/24`).
    pub ipv4: Vec<String>,
    /// IPv6 addresses with prefix length (`fe80::…/64`).
    pub ipv6: Vec<String>,
    /// The machine PXE booted from this NIC (its MAC is the command line's `BOOTIF=`).
    pub pxe: bool,
    /// What the switch port announced by LLDP (`imprint inventory --lldp SECONDS`).
    pub lldp: Option<super::lldp::Neighbor>,
}

/// One address of an interface, as `getifaddrs` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub interface: String,
    pub address: IpAddr,
    pub prefix: u8,
}

/// The MAC of `BOOTIF=01-aa-bb-cc-dd-ee-ff` (hardware type 01, Ethernet), as
/// `aa:bb:cc:dd:ee:ff`; the form without the type is accepted too.
pub fn bootif(cmdline: &str) -> Option<String> {
    let value = crate::boot::cmdline::split(cmdline)
        .into_iter()
        .rev()
        .find_map(|t| t.strip_prefix("BOOTIF=").map(str::to_string))?;
    let parts: Vec<&str> = value.split(['-', ':']).collect();
    let octets = match parts.len() {
        7 if parts[0] == "01" => &parts[1..],
        6 => &parts[..],
        _ => return None,
    };
    let ok = octets
        .iter()
        .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| octets.join(":").to_lowercase())
}

/// Every interface under `root/sys/class/net` but `lo`, sorted by name.
pub fn collect(root: &Path, addresses: &[Address], bootif: Option<&str>) -> Vec<Nic> {
    let Ok(dir) = std::fs::read_dir(root.join("sys/class/net")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| read_nic(root, name, addresses, bootif))
        .collect()
}

fn read_nic(root: &Path, name: String, addresses: &[Address], bootif: Option<&str>) -> Nic {
    let base = format!("sys/class/net/{name}");
    let attr = |f: &str| read_trimmed(root, &format!("{base}/{f}"));
    let mac = attr("address").map(|m| m.to_lowercase());
    let link_name = |f: &str| {
        std::fs::read_link(root.join(&base).join(f))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    };
    let pci_address = pci_address(&root.join(&base).join("device"));
    let mine = addresses.iter().filter(|a| a.interface == name);
    let render = |a: &Address| format!("{}/{}", a.address, a.prefix);
    Nic {
        pxe: bootif.is_some() && mac.as_deref() == bootif,
        mac,
        driver: link_name("device/driver"),
        pci_address,
        speed_mbps: read_number::<i64>(root, &format!("{base}/speed"))
            .and_then(|s| u32::try_from(s).ok())
            .filter(|&s| s > 0),
        carrier: attr("carrier").and_then(|c| match c.as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        }),
        operstate: attr("operstate"),
        mtu: read_number(root, &format!("{base}/mtu")),
        ipv4: mine
            .clone()
            .filter(|a| a.address.is_ipv4())
            .map(render)
            .collect(),
        ipv6: mine.filter(|a| a.address.is_ipv6()).map(render).collect(),
        lldp: None,
        name,
    }
}

/// The PCI function the device is, or sits on (a virtio NIC's `device` is `virtio0`,
/// whose parent directory is the PCI function).
fn pci_address(device: &Path) -> Option<String> {
    let real = std::fs::canonicalize(device).ok()?;
    real.ancestors()
        .take(3)
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .find(|n| is_pci_address(n))
}

/// `dddd:bb:dd.f`, the form of a PCI device's directory name.
fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// This machine's addresses; empty when `getifaddrs` fails.
pub fn local_addresses() -> Vec<Address> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    list.filter_map(|ifa| {
        let addr = ifa.address.as_ref()?;
        let mask = ifa.netmask.as_ref();
        let (address, prefix) = if let Some(v4) = addr.as_sockaddr_in() {
            let bits = mask
                .and_then(|m| m.as_sockaddr_in())
                .map_or(32, |m| u32::from(m.ip()).count_ones());
            (IpAddr::V4(v4.ip()), bits)
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let bits = mask
                .and_then(|m| m.as_sockaddr_in6())
                .map_or(128, |m| u128::from(m.ip()).count_ones());
            (IpAddr::V6(v6.ip()), bits)
        } else {
            return None;
        };
        Some(Address {
            interface: ifa.interface_name,
            address,
            prefix: u8::try_from(prefix).unwrap_or(0),
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testtree::{link, put};
    use super::*;

    #[test]
    fn bootif_forms() {
        assert_eq!(
            bootif("ro BOOTIF=01-52-54-00-AB-cd-EF quiet").as_deref(),
            Some("52:54:00:ab:cd:ef")
        );
        assert_eq!(
            bootif("BOOTIF=52-54-00-ab-cd-ef").as_deref(),
            Some("52:54:00:ab:cd:ef")
        );
        assert_eq!(bootif("BOOTIF=06-52-54-00-ab-cd-ef"), None, "not Ethernet");
        assert_eq!(bootif("BOOTIF=01-52-54-00-ab"), None, "too short");
        assert_eq!(bootif("BOOTIF=01-52-54-00-ab-cd-zz"), None);
        assert_eq!(bootif("quiet"), None);
    }

    /// A PCI NIC with its driver, and a virtual one without either.
    fn tree(root: &Path) {
        let pci = "devices/pci0000:00/0000:3b:00.1";
        put(
            root,
            &format!("sys/{pci}/net/eno1/address"),
            "AA:BB:CC:00:11:22\n",
        );
        link(root, "sys/class/net/eno1", &format!("../../{pci}/net/eno1"));
        let eno1 = format!("sys/{pci}/net/eno1");
        link(root, &format!("{eno1}/device"), "../../../0000:3b:00.1");
        link(
            root,
            &format!("sys/{pci}/driver"),
            "../../../bus/pci/drivers/ixgbe",
        );
        put(root, &format!("{eno1}/speed"), "10000\n");
        put(root, &format!("{eno1}/carrier"), "1\n");
        put(root, &format!("{eno1}/mtu"), "9000\n");
        put(root, &format!("{eno1}/operstate"), "up\n");
        put(root, "sys/class/net/br0/address", "aa:bb:cc:00:11:99\n");
        put(root, "sys/class/net/br0/speed", "-1\n");
        put(root, "sys/class/net/br0/carrier", "0\n");
        put(root, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
    }

    #[test]
    fn a_pci_nic_a_virtual_one_and_no_loopback() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        let addrs = [
            Address {
                interface: "eno1".into(),
                address: "10.0.0.5".parse().unwrap(),
                prefix: 24,
            },
            Address {
                interface: "eno1".into(),
                address: "fe80::1".parse().unwrap(),
                prefix: 64,
            },
        ];
        let nics = collect(dir.path(), &addrs, Some("aa:bb:cc:00:11:22"));
        let names: Vec<&str> = nics.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["br0", "eno1"]);
        let (br0, eno1) = (&nics[0], &nics[1]);
        assert_eq!(eno1.mac.as_deref(), Some("aa:bb:cc:00:11:22"));
        assert_eq!(eno1.driver.as_deref(), Some("ixgbe"));
        assert_eq!(eno1.pci_address.as_deref(), Some("0000:3b:00.1"));
        assert_eq!(
            (eno1.speed_mbps, eno1.carrier, eno1.mtu),
            (Some(10000), Some(true), Some(9000))
        );
        assert_eq!(
            (eno1.ipv4.as_slice(), eno1.ipv6.as_slice()),
            (
                &["10.0.0.5/24".to_string()][..],
                &["fe80::1/64".to_string()][..]
            )
        );
        assert!(eno1.pxe);
        assert_eq!(br0.speed_mbps, None, "speed -1 is unknown");
        assert_eq!(
            (br0.driver.as_deref(), br0.pci_address.as_deref()),
            (None, None)
        );
        assert_eq!((br0.carrier, br0.pxe), (Some(false), false));
    }

    #[test]
    fn no_bootif_means_no_pxe_nic() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        assert!(collect(dir.path(), &[], None).iter().all(|n| !n.pxe));
    }

    #[test]
    fn pci_addresses_are_told_from_other_device_names() {
        assert!(is_pci_address("0000:00:1f.6"));
        assert!(!is_pci_address("virtio0"));
        assert!(!is_pci_address("1-1.2:1.0"));
    }

    #[test]
    fn this_machine_has_a_loopback_address() {
        let a = local_addresses();
        assert!(
            a.iter()
                .any(|a| a.interface == "lo" && a.address.is_loopback() && a.prefix == 8),
            "{a:?}"
        );
    }
}
