use super::*;
use crate::blockdev::testutil::{tool, Loop};
use crate::units::{GIB, MIB};

fn disk(path: &str, gib: u64, serial: &str) -> Disk {
    Disk {
        path: path.into(),
        size_bytes: gib * GIB,
        logical_sector: 512,
        physical_sector: 4096,
        model: Some("QEMU HARDDISK".into()),
        vendor: Some("ATA".into()),
        serial: Some(serial.into()),
        wwn: Some(format!("naa.5000c500{serial}")),
        by_path: vec![format!("pci-0000:00:1f.2-ata-{}", &path[path.len() - 1..])],
        ..Disk::default()
    }
}

fn fleet() -> Vec<Disk> {
    let mut hdd = disk("/dev/sdc", 2000, "SN-C");
    hdd.rotational = true;
    hdd.model = Some("ST2000".into());
    vec![
        disk("/dev/sda", 500, "SN-A"),
        disk("/dev/sdb", 500, "SN-B"),
        hdd,
        disk("/dev/sdd", 240, "SN-D"),
    ]
}

fn hints(f: impl FnOnce(&mut Hints)) -> Hints {
    let mut h = Hints::default();
    f(&mut h);
    h
}

fn pick(h: &Hints) -> String {
    let disks = fleet();
    select(h, &disks)
        .map(|d| d.path.display().to_string())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn select_by_each_hint() {
    assert_eq!(
        pick(&hints(|h| h.serial = Some(" SN-B ".into()))),
        "/dev/sdb"
    );
    assert_eq!(
        pick(&hints(|h| h.path = Some("/dev/sda".into()))),
        "/dev/sda"
    );
    assert_eq!(
        pick(&hints(|h| h.wwn = Some("0x5000C500SN-A".into()))),
        "/dev/sda",
        "wwn prefix and case normalised"
    );
    assert_eq!(
        pick(&hints(|h| h.model = Some("st2000".into()))),
        "/dev/sdc",
        "model is case-insensitive"
    );
    assert_eq!(pick(&hints(|h| h.rotational = Some(true))), "/dev/sdc");
    assert_eq!(
        pick(&hints(
            |h| h.by_path = Some("/dev/disk/by-path/pci-0000:00:1f.2-ata-d".into())
        )),
        "/dev/sdd"
    );
    assert_eq!(
        pick(&hints(|h| h.by_path = Some("pci-0000:00:1f.2-ata-d".into()))),
        "/dev/sdd"
    );
    assert_eq!(
        pick(&hints(|h| h.min_size = Some(Bytes(1000 * GIB)))),
        "/dev/sdc"
    );
    assert_eq!(
        pick(&hints(|h| h.max_size = Some(Bytes(240 * GIB)))),
        "/dev/sdd",
        "max_size is inclusive"
    );
    assert_eq!(
        pick(&hints(|h| {
            h.min_size = Some(Bytes(500 * GIB));
            h.max_size = Some(Bytes(500 * GIB));
            h.vendor = Some("ata".into());
            h.serial = Some("SN-A".into());
        })),
        "/dev/sda",
        "min/max inclusive, several hints together"
    );
}

#[test]
fn select_follows_symlinks_in_path() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real");
    std::fs::write(&target, b"").unwrap();
    let link = dir.path().join("by-id-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mut disks = fleet();
    disks[1].path = target.clone();
    let h = hints(|h| h.path = Some(link));
    assert_eq!(select(&h, &disks).unwrap().path, target);
}

#[test]
fn smallest_picks_the_smallest_match_and_ties_are_ambiguous() {
    assert_eq!(pick(&hints(|h| h.smallest = true)), "/dev/sdd");
    let h = hints(|h| {
        h.smallest = true;
        h.min_size = Some(Bytes(300 * GIB));
    });
    let e = pick(&h);
    assert!(
        e.starts_with("2 disks match {min_size: 300GiB, smallest: true}"),
        "{e}"
    );
    assert!(
        e.contains("/dev/sda 500.0 GiB model QEMU HARDDISK serial SN-A: matches"),
        "{e}"
    );
    assert!(
        e.contains("/dev/sdc 2.0 TiB model ST2000 serial SN-C: matches, but is not the smallest"),
        "{e}"
    );
    assert!(
        e.contains(
            "/dev/sdd 240.0 GiB model QEMU HARDDISK serial SN-D: size 240.0 GiB < min_size 300GiB"
        ),
        "{e}"
    );
    let h = hints(|h| {
        h.smallest = true;
        h.min_size = Some(Bytes(600 * GIB));
    });
    assert_eq!(pick(&h), "/dev/sdc");
}

#[test]
fn no_match_lists_every_candidate_with_the_reason() {
    let e = pick(&hints(|h| h.serial = Some("SN-X".into())));
    assert!(e.starts_with("no disk matches {serial: SN-X}:"), "{e}");
    for (p, sn) in [
        ("/dev/sda", "SN-A"),
        ("/dev/sdb", "SN-B"),
        ("/dev/sdc", "SN-C"),
        ("/dev/sdd", "SN-D"),
    ] {
        assert!(
            e.contains(&format!("{p} ")) && e.contains(&format!("serial {sn} ≠ SN-X")),
            "{p} in {e}"
        );
    }
    assert_eq!(e.lines().count(), 5, "a header line and one per disk:\n{e}");

    let mut disks = fleet();
    disks[0].serial = None;
    let e = select(&hints(|h| h.serial = Some("SN-A".into())), &disks)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/dev/sda 500.0 GiB model QEMU HARDDISK: no serial (want SN-A)"),
        "{e}"
    );

    let e = select(&hints(|h| h.rotational = Some(true)), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no disks found"), "{e}");
}

#[test]
fn ambiguity_without_hints_and_explanations() {
    let e = pick(&Hints::default());
    assert!(e.starts_with("4 disks match {}"), "{e}");
    let disks = fleet();
    let h = hints(|h| {
        h.serial = Some("SN-A".into());
        h.min_size = Some(Bytes(4 * GIB));
    });
    assert_eq!(
        explain(&h, select(&h, &disks).unwrap()),
        "serial SN-A, size 500.0 GiB ≥ 4GiB"
    );
}

#[test]
fn render_table_has_a_line_per_disk() {
    let mut disks = fleet();
    disks[0].signatures.push(Signature {
        kind: "gpt".into(),
        ..Signature::default()
    });
    disks[0].partitions.push(PartitionInfo {
        number: 1,
        signatures: vec![Signature {
            kind: "ext4".into(),
            ..Signature::default()
        }],
        ..PartitionInfo::default()
    });
    disks[0].mounts.push("/boot".into());
    let t = render_table(&disks);
    assert_eq!(t.lines().count(), 5, "{t}");
    let a = t.lines().nth(1).unwrap();
    for want in [
        "/dev/sda",
        "500.0 GiB",
        "512/4096",
        "QEMU_HARDDISK",
        "SN-A",
        "gpt,1:ext4",
        "/boot",
    ] {
        assert!(a.contains(want), "{want} in {a}");
    }
}

#[test]
fn inventory_sees_a_loop_device_with_its_table_and_signatures() {
    let lo = Loop::new(96 * MIB, 4096);
    let dev = lo.dev.to_str().unwrap();
    let (ok, out) = tool("sgdisk", &["-n", "1:256:+16M", "-t", "1:8300", dev]);
    assert!(ok, "{out}");
    // A filesystem inside partition 1 that the kernel does not know about (no BLKPG):
    // the inventory must find it through the table libblkid reads.
    let part = tempfile::tempdir().unwrap();
    let img = part.path().join("p1");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 * MIB)
        .unwrap();
    let (ok, out) = tool(
        "mkfs.ext4",
        &["-q", "-b", "4096", "-L", "inv-test", img.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let (ok, out) = tool(
        "dd",
        &[
            &format!("if={}", img.display()),
            &format!("of={dev}"),
            "bs=1M",
            "seek=1",
            "conv=notrunc,fsync",
        ],
    );
    assert!(ok, "{out}");

    let all = inventory().unwrap();
    let d = all
        .iter()
        .find(|d| d.path == lo.dev)
        .unwrap_or_else(|| panic!("{dev} in {all:#?}"));
    assert_eq!(d.size_bytes, 96 * MIB);
    assert_eq!(d.logical_sector, 4096);
    assert!(
        d.signatures.iter().any(|s| s.kind == "gpt"),
        "{:?}",
        d.signatures
    );
    assert_eq!(d.partitions.len(), 1, "{:?}", d.partitions);
    let p = &d.partitions[0];
    assert_eq!((p.number, p.start_sector, p.size_bytes), (1, 256, 16 * MIB));
    let ext4 = p
        .signatures
        .iter()
        .find(|s| s.kind == "ext4")
        .unwrap_or_else(|| panic!("{:?}", p.signatures));
    assert_eq!(ext4.label.as_deref(), Some("inv-test"));
    assert_eq!(
        ext4.offset,
        Some(MIB + 0x438),
        "ext4 magic offset, absolute on the disk"
    );
    assert!(
        !all.iter()
            .any(|d| d.path.to_string_lossy().contains("zram")),
        "zram skipped"
    );

    let only = inventory_paths(std::slice::from_ref(&lo.dev)).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].path, lo.dev);
}
