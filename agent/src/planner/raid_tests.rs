//! Planning md levels: the usable size of each array from its smallest member, the
//! chunk and layout it is created with, and the boot pieces on every member disk.

use super::tests::{disk, plan_of};
use crate::disks::Disk;
use crate::plan::{Plan, RaidLevel, RaidPlan, Step};
use crate::units::{Bytes, GIB, MIB};

/// Four disks of different sizes: the smallest (`/dev/vdc`, 8 GiB) decides each array.
fn four() -> Vec<Disk> {
    vec![
        disk("/dev/vda", 10 * GIB, 512, "SN-A"),
        disk("/dev/vdb", 12 * GIB, 512, "SN-B"),
        disk("/dev/vdc", 8 * GIB, 512, "SN-C"),
        disk("/dev/vdd", 9 * GIB, 512, "SN-D"),
    ]
}

fn doc(layout: &str) -> String {
    format!(
        "version: 1\nhost: {{ hostname: r1 }}\ndisks:\n  - {{ name: a, match: {{ serial: SN-A }} }}\n  - {{ name: b, match: {{ serial: SN-B }} }}\n  - {{ name: c, match: {{ serial: SN-C }} }}\n  - {{ name: d, match: {{ serial: SN-D }} }}\nstorage:\n  layout: {layout}\nimage: {{ url: 'http://x/r.tar.zst', sha256: '<x>', format: rootfs }}\n"
    )
}

fn array<'a>(p: &'a Plan, name: &str) -> &'a RaidPlan {
    p.steps
        .iter()
        .find_map(|s| match s {
            Step::Raid(r) if r.name == name => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no array {name}"))
}

/// Bytes of the partition at `path`, from the plan's partition steps.
fn partition_bytes(p: &Plan, path: &std::path::Path) -> u64 {
    p.steps
        .iter()
        .find_map(|s| match s {
            Step::Partition {
                partitions,
                logical_sector,
                ..
            } => partitions
                .iter()
                .find(|x| x.path == path)
                .map(|x| (x.last_lba + 1 - x.first_lba) * logical_sector),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no partition {}", path.display()))
}

/// What one member of the smallest size leaves for data at metadata 1.2, in whole
/// chunks: the arithmetic written out again, independently of `md_size`.
fn member_data(smallest: u64, chunk: u64) -> u64 {
    let d = smallest - 8 * MIB - (smallest / 512).min(128 * MIB);
    d / chunk * chunk
}

#[test]
fn each_level_holds_its_share_of_the_smallest_member() {
    let chunk = 512 * 1024;
    for (level, n, share) in [
        (0u8, 4u64, 4 * 2),
        (5, 4, 3 * 2),
        (6, 4, 2 * 2),
        (10, 4, 2 * 2),
        (5, 3, 2 * 2),
        (0, 2, 2 * 2),
    ] {
        let disks = ["a", "b", "c", "d"][..n as usize].join(", ");
        let p = plan_of(
            &doc(&format!(
                "{{ raid: {{ level: {level}, disks: [{disks}] }} }}"
            )),
            &four(),
        )
        .unwrap();
        let root = array(&p, "md-root");
        assert_eq!(root.level.number(), level);
        assert_eq!(root.members.len() as u64, n);
        let smallest = root
            .members
            .iter()
            .map(|m| partition_bytes(&p, m))
            .min()
            .unwrap();
        // share is in half-members, so RAID10's n/2 stays whole.
        assert_eq!(
            root.size_bytes,
            member_data(smallest, chunk) * share / 2,
            "RAID{level} on {n}"
        );
        assert_eq!(root.chunk_bytes, Some(chunk));
        assert_eq!(root.layout.as_deref(), (level == 10).then_some("n2"));
    }
}

#[test]
fn raid1_keeps_its_size_and_gets_no_chunk() {
    let p = plan_of(&doc("{ raid: { level: 1, disks: [a, b, c, d] } }"), &four()).unwrap();
    let root = array(&p, "md-root");
    let smallest = root
        .members
        .iter()
        .map(|m| partition_bytes(&p, m))
        .min()
        .unwrap();
    assert_eq!(
        root.size_bytes,
        smallest - 8 * MIB - (smallest / 512).min(128 * MIB)
    );
    assert_eq!((root.chunk_bytes, root.layout.as_deref()), (None, None));
}

#[test]
fn boot_is_raid1_metadata_1_0_across_every_member_whatever_root_is() {
    let p = plan_of(
        &doc("{ raid: { level: 6, disks: [a, b, c, d], chunk: 64KiB } }"),
        &four(),
    )
    .unwrap();
    let boot = array(&p, "md-boot");
    assert_eq!(boot.level, RaidLevel::Raid1);
    assert_eq!(boot.metadata.as_str(), "1.0");
    assert_eq!(boot.members.len(), 4);
    assert_eq!(boot.size_bytes, GIB - 8 * MIB);
    assert_eq!(array(&p, "md-root").chunk_bytes, Some(64 * 1024));
}

#[test]
fn every_member_disk_gets_the_boot_loader_and_its_esp_is_kept_in_step() {
    let p = plan_of(
        &doc("{ raid: { level: 10, disks: [a, b, c, d] } }"),
        &four(),
    )
    .unwrap();
    let fin = super::tests::finalize_of(&p);
    let disks: Vec<String> = fin
        .boot_disks
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    assert_eq!(disks, ["/dev/vda", "/dev/vdb", "/dev/vdc", "/dev/vdd"]);
    let copies: Vec<String> = fin
        .esp_copies
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    assert_eq!(copies, ["/dev/vdb2", "/dev/vdc2", "/dev/vdd2"]);
    let mounted = p.steps.iter().any(|s| {
        matches!(s, Step::Mount(m) if m.mountpoint == "/boot/efi" && m.device.display().to_string() == "/dev/vda2")
    });
    assert!(mounted, "the first disk's ESP is mounted at /boot/efi");
}

#[test]
fn the_volume_group_is_sized_from_the_arrays_usable_size() {
    // RAID0 of four ~7 GiB members holds about 27 GiB; RAID10 about 13.5: a 20 GiB
    // volume fits on the first and is refused on the second, with its path.
    let lvm = "lvm: [{ mount: /, size: 20GiB }]";
    let ok = plan_of(
        &doc(&format!(
            "{{ raid: {{ level: 0, disks: [a, b, c, d] }}, {lvm} }}"
        )),
        &four(),
    );
    assert!(ok.is_ok(), "{:?}", ok.err());
    let e = plan_of(
        &doc(&format!(
            "{{ raid: {{ level: 10, disks: [a, b, c, d] }}, {lvm} }}"
        )),
        &four(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("storage.layout.lvm[0].size"), "{e}");
    assert!(e.contains("does not fit in volume group"), "{e}");
}

#[test]
fn the_text_plan_shows_level_layout_chunk_and_usable_size() {
    let p = plan_of(
        &doc("{ raid: { level: 10, disks: [a, b, c, d] } }"),
        &four(),
    )
    .unwrap();
    let text = p.render_text();
    let root = array(&p, "md-root");
    let line = text
        .lines()
        .find(|l| l.contains("RAID10 /dev/md/md-root"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!("usable {}", Bytes(root.size_bytes).human())),
        "{line}"
    );
    assert!(
        line.contains("near-2, chunk 512KiB, metadata 1.2"),
        "{line}"
    );
    assert!(
        text.contains("RAID1 /dev/md/md-boot from /dev/vda3, /dev/vdb3, /dev/vdc3, /dev/vdd3"),
        "{text}"
    );
}
