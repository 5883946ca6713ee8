//! Real GPTs on loop devices, checked by sgdisk and blockdev.

use super::*;
use crate::blockdev::testutil::{tool, Loop};
use crate::storage::partition::{place, type_guid, PartitionRequest};
use crate::units::MIB;
use std::io::Read;

fn req(name: &str, ty: &str, size: &str) -> PartitionRequest {
    PartitionRequest {
        name: name.into(),
        label: name.into(),
        type_guid: type_guid(ty).unwrap(),
        size: size.parse().unwrap(),
    }
}

fn sgdisk_verify_clean(dev: &Path) {
    let (ok, out) = tool("sgdisk", &["-v", dev.to_str().unwrap()]);
    assert!(
        ok && out.contains("No problems found"),
        "sgdisk -v {}:\n{out}",
        dev.display()
    );
}

fn getsize64(dev: &Path) -> u64 {
    let (ok, out) = tool("blockdev", &["--getsize64", dev.to_str().unwrap()]);
    assert!(ok, "{out}");
    out.trim().parse().unwrap()
}

fn read_at(dev: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(dev).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).unwrap();
    b
}

#[test]
fn write_table_512_and_4096_is_clean_for_sgdisk_and_makes_nodes() {
    for sector in [512u64, 4096] {
        let lo = Loop::new(128 * MIB, sector);
        let reqs = [
            req("bios", "bios-boot", "1MiB"),
            req("esp", "esp", "32MiB"),
            req("root", "linux", "rest"),
        ];
        let plan = place(&lo.dev, 128 * MIB, sector, &reqs).unwrap();
        let guid = write_table(&lo.dev, sector, &plan).unwrap();

        sgdisk_verify_clean(&lo.dev);
        let (ok, out) = tool("sgdisk", &["-p", lo.dev.to_str().unwrap()]);
        assert!(ok, "{out}");
        assert!(
            out.to_uppercase()
                .contains(&guid.to_string().to_uppercase()),
            "disk GUID in:\n{out}"
        );
        assert!(
            out.contains(&format!("Sector size (logical/physical): {sector}/")),
            "{out}"
        );
        for (p, code) in plan.iter().zip(["EF02", "EF00", "8300"]) {
            let line = out
                .lines()
                .find(|l| l.split_whitespace().next() == Some(&p.number.to_string()))
                .unwrap_or_else(|| panic!("partition {} in:\n{out}", p.number));
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cols[1], p.first_lba.to_string(), "{line}");
            assert_eq!(cols[2], p.last_lba.to_string(), "{line}");
            assert_eq!(cols[5], code, "{line}");
            assert_eq!(cols[6], p.label, "{line}");
            assert!(
                crate::blockdev::is_block_device(&p.path),
                "{} exists",
                p.path.display()
            );
            assert_eq!(getsize64(&p.path), (p.last_lba - p.first_lba + 1) * sector);
        }
        let back = read_table(&lo.dev).unwrap();
        assert_eq!(back, plan, "read_table returns what was written");
    }
}

#[test]
fn write_table_refuses_a_plan_for_another_sector_size() {
    let lo = Loop::new(64 * MIB, 4096);
    let plan = place(&lo.dev, 64 * MIB, 512, &[req("a", "linux", "1MiB")]).unwrap();
    let e = write_table(&lo.dev, 512, &plan).unwrap_err().to_string();
    assert!(e.contains("4096") && e.contains("512"), "{e}");
}

/// A 64 MiB disk image (made by sgdisk, not by us) written to a 256 MiB disk.
/// A 256 MiB loop disk holding a 64 MiB image whose table `sgdisk` made with `args`.
fn disk_with_image(args: &[&str]) -> Loop {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.raw");
    File::create(&img).unwrap().set_len(64 * MIB).unwrap();
    let path = img.to_str().unwrap();
    let (ok, out) = tool("sgdisk", &[args, &[path]].concat());
    assert!(ok, "{out}");
    let lo = Loop::new(256 * MIB, 512);
    let (ok, out) = tool(
        "dd",
        &[
            &format!("if={path}"),
            &format!("of={}", lo.dev.display()),
            "bs=1M",
            "conv=notrunc,fsync",
        ],
    );
    assert!(ok, "{out}");
    lo
}

/// One 40 MiB root partition, numbered 1.
fn imaged_disk() -> Loop {
    disk_with_image(&["-n", "1:2048:+40M", "-t", "1:8300", "-c", "1:rootfs"])
}

#[test]
fn disk_image_relocate_append_and_grow() {
    let lo = imaged_disk();
    let total = 256 * MIB / 512;
    // Before: sgdisk sees the backup header in the wrong place.
    let (_, out) = tool("sgdisk", &["-v", lo.dev.to_str().unwrap()]);
    assert!(
        !out.contains("No problems found"),
        "the raw image is not yet clean:\n{out}"
    );

    assert!(relocate_backup_gpt(&lo.dev).unwrap(), "relocated");
    sgdisk_verify_clean(&lo.dev);
    assert_eq!(
        &read_at(&lo.dev, (total - 1) * 512, 8),
        b"EFI PART",
        "backup header at the last LBA"
    );
    assert!(
        read_at(&lo.dev, 64 * MIB - 512, 512)
            .iter()
            .all(|&b| b == 0),
        "old backup header erased"
    );
    let (_, out) = tool("sgdisk", &["-p", lo.dev.to_str().unwrap()]);
    assert!(
        out.contains(&format!("last usable sector is {}", total - 34)),
        "{out}"
    );
    assert!(
        !relocate_backup_gpt(&lo.dev).unwrap(),
        "second call is a no-op"
    );
    assert!(crate::blockdev::is_block_device(
        &crate::blockdev::partition_node(&lo.dev, 1)
    ));

    let cd = append_partition(&lo.dev, 16 * MIB, &type_guid("linux").unwrap(), "config-2").unwrap();
    sgdisk_verify_clean(&lo.dev);
    assert_eq!(cd.number, 2);
    assert_eq!(
        cd.first_lba,
        2048 + 40 * 2048,
        "right after partition 1, aligned"
    );
    assert_eq!(getsize64(&cd.path), 16 * MIB);
    let (_, out) = tool("sgdisk", &["-i", "2", lo.dev.to_str().unwrap()]);
    assert!(out.contains("config-2"), "{out}");

    let (n, size) = grow_last_partition(&lo.dev, 0).unwrap().unwrap();
    assert_eq!(n, 2);
    assert_eq!(size, (total - 34 - cd.first_lba + 1) * 512);
    sgdisk_verify_clean(&lo.dev);
    assert_eq!(
        getsize64(&cd.path),
        size,
        "the kernel sees the grown partition"
    );
    assert_eq!(
        grow_last_partition(&lo.dev, 0).unwrap(),
        None,
        "already at the end"
    );

    let e = append_partition(&lo.dev, MIB, &type_guid("linux").unwrap(), "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not fit") && e.contains("'x'"), "{e}");
}

#[test]
fn data_partitions_appended_after_an_image_leave_room_for_the_configdrive() {
    let lo = imaged_disk();
    assert!(relocate_backup_gpt(&lo.dev).unwrap());
    let reserve = 64 * MIB;
    let placed = append_partitions(
        &lo.dev,
        &[
            req("vault", "luks", "rest"),
            req("scratch", "linux", "16MiB"),
        ],
        reserve,
    )
    .unwrap();
    sgdisk_verify_clean(&lo.dev);
    let numbers: Vec<(String, u32)> = placed.iter().map(|p| (p.name.clone(), p.number)).collect();
    assert_eq!(
        numbers,
        [("vault".to_string(), 2), ("scratch".to_string(), 3)],
        "after the image's partition 1"
    );
    let (vault, scratch) = (&placed[0], &placed[1]);
    assert_eq!(
        vault.first_lba,
        2048 + 40 * 2048,
        "right after the image's partition, aligned"
    );
    assert_eq!(
        scratch.first_lba,
        vault.last_lba + 1,
        "the rest ends on a MiB boundary"
    );
    assert_eq!(getsize64(&scratch.path), 16 * MIB);
    assert_eq!(
        getsize64(&vault.path),
        (scratch.first_lba - vault.first_lba) * 512
    );
    let (_, out) = tool("sgdisk", &["-i", "2", lo.dev.to_str().unwrap()]);
    assert!(
        out.contains("CA7D7CCB-63ED-4C53-861C-1742536059CC") && out.contains("'vault'"),
        "{out}"
    );
    // The configdrive fits in what was kept, and nothing more does.
    let cd = append_partition(&lo.dev, reserve, &type_guid("linux").unwrap(), "cidata").unwrap();
    assert_eq!(cd.number, 4);
    sgdisk_verify_clean(&lo.dev);
    let e = append_partition(&lo.dev, MIB, &type_guid("linux").unwrap(), "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not fit"), "{e}");
}

#[test]
fn appended_partitions_that_do_not_fit_are_refused_before_the_table_changes() {
    let lo = imaged_disk();
    assert!(relocate_backup_gpt(&lo.dev).unwrap());
    let before = read_table(&lo.dev).unwrap();
    let e = append_partitions(
        &lo.dev,
        &[req("a", "linux", "100MiB"), req("b", "linux", "200MiB")],
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("partition 'b' (200.0 MiB) does not fit after the last partition"),
        "{e}"
    );
    let e = append_partitions(&lo.dev, &[req("a", "linux", "rest")], 300 * MIB)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'a' (the rest) does not fit"), "{e}");
    assert_eq!(
        read_table(&lo.dev).unwrap(),
        before,
        "the image's table is untouched"
    );
}

/// A disk holding an image numbered as stock cloud images are: 14 BIOS boot, 15 ESP,
/// 1 root, slots 2-13 empty.
fn cloud_imaged_disk() -> Loop {
    disk_with_image(&[
        "-n",
        "14:2048:+4M",
        "-t",
        "14:ef02",
        "-c",
        "14:bios",
        "-n",
        "15:0:+8M",
        "-t",
        "15:ef00",
        "-c",
        "15:esp",
        "-n",
        "1:0:0",
        "-t",
        "1:8300",
        "-c",
        "1:cloudimg-rootfs",
        "-A",
        "1:set:2",
    ])
}

/// `sgdisk -i N`: everything it says about partition N.
fn sgdisk_info(dev: &Path, n: u32) -> String {
    tool("sgdisk", &["-i", &n.to_string(), dev.to_str().unwrap()]).1
}

#[test]
fn a_cloud_image_numbered_with_gaps_keeps_its_numbers() {
    let lo = cloud_imaged_disk();
    let before: Vec<String> = [1, 14, 15]
        .iter()
        .map(|&n| sgdisk_info(&lo.dev, n))
        .collect();
    assert!(relocate_backup_gpt(&lo.dev).unwrap());
    sgdisk_verify_clean(&lo.dev);
    // Same slots, GUIDs, sectors, names and attributes as the image had.
    for (i, n) in [1, 14, 15].into_iter().enumerate() {
        assert_eq!(sgdisk_info(&lo.dev, n), before[i], "partition {n}");
    }
    let numbers: Vec<u32> = read_table(&lo.dev)
        .unwrap()
        .iter()
        .map(|p| p.number)
        .collect();
    assert_eq!(numbers, [1, 14, 15]);
    for n in [1, 14, 15] {
        assert!(
            crate::blockdev::is_block_device(&crate::blockdev::partition_node(&lo.dev, n)),
            "node of {n}"
        );
    }
    // Appended partitions take the free slots, as sgdisk would number them.
    let cd = append_partition(&lo.dev, 16 * MIB, &type_guid("linux").unwrap(), "cidata").unwrap();
    assert_eq!(cd.number, 2);
    sgdisk_verify_clean(&lo.dev);
    let (n, _) = grow_last_partition(&lo.dev, 0).unwrap().unwrap();
    assert_eq!(n, 2, "the partition that ends last grows");
    sgdisk_verify_clean(&lo.dev);
    for (i, n) in [1, 14, 15].into_iter().enumerate() {
        assert_eq!(
            sgdisk_info(&lo.dev, n),
            before[i],
            "partition {n} after append and grow"
        );
    }
}

#[test]
fn relocate_without_gpt_is_a_no_op() {
    let lo = Loop::new(64 * MIB, 512);
    assert!(!relocate_backup_gpt(&lo.dev).unwrap());
    assert!(read_table(&lo.dev).is_err());
}

/// A 1 MiB GPT image file (sgdisk) whose primary header gets `patch` applied at header
/// offset `at`, its CRC fixed so the header stays valid.
fn patched_gpt(at: usize, patch: &[u8]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(MIB).unwrap();
    let out = std::process::Command::new("sgdisk")
        .args(["-a", "8", "-n", "1:40:+256K", "-n", "2:0:0"])
        .arg(f.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut h = [0u8; 92];
    std::os::unix::fs::FileExt::read_exact_at(f.as_file(), &mut h, 512).unwrap();
    h[at..at + patch.len()].copy_from_slice(patch);
    h[16..20].fill(0);
    let mut crc = flate2::Crc::new();
    crc.update(&h);
    h[16..20].copy_from_slice(&crc.sum().to_le_bytes());
    std::os::unix::fs::FileExt::write_all_at(f.as_file(), &h, 512).unwrap();
    f
}

#[test]
fn unusual_entry_sizes_and_counts_are_errors_not_a_panic_or_an_endless_read() {
    // Found by fuzzing: the gpt crate asserts 128-byte entries.
    let f = patched_gpt(84, &256u32.to_le_bytes());
    let e = read_table(f.path()).unwrap_err().to_string();
    assert!(e.contains("256-byte partition entries"), "{e}");
    let f = patched_gpt(80, &(1u32 << 31).to_le_bytes());
    let e = read_table(f.path()).unwrap_err().to_string();
    assert!(e.contains("claims 2147483648 partition entries"), "{e}");
    // The unpatched table still reads.
    let f = patched_gpt(84, &128u32.to_le_bytes());
    assert_eq!(read_table(f.path()).unwrap().len(), 2);
}

#[test]
fn gpt_entries_give_what_a_boot_entry_names_an_esp_by() {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(64 * MIB).unwrap();
    let esp_guid = "3F0E5F1A-6C1B-4D5E-9A7B-1C2D3E4F5A6B";
    let out = std::process::Command::new("sgdisk")
        .args(["-n", "15:2048:+8M", "-t", "15:ef00", "-u"])
        .arg(format!("15:{esp_guid}"))
        .args(["-n", "1:0:0", "-t", "1:8300"])
        .arg(f.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries = gpt_entries(f.path()).unwrap();
    let esp = entries.iter().find(|e| e.number == 15).unwrap();
    assert_eq!(
        esp.type_guid,
        uuid::uuid!("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
    );
    assert_eq!(esp.unique_guid, uuid::Uuid::parse_str(esp_guid).unwrap());
    assert_eq!((esp.first_lba, esp.last_lba), (2048, 2048 + 8 * 2048 - 1));
    // sgdisk, reading the same table, agrees.
    let info = sgdisk_info(f.path(), 15);
    assert!(
        info.contains(&format!("Partition unique GUID: {esp_guid}")),
        "{info}"
    );
    assert_eq!(entries.len(), 2);
    let blank = tempfile::NamedTempFile::new().unwrap();
    blank.as_file().set_len(MIB).unwrap();
    assert!(gpt_entries(blank.path()).unwrap().is_empty());
}
