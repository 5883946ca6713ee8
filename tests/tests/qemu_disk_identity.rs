//! Issue 14, disk identity, for what the host cannot make. The ramdisk boots with
//! `imprint.debug=1` and no document, so it ends at a shell on the console; the test
//! types there. On one VM:
//!
//! - one disk reached by two paths: two AHCI drives over the same image file with the
//!   same `serial=` and `wwn=`: `imprint disks` lists one disk with both paths, `apply`
//!   on it is refused naming both, and the image file is unchanged (sha256);
//! - an NVMe namespace with an `eui64=` is attached, but QEMU 7.2 does not pass it to
//!   the guest's sysfs, so only unit tests check NVMe identities;
//! - a damaged disk: a virtio disk behind blkdebug whose reads fail (EIO) over the
//!   ext4 superblock of an old partition: it is listed with its problem, matched by
//!   its serial, wiped (the report names the region it could not read) and provisioned.
//!
//! Markers are echoed with a split string (`"IMP""RINT-…"`) so the console's echo of the
//! typed command never matches what the test waits for.

use imprint_tests::fixtures::{guest_base, repo_root, sh, sha256_hex, TestImage};
use imprint_tests::qemu::{Boot, Disk, Vm};
use imprint_tests::server::Server;
use std::path::Path;
use std::time::Duration;

const IMAGE: &str = "/images/small.raw.zst";
const MIB: u64 = 1 << 20;
const WWN: &str = "0x5000c50015ea71ac";
const EUI64: &str = "0x0011223344556677";
/// Where the damaged disk's old partition starts; blkdebug fails reads of its superblock.
const OLD_PART_MIB: u64 = 96;

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
    let before = (0..=before.min(log.len()))
        .rev()
        .find(|i| log.is_char_boundary(*i))
        .unwrap_or(0);
    let at = log[before..].find(&marker).map(|i| before + i).unwrap();
    let code: String = log[at + marker.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let code = code
        .parse()
        .unwrap_or_else(|_| panic!("{tag}: no exit status:\n{}", &log[before..]));
    (code, log[before..at].to_string())
}

fn document(host: &str, hint: &str, base: &str, sha256: &str) -> String {
    format!(
        "version: 1\nhost: {{ hostname: {host} }}\ndisks:\n  - {{ name: root, match: {{ {hint} }} }}\n\
         image: {{ url: \"{base}{IMAGE}\", sha256: \"{sha256}\", format: disk, target: root }}\n\
         report: {{ url: \"{base}/report/{host}\" }}\nfinish: none\n"
    )
}

fn sha256_file(p: &Path) -> String {
    sh("sha256sum", &[p.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A 128 MiB disk file with a GPT whose partition 1 (from `OLD_PART_MIB`) holds an
/// ext4, and a blkdebug rule failing every read of that ext4's superblock.
fn damaged_disk(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let img = dir.join("damaged.raw");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(128 * MIB)
        .unwrap();
    let p = img.to_str().unwrap();
    sh("sgdisk", &["-n", &format!("1:{OLD_PART_MIB}MiB:+24MiB"), p]);
    let part = dir.join("old.ext4");
    std::fs::File::create(&part)
        .unwrap()
        .set_len(24 * MIB)
        .unwrap();
    sh("mkfs.ext4", &["-q", "-F", part.to_str().unwrap()]);
    sh(
        "dd",
        &[
            &format!("if={}", part.display()),
            &format!("of={p}"),
            "bs=1M",
            &format!("seek={OLD_PART_MIB}"),
            "conv=notrunc",
        ],
    );
    // The superblock sits 1 KiB into the partition: sector 2 of it.
    let cfg = dir.join("blkdebug.conf");
    std::fs::write(
        &cfg,
        format!(
            "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"{}\"\nonce = \"off\"\n",
            OLD_PART_MIB * MIB / 512 + 2
        ),
    )
    .unwrap();
    (img, cfg)
}

/// The extra QEMU arguments: two AHCI paths to `shared`, the NVMe namespace on `nvme`,
/// the damaged virtio disk.
fn extra_args(shared: &Path, nvme: &Path, damaged: &Path, cfg: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec!["-device".into(), "ich9-ahci,id=mp".into()];
    for (i, id) in ["mpa", "mpb"].iter().enumerate() {
        a.extend([
            "-drive".into(),
            format!(
                "if=none,id={id},format=raw,cache=unsafe,file.locking=off,file={}",
                shared.display()
            ),
            "-device".into(),
            format!("ide-hd,bus=mp.{i},drive={id},serial=SN-MULTI,wwn={WWN},share-rw=on"),
        ]);
    }
    a.extend([
        "-drive".into(),
        format!(
            "if=none,id=nv,format=raw,cache=unsafe,file={}",
            nvme.display()
        ),
        "-device".into(),
        "nvme,id=nvme0,serial=SN-NVME".into(),
        "-device".into(),
        format!("nvme-ns,drive=nv,bus=nvme0,nsid=1,eui64={EUI64}"),
        "-drive".into(),
        format!(
            "if=none,id=bad,format=raw,cache=unsafe,file=blkdebug:{}:{}",
            cfg.display(),
            damaged.display()
        ),
        "-device".into(),
        "virtio-blk-pci,drive=bad,serial=SN-DAMAGED".into(),
    ]);
    a
}

#[test]
fn two_paths_are_one_disk_nvme_ids_match_and_a_damaged_disk_is_provisioned() {
    let out = repo_root().join("out");
    for f in ["vmlinuz", "initramfs.img"] {
        assert!(out.join(f).exists(), "{} is missing: run `make` first", f);
    }
    let img = TestImage::build(48, 512);
    let z = img.zstd();
    let server = Server::start();
    server.serve_bytes(IMAGE, z.clone());
    let base = guest_base(&server);
    let sum = sha256_hex(&z);
    let docs = [
        ("multi", format!("wwn: \"{WWN}\"")),
        ("damaged", "serial: SN-DAMAGED".to_string()),
    ];
    for (host, hint) in &docs {
        server.serve_bytes(
            &format!("/{host}.yaml"),
            document(host, hint, &base, &sum).into_bytes(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared.raw");
    let nvme = dir.path().join("nvme.raw");
    for f in [&shared, &nvme] {
        std::fs::File::create(f)
            .unwrap()
            .set_len(128 * MIB)
            .unwrap();
    }
    std::fs::write(&shared, b"precious data on the multipath LUN").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shared)
        .unwrap()
        .set_len(128 * MIB)
        .unwrap();
    let shared_sum = sha256_file(&shared);
    let (damaged, cfg) = damaged_disk(dir.path());

    let mut b = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append: "console=ttyS0 imprint.debug=1".into(),
        })
        .disk(Disk::virtio(64 * MIB, "SN-PLAIN"))
        .serial_input();
    for a in extra_args(&shared, &nvme, &damaged, &cfg) {
        b = b.arg(&a);
    }
    let mut vm = b.start().unwrap();
    vm.wait_for_serial("a shell is open on the console", Duration::from_secs(120))
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let t = Duration::from_secs(60);

    let (rc, table) = run(&mut vm, "DISKS", "imprint disks", t);
    eprintln!("imprint disks:{table}");
    assert_eq!(rc, 0, "{table}");
    assert!(
        table.contains("/dev/sda and /dev/sdb are two paths to one disk (wwn 5000c50015ea71ac)"),
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.starts_with("/dev/sd")).count(),
        1,
        "one row for the two paths: {table}"
    );
    // QEMU 7.2's nvme-ns `eui64=` does not reach the guest's sysfs `eui` (the kernel's
    // wwid stays `nvme.…`): the NVMe identities are covered by unit tests only.
    assert!(
        table.lines().any(|l| l.starts_with("/dev/vdb")),
        "the damaged disk is listed: {table}"
    );

    let apply_t = Duration::from_secs(120);
    let (rc, text) = run(
        &mut vm,
        "MULTI",
        &format!("imprint apply --yes {base}/multi.yaml"),
        apply_t,
    );
    eprintln!("apply on two paths:{text}");
    assert_ne!(rc, 0, "{text}");
    assert!(
        text.contains("are two paths to one disk") && text.contains("dm-multipath"),
        "{text}"
    );

    let (rc, text) = run(
        &mut vm,
        "DAMAGED",
        &format!("imprint apply --yes {base}/damaged.yaml"),
        Duration::from_secs(300),
    );
    eprintln!("apply on the damaged disk:{text}");
    assert_eq!(rc, 0, "{text}");
    let posts: Vec<String> = server
        .posts()
        .into_iter()
        .filter(|p| p.path == "/report/damaged")
        .map(|p| p.json().to_string())
        .collect();
    let region = format!("\"offset\":{}", OLD_PART_MIB * MIB);
    assert!(
        posts
            .iter()
            .any(|p| p.contains("\"unreadable\"") && p.contains(&region)),
        "the wipe names the unreadable region: {posts:#?}"
    );
    vm.kill();

    assert_eq!(
        sha256_file(&shared),
        shared_sum,
        "the two-path disk was written"
    );
    let bytes = std::fs::read(&damaged).unwrap();
    for (n, start, size) in &img.partitions {
        let (s, e) = (*start as usize, (*start + *size) as usize);
        assert!(
            bytes[s..e] == img.raw[s..e],
            "partition {n} of the image is not on the damaged disk"
        );
    }
}
