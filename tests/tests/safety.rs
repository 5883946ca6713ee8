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

/// Issue 14: a disk whose kernel still lists a partition past its end (added on 4 GiB
/// with BLKPG, then the backing file shrunk to 2 GiB and the loop device resized, as a
/// replaced or shrunk LUN leaves one) cannot be probed there by libblkid; it is still
/// listed with its problem, chosen by the document's hints, wiped and provisioned.
#[test]
fn a_disk_with_a_stale_partition_is_listed_wiped_and_provisioned() {
    let disk = LoopDev::new(4 << 30, 512);
    sh(
        "addpart",
        &[disk.dev(), "1", "2048", &((3u64 << 30) / 512).to_string()],
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk.backing)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    sh("losetup", &["-c", disk.dev()]);
    let stale = format!("{}p1", disk.dev());
    let range = sh_any(
        "blkid",
        &[
            "-p",
            "-O",
            "1048576",
            "-S",
            &(3u64 << 30).to_string(),
            disk.dev(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&range.stderr).contains("Invalid argument"),
        "libblkid can probe the stale partition's range: {range:?}"
    );

    let run = imprint(&["disks"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{} ", disk.dev())))
            && run.stdout.contains(&format!(
                "problem on {}: the kernel lists {stale}",
                disk.dev()
            )),
        "imprint disks:\n{}\n{}",
        run.stdout,
        run.stderr
    );

    let img = small_image();
    let server = Server::start();
    let z = img.zstd();
    server.serve_bytes(IMAGE, z.clone());
    let doc = single_disk_document(
        &server.url(IMAGE),
        &sha256_hex(&z),
        &server.url("/report/web-01"),
    );
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 0, "apply on the damaged disk:\n{}", run.stderr);
    // Every partition the kernel lists now lies on the disk: the stale one is gone.
    let name = &disk.dev()[5..];
    let sys = std::path::Path::new("/sys/block").join(name);
    let read = |p: std::path::PathBuf| -> u64 {
        std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
    };
    let size = read(sys.join("size"));
    for e in std::fs::read_dir(&sys).unwrap().flatten() {
        if e.path().join("partition").exists() {
            let end = read(e.path().join("start")) + read(e.path().join("size"));
            assert!(end <= size, "{} ends past the disk", e.path().display());
        }
    }
    let verify = sh("sgdisk", &["-v", disk.dev()]);
    assert!(verify.contains("No problems found"), "{verify}");
    for (n, start, size) in &img.partitions {
        assert!(
            read_at(disk.dev(), *start, *size as usize)
                == img.raw[*start as usize..(*start + *size) as usize],
            "partition {n} of the image is not on the disk"
        );
    }
}
