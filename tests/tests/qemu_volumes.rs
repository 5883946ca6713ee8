//! Images into volumes the document describes, checked by the deployed system itself:
//!
//! - `disk` image beside data volumes: the Debian disk image onto disk a with a
//!   partition → LUKS2 → ext4 vault added after the image's partitions, and on disk b a
//!   partition → LUKS2 → xfs data volume the document describes separately.
//! - `filesystem` image into LUKS: an ext4 image (built here with `mkfs.ext4 -d`) written
//!   into a LUKS2 volume on disk c and grown to fill it.
//!
//! The two provisioning runs go side by side; then the Debian the first one deployed boots
//! from disk a with disks b and c attached, and a root login on its console opens both
//! volumes with the real `cryptsetup` and checks them with `xfs_repair -n`, `e2fsck -fn`,
//! `blkid`, `df` and `sha256sum`.

use imprint_tests::fixtures::*;
use imprint_tests::images::debian_disk;
use imprint_tests::qemu::{Boot, Disk, Firmware, Vm};
use imprint_tests::seed::{disk_file, step};
use imprint_tests::server::Server;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DATA_PHRASE: &str = "data volume phrase";
const FS_PHRASE: &str = "filesystem volume phrase";
const VAULT_PHRASE: &str = "vault beside the image phrase";

/// An ext4 image holding a random payload; returns (image.zst, sha256 of it, payload sha256).
fn ext4_image(dir: &Path) -> (PathBuf, String, String) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    let mut payload = vec![0u8; 8 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in payload.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(tree.join("payload.bin"), &payload).unwrap();
    std::fs::write(tree.join("etc/hostname"), "fsimg-1\n").unwrap();
    let raw = dir.join("vol.ext4");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    sh(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "fsimg",
            "-d",
            tree.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    let zst = dir.join("vol.ext4.zst");
    sh(
        "zstd",
        &[
            "-q",
            "-f",
            "-o",
            zst.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    let sha = |p: &Path| {
        sh("sha256sum", &[p.to_str().unwrap()])
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let payload_sha = sha(&tree.join("payload.bin"));
    (zst.clone(), sha(&zst), payload_sha)
}

fn run_agent(server: &Server, base: &str, doc_path: &str, report: &str, disks: Vec<Disk>) -> Value {
    let out = repo_root().join("out");
    let mut b = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append: format!(
                "console=ttyS0 imprint.config={base}{doc_path} imprint.failure_delay=0"
            ),
        })
        .memory_mib(768);
    for d in disks {
        b = b.disk(d);
    }
    let mut vm = b.start().unwrap();
    let log = vm
        .wait_for_serial("imprint: provisioning ", Duration::from_secs(900))
        .unwrap();
    vm.wait_exit(Duration::from_secs(120)).unwrap();
    let fin = server
        .posts()
        .iter()
        .filter(|p| p.path == report)
        .filter_map(|p| serde_json::from_slice::<Value>(&p.body).ok())
        .rfind(|v| v["kind"] == "final")
        .expect("a final report");
    assert_eq!(
        fin["result"],
        "success",
        "{fin:#}\n{}",
        &log[log.len().saturating_sub(4000)..]
    );
    fin
}

#[test]
fn a_disk_image_beside_a_data_volume_and_a_filesystem_image_in_luks() {
    let work = tempfile::tempdir().unwrap();
    let disk_img = debian_disk();
    let (fs_img, fs_sha, payload_sha) = ext4_image(work.path());
    let server = Server::start();
    server.serve_file("/images/debian-12-disk.raw.zst", &disk_img.path);
    server.serve_file("/images/vol.ext4.zst", &fs_img);
    let base = guest_base(&server);
    server.serve_bytes(
        "/app-1.yaml",
        format!(
            r#"version: 1
host: {{ hostname: app-1 }}
disks:
  - {{ name: os, match: {{ serial: SN-A-0001 }} }}
  - {{ name: data, match: {{ serial: SN-B-0002 }} }}
storage:
  partitions:
    - {{ name: data-part, disk: data, size: rest, type: luks }}
    - {{ name: os-vault, disk: os, size: rest, type: luks }}
  luks:
    - {{ name: data-crypt, device: data-part, recovery_passphrase: "{DATA_PHRASE}" }}
    - {{ name: vault-crypt, device: os-vault, recovery_passphrase: "{VAULT_PHRASE}" }}
  filesystems:
    - {{ device: data-crypt, type: xfs, label: appdata }}
    - {{ device: vault-crypt, type: ext4, label: osvault }}
image:
  url: {base}/images/debian-12-disk.raw.zst
  sha256: "{}"
  target: os
configdrive:
  format: nocloud
  user_data: |
    #cloud-config
    runcmd: [[sh, -c, "echo app-1-first-boot > /dev/console"]]
report: {{ url: "{base}/report/app-1" }}
finish: poweroff
"#,
            disk_img.sha256
        )
        .into_bytes(),
    );
    server.serve_bytes(
        "/fsimg-1.yaml",
        format!(
            r#"version: 1
host: {{ hostname: fsimg-1 }}
disks:
  - {{ name: c, match: {{ serial: SN-C-0003 }} }}
storage:
  partitions:
    - {{ name: vol, disk: c, size: rest, type: luks }}
  luks:
    - {{ name: vol-crypt, device: vol, recovery_passphrase: "{FS_PHRASE}" }}
image:
  url: {base}/images/vol.ext4.zst
  sha256: "{fs_sha}"
  format: filesystem
  target: vol-crypt
report: {{ url: "{base}/report/fsimg-1" }}
finish: poweroff
"#
        )
        .into_bytes(),
    );
    let a = disk_file(work.path(), "a.raw", 4 << 30);
    let b = disk_file(work.path(), "b.raw", 2 << 30);
    let c = disk_file(work.path(), "c.raw", 2 << 30);

    let (fin_app, fin_fs) = std::thread::scope(|s| {
        let app = s.spawn(|| {
            run_agent(
                &server,
                &base,
                "/app-1.yaml",
                "/report/app-1",
                vec![
                    Disk::existing(&a, "SN-A-0001"),
                    Disk::existing(&b, "SN-B-0002"),
                ],
            )
        });
        let fs = s.spawn(|| {
            run_agent(
                &server,
                &base,
                "/fsimg-1.yaml",
                "/report/fsimg-1",
                vec![Disk::existing(&c, "SN-C-0003")],
            )
        });
        (app.join().unwrap(), fs.join().unwrap())
    });
    step(&fin_app, "luks:data-crypt");
    step(&fin_app, "mkfs:data-crypt");
    // On disk a, after the image's partitions: the vault, then the configdrive.
    let appended = step(&fin_app, "partition:os");
    // The image numbers its partitions 1, 14, 15 (as stock cloud images do): the vault
    // takes the first free entry.
    assert_eq!(
        appended["output"]["appended"][0]["number"], 2,
        "{appended:#}"
    );
    let vault = step(&fin_app, "luks:vault-crypt");
    assert!(
        vault["output"]["device"]
            .as_str()
            .is_some_and(|d| !d.contains('#')),
        "{vault:#}"
    );
    let img_step = step(&fin_fs, "write-image");
    assert_eq!(img_step["output"]["fstype"], "ext4", "{img_step:#}");
    for d in [&a, &b, &c] {
        assert_sgdisk_clean(d.to_str().unwrap());
    }

    // The deployed Debian checks both volumes with its own tools.
    let mut vm = Vm::builder()
        .boot(Boot::Disk)
        .firmware(Firmware::Uefi)
        .memory_mib(1024)
        .no_network()
        .serial_input()
        .disk(Disk::existing(&a, "SN-A-0001"))
        .disk(Disk::existing(&b, "SN-B-0002"))
        .disk(Disk::existing(&c, "SN-C-0003"))
        .start()
        .unwrap();
    vm.login("root", "imprint", Duration::from_secs(900))
        .unwrap();
    let t = Duration::from_secs(300);
    // Opens the LUKS2 volume in partition 1 of the disk with `serial` as /dev/mapper/`name`.
    let mut open = |serial: &str, phrase: &str, name: &str| {
        let dev = format!("/dev/disk/by-id/virtio-{serial}-part1");
        let out = vm
            .run(&format!("printf %s '{phrase}' | cryptsetup open --key-file=- {dev} {name} && echo OPENED"), t)
            .unwrap();
        assert!(
            out.contains("OPENED"),
            "{dev} opens with its passphrase: {out}"
        );
    };
    open("SN-B-0002", DATA_PHRASE, "data");
    open("SN-C-0003", FS_PHRASE, "vol");
    let repair = vm
        .run("xfs_repair -n /dev/mapper/data; echo rc=$?", t)
        .unwrap();
    assert!(repair.contains("rc=0"), "xfs_repair -n: {repair}");
    let blkid = vm.run("blkid -o export /dev/mapper/data", t).unwrap();
    assert!(
        blkid.contains("TYPE=xfs") && blkid.contains("LABEL=appdata"),
        "{blkid}"
    );

    // The vault added after the image on its own disk: found by its GPT name, opened and
    // checked by the deployed system; the image's root partition is still the image's.
    let vault = vm
        .run(&format!("printf %s '{VAULT_PHRASE}' | cryptsetup open --key-file=- /dev/disk/by-partlabel/os-vault vault && e2fsck -fn /dev/mapper/vault; echo rc=$?"), t)
        .unwrap();
    assert!(
        vault.contains("rc=0"),
        "the vault beside the image: {vault}"
    );
    let label = vm
        .run(
            "blkid -o value -s LABEL /dev/mapper/vault; findmnt -no SOURCE /",
            t,
        )
        .unwrap();
    assert!(
        label.contains("osvault") && label.contains("/dev/vda1"),
        "{label}"
    );

    let fsck = vm.run("e2fsck -fn /dev/mapper/vol; echo rc=$?", t).unwrap();
    assert!(fsck.contains("rc=0"), "e2fsck -fn: {fsck}");
    let sizes = vm
        .run("mount -o ro /dev/mapper/vol /mnt && df -B1 --output=size /mnt | tail -1; blockdev --getsize64 /dev/mapper/vol", t)
        .unwrap();
    let nums: Vec<u64> = sizes
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "{sizes}");
    assert!(
        nums[0] > nums[1] / 10 * 8,
        "the 64 MiB filesystem was grown to fill its {} byte volume: {} bytes",
        nums[1],
        nums[0]
    );
    let sum = vm.run("sha256sum /mnt/payload.bin", t).unwrap();
    assert!(
        sum.contains(&payload_sha),
        "the payload survived: {sum} vs {payload_sha}"
    );
    let label = vm
        .run("blkid -o value -s LABEL /dev/mapper/vol", t)
        .unwrap();
    assert_eq!(label.trim(), "fsimg");
}
