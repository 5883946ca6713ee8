//! `wipe: secure` in the plan: the per-disk override, the fallbacks carried into the
//! wipe step, the preflight check, the text, and documents without it planned as before.

use super::tests::{disk, plan_of};
use crate::config::tests_support::DOC2;
use crate::kinds::{EraseFallback, WipePolicy};
use crate::plan::{Check, Step};
use crate::units::GIB;

const DOC: &str = "version: 1\nhost: {hostname: h}\n\
    disks: [{name: a, match: {serial: A}}, {name: b, match: {serial: B}, wipe: signatures}]\n\
    storage:\n  wipe: secure\n  erase: {fallback: [discard, overwrite]}\n\
    \x20 partitions: [{name: p, disk: a, size: 1GiB}, {name: q, disk: b, size: 1GiB}]\n";

fn inv() -> Vec<crate::disks::Disk> {
    vec![
        disk("/dev/nvme0n1", 8 * GIB, 512, "A"),
        disk("/dev/sdb", 8 * GIB, 512, "B"),
    ]
}

#[test]
fn a_secure_wipe_carries_its_fallbacks_and_a_disk_may_override_it() {
    let p = plan_of(DOC, &inv()).unwrap();
    let wipes: Vec<(&str, WipePolicy, &[EraseFallback])> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Wipe {
                disk,
                policy,
                fallback,
                ..
            } => Some((disk.as_str(), *policy, fallback.as_slice())),
            _ => None,
        })
        .collect();
    let both = [EraseFallback::Discard, EraseFallback::Overwrite];
    assert_eq!(
        wipes,
        [
            ("a", WipePolicy::Secure, &both[..]),
            ("b", WipePolicy::Signatures, &[][..])
        ]
    );
    // Preflight asks the secure disk's device only.
    let erase: Vec<&Check> = p
        .checks
        .iter()
        .filter(|c| matches!(c, Check::Erase { .. }))
        .collect();
    assert_eq!(
        erase,
        [&Check::Erase {
            disk: "a".into(),
            path: "/dev/nvme0n1".into(),
            fallback: both.to_vec(),
        }]
    );
    let text = p.render_text();
    assert!(
        text.contains("securely erase the whole disk on /dev/nvme0n1\n  method: decided at run time from what the device reports (NVMe sanitize or format, ATA security erase); fallback: discard, then overwrite"),
        "{text}"
    );
    assert!(
        text.contains("erase every signature on /dev/sdb\n"),
        "{text}"
    );
}

#[test]
fn without_a_fallback_the_plan_says_the_disk_is_refused() {
    let doc = DOC
        .replace("  erase: {fallback: [discard, overwrite]}\n", "")
        .replace(", wipe: signatures", "");
    let text = plan_of(&doc, &inv()).unwrap().render_text();
    assert!(
        text.contains("fallback: none, a device without one is refused"),
        "{text}"
    );
}

#[test]
fn documents_without_secure_plan_no_fallback_field_and_no_erase_check() {
    let inv = vec![
        disk("/dev/sda", 16 * GIB, 512, "SN-A-0001"),
        disk("/dev/sdb", 16 * GIB, 512, "SN-B-0002"),
    ];
    let p = plan_of(DOC2, &inv).unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert!(!json.contains("\"fallback\""), "{json}");
    assert!(!p.checks.iter().any(|c| matches!(c, Check::Erase { .. })));
}

#[test]
fn erase_settings_are_checked_where_they_are_written() {
    let none_secure = DOC.replace("  wipe: secure\n", "");
    let e = crate::config::validate(&crate::config::parse(&none_secure).unwrap()).unwrap_err();
    assert_eq!(e.path, "storage.erase", "{e}");
    assert!(e.message.contains("no disk has one"), "{e}");
    let twice = DOC.replace("[discard, overwrite]", "[overwrite, overwrite]");
    let e = crate::config::validate(&crate::config::parse(&twice).unwrap()).unwrap_err();
    assert_eq!(e.path, "storage.erase.fallback[1]", "{e}");
    assert!(e.message.contains("listed twice"), "{e}");
    let unknown = DOC.replace("[discard, overwrite]", "[shred]");
    let e = crate::config::parse(&unknown).unwrap_err();
    assert_eq!(e.path, "storage.erase.fallback[0]", "{e}");
    let disk_wipe = DOC.replace("wipe: signatures", "wipe: erase");
    let e = crate::config::parse(&disk_wipe).unwrap_err();
    assert_eq!(e.path, "disks[1].wipe", "{e}");
}
