//! The seed customer's host end to end: product.md's second document (tang/TPM2 pins
//! replaced by a recovery passphrase) on two 12 GiB virtio disks, under OVMF.
//!
//! 1. A first run lays out the storage alone (md RAID1 → LUKS2 → LVM → filesystems, no
//!    image), leaving arrays, LUKS headers and LVM metadata on the disks.
//! 2. The full document runs over them: the stale metadata is found and erased first;
//!    the agent extracts the Debian rootfs across the mounts and installs GRUB on both
//!    disks.
//! 3. Host-side checks on the disk files: sgdisk, mdadm --examine, cryptsetup luksDump.
//! 4. The VM boots from its disks, the harness types the passphrase at the initramfs
//!    prompt, cloud-init prints every mount with its options and both mirrors `[UU]`.
//! 5. Disk a (the one with the mounted ESP) is removed: the system boots from disk b
//!    alone, degraded, cloud-init finds its configdrive copy there (same instance, per-boot
//!    output only), and a root login on the console checks mounts, arrays and systemd.

use imprint_tests::fixtures::*;
use imprint_tests::images::debian_rootfs;
use imprint_tests::qemu::{Boot, Disk, Firmware, Vm};
use imprint_tests::seed::{
    assert_stig_layout, disk_file, examine, md_member_data, provision, step, wait_for_marker,
    SeedDoc, SERIAL_A, SERIAL_B,
};
use imprint_tests::server::Server;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PASSPHRASE: &str = "storage-test recovery phrase";
const GIB: u64 = 1 << 30;

/// sgdisk, mdadm and cryptsetup on the disk files, as an operator would check them.
fn host_checks(a: &Path, b: &Path, fin: &Value) {
    for d in [a, b] {
        assert_sgdisk_clean(d.to_str().unwrap());
    }
    let uuid_of = |name: &str| -> String {
        let s = fin["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == format!("raid:{name}"))
            .unwrap();
        s["output"]["uuid"].as_str().unwrap().replace('-', "")
    };
    // Each disk: 1 bios, 2 esp, 3 boot (md 1.0), 4 configdrive, 5 root (md 1.2).
    for (file, boot_n, root_n) in [(a, 3, 5), (b, 3, 5)] {
        let boot = examine(file, boot_n);
        assert!(
            boot.contains("Version : 1.0") && boot.contains("Raid Level : raid1"),
            "{boot}"
        );
        assert!(
            boot.replace(':', "").contains(&uuid_of("md-boot")),
            "{boot}"
        );
        assert!(boot.contains("Name : db-17:md-boot"), "{boot}");
        let root = examine(file, root_n);
        assert!(
            root.contains("Version : 1.2") && root.contains("Raid Devices : 2"),
            "{root}"
        );
        assert!(
            root.replace(':', "").contains(&uuid_of("md-root")),
            "{root}"
        );
        assert!(root.contains("Internal Bitmap"), "{root}");
    }
    // LUKS2 inside md-root's data area, on both members.
    for (file, root_n) in [(a, 5), (b, 5)] {
        let w = md_member_data(file, root_n);
        let dump = sh("cryptsetup", &["luksDump", &w.0]);
        assert!(dump.contains("Version:       \t2"), "{dump}");
        assert!(
            dump.contains("aes-xts-plain64") && dump.contains("argon2id"),
            "{dump}"
        );
        assert!(
            dump.contains("  0: luks2"),
            "keyslot 0 holds the recovery passphrase\n{dump}"
        );
        assert!(!dump.contains("  1: luks2"), "no other keyslot\n{dump}");
    }
}

/// Boots from `disks` under OVMF and types the passphrase at the unlock prompt.
fn boot_and_unlock(disks: &[(PathBuf, &str)]) -> (Vm, Instant) {
    let mut b = Vm::builder()
        .boot(Boot::Disk)
        .firmware(Firmware::Uefi)
        .memory_mib(1536)
        .no_network()
        .serial_input();
    for (p, serial) in disks {
        b = b.disk(Disk::existing(p, serial));
    }
    let mut vm = b.start().unwrap();
    vm.wait_for_serial("Please unlock disk luks-root", Duration::from_secs(900))
        .unwrap();
    let t = Instant::now();
    vm.send(&format!("{PASSPHRASE}\r")).unwrap();
    (vm, t)
}

/// The `LAYOUT-BEGIN … LAYOUT-END` block cloud-init's bootcmd printed.
fn printed_layout(vm: &mut Vm) -> String {
    let log = vm
        .wait_for_serial("LAYOUT-END", Duration::from_secs(900))
        .unwrap();
    let begin = log.rfind("LAYOUT-BEGIN").expect("layout printed");
    let end = log[begin..].find("LAYOUT-END").map(|e| begin + e).unwrap();
    log[begin..end].replace('\r', "")
}

#[test]
fn the_seed_layout_deploys_over_a_previous_one_and_boots_whole_and_degraded() {
    let img = debian_rootfs();
    let server = Server::start();
    server.serve_file("/images/debian-12-rootfs.tar.zst", &img.path);
    let base = guest_base(&server);
    let keep = tempfile::tempdir().unwrap();
    let a = disk_file(keep.path(), "a.raw", 12 * GIB);
    let b = disk_file(keep.path(), "b.raw", 12 * GIB);
    let disks = || vec![Disk::existing(&a, SERIAL_A), Disk::existing(&b, SERIAL_B)];

    // 1. The layout alone: arrays, LUKS and LVM left behind on both disks.
    let mut first = SeedDoc::new(&base, "db-16");
    first.passphrase = Some("an older phrase".into());
    server.serve_bytes("/db-16.yaml", first.render().into_bytes());
    let (_, _, fin1) = provision(
        &server,
        &first,
        "/db-16.yaml",
        disks(),
        Firmware::Uefi,
        None,
    );
    for s in ["raid:md-root", "luks:luks-root", "lvm:vg0"] {
        step(&fin1, s);
    }

    // 2. The whole document over it.
    let mut doc = SeedDoc::new(&base, "db-17");
    doc.passphrase = Some(PASSPHRASE.into());
    doc.rootfs_sha512 = Some(img.sha512.clone());
    server.serve_bytes("/db-17.yaml", doc.render().into_bytes());
    let (_, provision_secs, fin) =
        provision(&server, &doc, "/db-17.yaml", disks(), Firmware::Uefi, None);
    for disk in ["a", "b"] {
        let kinds: Vec<String> = step(&fin, &format!("wipe:{disk}"))["output"]["erased"]["erased"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect();
        for k in ["linux_raid_member", "gpt"] {
            assert!(
                kinds.iter().any(|x| x == k),
                "wipe:{disk} erased the old {k}: {kinds:?}"
            );
        }
    }
    for s in [
        "raid:md-boot",
        "raid:md-root",
        "luks:luks-root",
        "lvm:vg0",
        "mount:/var/log/audit",
        "write-image",
        "finalize",
    ] {
        step(&fin, s);
    }
    let fz = &step(&fin, "finalize")["output"];
    assert_eq!(fz["family"], "debian", "{fz:#}");
    assert!(
        fz["kernel_cmdline"]
            .to_string()
            .contains("root=/dev/mapper/vg0-root"),
        "{fz:#}"
    );
    // The first run's array UUIDs are gone: the new arrays are the second run's.
    assert_ne!(
        step(&fin1, "raid:md-root")["output"]["uuid"],
        step(&fin, "raid:md-root")["output"]["uuid"]
    );

    // 3. As an operator would check the disks.
    host_checks(&a, &b, &fin);

    // 4. Both disks: passphrase, cloud-init, every mount and both mirrors healthy.
    let (mut vm, t) = boot_and_unlock(&[(a.clone(), SERIAL_A), (b.clone(), SERIAL_B)]);
    wait_for_marker(&mut vm, Duration::from_secs(900));
    eprintln!(
        "unlocked; cloud-init marker {:.0} s after the passphrase",
        t.elapsed().as_secs_f64()
    );
    let layout = printed_layout(&mut vm);
    assert_stig_layout(&layout, "/dev/md");
    assert_eq!(
        layout.matches("[UU]").count(),
        2,
        "both arrays healthy:\n{layout}"
    );
    let boot_secs = vm.elapsed().as_secs_f64();
    assert!(
        !vm.serial_log().contains(PASSPHRASE),
        "the passphrase was echoed on the console"
    );
    drop(vm);

    // 5. Disk a gone: firmware finds GRUB on disk b, the arrays start degraded, the
    //    passphrase unlocks, the system comes up without the ESP it had mounted.
    //    Once in many runs, under TCG on a loaded machine, this boot came up with `/`
    //    read-only and only some fstab mounts, after systemd had spent ~90 s (its limit
    //    for generators) before starting any unit: most likely the fstab generator was
    //    stopped half-way. Such a boot is shown with its journal and booted once more;
    //    a second one fails the test.
    let mut attempt = 0;
    let (mut vm, mounts) = loop {
        attempt += 1;
        let (mut vm, t) = boot_and_unlock(&[(b.clone(), SERIAL_B)]);
        vm.login("root", "imprint", Duration::from_secs(900))
            .unwrap();
        eprintln!(
            "degraded: logged in {:.0} s after the passphrase",
            t.elapsed().as_secs_f64()
        );
        let mounts = vm
            .run(
                "findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS",
                Duration::from_secs(60),
            )
            .unwrap();
        let root_ro = mounts
            .lines()
            .any(|l| l.starts_with("/ ") && l.contains(" ro,"));
        if root_ro && attempt == 1 {
            let journal = vm
                .run("journalctl -b --no-pager -o short-monotonic | grep -iE 'generator|timed out|timeout' | tail -20", Duration::from_secs(120))
                .unwrap_or_default();
            eprintln!("degraded boot 1: / is read-only, mounts missing:\n{mounts}\njournal:\n{journal}\nbooting again");
            continue;
        }
        break (vm, mounts);
    };
    let mdstat = vm.run("cat /proc/mdstat", Duration::from_secs(60)).unwrap();
    let state = vm
        .run("systemctl is-system-running", Duration::from_secs(60))
        .unwrap();
    // Disk b carries its own copy of the configdrive: the same instance as provisioned.
    let iid = vm
        .run(
            "mount -o ro LABEL=cidata /mnt && grep instance-id /mnt/meta-data; umount /mnt; hostname",
            Duration::from_secs(120),
        )
        .unwrap();
    let want_iid = fin["instance_id"].as_str().unwrap();
    assert!(
        iid.contains(want_iid) && iid.contains("db-17"),
        "instance {want_iid}, host db-17 kept: {iid}"
    );
    let layout = format!("{mounts}{mdstat}");
    for target in [
        "/",
        "/home",
        "/tmp",
        "/var",
        "/var/log",
        "/var/log/audit",
        "/var/tmp",
        "/boot",
    ] {
        assert!(
            layout.lines().any(|l| l.split(' ').next() == Some(target)),
            "{target} is mounted on the degraded system:\n{layout}"
        );
    }
    assert_eq!(
        mdstat.matches("[2/1] [_U]").count() + mdstat.matches("[2/1] [U_]").count(),
        2,
        "{mdstat}"
    );
    assert!(
        !state.contains("maintenance") && !state.contains("offline"),
        "system state: {state}"
    );
    eprintln!("timings: provisioning {provision_secs:.0} s; boot to layout {boot_secs:.0} s; degraded state {}", state.trim());
}
