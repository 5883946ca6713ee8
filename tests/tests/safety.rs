//! Issue 7, safety by hand: `apply` refuses (exit 7) a disk with a mounted filesystem
//! and a disk carrying an imprint boot ISO; discovery never offers the boot medium as a
//! candidate; a plain `apply` shows what will be destroyed and asks on the terminal —
//! "no" leaves the disk untouched, "yes" proceeds.
//!
//! Disks with holders (md, dm, LVM) cannot be made on this host (no md/dm in its
//! kernel); `apply` refuses them by the same check (sysfs `holders/`), shown in QEMU
//! by `qemu_safety.rs`.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::Server;
use std::process::Command;

const IMAGE: &str = "/images/web.raw.zst";

fn small_image() -> TestImage {
    TestImage::build(48, 512)
}

/// Unmounts and removes the mount point on drop.
struct Mounted(tempfile::TempDir);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_disk_with_a_mounted_filesystem_is_refused() {
    let disk = LoopDev::new(1 << 30, 512);
    sh("sgdisk", &["-n", "1:1MiB:+64MiB", disk.dev()]);
    sh("partx", &["-a", disk.dev()]);
    let part = format!("{}p1", disk.dev());
    sh("mkfs.ext4", &["-q", "-F", "-L", "busy", &part]);
    let mnt = Mounted(tempfile::tempdir().unwrap());
    sh("mount", &[&part, path_str(mnt.0.path())]);
    std::fs::write(mnt.0.path().join("precious.txt"), "keep me").unwrap();
    let before = read_at(disk.dev(), 0, 1 << 20);

    let doc = single_disk_document(
        "http://127.0.0.1:9/none.raw.zst",
        &"ab".repeat(32),
        "http://127.0.0.1:9/r",
    );
    let doc = doc.replace("min_size: 1GiB", "min_size: 512MiB");
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 7, "{}", run.stderr);
    assert!(
        run.stderr.contains("mounted") && run.stderr.contains(path_str(mnt.0.path())),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("--force"),
        "the way out is named: {}",
        run.stderr
    );
    assert_eq!(
        read_at(disk.dev(), 0, 1 << 20),
        before,
        "the refused disk changed"
    );
    assert_eq!(
        std::fs::read_to_string(mnt.0.path().join("precious.txt")).unwrap(),
        "keep me"
    );
}

/// An ISO holding a blank imprint customization area (magic line, then its length at
/// byte 32, as `initramfs/build.sh` reserves it), made by xorriso, on a loop device.
fn boot_medium() -> (LoopDev, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree/imprint");
    std::fs::create_dir_all(&tree).unwrap();
    let len: u32 = 256 * 1024;
    let mut area = vec![0u8; len as usize];
    area[..23].copy_from_slice(b"IMPRINT-CONFIG-AREA-v1\n");
    area[32..36].copy_from_slice(&len.to_le_bytes());
    std::fs::write(tree.join("config.img"), area).unwrap();
    let iso = dir.path().join("imprint.iso");
    sh(
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-quiet",
            "-r",
            "-V",
            "IMPRINT_ISO",
            "-o",
            path_str(&iso),
            path_str(&dir.path().join("tree")),
        ],
    );
    let bytes = std::fs::read(&iso).unwrap();
    let medium = LoopDev::new((bytes.len() as u64).div_ceil(1 << 20) << 20, 512);
    std::fs::write(&medium.path, &bytes).unwrap();
    (medium, dir)
}

#[test]
fn the_boot_medium_is_refused_and_never_a_candidate() {
    let (medium, _dir) = boot_medium();
    let shown = imprint(&["iso", "show", medium.dev()]);
    assert_eq!(
        shown.code, 0,
        "the fixture is an imprint medium: {}",
        shown.stderr
    );
    let doc = format!(
        "version: 1\nhost: {{ hostname: h1 }}\ndisks:\n  - {{ name: root, match: {{ smallest: true }} }}\n\
         image: {{ url: 'http://127.0.0.1:9/i.raw', sha256: '{}' }}\n",
        "ab".repeat(32)
    );
    let before = read_at(medium.dev(), 0, 1 << 20);
    // Named explicitly: refused, whatever the hint.
    let run = imprint_with_doc(&["apply", "--yes", "--disks", medium.dev()], &doc);
    assert_eq!(run.code, 7, "{}", run.stderr);
    assert!(
        run.stderr.contains("boot medium") && run.stderr.contains(medium.dev()),
        "{}",
        run.stderr
    );
    assert_eq!(
        read_at(medium.dev(), 0, 1 << 20),
        before,
        "the boot medium changed"
    );
    // Discovered: not a candidate at all (a read-only `plan` over this host's real inventory).
    let doc = doc.replace("smallest: true", &format!("path: {}", medium.dev()));
    let run = imprint_with_doc(&["plan"], &doc);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "{} is an imprint boot medium: not a candidate",
            medium.dev()
        )),
        "{}",
        run.stderr
    );
}

/// Runs `imprint apply` (no --yes) on a pseudo-terminal made by `script`, typing `answer`.
fn apply_on_a_terminal(doc: &str, disk: &LoopDev, answer: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.yaml");
    std::fs::write(&path, doc).unwrap();
    let cmd = format!(
        "{} apply --disks {} {}",
        imprint_bin().display(),
        disk.dev(),
        path.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '{answer}\\n' | script -qec \"{cmd}\" /dev/null"
        ))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_plain_apply_shows_what_will_be_destroyed_and_asks() {
    let img = small_image();
    let s = Server::start();
    let z = img.zstd();
    s.serve_bytes(IMAGE, z.clone());
    let doc = single_disk_document(&s.url(IMAGE), &sha256_hex(&z), &s.url("/report/web-01"));
    let disk = LoopDev::new(2 << 30, 512);
    sh(
        "sgdisk",
        &["-n", "1:1MiB:+16MiB", "-c", "1:old-data", disk.dev()],
    );
    let before = read_at(disk.dev(), 0, 1 << 20);

    let (code, text) = apply_on_a_terminal(&doc, &disk, "no");
    assert_eq!(code, 6, "{text}");
    assert!(
        text.contains("WILL BE DESTROYED") && text.contains(disk.dev()),
        "the plan names what is destroyed: {text}"
    );
    assert!(text.contains("Type 'yes'"), "{text}");
    assert_eq!(
        read_at(disk.dev(), 0, 1 << 20),
        before,
        "answering no changed the disk"
    );
    assert!(
        s.requests().iter().all(|r| r.path != IMAGE),
        "answering no fetched the image"
    );

    let (code, text) = apply_on_a_terminal(&doc, &disk, "yes");
    assert_eq!(code, 0, "{text}");
    assert_single_disk_deployed(disk.dev(), &img, "web-01");
}
