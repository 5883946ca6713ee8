//! Issue 7, safety by hand, for what the host cannot make: disks held by an md array and
//! by device-mapper (LVM). The ramdisk boots with `imprint.debug=1` and no document, so
//! it ends at a shell on the console; the test types there. On one VM:
//!
//! - an md RAID1 (`md127`) over two disks: `imprint apply --yes` against one member is
//!   refused (exit 7) naming the holder, the array keeps running with both members and
//!   its data; `--force` stops the array and provisions the disk;
//! - an LVM volume (`dm-0`) on a third disk: the same, the volume group deactivated by
//!   `--force`.
//!
//! Markers are echoed with a split string (`"IMP""RINT-…"`) so the console's echo of the
//! typed command never matches what the test waits for.

use imprint_tests::fixtures::{guest_base, repo_root, sha256_hex, TestImage};
use imprint_tests::qemu::{Boot, Disk, Vm};
use imprint_tests::server::Server;
use std::time::Duration;

const IMAGE: &str = "/images/small.raw.zst";
const MIB: u64 = 1 << 20;

/// Types `cmd; echo <marker>=$?` and waits for the marker; returns the exit status and
/// the console output between the typed line and the marker.
fn run(vm: &mut Vm, tag: &str, cmd: &str, timeout: Duration) -> (i32, String) {
    let before = vm.serial_log().len();
    vm.send(&format!("{cmd}; echo \"IMP\"\"RINT-{tag}=$?\"\r"))
        .unwrap();
    let marker = format!("IMPRINT-{tag}=");
    let log = vm
        .wait_for_serial(&marker, timeout)
        .unwrap_or_else(|e| panic!("{tag}: {e}"));
    // The log is read lossily: step back to a character boundary.
    let before = (0..=before.min(log.len()))
        .rev()
        .find(|i| log.is_char_boundary(*i))
        .unwrap_or(0);
    let at = log[before..].find(&marker).map(|i| before + i).unwrap();
    let code: String = log[at + marker.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let code = code.parse().unwrap_or_else(|_| {
        panic!(
            "{tag}: no exit status after the marker:\n{}",
            &log[before..]
        )
    });
    (code, log[before..at].to_string())
}

fn document(host: &str, serial: &str, base: &str, sha256: &str) -> String {
    format!(
        "version: 1\nhost: {{ hostname: {host} }}\ndisks:\n  - {{ name: root, match: {{ serial: \"{serial}\" }} }}\n\
         image: {{ url: \"{base}{IMAGE}\", sha256: \"{sha256}\", format: disk, target: root }}\n\
         report: {{ url: \"{base}/report/{host}\" }}\nfinish: none\n"
    )
}

/// The final reports posted for `host`, as JSON text.
fn final_reports(server: &Server, host: &str) -> Vec<String> {
    server
        .posts()
        .into_iter()
        .filter(|p| p.path == format!("/report/{host}") && p.json()["kind"] == "final")
        .map(|p| p.json().to_string())
        .collect()
}

/// The disk file holds the image's partitions byte for byte.
fn assert_image_on(disk: &std::path::Path, img: &TestImage, what: &str) {
    let bytes = std::fs::read(disk).unwrap();
    for (n, start, size) in &img.partitions {
        let (s, e) = (*start as usize, (*start + *size) as usize);
        assert!(
            bytes[s..e] == img.raw[s..e],
            "{what}: partition {n} of the image is not on the disk"
        );
    }
}

#[test]
fn disks_held_by_md_or_lvm_are_refused_without_force() {
    let out = repo_root().join("out");
    for f in ["vmlinuz", "initramfs.img"] {
        assert!(
            out.join(f).exists(),
            "{} is missing: run `make` first",
            out.join(f).display()
        );
    }
    let img = TestImage::build(48, 512);
    let z = img.zstd();
    let server = Server::start();
    server.serve_bytes(IMAGE, z.clone());
    let base = guest_base(&server);
    let sum = sha256_hex(&z);
    server.serve_bytes(
        "/md.yaml",
        document("md-host", "SN-MD-A", &base, &sum).into_bytes(),
    );
    server.serve_bytes(
        "/lvm.yaml",
        document("lvm-host", "SN-LVM-C", &base, &sum).into_bytes(),
    );

    let mut vm = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append: "console=ttyS0 imprint.debug=1".into(),
        })
        .disk(Disk::virtio(256 * MIB, "SN-MD-A"))
        .disk(Disk::virtio(256 * MIB, "SN-MD-B"))
        .disk(Disk::virtio(256 * MIB, "SN-LVM-C"))
        .serial_input()
        .start()
        .unwrap();
    // No document anywhere: the run fails and debug mode keeps a shell on the console.
    vm.wait_for_serial("a shell is open on the console", Duration::from_secs(120))
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let t = Duration::from_secs(30);
    let (rc, text) = run(
        &mut vm,
        "DISKS",
        "cat /sys/block/vda/serial /sys/block/vdc/serial",
        t,
    );
    assert!(
        rc == 0 && text.contains("SN-MD-A") && text.contains("SN-LVM-C"),
        "disk order: {text}"
    );

    // md RAID1 over vda and vdb (no resync under TCG), data written through the array.
    let (rc, text) = run(
        &mut vm,
        "MD",
        "modprobe raid1 && mdadm --create /dev/md127 --run --assume-clean --level=1 --raid-devices=2 \
         --metadata=1.2 /dev/vda /dev/vdb && echo precious-md | dd of=/dev/md127 conv=fsync 2>/dev/null",
        t,
    );
    assert_eq!(rc, 0, "creating the md array: {text}");
    // LVM on vdc: vg0/lv0 is dm-0.
    let (rc, text) = run(
        &mut vm,
        "LVM",
        "modprobe dm_mod; lvm pvcreate -q -y /dev/vdc && lvm vgcreate -q vg0 /dev/vdc && \
         lvm lvcreate -q -y -n lv0 -L 32M vg0 && echo precious-lv | dd of=/dev/vg0/lv0 conv=fsync 2>/dev/null \
         && cat /sys/block/dm-0/dm/name",
        t,
    );
    assert!(
        rc == 0 && text.contains("vg0-lv0"),
        "creating the LVM volume: {text}"
    );

    // Refused: exit 7, the holder named, the way out named.
    let apply_t = Duration::from_secs(90);
    let (rc, text) = run(
        &mut vm,
        "MD-REFUSED",
        &format!("imprint apply --yes {base}/md.yaml"),
        apply_t,
    );
    eprintln!("apply on an md member:{text}");
    assert_eq!(rc, 7, "apply on an md member: {text}");
    assert!(
        text.contains("refusing to touch disks in use")
            && text.contains("/dev/vda is held by md127"),
        "{text}"
    );
    assert!(text.contains("--force"), "the way out is not named: {text}");
    let (rc, text) = run(
        &mut vm,
        "MD-INTACT",
        "cat /proc/mdstat; head -c 11 /dev/md127; echo",
        t,
    );
    assert_eq!(rc, 0, "{text}");
    assert!(
        text.contains("md127 : active raid1") && text.contains("[UU]"),
        "the array changed: {text}"
    );
    assert!(
        text.contains("precious-md"),
        "the array's data changed: {text}"
    );

    let (rc, text) = run(
        &mut vm,
        "LVM-REFUSED",
        &format!("imprint apply --yes {base}/lvm.yaml"),
        apply_t,
    );
    eprintln!("apply on an LVM physical volume:{text}");
    assert_eq!(rc, 7, "apply on an LVM physical volume: {text}");
    assert!(text.contains("/dev/vdc is held by dm-0"), "{text}");
    let (rc, text) = run(
        &mut vm,
        "LVM-INTACT",
        "lvm lvs --noheadings -o lv_name,lv_active vg0; head -c 11 /dev/vg0/lv0; echo",
        t,
    );
    assert_eq!(rc, 0, "{text}");
    assert!(
        text.contains("lv0") && text.contains("active") && text.contains("precious-lv"),
        "the volume changed: {text}"
    );
    assert!(
        server.requests().iter().all(|r| r.path != IMAGE),
        "a refused apply fetched the image"
    );

    // --force: the holder is stopped and the disk provisioned.
    let (rc, text) = run(
        &mut vm,
        "MD-FORCE",
        &format!("imprint apply --yes --force {base}/md.yaml"),
        apply_t,
    );
    assert_eq!(rc, 0, "apply --force on an md member: {text}");
    let (rc, text) = run(&mut vm, "MD-GONE", "cat /proc/mdstat", t);
    assert!(
        rc == 0 && !text.contains("md127"),
        "md127 still runs after --force: {text}"
    );
    let (rc, text) = run(
        &mut vm,
        "LVM-FORCE",
        &format!("imprint apply --yes --force {base}/lvm.yaml"),
        apply_t,
    );
    assert_eq!(rc, 0, "apply --force on an LVM physical volume: {text}");
    let (rc, text) = run(&mut vm, "LVM-GONE", "ls /sys/block; sync", t);
    assert!(
        rc == 0 && !text.contains("dm-0"),
        "dm-0 still exists after --force: {text}"
    );
    // The agent itself took the holders down (its wipe step says so in the final report).
    let md = final_reports(&server, "md-host");
    assert!(
        md.len() == 1 && md[0].contains("\"success\"") && md[0].contains("stopped md array md127"),
        "{md:?}"
    );
    let lv = final_reports(&server, "lvm-host");
    assert!(
        lv.len() == 1
            && lv[0].contains("\"success\"")
            && lv[0].contains("deactivated volume group vg0"),
        "{lv:?}"
    );
    eprintln!("all checks done after {:.1} s", vm.elapsed().as_secs_f64());
    vm.kill();

    assert_image_on(&vm.disk_path(0), &img, "the md member after --force");
    assert_image_on(&vm.disk_path(2), &img, "the LVM disk after --force");
}
