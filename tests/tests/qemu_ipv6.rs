//! An IPv6-only provisioning network: QEMU's slirp with IPv4 off gives the ramdisk a
//! router advertisement (M=0, O=0, prefix fd42:9::/64 with A) and nothing else — no
//! DHCPv4, no DHCPv6 addresses. The agent gets its SLAAC address, asks for its document
//! by lookup (its inventory, checked against the schema: no TPM in this VM), fetches
//! and the image from `http://[fd42:9::2]:PORT` (slirp forwards that to the host's
//! `[::1]`, where the test server listens), reports over IPv6, and succeeds. Then the
//! deployed Debian boots on the same network and its user-data, from the configdrive,
//! brings the link up and prints the SLAAC address the router advertised.

use imprint_tests::fixtures::*;
use imprint_tests::images::debian_disk;
use imprint_tests::qemu::{Boot, Disk, Firmware, Vm};
use imprint_tests::server::{Answer, Server};
use std::time::Duration;

const IMAGE: &str = "/images/debian-12.raw.zst";
/// The deployed system's user-data: the NICs up, then the SLAAC address on the console.
const RUNCMD: &str = r#"    runcmd:
      - |
        for n in /sys/class/net/e*; do ip link set "${n##*/}" up; done
        for i in $(seq 120); do ip -6 addr show scope global | grep -q fd42:9: && break; sleep 1; done
        echo "imprint-v6-deployed $(ip -6 -o addr show scope global | grep -o 'fd42:9:[0-9a-f:]*' | head -1)" > /dev/console
"#;
const NET: &str = "ipv4=off,ipv6=on,ipv6-net=fd42:9::/64,ipv6-host=fd42:9::2";

#[test]
fn an_ipv6_only_network_provisions_over_slaac() {
    let img = debian_disk();
    let server = Server::start_ipv6();
    server.serve_file(IMAGE, &img.path);
    let base = format!("http://[fd42:9::2]:{}", server.port());
    let doc = vm_single_disk_document(
        "v6-01",
        &base,
        &format!("{base}{IMAGE}"),
        &img.sha256,
        "imprint-ok",
        "v6-token",
    );
    // No DHCP for the deployed system to wait on: its user-data brings the links up.
    let doc = doc
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("runcmd:") {
                RUNCMD.trim_end_matches('\n').to_string()
            } else if l.starts_with("  network_config:") {
                "  network_config: { version: 2, ethernets: {} }".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    server.respond_posts("/lookup", move |_| {
        Answer::status(200).body(doc.clone().into_bytes())
    });
    let out = repo_root().join("out");
    let mut vm = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append: format!("console=ttyS0 imprint.lookup={base}/lookup imprint.failure_delay=0"),
        })
        .disk(Disk::virtio(4 << 30, "SN-V6-1"))
        .user_net(NET)
        .arg("-uuid")
        .arg("6b1d4c3e-0f6a-4c5e-9a51-7e0000000601")
        .start()
        .expect("start QEMU");
    vm.wait_for_serial("provisioning succeeded", Duration::from_secs(480))
        .unwrap_or_else(|e| panic!("no success on the IPv6-only network: {e}"));
    eprintln!(
        "IPv6-only provisioning succeeded after {:.1} s",
        vm.elapsed().as_secs_f64()
    );
    let _ = vm.wait_exit(Duration::from_secs(60));
    let log = vm.serial_log();
    for l in log
        .lines()
        .filter(|l| l.contains("network") || l.contains("IPv6"))
    {
        eprintln!("console: {l}");
    }
    let up = log
        .lines()
        .find(|l| l.contains("network: eth0 fd42:9::"))
        .unwrap_or_else(|| panic!("the SLAAC address is not on the console:\n{log}"));
    assert!(up.contains("(slaac)") && up.contains("via fe80::"), "{up}");
    assert!(
        !log.contains("(dhcp)"),
        "no DHCPv4 lease exists on this network"
    );
    let finals: Vec<serde_json::Value> = server
        .posts()
        .iter()
        .filter(|p| p.path == "/report/v6-01")
        .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&p.body).ok())
        .filter(|v| v["kind"] == "final")
        .collect();
    let fin = finals.last().expect("a final report over IPv6");
    assert_eq!(fin["result"], "success", "{fin:#}");
    let disk = vm.disk_path(0);
    assert_sgdisk_clean(disk.to_str().unwrap());
    // The inventory it posted over IPv6: valid, and no TPM (the lookup run of
    // qemu_provision has one).
    let inv = server
        .posts()
        .into_iter()
        .find(|p| p.path == "/lookup")
        .expect("a lookup")
        .json();
    let schema = imprint_tests::report_schema::ReportSchema::new(
        &serde_json::from_str(&sh(
            imprint_bin().to_str().unwrap(),
            &["schema", "inventory"],
        ))
        .unwrap(),
    );
    schema
        .check(&inv)
        .unwrap_or_else(|e| panic!("{e}\n{inv:#}"));
    assert_eq!(inv["tpm"]["present"], false, "no TPM in this VM: {inv:#}");
    assert!(inv["tpm"].get("endorsement_key").is_none(), "{inv:#}");

    // The deployed Debian on the same IPv6-only network.
    let mut booted = Vm::builder()
        .boot(Boot::Disk)
        .firmware(Firmware::Uefi)
        .disk(Disk::existing(&disk, "SN-V6-1"))
        .user_net(NET)
        .memory_mib(1536)
        .start()
        .expect("boot the deployed disk");
    booted
        .wait_for_serial("imprint-v6-deployed fd42:9:", Duration::from_secs(480))
        .unwrap_or_else(|e| panic!("the deployed Debian did not come up on IPv6: {e}"));
    let line = booted
        .serial_log()
        .lines()
        .find(|l| l.contains("imprint-v6-deployed fd42:9:"))
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "the deployed Debian came up after {:.1} s: {line}",
        booted.elapsed().as_secs_f64()
    );
}
