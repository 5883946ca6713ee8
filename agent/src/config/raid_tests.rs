//! md levels in the document: member counts per level, chunks, `/boot` and the ESP on
//! RAID1, the short form's `raid:` beside `mirror:`, and what it expands into.

use super::*;

const FOUR: &str = "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}, {name: c, match: {}}, {name: d, match: {}}]\n";

/// Partitions `p0..p{n-1}`, one per disk of [`FOUR`] (n ≤ 4), then `rest` of the storage section.
fn explicit(n: usize, rest: &str) -> String {
    let parts: Vec<String> = (0..n)
        .map(|i| {
            let disk = ["a", "b", "c", "d"][i];
            format!("{{name: p{i}, disk: {disk}, size: 1GiB, type: raid}}")
        })
        .collect();
    format!(
        "{FOUR}storage: {{partitions: [{}], {rest}}}\n",
        parts.join(", ")
    )
}

fn members(n: usize) -> String {
    (0..n)
        .map(|i| format!("p{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn first_error(text: &str) -> Option<DocError> {
    let doc = match parse(text) {
        Ok(d) => d,
        Err(e) => return Some(e),
    };
    validate(&doc).err()
}

#[test]
fn each_level_takes_its_member_count_and_refuses_fewer_with_the_path() {
    for (level, min) in [(0, 2), (1, 2), (5, 3), (6, 4), (10, 4)] {
        let ok = explicit(
            min,
            &format!(
                "raid: [{{name: md0, level: {level}, members: [{}]}}]",
                members(min)
            ),
        );
        assert!(
            first_error(&ok).is_none(),
            "level {level} on {min}: {:?}",
            first_error(&ok)
        );
        let short = explicit(
            min - 1,
            &format!(
                "raid: [{{name: md0, level: {level}, members: [{}]}}]",
                members(min - 1)
            ),
        );
        let e = first_error(&short).unwrap_or_else(|| panic!("level {level} on {}", min - 1));
        assert_eq!(e.path, "storage.raid[0].members", "{e}");
        assert!(
            e.message.contains(&format!(
                "at least {}",
                if level == 1 {
                    "two".to_string()
                } else {
                    min.to_string()
                }
            )),
            "{e}"
        );
        assert!(e.message.contains(&format!("got {}", min - 1)), "{e}");
    }
}

#[test]
fn raid10_on_three_is_refused_saying_why_and_what_to_use() {
    let e = first_error(&explicit(
        3,
        "raid: [{name: md0, level: 10, members: [p0, p1, p2]}]",
    ))
    .unwrap();
    assert_eq!(e.path, "storage.raid[0].members");
    assert!(e.message.contains("near-2"), "{e}");
    assert!(e.message.contains("level 1 or 5 on 3"), "{e}");
}

#[test]
fn levels_outside_0_1_5_6_10_are_refused_at_level() {
    for bad in ["2", "4", "7", "-1", "raid5"] {
        let e = first_error(&explicit(
            4,
            &format!("raid: [{{name: md0, level: {bad}, members: [p0, p1, p2, p3]}}]"),
        ))
        .unwrap();
        assert_eq!(e.path, "storage.raid[0].level", "{bad}: {e}");
        assert!(
            e.message.contains("expected 0, 1, 5, 6 or 10"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn striped_members_on_one_disk_are_refused() {
    let text = format!(
        "{FOUR}storage: {{partitions: [{{name: p0, disk: a, size: 1GiB}}, {{name: p1, disk: b, size: 1GiB}}, {{name: p2, disk: a, size: 1GiB}}], raid: [{{name: md0, level: 5, members: [p0, p1, p2]}}]}}\n"
    );
    let e = first_error(&text).unwrap();
    assert_eq!(e.path, "storage.raid[0].members[2]");
    assert!(
        e.message.contains("RAID5 array must be on distinct disks"),
        "{e}"
    );
}

#[test]
fn chunks_only_on_striped_levels_and_powers_of_two() {
    let with = |level: u8, chunk: &str| {
        first_error(&explicit(
            4,
            &format!(
                "raid: [{{name: md0, level: {level}, members: [p0, p1, p2, p3], chunk: {chunk}}}]"
            ),
        ))
    };
    for level in [0, 5, 6, 10] {
        assert!(with(level, "64KiB").is_none(), "{level}");
    }
    let e = with(1, "64KiB").unwrap();
    assert_eq!(e.path, "storage.raid[0].chunk");
    assert!(e.message.contains("RAID1 does not stripe"), "{e}");
    for bad in ["96KiB", "2KiB", "128MiB"] {
        let e = with(10, bad).unwrap();
        assert_eq!(e.path, "storage.raid[0].chunk", "{bad}");
        assert!(e.message.contains("power of two from 4KiB to 64MiB"), "{e}");
    }
}

#[test]
fn boot_and_the_esp_stay_on_raid1_the_esp_with_its_superblock_at_the_end() {
    let boot_on = |level: u8, metadata: &str, mount: &str| {
        first_error(&explicit(
            4,
            &format!(
                "raid: [{{name: md0, level: {level}, members: [p0, p1, p2, p3], metadata: \"{metadata}\"}}], filesystems: [{{device: md0, type: ext4, mount: {mount}}}]"
            ),
        ))
    };
    let e = boot_on(5, "1.0", "/boot").unwrap();
    assert_eq!(e.path, "storage.raid[0].level");
    assert!(e.message.contains("must be RAID1, not RAID5"), "{e}");
    assert!(e.message.contains("storage.filesystems[0]"), "{e}");
    let e = boot_on(1, "1.2", "/boot/efi").unwrap();
    assert_eq!(e.path, "storage.raid[0].metadata");
    assert!(e.message.contains("metadata: \"1.0\""), "{e}");
    assert!(boot_on(1, "1.0", "/boot").is_none());
    assert!(
        boot_on(1, "1.2", "/boot").is_none(),
        "GRUB reads /boot on 1.2"
    );
    assert!(boot_on(10, "1.2", "/srv").is_none(), "data on any level");
}

fn layout(body: &str) -> String {
    format!("{FOUR}storage:\n  layout: {body}\n")
}

#[test]
fn the_short_form_refuses_mirror_with_raid_and_too_few_disks() {
    let e = first_error(&layout(
        "{mirror: [a, b], raid: {level: 10, disks: [a, b, c, d]}}",
    ))
    .unwrap();
    assert_eq!(e.path, "storage.layout.raid");
    assert!(e.message.contains("not both"), "{e}");
    let e = first_error(&layout("{raid: {level: 5, disks: [a, b]}}")).unwrap();
    assert_eq!(e.path, "storage.layout.raid.disks");
    assert!(
        e.message
            .contains("a RAID5 array needs at least 3 disks, got 2"),
        "{e}"
    );
    let e = first_error(&layout("{raid: {level: 10, disks: [a, b, c]}}")).unwrap();
    assert_eq!(e.path, "storage.layout.raid.disks");
    assert!(e.message.contains("at least 4 disks, got 3"), "{e}");
    let e = first_error(&layout("{raid: {level: 6, disks: [a, b, c, c]}}")).unwrap();
    assert_eq!(e.path, "storage.layout.raid.disks[3]");
    assert!(e.message.contains("listed twice"), "{e}");
    let e = first_error(&layout("{raid: {level: 5, disks: [a, b, x]}}")).unwrap();
    assert_eq!(e.path, "storage.layout.raid.disks[2]");
    assert!(e.message.contains("unknown disk \"x\""), "{e}");
    let e = first_error(&layout("{disk: a, raid: {level: 5, disks: [a, b, c]}}")).unwrap();
    assert_eq!(e.path, "storage.layout.disk");
    let e = first_error(&layout(
        "{raid: {level: 1, disks: [a, b, c], chunk: 64KiB}}",
    ))
    .unwrap();
    assert_eq!(e.path, "storage.layout.raid.chunk");
}

#[test]
fn raid10_short_form_expands_one_boot_set_per_disk_and_root_at_the_level() {
    let doc = parse(&layout(
        "{raid: {level: 10, disks: [a, b, c, d], chunk: 256KiB}, luks: {recovery_passphrase: 'a long enough phrase'}, lvm: [{mount: /, size: 1GiB}]}",
    ))
    .unwrap();
    validate(&doc).unwrap();
    let ex = expand_storage(&doc).unwrap();
    // A BIOS boot partition only where GRUB has a BIOS target (x86_64, not aarch64).
    let bios = crate::arch::Arch::host().grub_bios_target().is_some();
    for d in ["a", "b", "c", "d"] {
        for role in ["bios", "esp", "boot", "root"] {
            let name = format!("{d}-{role}");
            let present = ex
                .partitions
                .iter()
                .any(|(p, _)| p.name.as_str() == name && p.disk.as_str() == d);
            assert_eq!(present, role != "bios" || bios, "{name} on {d}");
        }
    }
    let esps: Vec<(&str, Option<&str>)> = ex
        .filesystems
        .iter()
        .filter(|(f, _)| f.fstype == FsType::Vfat)
        .map(|(f, _)| (f.device.as_str(), f.mount.as_ref().map(|m| m.as_str())))
        .collect();
    assert_eq!(
        esps,
        [
            ("a-esp", Some("/boot/efi")),
            ("b-esp", None),
            ("c-esp", None),
            ("d-esp", None)
        ]
    );
    let arrays: Vec<(&str, RaidLevel, usize, &str, Option<u64>)> = ex
        .raid
        .iter()
        .map(|(r, _)| {
            (
                r.name.as_str(),
                r.level,
                r.members.len(),
                r.metadata.as_str(),
                r.chunk.map(|c| c.0),
            )
        })
        .collect();
    assert_eq!(
        arrays,
        [
            ("md-boot", RaidLevel::Raid1, 4, "1.0", None),
            ("md-root", RaidLevel::Raid10, 4, "1.2", Some(256 << 10)),
        ]
    );
    assert_eq!(ex.luks[0].0.device.as_str(), "md-root");
    assert_eq!(ex.layout_disks.len(), 4);
}

#[test]
fn mirror_and_raid_level_1_of_two_expand_alike() {
    let two = "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]\nstorage:\n  layout: ";
    let m = expand_storage(&parse(&format!("{two}{{mirror: [a, b]}}\n")).unwrap()).unwrap();
    let r =
        expand_storage(&parse(&format!("{two}{{raid: {{level: 1, disks: [a, b]}}}}\n")).unwrap())
            .unwrap();
    assert_eq!(
        serde_json::to_string(&m.to_storage()).unwrap(),
        serde_json::to_string(&r.to_storage()).unwrap()
    );
}
