//! The seed layout without `mirror`, on one disk, under BIOS (SeaBIOS) from start to
//! end: the agent provisions under BIOS, GRUB goes into the disk's BIOS boot partition,
//! and the deployed Debian boots from the disk under SeaBIOS, the passphrase typed at
//! the prompt, every STIG volume mounted with its options and `/boot` a plain
//! partition (no md anywhere).

use imprint_tests::fixtures::*;
use imprint_tests::images::debian_rootfs;
use imprint_tests::qemu::{Boot, Disk, Firmware, Vm};
use imprint_tests::seed::{
    assert_stig_layout, disk_file, provision, step, SeedDoc, MARKER, SERIAL_A,
};
use imprint_tests::server::Server;
use std::time::Duration;

const PASSPHRASE: &str = "single-disk recovery phrase";

#[test]
fn the_seed_layout_on_one_disk_deploys_and_boots_under_bios() {
    let img = debian_rootfs();
    let server = Server::start();
    server.serve_file("/images/debian-12-rootfs.tar.zst", &img.path);
    let base = guest_base(&server);
    let mut doc = SeedDoc::new(&base, "web-3");
    doc.mirror = false;
    doc.passphrase = Some(PASSPHRASE.into());
    doc.rootfs_sha512 = Some(img.sha512.clone());
    server.serve_bytes("/web-3.yaml", doc.render().into_bytes());
    let keep = tempfile::tempdir().unwrap();
    let disk = disk_file(keep.path(), "a.raw", 12 << 30);

    let (_, provision_secs, fin) = provision(
        &server,
        &doc,
        "/web-3.yaml",
        vec![Disk::existing(&disk, SERIAL_A)],
        Firmware::Bios,
        None,
    );
    let steps: Vec<&str> = fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(
        !steps.iter().any(|s| s.starts_with("raid:")),
        "no md on one disk: {steps:?}"
    );
    let fz = &step(&fin, "finalize")["output"];
    let commands = fz.to_string();
    assert!(
        commands.contains("--target=i386-pc"),
        "GRUB for BIOS was installed: {fz:#}"
    );
    assert_sgdisk_clean(disk.to_str().unwrap());
    let parts = gpt_partitions(disk.to_str().unwrap());
    assert!(
        parts.len() >= 4,
        "bios, esp, boot, root (and the configdrive): {parts:?}"
    );

    let mut vm = Vm::builder()
        .boot(Boot::Disk)
        .firmware(Firmware::Bios)
        .memory_mib(1536)
        .no_network()
        .serial_input()
        .disk(Disk::existing(&disk, SERIAL_A))
        .start()
        .unwrap();
    vm.wait_for_serial("Please unlock disk luks-root", Duration::from_secs(900))
        .unwrap();
    vm.send(&format!("{PASSPHRASE}\r")).unwrap();
    let log = vm
        .wait_for_serial(MARKER, Duration::from_secs(900))
        .unwrap();
    let log = vm
        .wait_for_serial("LAYOUT-END", Duration::from_secs(300))
        .unwrap_or(log);
    let begin = log.rfind("LAYOUT-BEGIN").expect("layout printed");
    let end = log[begin..]
        .find("LAYOUT-END")
        .map(|e| begin + e)
        .unwrap_or(log.len());
    let layout = log[begin..end].replace('\r', "");
    assert_stig_layout(&layout, "/dev/vda");
    assert!(!layout.contains("active raid1"), "no md arrays:\n{layout}");
    assert!(
        !log.contains(PASSPHRASE),
        "the passphrase was echoed on the console"
    );
    eprintln!(
        "timings: provisioning {provision_secs:.0} s; boot to layout {:.0} s",
        vm.elapsed().as_secs_f64()
    );
}
