//! The seed customer's host end to end: product.md's second document (tang/TPM2 pins
//! replaced by a recovery passphrase) on two 12 GiB virtio disks. The agent (direct
//! kernel boot under OVMF) builds GPT → md RAID1 → LUKS2 → LVM → xfs/ext4/vfat/swap,
//! extracts the Debian rootfs across the mounts and installs GRUB on both disks. Then:
//! host-side checks on the disk files (sgdisk, mdadm --examine, cryptsetup luksDump);
//! the VM boots from its own disks under OVMF, the harness types the passphrase at the
//! initramfs prompt, cloud-init prints the layout with both mirrors healthy.
//! (Degraded boot with one disk removed and a rerun on disks holding the layout are
//! not covered yet: see docs/storage.md.)

use imprint_tests::fixtures::*;
use imprint_tests::images::debian_rootfs;
use imprint_tests::qemu::{Boot, Disk, Firmware, Vm};
use imprint_tests::server::Server;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PASSPHRASE: &str = "storage-test recovery phrase";
const GIB: u64 = 1 << 30;

fn seed_doc(base: &str, sha512: &str, hostname: &str) -> String {
    format!(
        r#"version: 1
host: {{ hostname: {hostname} }}
disks:
  - {{ name: a, match: {{ serial: "SN-A-0001" }} }}
  - {{ name: b, match: {{ serial: "SN-B-0002" }} }}
storage:
  layout:
    mirror: [a, b]
    luks:
      recovery_passphrase: "{PASSPHRASE}"
    lvm:
      - {{ mount: /,              size: 4GiB,   type: xfs }}
      - {{ mount: /home,          size: 512MiB, type: xfs, options: [nodev, nosuid] }}
      - {{ mount: /tmp,           size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }}
      - {{ mount: /var,           size: 2GiB,   type: xfs, options: [nodev] }}
      - {{ mount: /var/log,       size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }}
      - {{ mount: /var/log/audit, size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }}
      - {{ mount: /var/tmp,       size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }}
      - {{ swap: true,            size: 256MiB }}
image:
  url: {base}/images/debian-12-rootfs.tar.zst
  sha512: "{sha512}"
  format: rootfs
configdrive:
  format: nocloud
  user_data: |
    #cloud-config
    bootcmd:
      - [sh, -c, "{{ echo LAYOUT-BEGIN; findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS; cat /proc/mdstat; echo LAYOUT-END; }} > /dev/console 2>&1"]
    runcmd: [[sh, -c, "echo imprint-$((6*7))-ok > /dev/console"]]
report: {{ url: "{base}/report/{hostname}", token: "storage-token" }}
finish: reboot
"#
    )
}

struct Bench {
    server: Server,
    base: String,
}

fn bench() -> Bench {
    let img = debian_rootfs();
    let server = Server::start();
    server.serve_file("/images/debian-12-rootfs.tar.zst", &img.path);
    let base = format!("http://10.0.2.2:{}", server.port());
    server.serve_bytes(
        "/db-17.yaml",
        seed_doc(&base, &img.sha512, "db-17").into_bytes(),
    );
    Bench { server, base }
}

fn provision(b: &Bench, disks: Vec<Disk>, doc: &str) -> (Vm, f64, Value) {
    let out = repo_root().join("out");
    let mut builder = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append: format!(
                "console=ttyS0 imprint.config={}{doc} imprint.failure_delay=0",
                b.base
            ),
        })
        .firmware(Firmware::Uefi)
        .memory_mib(1024);
    for d in disks {
        builder = builder.disk(d);
    }
    let mut vm = builder.start().unwrap();
    let log = vm
        .wait_for_serial("imprint: provisioning ", Duration::from_secs(2400))
        .unwrap();
    let secs = vm.elapsed().as_secs_f64();
    vm.wait_exit(Duration::from_secs(120)).unwrap();
    let fin: Value = b
        .server
        .posts()
        .iter()
        .filter(|p| p.path == "/report/db-17")
        .map(|p| serde_json::from_slice::<Value>(&p.body).unwrap())
        .filter(|v| v["kind"] == "final")
        .last()
        .expect("a final report");
    assert_eq!(
        fin["result"],
        "success",
        "{fin:#}\n{}",
        &log[log.len().saturating_sub(6000)..]
    );
    let text = fin.to_string();
    assert!(
        !text.contains(PASSPHRASE) && !text.contains("storage-token"),
        "no secret in the report"
    );
    (vm, secs, fin)
}

/// A read-only loop device over a byte window of a file; detached on drop.
struct Window(String);

impl Window {
    fn new(file: &Path, offset: u64, len: u64) -> Window {
        let dev = sh(
            "losetup",
            &[
                "-f",
                "--show",
                "-r",
                "-o",
                &offset.to_string(),
                "--sizelimit",
                &len.to_string(),
                file.to_str().unwrap(),
            ],
        );
        Window(dev.trim().to_string())
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        let _ = sh_any("losetup", &["-d", &self.0]);
    }
}

fn partition(file: &Path, n: u32) -> (u64, u64) {
    let p = gpt_partitions(file.to_str().unwrap());
    let (_, off, len) = p
        .into_iter()
        .find(|(k, _, _)| *k == n)
        .unwrap_or_else(|| panic!("partition {n}"));
    (off, len)
}

fn examine(file: &Path, n: u32) -> String {
    let (off, len) = partition(file, n);
    let w = Window::new(file, off, len);
    sh("mdadm", &["--examine", &w.0])
}

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
    // Disk a: 1 bios, 2 esp, 3 boot (md 1.0), 4 configdrive, 5 root (md 1.2); disk b has no configdrive.
    for (file, boot_n, root_n) in [(a, 3, 5), (b, 3, 4)] {
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
    for (file, root_n) in [(a, 5), (b, 4)] {
        let root = examine(file, root_n);
        let data_offset: u64 = root
            .lines()
            .find_map(|l| l.trim().strip_prefix("Data Offset : "))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("a data offset");
        let (off, len) = partition(file, root_n);
        let w = Window::new(file, off + data_offset * 512, len - data_offset * 512);
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

/// Boots from the disks, types the passphrase, returns the layout cloud-init printed.
fn boot_and_unlock(disks: &[(PathBuf, &str)], marker: &str) -> (String, f64) {
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
    let log = vm
        .wait_for_serial(marker, Duration::from_secs(900))
        .unwrap();
    let log = vm
        .wait_for_serial("LAYOUT-END", Duration::from_secs(300))
        .map(|_| vm.serial_log())
        .unwrap_or(log);
    let secs = vm.elapsed().as_secs_f64();
    eprintln!(
        "unlocked; {marker} {:.1} s after the passphrase",
        t.elapsed().as_secs_f64()
    );
    let begin = log.rfind("LAYOUT-BEGIN").expect("layout printed");
    let end = log[begin..]
        .find("LAYOUT-END")
        .map(|e| begin + e)
        .unwrap_or(log.len());
    (log[begin..end].replace('\r', ""), secs)
}

fn assert_layout(layout: &str, mirror: &str) {
    let line = |target: &str| {
        layout
            .lines()
            .find(|l| l.split(' ').next() == Some(target))
            .unwrap_or_else(|| panic!("{target} is not mounted:\n{layout}"))
            .to_string()
    };
    let has = |target: &str, fstype: &str, opts: &[&str]| {
        let l = line(target);
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.get(2).copied(), Some(fstype), "{l}");
        let o: Vec<&str> = f.get(3).copied().unwrap_or("").split(',').collect();
        for x in opts {
            assert!(o.contains(x), "{target} lacks {x}: {l}");
        }
        f[1].to_string()
    };
    assert_eq!(has("/", "xfs", &["rw"]), "/dev/mapper/vg0-root");
    has("/home", "xfs", &["nodev", "nosuid"]);
    for t in ["/tmp", "/var/log", "/var/log/audit", "/var/tmp"] {
        assert!(has(t, "xfs", &["nodev", "nosuid", "noexec"]).starts_with("/dev/mapper/vg0-"));
    }
    has("/var", "xfs", &["nodev"]);
    assert!(has("/boot", "ext4", &[]).starts_with("/dev/md"), "{layout}");
    has("/boot/efi", "vfat", &[]);
    let arrays = layout.matches(mirror).count();
    assert_eq!(arrays, 2, "both arrays {mirror}:\n{layout}");
}

#[test]
fn the_seed_customers_layout_deploys_and_boots_with_the_passphrase() {
    let b = bench();
    let (agent, provision_secs, fin) = provision(
        &b,
        vec![
            Disk::virtio(12 * GIB, "SN-A-0001"),
            Disk::virtio(12 * GIB, "SN-B-0002"),
        ],
        "/db-17.yaml",
    );
    let steps: Vec<String> = fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect();
    for s in [
        "raid:md-boot",
        "raid:md-root",
        "luks:luks-root",
        "lvm:vg0",
        "mount:/var/log/audit",
        "write-image",
        "finalize",
    ] {
        assert!(steps.iter().any(|x| x == s), "{s} in {steps:?}");
    }
    let fz = &fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "finalize")
        .unwrap()["output"];
    assert_eq!(fz["family"], "debian", "{fz:#}");
    assert!(
        fz["kernel_cmdline"]
            .to_string()
            .contains("root=/dev/mapper/vg0-root"),
        "{fz:#}"
    );

    // Keep the disks: copy them out of the agent VM's temp dir.
    let keep = tempfile::tempdir().unwrap();
    let (a, bb) = (keep.path().join("a.raw"), keep.path().join("b.raw"));
    sh(
        "cp",
        &[
            "--sparse=always",
            agent.disk_path(0).to_str().unwrap(),
            a.to_str().unwrap(),
        ],
    );
    sh(
        "cp",
        &[
            "--sparse=always",
            agent.disk_path(1).to_str().unwrap(),
            bb.to_str().unwrap(),
        ],
    );
    drop(agent);
    host_checks(&a, &bb, &fin);

    let (layout, boot_secs) = boot_and_unlock(
        &[(a.clone(), "SN-A-0001"), (bb.clone(), "SN-B-0002")],
        "imprint-42-ok",
    );
    assert_layout(&layout, "[UU]");

    eprintln!("timings: provisioning {provision_secs:.0} s; boot to layout {boot_secs:.0} s");
}
