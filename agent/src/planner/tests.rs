//! Planner tests with a simple test backend (selection by serial/size, 1 MiB placement).

use super::*;
use crate::config::tests_support::{DOC1, DOC2};
use crate::disks::{Hints, PartitionInfo, Signature};
use crate::plan::PartitionPlan;
use crate::plan::Step;
use crate::storage::partition::PartitionRequest;
use crate::units::{SizeSpec, GIB, MIB};
use std::path::Path;
use std::path::PathBuf;

/// Selection by serial, min_size and smallest; placement at 1 MiB alignment with `rest`
/// last, as the real ones do.
pub(super) struct TestBackend;

impl Backend for TestBackend {
    fn select<'a>(&self, h: &Hints, disks: &'a [Disk]) -> Result<&'a Disk, String> {
        let mut m: Vec<&Disk> = disks
            .iter()
            .filter(|d| {
                h.serial
                    .as_ref()
                    .is_none_or(|s| d.serial.as_ref() == Some(s))
            })
            .filter(|d| h.min_size.is_none_or(|b| d.size_bytes >= b.0))
            .collect();
        m.sort_by_key(|d| d.size_bytes);
        match m.len() {
            0 => Err("no disk matches".into()),
            1 => Ok(m[0]),
            _ if h.smallest => Ok(m[0]),
            n => Err(format!("{n} disks match")),
        }
    }
    fn place(
        &self,
        path: &Path,
        bytes: u64,
        sector: u64,
        reqs: &[PartitionRequest],
    ) -> Result<Vec<PartitionPlan>, String> {
        let align = MIB / sector;
        let end = bytes / sector - 34 * 4096 / sector;
        let mut lba = align;
        let mut out = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            let len = match r.size {
                SizeSpec::Bytes(b) => b.0.div_ceil(sector),
                SizeSpec::Rest => (end - lba) / align * align,
            };
            if lba + len > end {
                return Err(format!("{} does not fit", r.name));
            }
            out.push(PartitionPlan {
                name: r.name.clone(),
                number: i as u32 + 1,
                label: r.label.clone(),
                type_guid: r.type_guid.clone(),
                first_lba: lba,
                last_lba: lba + len - 1,
                path: PathBuf::from(format!("{}{}", path.display(), i + 1)),
            });
            lba = (lba + len).div_ceil(align) * align;
        }
        Ok(out)
    }
}

pub(super) fn disk(path: &str, size: u64, sector: u64, serial: &str) -> Disk {
    Disk {
        path: path.into(),
        size_bytes: size,
        logical_sector: sector,
        physical_sector: sector,
        serial: Some(serial.into()),
        model: Some("QEMU HARDDISK".into()),
        ..Default::default()
    }
}

/// Plans for an x86_64 machine, wherever the tests run (they also run on aarch64).
fn opts() -> PlanOptions {
    PlanOptions {
        machine_id: None,
        allow_placeholders: true,
        insecure: false,
        arch: Some(crate::arch::Arch::X86_64),
    }
}

pub(super) fn plan_of(text: &str, inv: &[Disk]) -> Result<Plan, PlanError> {
    build_with(
        &crate::config::parse(text).unwrap(),
        inv,
        &opts(),
        &TestBackend,
    )
}

/// The finalize step of a rootfs plan.
pub(super) fn finalize_of(p: &Plan) -> &crate::plan::FinalizePlan {
    p.steps
        .iter()
        .find_map(|s| match s {
            Step::Finalize(f) => Some(f),
            _ => None,
        })
        .expect("a rootfs plan finalizes")
}

fn names(p: &Plan) -> Vec<String> {
    p.steps.iter().map(Step::name).collect()
}

#[test]
fn doc1_writes_a_whole_disk_image_without_partitioning() {
    let mut d = disk("/dev/sda", 8 * GIB, 512, "S1");
    d.signatures = vec![Signature {
        kind: "gpt".into(),
        ..Default::default()
    }];
    d.partitions = vec![PartitionInfo {
        path: "/dev/sda1".into(),
        number: 1,
        start_sector: 2048,
        size_bytes: GIB,
        signatures: vec![Signature {
            kind: "ext4".into(),
            label: Some("old-root".into()),
            ..Default::default()
        }],
    }];
    let small = disk("/dev/sdb", 2 * GIB, 512, "S2");
    let p = plan_of(DOC1, &[small, d]).unwrap();
    assert_eq!(
        names(&p),
        ["wipe:root", "write-image", "configdrive", "boot-entries"]
    );
    assert_eq!(
        p.disks[0].path,
        PathBuf::from("/dev/sda"),
        "the smallest disk of at least 4GiB"
    );
    assert!(p.disks[0]
        .destroys
        .iter()
        .any(|x| x.contains("gpt signature")));
    assert!(p.disks[0]
        .destroys
        .iter()
        .any(|x| x
            .contains("partition 1 (/dev/sda1, 1.0 GiB): ext4 signature labelled \"old-root\"")));
    assert_eq!(
        p.host.instance_id, "web-01",
        "meta_data's instance-id is the host's"
    );
    let Step::Configdrive(cd) = &p.steps[2] else {
        panic!()
    };
    assert_eq!(
        (cd.partition.as_ref(), cd.disk_path.to_str()),
        (None, Some("/dev/sda"))
    );
    assert_eq!(cd.meta_data["local-hostname"], "web-01");
    let Step::WriteImage(img) = &p.steps[1] else {
        panic!()
    };
    assert_eq!(img.target_path, PathBuf::from("/dev/sda"));
    assert_eq!(img.urls, ["http://10.0.2.2:8080/images/web.raw.zst"]);
    let text = p.render_text();
    for line in [
        "WILL BE DESTROYED",
        "/dev/sda",
        "serial S1",
        "verified by sha256 3a7bd3e2",
        "Finish: reboot",
        "token <redacted>",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert!(!text.contains("s3cr3t-token"));
    let json = serde_json::to_string_pretty(&p).unwrap();
    assert!(!json.contains("s3cr3t-token") && json.contains("<redacted>"));
}

fn doc2_inventory() -> Vec<Disk> {
    vec![
        disk("/dev/sda", 16 * GIB, 512, "SN-A-0001"),
        disk("/dev/nvme0n1p", 16 * GIB, 4096, "SN-B-0002"),
    ]
}

#[test]
fn doc2_plans_the_full_stack_in_order_on_512_and_4096_byte_sectors() {
    let p = plan_of(DOC2, &doc2_inventory()).unwrap();
    let n = names(&p);
    assert_eq!(
        n[..7],
        [
            "wipe:a",
            "wipe:b",
            "partition:a",
            "partition:b",
            "raid:md-boot",
            "raid:md-root",
            "luks:luks-root"
        ]
    );
    assert_eq!(n[7], "lvm:vg0");
    assert!(
        n.contains(&"mkfs:/var".to_string())
            && n.contains(&"mkfs:swap".to_string())
            && n.contains(&"mkfs:b-esp".to_string())
    );
    let mounts: Vec<&str> = n.iter().filter_map(|s| s.strip_prefix("mount:")).collect();
    assert_eq!(
        mounts,
        [
            "/",
            "/boot",
            "/home",
            "/tmp",
            "/var",
            "/boot/efi",
            "/var/log",
            "/var/tmp",
            "/var/log/audit"
        ]
    );
    assert_eq!(
        n[n.len() - 5..n.len() - 1],
        ["write-image", "finalize", "configdrive", "configdrive:b"],
        "a mirrored root carries the configdrive on each disk"
    );
    let Some(Step::BootEntries(be)) = p.steps.last() else {
        panic!("boot entries come last")
    };
    let on: Vec<(&str, &str)> = be
        .disks
        .iter()
        .map(|d| (d.disk.as_str(), d.identity.as_str()))
        .collect();
    assert_eq!(
        on,
        [("a", "serial SN-A-0001"), ("b", "serial SN-B-0002")],
        "an entry for the ESP of each disk of the mirror"
    );

    let Step::Partition { partitions: a, .. } = &p.steps[2] else {
        panic!()
    };
    let Step::Partition {
        partitions: b,
        logical_sector: 4096,
        ..
    } = &p.steps[3]
    else {
        panic!()
    };
    // 512-byte sectors: 1 MiB = 2048 sectors.
    assert_eq!(
        (a[0].name.as_str(), a[0].first_lba, a[0].last_lba),
        ("a-bios", 2048, 4095)
    );
    assert_eq!(
        (a[1].name.as_str(), a[1].first_lba, a[1].last_lba),
        ("a-esp", 4096, 4096 + 512 * 2048 - 1)
    );
    // 4096-byte sectors: 1 MiB = 256 sectors.
    assert_eq!(
        (b[0].name.as_str(), b[0].first_lba, b[0].last_lba),
        ("b-bios", 256, 511)
    );
    assert_eq!((b[1].first_lba, b[1].last_lba), (512, 512 + 128 * 1024 - 1));
    // The configdrive partition sits before the partition taking the rest, on both disks
    // of the mirror.
    let a_names: Vec<&str> = a.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(
        a_names,
        ["a-bios", "a-esp", "a-boot", "_configdrive", "a-root"]
    );
    assert_eq!(a[3].label, "cidata");
    let b_names: Vec<&str> = b.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(
        b_names,
        ["b-bios", "b-esp", "b-boot", "_configdrive", "b-root"]
    );
    assert_eq!(b[3].label, "cidata");

    let Step::Raid(boot) = &p.steps[4] else {
        panic!()
    };
    assert_eq!(
        (boot.metadata.as_str(), boot.path.to_str().unwrap()),
        ("1.0", "/dev/md/md-boot")
    );
    assert_eq!(
        boot.members,
        [PathBuf::from("/dev/sda3"), PathBuf::from("/dev/nvme0n1p3")]
    );
    let Step::Luks(l) = &p.steps[6] else { panic!() };
    assert_eq!(
        (
            l.device.to_str().unwrap(),
            l.path.to_str().unwrap(),
            l.threshold
        ),
        ("/dev/md/md-root", "/dev/mapper/luks-root", 2)
    );
    let Step::Lvm(v) = &p.steps[7] else { panic!() };
    assert_eq!(v.pvs, [PathBuf::from("/dev/mapper/luks-root")]);
    let audit = v
        .volumes
        .iter()
        .find(|x| x.name == "var_log_audit")
        .unwrap();
    assert_eq!(
        (audit.path.to_str().unwrap(), audit.size_bytes),
        ("/dev/vg0/var_log_audit", Some(512 * MIB))
    );
    let Some(Step::Finalize(f)) = p.steps.iter().find(|s| matches!(s, Step::Finalize(_))) else {
        panic!()
    };
    assert!(
        f.fstab
            .iter()
            .any(|l| l.ends_with(" /var/log/audit xfs nodev,nosuid,noexec 0 0")),
        "{:?}",
        f.fstab
    );
    assert!(f
        .fstab
        .iter()
        .any(|l| l.ends_with(" none swap defaults 0 0")));
    assert!(f.crypttab[0].starts_with("luks-root UUID="));
    assert_eq!(
        f.boot_disks,
        [PathBuf::from("/dev/sda"), PathBuf::from("/dev/nvme0n1p")]
    );
    assert_eq!(f.esp_copies, [PathBuf::from("/dev/nvme0n1p2")]);
    let Some(Step::WriteImage(img)) = p.steps.iter().find(|s| matches!(s, Step::WriteImage(_)))
    else {
        panic!()
    };
    assert_eq!(
        (img.target_disk.as_str(), img.target_path.to_str().unwrap()),
        ("a", "/dev/vg0/root")
    );
    let cds: Vec<&ConfigdrivePlan> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Configdrive(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(cds.len(), 2, "one configdrive per disk of the mirror");
    assert_eq!(cds[0].partition, Some(PathBuf::from("/dev/sda4")));
    assert_eq!(cds[1].partition, Some(PathBuf::from("/dev/nvme0n1p4")));
    assert_eq!(cds[0].instance_id, cds[1].instance_id);
    assert!(
        p.host.instance_id.starts_with("iid-db-17-")
            && p.host.instance_id.len() == "iid-db-17-".len() + 12
    );

    let text = p.render_text();
    for line in [
        "a-esp",
        "esp",
        "4096-byte sectors",
        "RAID1 /dev/md/md-root",
        "unlocked by 2 of: tang http://10.0.2.2:7500",
        "var_log_audit",
        "Finish: reboot",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert!(!text.contains("another-token"));
}

#[test]
fn generated_ids_are_stable_per_host_and_differ_between_hosts() {
    let doc = crate::config::parse(DOC2).unwrap();
    let a = build_with(&doc, &doc2_inventory(), &opts(), &TestBackend).unwrap();
    let b = build_with(&doc, &doc2_inventory(), &opts(), &TestBackend).unwrap();
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&b).unwrap()
    );
    let other = PlanOptions {
        machine_id: Some("0123456789abcdef".into()),
        allow_placeholders: true,
        insecure: false,
        arch: Some(crate::arch::Arch::X86_64),
    };
    let c = build_with(&doc, &doc2_inventory(), &other, &TestBackend).unwrap();
    assert_ne!(a.host.instance_id, c.host.instance_id);
    let uuid = |p: &Plan| {
        p.steps.iter().find_map(|s| {
            if let Step::Raid(r) = s {
                Some(r.uuid.clone())
            } else {
                None
            }
        })
    };
    assert_ne!(uuid(&a), uuid(&c));
}

#[test]
fn the_explicit_expansion_plans_the_same() {
    // Expanded for the machine `opts()` plans for.
    let doc = crate::config::parse(DOC2)
        .unwrap()
        .with_image_arch(crate::arch::Arch::X86_64);
    let explicit = crate::config::expand(&doc).unwrap();
    let yaml = serde_norway::to_string(&explicit).unwrap();
    let again = crate::config::parse(&yaml).unwrap();
    let p1 = build_with(&doc, &doc2_inventory(), &opts(), &TestBackend).unwrap();
    let p2 = build_with(&again, &doc2_inventory(), &opts(), &TestBackend).unwrap();
    assert_eq!(
        serde_json::to_value(&p1).unwrap(),
        serde_json::to_value(&p2).unwrap()
    );
}

#[test]
fn plan_errors_name_the_path() {
    // Too small for doc 2's volumes.
    let small = vec![
        disk("/dev/sda", 6 * GIB, 512, "SN-A-0001"),
        disk("/dev/sdb", 6 * GIB, 512, "SN-B-0002"),
    ];
    let e = plan_of(DOC2, &small).unwrap_err();
    assert!(
        matches!(&e, PlanError::Layout { path, .. } if path.starts_with("storage.layout.lvm[")),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("does not fit in volume group \"vg0\""),
        "{e}"
    );
    // A partition larger than the disk.
    let big = "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}, {name: q, disk: a, size: 20GiB}]}";
    let e = plan_of(big, &[disk("/dev/sda", 8 * GIB, 512, "X")]).unwrap_err();
    assert_eq!(
        e.to_string().split(": ").next(),
        Some("storage.partitions[1].size"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("does not fit on disk \"a\" (/dev/sda, 8.0 GiB)"),
        "{e}"
    );
    // Selection failure.
    let e = plan_of(DOC2, &[disk("/dev/sda", 16 * GIB, 512, "SN-A-0001")]).unwrap_err();
    assert_eq!(e.to_string(), "disks[1].match: no disk matches");
    // Two names, one disk.
    let twice =
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]";
    let e = plan_of(twice, &[disk("/dev/sda", 8 * GIB, 512, "X")]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("disks[1].match: chooses /dev/sda, which disks[0] (\"a\") already chose"),
        "{e}"
    );
    // Placeholders are refused unless asked for.
    let strict = PlanOptions::default();
    let e = build_with(
        &crate::config::parse(DOC2).unwrap(),
        &doc2_inventory(),
        &strict,
        &TestBackend,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("image.sha512: <128 hex digits> is a placeholder"),
        "{e}"
    );
}

#[test]
fn recovery_passphrase_never_shows() {
    let doc = "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\n\
        storage: {layout: {luks: {recovery_passphrase: hunter2-horse}, root: {type: xfs}}}\n\
        image: {url: 'http://x/r.tar', sha256: '<x>', format: rootfs}";
    let p = plan_of(doc, &[disk("/dev/vda", 8 * GIB, 512, "X")]).unwrap();
    let text = p.render_text();
    assert!(
        text.contains("plus a recovery passphrase (not shown)"),
        "{text}"
    );
    let json = serde_json::to_string(&p).unwrap();
    assert!(!text.contains("hunter2") && !json.contains("hunter2"));
    let Some(Step::Luks(l)) = p.steps.iter().find(|s| matches!(s, Step::Luks(_))) else {
        panic!()
    };
    assert_eq!(
        l.recovery_passphrase.as_ref().unwrap().expose(),
        "hunter2-horse",
        "the engine still gets it"
    );
    assert_eq!(l.device, PathBuf::from("/dev/vda4"));
}

#[test]
fn inventory_json_loads_back() {
    let mut d = disk("/dev/sda", 8 * GIB, 512, "S1");
    d.partitions = vec![PartitionInfo {
        path: "/dev/sda1".into(),
        number: 1,
        ..Default::default()
    }];
    let json = serde_json::to_string(&vec![d]).unwrap();
    let back = load_inventory(&json).unwrap();
    assert_eq!(
        (back[0].path.to_str(), back[0].partitions[0].number),
        (Some("/dev/sda"), 1)
    );
    assert!(load_inventory("[{\"size_bytes\": \"big\"}]")
        .unwrap_err()
        .to_string()
        .contains("[0].size_bytes"));
}

#[test]
fn a_host_inventory_loads_its_disks() {
    let inv = crate::inventory::Inventory {
        schema_version: crate::inventory::SCHEMA_VERSION,
        disks: vec![disk("/dev/nvme0n1", 8 * GIB, 512, "S1")],
        ..Default::default()
    };
    let back = load_inventory(&serde_json::to_string(&inv).unwrap()).unwrap();
    assert_eq!(back, inv.disks);
    let bad = r#"{"schema_version": 1, "disks": [{"size_bytes": "big"}]}"#;
    let e = load_inventory(bad).unwrap_err().to_string();
    assert!(e.contains("disks[0].size_bytes"), "{e}");
}

#[test]
fn data_partitions_beside_a_disk_image_are_added_after_it_then_formatted() {
    let doc = r#"version: 1
host: { hostname: web-02 }
disks:
  - name: root
    match: { smallest: true, min_size: 4GiB }
storage:
  partitions:
    - { name: scratch, disk: root, size: 1GiB, type: linux }
    - { name: vault, disk: root, size: rest, type: luks }
  luks:
    - { name: vault-crypt, device: vault, recovery_passphrase: "correct horse" }
  filesystems:
    - { device: scratch, type: ext4, label: scratch }
    - { device: vault-crypt, type: xfs, label: vault }
image:
  url: http://10.0.2.2:8080/images/web.raw.zst
  sha256: 3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b
configdrive: { format: nocloud }
"#;
    let p = plan_of(doc, &[disk("/dev/sda", 8 * GIB, 512, "S1")]).unwrap();
    // The image's table is written first; the data partitions go after its partitions.
    assert_eq!(
        names(&p),
        [
            "wipe:root",
            "write-image",
            "partition:root",
            "luks:vault-crypt",
            "mkfs:scratch",
            "mkfs:vault-crypt",
            "configdrive",
            "boot-entries"
        ]
    );
    let Step::AppendPartitions(a) = &p.steps[2] else {
        panic!("{:?}", p.steps[2])
    };
    assert_eq!(a.path, PathBuf::from("/dev/sda"));
    assert_eq!(
        a.partitions
            .iter()
            .map(|x| x.size_bytes)
            .collect::<Vec<_>>(),
        [Some(GIB), None]
    );
    // `rest` leaves room for the configdrive appended next.
    let Some(Step::Configdrive(cd)) = p.steps.iter().rev().nth(1) else {
        panic!()
    };
    assert!(cd.partition.is_none());
    assert_eq!(a.reserve_bytes, cd.size_bytes);
    // Later steps name the partitions by stand-ins the engine resolves.
    let Step::Luks(l) = &p.steps[3] else { panic!() };
    assert_eq!(l.device, PathBuf::from("/dev/sda#vault"));
    let Step::Mkfs(m) = &p.steps[4] else { panic!() };
    assert_eq!(m.device, PathBuf::from("/dev/sda#scratch"));
    let text = p.render_text();
    assert!(
        text.contains("add to the image's GPT on /dev/sda, after its last partition"),
        "{text}"
    );
    assert!(text.contains("the rest"), "{text}");
}

/// A registry image is pinned by its reference's manifest digest, by its registry
/// signature, or by nothing with `--insecure`; a bare tag is refused at `image.url`.
#[test]
fn an_oci_tag_needs_a_pin_a_registry_signature_or_insecure() {
    let m = format!("sha256:{}", "ab".repeat(32));
    let doc = |image: &str| {
        format!(
            "version: 1\nhost: {{ hostname: web-01 }}\ndisks:\n  - name: root\n    match: {{ smallest: true }}\nimage:\n{image}  format: disk\n"
        )
    };
    let inv = [disk("/dev/sda", 8 * GIB, 512, "S1")];
    let image_of = |p: &Plan| match &p.steps[1] {
        Step::WriteImage(i) => i.clone(),
        s => panic!("{s:?}"),
    };
    let pinned = plan_of(
        &doc(&format!("  url: oci://r.example/os/web:v1@{m}\n")),
        &inv,
    )
    .unwrap();
    let i = image_of(&pinned);
    assert_eq!(i.pin, crate::plan::ImagePin::Manifest { digest: m.clone() });
    assert_eq!(i.digest, None);

    let tag = doc("  url: oci://r.example/os/web:v1\n");
    match plan_of(&tag, &inv) {
        Err(PlanError::Document(e)) => {
            assert_eq!(e.path, "image.url");
            assert!(
                e.message.contains("names a tag without a digest"),
                "{}",
                e.message
            );
            assert!(e.message.contains("--insecure"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    let insecure = PlanOptions {
        insecure: true,
        ..opts()
    };
    let p = build_with(
        &crate::config::parse(&tag).unwrap(),
        &inv,
        &insecure,
        &TestBackend,
    )
    .unwrap();
    assert_eq!(image_of(&p).pin, crate::plan::ImagePin::Insecure);

    let signed = doc("  url: oci://r.example/os/web:v1\n  signature: { lookaside: 'http://s.example/sigstore' }\n");
    let p = plan_of(&signed, &inv).unwrap();
    let i = image_of(&p);
    assert_eq!(i.pin, crate::plan::ImagePin::RegistrySignature);
    assert!(p.checks.contains(&crate::plan::Check::RegistrySignature {
        url: "oci://r.example/os/web:v1".into(),
        lookaside: "http://s.example/sigstore".into(),
    }));
}

#[test]
fn boot_entries_are_planned_for_firmware_bootable_disks_unless_turned_off() {
    let mut d = disk("/dev/sda", 8 * GIB, 512, "S1");
    d.wwn = Some("naa.5000C500A1B2C3D4".into());
    let p = plan_of(DOC1, std::slice::from_ref(&d)).unwrap();
    let Some(Step::BootEntries(be)) = p.steps.last() else {
        panic!("{:?}", names(&p))
    };
    assert_eq!(
        be.disks[0].identity, "wwn 5000c500a1b2c3d4",
        "the WWN before the serial"
    );
    assert_eq!(be.efivars, PathBuf::from("/sys/firmware/efi/efivars"));
    let text = p.render_text();
    assert!(text.contains("boot entry first in BootOrder"), "{text}");
    assert!(text.contains("boot.uefi_entries: false"), "{text}");

    let off = format!("{DOC1}boot: {{ uefi_entries: false }}\n");
    let p = plan_of(&off, std::slice::from_ref(&d)).unwrap();
    assert!(!names(&p).contains(&"boot-entries".to_string()));

    // Firmware never boots a loop device, and the test host's NVRAM is not the target's.
    let lo = disk("/dev/loop3", 8 * GIB, 512, "S1");
    let p = plan_of(DOC1, &[lo]).unwrap();
    assert!(!names(&p).contains(&"boot-entries".to_string()));
}

#[test]
fn a_disk_reached_by_two_paths_is_refused_before_any_step() {
    let doc = "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {serial: SN-MP}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}]}";
    let mut d = disk("/dev/sda", 8 * GIB, 512, "SN-MP");
    d.other_paths = vec!["/dev/sdb".into()];
    let e = plan_of(doc, &[d]).unwrap_err().to_string();
    assert!(
        e.starts_with("disks[0].match")
            && e.contains("/dev/sda and /dev/sdb are two paths to one disk")
            && e.contains("set up dm-multipath and give the /dev/mapper device"),
        "{e}"
    );
}

#[test]
fn an_image_for_another_architecture_is_refused_and_arm64_has_no_bios_partition() {
    use crate::arch::Arch;
    let arm = DOC2.replace("  format: rootfs\n", "  format: rootfs\n  arch: arm64\n");
    assert_ne!(arm, DOC2);
    let doc = crate::config::parse(&arm).unwrap();
    let on = |arch| PlanOptions {
        arch: Some(arch),
        ..opts()
    };
    let e = build_with(&doc, &doc2_inventory(), &on(Arch::X86_64), &TestBackend).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("image.arch")
            && text.contains("built for aarch64 and this machine is x86_64")
            && text.contains("nothing was written"),
        "{text}"
    );

    let p = build_with(&doc, &doc2_inventory(), &on(Arch::Aarch64), &TestBackend).unwrap();
    let types: Vec<String> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Partition { partitions, .. } => Some(partitions),
            _ => None,
        })
        .flatten()
        .map(|p| p.type_guid.to_ascii_uppercase())
        .collect();
    assert!(
        !types.contains(&"21686148-6449-6E6F-744E-656564454649".to_string()),
        "no BIOS boot partition on arm64: {types:?}"
    );
    assert!(types.contains(&"C12A7328-F81F-11D2-BA4B-00A0C93EC93B".to_string()));
    assert_eq!(finalize_of(&p).arch, Arch::Aarch64);

    // Without `arch` the image is taken to be the machine's, and x86 keeps its BIOS boot
    // partition.
    let p = build_with(
        &crate::config::parse(DOC2).unwrap(),
        &doc2_inventory(),
        &on(Arch::X86_64),
        &TestBackend,
    )
    .unwrap();
    assert!(format!("{:?}", p.steps).contains("21686148-6449-6E6F-744E-656564454649"));
    assert_eq!(finalize_of(&p).arch, Arch::X86_64);
    // ... and planned for an arm64 machine (`plan --inventory` from anywhere), the same
    // document is that machine's: no BIOS boot partition, GRUB for arm64-efi.
    let p = build_with(
        &crate::config::parse(DOC2).unwrap(),
        &doc2_inventory(),
        &on(Arch::Aarch64),
        &TestBackend,
    )
    .unwrap();
    assert!(!format!("{:?}", p.steps).contains("21686148-6449-6E6F-744E-656564454649"));
    assert_eq!(finalize_of(&p).arch, Arch::Aarch64);
}

#[test]
fn a_host_inventory_names_its_architecture() {
    use crate::arch::Arch;
    let arm = r#"{"schema_version": 1, "cpu": {"architecture": "aarch64"}, "disks": []}"#;
    assert_eq!(inventory_arch(arm), Some(Arch::Aarch64));
    assert_eq!(inventory_arch("[]"), None);
}
