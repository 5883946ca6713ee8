//! Issue 15: an arm64 server. QEMU's `virt` machine with AAVMF (UEFI, its variable store
//! kept in a file) boots the arm64 ISO as a CD, customized with a document that names
//! the image's architecture; the agent writes the arm64 Debian whole-disk image and its
//! configdrive, reports, creates a boot entry for the disk and reboots; a second VM on
//! the same disk and variable store boots the deployed Debian through that entry, and
//! cloud-init runs the user-data.

use imprint_tests::fixtures::*;
use imprint_tests::images::debian_disk_arm64;
use imprint_tests::qemu::{aavmf_vars_file, Boot, Disk, Firmware, Vm};
use imprint_tests::seed::step;
use imprint_tests::server::Server;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The arm64 ISO, customized with `doc` by the x86_64 agent (the area is the same).
fn customized_iso(dir: &Path, doc: &str) -> PathBuf {
    let out = repo_root().join("out");
    let iso = out.join("aarch64/imprint.iso");
    assert!(
        iso.exists(),
        "{} is missing: run `make` first",
        iso.display()
    );
    let doc_path = dir.join("host.yaml");
    std::fs::write(&doc_path, doc).unwrap();
    let customized = dir.join("host-arm64.iso");
    let st = Command::new(out.join("imprint"))
        .args(["iso", "customize", "--config"])
        .arg(&doc_path)
        .args(["--karg", "imprint.failure_delay=0", "-o"])
        .arg(&customized)
        .arg(&iso)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "imprint iso customize failed on the arm64 ISO"
    );
    customized
}

#[test]
fn an_arm64_server_boots_the_iso_provisions_debian_and_boots_it() {
    let img = debian_disk_arm64();
    let server = Server::start();
    server.serve_file("/images/debian-12-arm64.raw.zst", &img.path);
    let base = guest_base(&server);
    let doc = vm_single_disk_document(
        "arm-01",
        &base,
        &format!("{base}/images/debian-12-arm64.raw.zst"),
        &img.sha256,
        "imprint-arm64-$((6*7))-ok",
        "arm-token",
    )
    .replace("  format: disk\n", "  format: disk\n  arch: arm64\n");
    assert!(doc.contains("arch: arm64"), "{doc}");
    let keep = tempfile::tempdir().unwrap();
    let iso = customized_iso(keep.path(), &doc);
    let vars = aavmf_vars_file(keep.path());

    let mut agent = Vm::builder()
        .firmware(Firmware::Aavmf)
        .uefi_vars(&vars)
        .boot(Boot::Cdrom(iso))
        .disk(Disk::virtio(4 << 30, "SN-ARM-0001"))
        .memory_mib(1024)
        .start()
        .unwrap();
    agent
        .wait_for_serial("provisioning succeeded", Duration::from_secs(1200))
        .unwrap();
    let provision_secs = agent.elapsed().as_secs_f64();
    agent.wait_exit(Duration::from_secs(120)).unwrap();
    let fin: Value = server
        .posts()
        .iter()
        .filter(|p| p.path == "/report/arm-01")
        .map(|p| serde_json::from_slice::<Value>(&p.body).unwrap())
        .find(|v| v["kind"] == "final")
        .expect("a final report");
    assert_eq!(fin["result"], "success", "{fin:#}");
    // imprint's entry names the disk's removable loader for this architecture and comes
    // first in BootOrder.
    let out = &step(&fin, "boot-entries")["output"];
    assert_eq!(
        out["entries"][0]["loader"], "\\EFI\\BOOT\\BOOTAA64.EFI",
        "{out:#}"
    );
    let number = out["entries"][0]["number"].as_str().unwrap().to_string();
    assert_eq!(
        out["boot_order"][0].as_str(),
        Some(number.as_str()),
        "{out:#}"
    );
    let disk = agent.disk_path(0);
    assert_sgdisk_clean(disk.to_str().unwrap());

    let mut booted = Vm::builder()
        .firmware(Firmware::Aavmf)
        .uefi_vars(&vars)
        .boot(Boot::Disk)
        .disk(Disk::existing(&disk, "SN-ARM-0001"))
        .memory_mib(1024)
        .no_network()
        .start()
        .unwrap();
    booted
        .wait_for_serial("imprint-arm64-42-ok", Duration::from_secs(1200))
        .unwrap();
    // AAVMF names the option it starts: imprint's, not one of its own for the disk.
    let started =
        format!("BdsDxe: starting Boot{number} \"imprint (imprint, serial SN-ARM-0001)\"");
    let log = booted.serial_log();
    assert!(
        log.contains(&started),
        "the firmware did not start imprint's entry ({started}): {}",
        log.lines()
            .filter(|l| l.contains("BdsDxe"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "arm64: provisioned in {provision_secs:.1} s; the deployed OS ran the user-data after {:.1} s",
        booted.elapsed().as_secs_f64()
    );
}
