//! The FAT image as blkid, fsck.vfat and mtools see it.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::configdrive::{write, ConfigdriveError};

/// `blkid -p -o export` of the filesystem at `offset` in `img`, as a map.
fn blkid(img: &Path, offset: u64) -> BTreeMap<String, String> {
    let out = run(
        "blkid",
        &[
            "-p",
            "-o",
            "export",
            "-O",
            &offset.to_string(),
            &img.display().to_string(),
        ],
    );
    out.stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `fsck.vfat -n` must succeed and report nothing beyond its banner and summary.
fn assert_fsck_clean(img: &Path) {
    // Not through runner::run: a failing fsck's stdout is the evidence we want to see.
    let out = std::process::Command::new("fsck.vfat")
        .arg("-n")
        .arg("-v")
        .arg(img)
        .output()
        .expect("run fsck.vfat");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "fsck.vfat -n failed ({}):\n{text}",
        out.status
    );
    let text = text.to_lowercase();
    for bad in [
        "differ",
        "dirty",
        "invalid",
        "bad ",
        "lost",
        "orphan",
        "free cluster summary wrong",
        "reclaim",
    ] {
        assert!(!text.contains(bad), "fsck.vfat reported `{bad}`:\n{text}");
    }
}

/// Every file of the tree reads back byte-exact through mtools.
fn assert_mtools_reads_back(img: &Path, offset: u64, tree: &[(String, Vec<u8>)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, (path, content)) in tree.iter().enumerate() {
        let out = dir.path().join(i.to_string());
        run(
            "mcopy",
            &[
                "-n",
                "-i",
                &mspec(img, offset),
                &format!("::/{path}"),
                &out.display().to_string(),
            ],
        );
        assert_eq!(
            &std::fs::read(&out).expect("read back"),
            content,
            "{path} differs after mcopy"
        );
    }
}

fn check_nocloud_drive(size: u64, expect_fat: &str) {
    let (_dir, img) = image(size, 0xAA);
    let p = full_plan(ConfigdriveFormat::Nocloud);
    let outcome = write(&img, 0, size, &p).expect("write configdrive");
    let tree = crate::configdrive::files(&p).expect("files");

    let id = blkid(&img, 0);
    assert_eq!(id.get("TYPE").map(String::as_str), Some("vfat"), "{id:?}");
    assert_eq!(
        id.get("LABEL").map(String::as_str),
        Some("cidata"),
        "{id:?}"
    );
    assert_eq!(
        id.get("VERSION").map(String::as_str),
        Some(expect_fat),
        "{id:?}"
    );
    assert_eq!(id.get("UUID"), Some(&outcome.fs_uuid), "{id:?}");
    assert_eq!(outcome.fat_type, expect_fat);
    assert_eq!(outcome.label, "cidata");
    assert_eq!(
        outcome.files,
        tree.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()
    );

    assert_fsck_clean(&img);
    assert_mtools_reads_back(&img, 0, &tree);
    let listing = run("mdir", &["-b", "-i", &mspec(&img, 0), "::/"]).stdout;
    for name in ["meta-data", "user-data", "network-config", "vendor-data"] {
        assert!(
            listing.contains(&format!("::/{name}")),
            "mdir lacks {name}: {listing}"
        );
    }
}

#[test]
fn nocloud_in_a_16mib_file_is_labelled_clean_and_reads_back() {
    check_nocloud_drive(16 * MIB, "FAT16");
}

#[test]
fn nocloud_in_a_64mib_file_is_labelled_clean_and_reads_back() {
    check_nocloud_drive(64 * MIB, "FAT16");
}

#[test]
fn small_drive_is_fat12() {
    let (_dir, img) = image(2 * MIB, 0);
    let outcome = write(&img, 0, 2 * MIB, &plan(ConfigdriveFormat::Nocloud)).expect("write");
    assert_eq!(outcome.fat_type, "FAT12");
    assert_eq!(
        blkid(&img, 0).get("VERSION").map(String::as_str),
        Some("FAT12")
    );
    assert_fsck_clean(&img);
}

#[test]
fn config2_drive_is_labelled_config_2_and_reads_back() {
    let size = 16 * MIB;
    let (_dir, img) = image(size, 0);
    let p = full_plan(ConfigdriveFormat::Config2);
    write(&img, 0, size, &p).expect("write configdrive");
    let id = blkid(&img, 0);
    assert_eq!(id.get("TYPE").map(String::as_str), Some("vfat"), "{id:?}");
    assert_eq!(
        id.get("LABEL").map(String::as_str),
        Some("config-2"),
        "{id:?}"
    );
    assert_fsck_clean(&img);
    assert_mtools_reads_back(&img, 0, &crate::configdrive::files(&p).expect("files"));
}

#[test]
fn write_at_an_offset_leaves_the_rest_of_the_file_untouched() {
    let (offset, size, total) = (3 * MIB + 4096, 8 * MIB, 16 * MIB);
    let (_dir, img) = image(total, 0x5A);
    let p = full_plan(ConfigdriveFormat::Nocloud);
    write(&img, offset, size, &p).expect("write configdrive");

    let bytes = std::fs::read(&img).expect("read image");
    assert_eq!(bytes.len() as u64, total, "file length changed");
    let (o, e) = (offset as usize, (offset + size) as usize);
    assert!(
        bytes[..o].iter().all(|b| *b == 0x5A),
        "bytes before the region changed"
    );
    assert!(
        bytes[e..].iter().all(|b| *b == 0x5A),
        "bytes after the region changed"
    );

    let id = blkid(&img, offset);
    assert_eq!(
        id.get("LABEL").map(String::as_str),
        Some("cidata"),
        "{id:?}"
    );
    assert_mtools_reads_back(&img, offset, &crate::configdrive::files(&p).expect("files"));
}

#[test]
fn a_short_file_is_extended_to_hold_the_region() {
    let (_dir, img) = image(MIB, 0x11);
    write(&img, MIB, 4 * MIB, &plan(ConfigdriveFormat::Nocloud)).expect("write");
    let bytes = std::fs::read(&img).expect("read image");
    assert_eq!(bytes.len() as u64, 5 * MIB);
    assert!(
        bytes[..MIB as usize].iter().all(|b| *b == 0x11),
        "bytes before the region changed"
    );
    assert_eq!(
        blkid(&img, MIB).get("LABEL").map(String::as_str),
        Some("cidata")
    );
}

#[test]
fn stale_iso9660_signature_does_not_survive() {
    let (_dir, img) = image(16 * MIB, 0);
    run("mkfs.vfat", &["-n", "OLD", &img.display().to_string()]);
    // An ISO9660 primary volume descriptor at 32 KiB would make blkid's answer ambiguous.
    let mut bytes = std::fs::read(&img).expect("read");
    bytes[0x8000..0x8006].copy_from_slice(b"\x01CD001");
    std::fs::write(&img, &bytes).expect("write");
    write(&img, 0, 16 * MIB, &plan(ConfigdriveFormat::Nocloud)).expect("write");
    let id = blkid(&img, 0);
    assert_eq!(id.get("TYPE").map(String::as_str), Some("vfat"), "{id:?}");
    assert_eq!(
        id.get("LABEL").map(String::as_str),
        Some("cidata"),
        "{id:?}"
    );
}

#[test]
fn errors_name_the_target() {
    let (dir, img) = image(MIB, 0);
    let e = write(&img, 0, 64 * 1024, &plan(ConfigdriveFormat::Nocloud)).unwrap_err();
    assert!(matches!(e, ConfigdriveError::TooSmall { .. }), "{e}");
    assert!(e.to_string().contains(&img.display().to_string()), "{e}");

    let missing = dir.path().join("no-such-disk");
    let e = write(&missing, 0, 4 * MIB, &plan(ConfigdriveFormat::Nocloud)).unwrap_err();
    assert!(matches!(e, ConfigdriveError::Open { .. }), "{e}");
    assert!(e.to_string().contains("no-such-disk"), "{e}");

    let mut big = plan(ConfigdriveFormat::Nocloud);
    big.user_data = Some("x".repeat(3 * MIB as usize));
    let e = write(&img, 0, 2 * MIB, &big).unwrap_err();
    assert!(matches!(e, ConfigdriveError::Layout { .. }), "{e}");
    assert!(e.to_string().contains("larger size"), "{e}");
}

/// A loop device over a file, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(file: &Path, sector: u32) -> Loop {
        let out = run(
            "losetup",
            &[
                "-f",
                "--show",
                "-b",
                &sector.to_string(),
                &file.display().to_string(),
            ],
        );
        Loop(out.stdout.trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = runner::run(
            "losetup",
            ["-d", &self.0],
            std::time::Duration::from_secs(30),
        );
    }
}

#[test]
fn on_a_4k_sector_loop_device_fat_uses_4k_sectors_and_stays_in_bounds() {
    let (_dir, img) = image(16 * MIB, 0);
    let dev = Loop::attach(&img, 4096);
    let dev_path = Path::new(&dev.0);
    let p = full_plan(ConfigdriveFormat::Nocloud);

    let e = write(dev_path, 8 * MIB, 16 * MIB, &p).unwrap_err();
    assert!(
        matches!(e, ConfigdriveError::OutOfBounds { len, .. } if len == 16 * MIB),
        "{e}"
    );

    write(dev_path, 0, 16 * MIB, &p).expect("write configdrive to the loop device");
    let id = blkid(dev_path, 0);
    assert_eq!(
        id.get("LABEL").map(String::as_str),
        Some("cidata"),
        "{id:?}"
    );
    assert_eq!(
        id.get("BLOCK_SIZE").map(String::as_str),
        Some("4096"),
        "FAT sector = device sector: {id:?}"
    );
    drop(dev);
    assert_fsck_clean(&img);
    assert_mtools_reads_back(&img, 0, &crate::configdrive::files(&p).expect("files"));
}
