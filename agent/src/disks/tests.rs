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

#[test]
fn a_disk_libblkid_cannot_fully_probe_is_listed_with_its_problem_and_matched() {
    let lo = Loop::with_stale_partition();
    let dev = lo.dev.to_str().unwrap();
    // The condition itself, seen by blkid: the partition's range lies past the end.
    let (ok, out) = tool(
        "blkid",
        &[
            "-p",
            "-O",
            &MIB.to_string(),
            "-S",
            &(60 * MIB).to_string(),
            dev,
        ],
    );
    assert!(!ok && out.contains("Invalid argument"), "blkid: {out}");

    let all = inventory().unwrap();
    let d = all
        .iter()
        .find(|d| d.path == lo.dev)
        .unwrap_or_else(|| panic!("{dev} listed in {all:#?}"));
    assert_eq!(d.size_bytes, 32 * MIB);
    assert!(
        d.problems
            .iter()
            .any(|p| p.contains(&format!("{dev}p1")) && p.contains("past the end")),
        "{:?}",
        d.problems
    );
    assert_eq!(d.partitions.len(), 1, "the stale partition is shown");
    let table = render_table(&all);
    assert!(
        table.contains(&format!("problem on {dev}: the kernel lists {dev}p1")),
        "{table}"
    );
    let by_path = hints(|h| h.path = Some(lo.dev.clone()));
    assert_eq!(select(&by_path, &all).unwrap().path, lo.dev);
    let by_size = hints(|h| {
        h.path = Some(lo.dev.clone());
        h.max_size = Some("32MiB".parse().unwrap());
    });
    assert_eq!(select(&by_size, &all).unwrap().path, lo.dev);
    let only = inventory_paths(std::slice::from_ref(&lo.dev)).unwrap();
    assert_eq!(only[0].problems, d.problems);
}

#[test]
fn two_paths_share_a_wwn_or_a_serial_and_size_and_are_listed_as_one_disk() {
    let without_wwn = |path: &str, gib: u64, serial: &str| {
        let mut d = disk(path, gib, serial);
        d.wwn = None;
        d
    };
    let mut b = disk("/dev/sdb", 500, "SN-A");
    b.wwn = Some("0x5000C500SN-A".into()); // the same WWN, written another way
    b.holders = vec!["dm-3".into()];
    let grouped = group_paths(vec![
        disk("/dev/sda", 500, "SN-A"),
        b,
        disk("/dev/sdc", 500, "SN-C"),
        without_wwn("/dev/sdd", 240, "SN-D"),
        without_wwn("/dev/sde", 240, "SN-D"),
        without_wwn("/dev/sdf", 100, "SN-E"),
        without_wwn("/dev/sdg", 200, "SN-E"),
        Disk {
            path: "/dev/loop0".into(),
            size_bytes: 100,
            ..Disk::default()
        },
        Disk {
            path: "/dev/loop1".into(),
            size_bytes: 100,
            ..Disk::default()
        },
    ]);
    let paths: Vec<(String, Vec<PathBuf>)> = grouped
        .iter()
        .map(|d| (d.path.display().to_string(), d.other_paths.clone()))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("/dev/sda".to_string(), vec![PathBuf::from("/dev/sdb")]),
            ("/dev/sdc".to_string(), vec![]),
            ("/dev/sdd".to_string(), vec![PathBuf::from("/dev/sde")]),
            ("/dev/sdf".to_string(), vec![]),
            ("/dev/sdg".to_string(), vec![]),
            ("/dev/loop0".to_string(), vec![]),
            ("/dev/loop1".to_string(), vec![]),
        ],
        "same serial, other size: two disks; no identity at all: never grouped"
    );
    assert_eq!(grouped[0].holders, vec!["dm-3".to_string()]);
    let why = multipath_refusal(&grouped[0]).unwrap();
    assert!(
        why.contains("/dev/sda and /dev/sdb are two paths to one disk (wwn 5000c500sn-a)")
            && why.contains("does not write through multipath"),
        "{why}"
    );
    assert!(multipath_refusal(&grouped[1]).is_none());
    let table = render_table(&grouped);
    assert!(
        table.contains("paths of /dev/sdd: /dev/sdd and /dev/sde are two paths to one disk (serial SN-D and size"),
        "{table}"
    );
}

#[test]
fn nvme_identities_are_read_from_sysfs_and_matched_by_a_wwn_hint() {
    use super::nvme::{parse_id, NvmeIds};
    // As the kernel prints them: EUI-64 as spaced bytes, NGUID and UUID as UUIDs.
    let sys = tempfile::tempdir().unwrap();
    std::fs::write(sys.path().join("eui"), "00 11 22 33 44 55 66 77\n").unwrap();
    std::fs::write(
        sys.path().join("nguid"),
        "01234567-89ab-cdef-0123-456789abcdef\n",
    )
    .unwrap();
    std::fs::write(
        sys.path().join("uuid"),
        "00000000-0000-0000-0000-000000000000\n",
    )
    .unwrap();
    let ids = NvmeIds::read(sys.path()).unwrap();
    assert_eq!(ids.eui64.as_deref(), Some("0011223344556677"));
    assert_eq!(
        ids.nguid.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(ids.uuid, None, "an all-zero UUID means none");
    assert_eq!(
        ids.as_wwn().as_deref(),
        Some("eui.0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        parse_id("EUI.0011223344556677").as_deref(),
        Some("0011223344556677")
    );
    assert_eq!(parse_id("not hex"), None);
    assert_eq!(NvmeIds::read(tempfile::tempdir().unwrap().path()), None);

    let mut fleet = fleet();
    fleet[3].wwn = Some("nvme.1b36-53".into());
    fleet[3].nvme = Some(ids);
    let by = |w: &str| {
        select(&hints(|h| h.wwn = Some(w.into())), &fleet)
            .map(|d| d.path.display().to_string())
            .unwrap_or_else(|e| e.to_string())
    };
    assert_eq!(by("eui.0011223344556677"), "/dev/sdd", "by EUI-64");
    assert_eq!(
        by("00:11:22:33:44:55:66:77"),
        "/dev/sdd",
        "separators ignored"
    );
    assert_eq!(
        by("01234567-89AB-CDEF-0123-456789ABCDEF"),
        "/dev/sdd",
        "by NGUID"
    );
    let miss = by("eui.ffffffffffffffff");
    assert!(
        miss.contains("(nor nvme eui64 0011223344556677, nguid 0123456789abcdef0123456789abcdef)"),
        "{miss}"
    );
    let table = render_table(&fleet);
    assert!(
        table.contains("nvme ids of /dev/sdd: eui64 0011223344556677, nguid 0123"),
        "{table}"
    );
}
