//! Issue 15: an arm64 server. QEMU's `virt` machine with AAVMF (UEFI, its variable store
//! kept in a file) boots the arm64 ISO as a CD, customized with a document that names
//! the image's architecture; the agent writes the arm64 Debian whole-disk image and its
//! configdrive, reports, creates a boot entry for the disk and reboots; a second VM on
//! the same disk and variable store boots the deployed Debian through that entry, and
//! cloud-init runs the user-data.
//! Then the same machine is re-imaged from the ISO with a root-filesystem layout: the
//! arm64 Debian rootfs extracted into ext4 on LUKS2 bound to a real `tang` (with a
//! recovery passphrase), GRUB installed for `arm64-efi` by the deployed system's own
//! tools; the host reads the LUKS2 header with its own `cryptsetup`; the machine boots
//! through its new entry and unlocks **unattended** with the deployed system's clevis.

use imprint_tests::fixtures::*;
use imprint_tests::images::{debian_disk_arm64, debian_rootfs_arm64};
use imprint_tests::provision::TOKEN;
use imprint_tests::qemu::{aavmf_vars_file, Boot, Disk, Firmware, Vm};
use imprint_tests::seed::{step, Window};
use imprint_tests::server::Server;
use imprint_tests::tang::TangServer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The arm64 ISO, customized with `doc` by the x86_64 agent (the area is the same).
fn customized_iso(dir: &Path, name: &str, doc: &str) -> PathBuf {
    let out = repo_root().join("out");
    let iso = out.join("aarch64/imprint.iso");
    assert!(
        iso.exists(),
        "{} is missing: run `make` first",
        iso.display()
    );
    let doc_path = dir.join(format!("{name}.yaml"));
    std::fs::write(&doc_path, doc).unwrap();
    let customized = dir.join(format!("{name}-arm64.iso"));
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

/// Boots the machine from `iso` with `disk` and the variables in `vars`, waits for the
/// agent to provision and power off; returns the final report posted for `host`, the
/// seconds to "provisioning succeeded" and the stopped machine (which holds the disk's
/// file: `disk_path(0)`).
fn provision(
    server: &Server,
    vars: &Path,
    iso: PathBuf,
    disk: Disk,
    host: &str,
) -> (Value, f64, Vm) {
    let mut agent = Vm::builder()
        .firmware(Firmware::Aavmf)
        .uefi_vars(vars)
        .boot(Boot::Cdrom(iso))
        .disk(disk)
        .memory_mib(1024)
        .start()
        .unwrap();
    agent
        .wait_for_serial("provisioning succeeded", Duration::from_secs(2700))
        .unwrap();
    let secs = agent.elapsed().as_secs_f64();
    agent.wait_exit(Duration::from_secs(120)).unwrap();
    let fin = imprint_tests::provision::final_report(server, &format!("/report/{host}"));
    assert_eq!(fin["result"], "success", "{fin:#}");
    (fin, secs, agent)
}

/// The boot entry imprint made names `loader` and comes first in BootOrder; its number.
fn first_entry(fin: &Value, loader: &str) -> String {
    let out = &step(fin, "boot-entries")["output"];
    assert_eq!(out["entries"][0]["loader"], loader, "{out:#}");
    let number = out["entries"][0]["number"].as_str().unwrap().to_string();
    assert_eq!(
        out["boot_order"][0].as_str(),
        Some(number.as_str()),
        "{out:#}"
    );
    number
}

/// AAVMF names the option it starts: imprint's (`label` is the deployed system's name,
/// `imprint` for a disk image), not one of its own for the disk.
fn assert_started(vm: &Vm, number: &str, label: &str) {
    let started =
        format!("BdsDxe: starting Boot{number} \"{label} (imprint, serial SN-ARM-0001)\"");
    let log = vm.serial_log();
    assert!(
        log.contains(&started),
        "the firmware did not start imprint's entry ({started}): {}",
        log.lines()
            .filter(|l| l.contains("BdsDxe"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

const PHRASE: &str = "arm64 recovery phrase";

/// The rootfs layout: one disk, ext4 root on LUKS2 bound to `tang`, a recovery passphrase.
fn luks_document(base: &str, tang: &TangServer, sha512: &str) -> String {
    format!(
        r#"version: 1
host: {{ hostname: arm-02 }}
disks:
  - {{ name: a, match: {{ serial: "SN-ARM-0001" }} }}
storage:
  layout:
    disk: a
    luks:
      tang: [{{ url: "http://10.0.2.2:{port}", thumbprint: "{thumb}" }}]
      recovery_passphrase: "{PHRASE}"
    root: {{ type: ext4 }}
image:
  url: {base}/images/debian-12-arm64-rootfs.tar.zst
  sha512: "{sha512}"
  format: rootfs
  arch: arm64
configdrive:
  format: nocloud
  user_data: |
    #cloud-config
    runcmd: [[sh, -c, "echo imprint-arm64-luks-$((6*7)) > /dev/console"]]
report: {{ url: "{base}/report/arm-02", token: "{TOKEN}" }}
finish: reboot
"#,
        port = tang.port(),
        thumb = tang.thumbprint(),
    )
}

/// The LUKS2 header on the disk file, as the host's `cryptsetup luksDump` reads it: the
/// recovery passphrase in keyslot 0, clevis's keyslot and token beside it, nothing else.
fn assert_luks_on_disk(disk: &Path) {
    let dumps: Vec<String> = gpt_partitions(disk.to_str().unwrap())
        .into_iter()
        .filter_map(|(_, off, len)| {
            let w = Window::new(disk, off, len);
            let out = sh_any("cryptsetup", &["luksDump", &w.0]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .collect();
    assert_eq!(dumps.len(), 1, "one LUKS partition: {dumps:#?}");
    let dump = &dumps[0];
    assert!(dump.contains("Version:       \t2"), "{dump}");
    assert!(
        dump.contains("  0: luks2") && dump.contains("  1: luks2") && !dump.contains("  2: luks2"),
        "the recovery passphrase and the binding\n{dump}"
    );
    assert!(dump.contains("  0: clevis"), "clevis's token\n{dump}");
}

#[test]
fn an_arm64_server_boots_the_iso_provisions_debian_and_boots_it_then_a_luks_rootfs_layout() {
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
        TOKEN,
    )
    .replace("  format: disk\n", "  format: disk\n  arch: arm64\n");
    assert!(doc.contains("arch: arm64"), "{doc}");
    let keep = tempfile::tempdir().unwrap();
    let vars = aavmf_vars_file(keep.path());
    let (fin, provision_secs, agent) = provision(
        &server,
        &vars,
        customized_iso(keep.path(), "disk", &doc),
        Disk::virtio(4 << 30, "SN-ARM-0001"),
        "arm-01",
    );
    let disk = agent.disk_path(0);
    // imprint's entry names the disk's removable loader for this architecture and comes
    // first in BootOrder.
    let number = first_entry(&fin, "\\EFI\\BOOT\\BOOTAA64.EFI");
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
    assert_started(&booted, &number, "imprint");
    eprintln!(
        "arm64: provisioned in {provision_secs:.1} s; the deployed OS ran the user-data after {:.1} s",
        booted.elapsed().as_secs_f64()
    );
    drop(booted);

    // Re-imaged: the rootfs layout on LUKS2 bound to tang.
    let rootfs = debian_rootfs_arm64();
    server.serve_file("/images/debian-12-arm64-rootfs.tar.zst", &rootfs.path);
    let tang = TangServer::start();
    let doc = luks_document(&base, &tang, &rootfs.sha512);
    let (fin, provision_secs, _) = provision(
        &server,
        &vars,
        customized_iso(keep.path(), "luks", &doc),
        Disk::existing(&disk, "SN-ARM-0001"),
        "arm-02",
    );
    let luks = step(&fin, "luks:luks-root");
    assert_eq!(
        luks["output"]["bindings"][0]["verified"], true,
        "the agent verified the binding: {luks:#}"
    );
    assert_eq!(step(&fin, "finalize")["output"]["family"], "debian");
    // GRUB for arm64-efi in the vendor directory, started through the entry.
    let number = first_entry(&fin, "\\EFI\\debian\\grubaa64.efi");
    assert_sgdisk_clean(disk.to_str().unwrap());
    assert_luks_on_disk(&disk);

    let mut booted = Vm::builder()
        .firmware(Firmware::Aavmf)
        .uefi_vars(&vars)
        .boot(Boot::Disk)
        .disk(Disk::existing(&disk, "SN-ARM-0001"))
        .memory_mib(1024)
        .start()
        .unwrap();
    booted
        .wait_for_serial("imprint-arm64-luks-42", Duration::from_secs(1800))
        .unwrap();
    assert_started(&booted, &number, "Debian GNU/Linux");
    let log = booted.serial_log();
    assert!(
        log.contains("luks-root: set up successfully"),
        "the root volume was opened in the initramfs"
    );
    assert!(!log.contains(PHRASE), "nothing typed, nothing echoed");
    eprintln!(
        "arm64 LUKS rootfs: provisioned in {provision_secs:.1} s; unlocked unattended, the user-data ran after {:.1} s",
        booted.elapsed().as_secs_f64()
    );
}
