//! Real signatures made by real tools, erased, and checked by blkid, wipefs and sgdisk.

use super::*;
use crate::blockdev::testutil::{tool, Loop};
use crate::storage::partition::{place, type_guid, write_table, PartitionRequest};

fn req(name: &str, size: &str) -> PartitionRequest {
    PartitionRequest {
        name: name.into(),
        label: name.into(),
        type_guid: type_guid("linux").unwrap(),
        size: size.parse().unwrap(),
    }
}

fn run_ok(prog: &str, args: &[&str]) {
    let (ok, out) = tool(prog, args);
    assert!(ok, "{prog} {args:?}: {out}");
}

/// blkid -p and wipefs -n both find nothing on `dev`.
fn assert_blank(dev: &str, what: &str) {
    let (ok, out) = tool("blkid", &["-p", dev]);
    assert!(
        !ok && out.trim().is_empty(),
        "blkid -p finds something on {what}: {out}"
    );
    let (ok, out) = tool("wipefs", &["-n", dev]);
    assert!(
        ok && out.trim().is_empty(),
        "wipefs -n finds something on {what}: {out}"
    );
}

/// A read-only loop device over a byte range of `disk`, detached on drop.
struct Window(String);
impl Window {
    fn new(disk: &Path, offset: u64, len: u64) -> Window {
        let (ok, out) = tool(
            "losetup",
            &[
                "-f",
                "--show",
                "-r",
                "-o",
                &offset.to_string(),
                "--sizelimit",
                &len.to_string(),
                disk.to_str().unwrap(),
            ],
        );
        assert!(ok, "{out}");
        Window(out.trim().to_string())
    }
}
impl Drop for Window {
    fn drop(&mut self) {
        let _ = tool("losetup", &["-d", &self.0]);
    }
}

#[test]
fn wipe_erases_filesystems_luks_swap_and_gpt_on_known_and_unknown_partitions() {
    let lo = Loop::new(1 << 30, 512);
    let reqs = [
        req("ext4", "32MiB"),
        req("xfs", "320MiB"),
        req("vfat", "32MiB"),
        req("swap", "32MiB"),
        req("luks", "32MiB"),
    ];
    let plan = place(&lo.dev, 1 << 30, 512, &reqs).unwrap();
    write_table(&lo.dev, 512, &plan).unwrap();
    let node = |i: usize| plan[i].path.to_str().unwrap().to_string();
    run_ok("mkfs.ext4", &["-q", "-F", &node(0)]);
    run_ok("mkfs.xfs", &["-q", "-f", &node(1)]);
    run_ok("mkfs.vfat", &[&node(2)]);
    run_ok("mkswap", &[&node(3)]);
    let keydir = tempfile::tempdir().unwrap();
    let key = keydir.path().join("key");
    std::fs::write(&key, b"not-a-real-secret").unwrap();
    run_ok(
        "cryptsetup",
        &[
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            key.to_str().unwrap(),
            &node(4),
        ],
    );
    // The kernel forgets partitions 3-5: the wipe must find them through the GPT alone.
    let f = File::open(&lo.dev).unwrap();
    for n in 3..=5 {
        blockdev::delete_partition(&f, n).unwrap();
    }
    drop(f);

    let report = wipe_disk(&lo.dev, Policy::Signatures, false).unwrap();
    let kinds: Vec<(String, String)> = report
        .erased
        .iter()
        .map(|e| (e.device.display().to_string(), e.kind.clone()))
        .collect();
    for (i, kind) in ["ext4", "xfs", "vfat", "swap", "crypto_LUKS"]
        .iter()
        .enumerate()
    {
        assert!(
            kinds.contains(&(node(i), kind.to_string())),
            "{kind} on {} in {kinds:?}",
            node(i)
        );
    }
    let luks: Vec<_> = report
        .erased
        .iter()
        .filter(|e| e.kind == "crypto_LUKS")
        .map(|e| e.offset)
        .collect();
    let p5 = plan[4].first_lba * 512;
    assert!(
        luks.contains(&Some(p5)) && luks.contains(&Some(p5 + 16384)),
        "both LUKS2 headers: {luks:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(d, k)| d == lo.dev.to_str().unwrap() && k == "gpt"),
        "{kinds:?}"
    );
    assert!(
        blockdev::kernel_partitions(&lo.dev).unwrap().is_empty(),
        "the kernel knows no partition any more"
    );
    assert!(
        !blockdev::is_block_device(&plan[0].path),
        "partition nodes removed"
    );

    assert_blank(lo.dev.to_str().unwrap(), "the disk");
    for p in &plan {
        let w = Window::new(
            &lo.dev,
            p.first_lba * 512,
            (p.last_lba - p.first_lba + 1) * 512,
        );
        assert_blank(&w.0, &format!("old partition {} ({})", p.number, p.name));
    }
    let (_, out) = tool("sgdisk", &["-v", lo.dev.to_str().unwrap()]);
    assert!(
        out.contains("Creating new GPT entries"),
        "sgdisk finds no GPT: {out}"
    );
}

#[test]
fn zero_policy_zeroes_everything_and_discard_policy_runs() {
    let lo = Loop::new(32 * MIB, 4096);
    let dev = lo.dev.to_str().unwrap();
    run_ok("sh", &["-c", &format!("tr '\\0' '\\253' < /dev/zero | dd of={dev} bs=1M count=32 iflag=fullblock conv=fsync 2>/dev/null")]);
    run_ok("mkfs.ext4", &["-q", "-F", dev]);
    let r = wipe_disk(&lo.dev, Policy::Zero, false).unwrap();
    assert_eq!(r.zeroed, vec![(0, 32 * MIB)]);
    assert!(r.erased.iter().any(|e| e.kind == "ext4"), "{:?}", r.erased);
    let data = std::fs::read(&lo.dev).unwrap();
    assert!(data.iter().all(|&b| b == 0), "every byte zero");

    run_ok("mkswap", &[dev]);
    let r = wipe_disk(&lo.dev, Policy::Discard, false).unwrap();
    assert!(r.erased.iter().any(|e| e.kind == "swap"), "{:?}", r.erased);
    assert_eq!(
        r.zeroed,
        vec![(0, MIB), (31 * MIB, MIB)],
        "first and last MiB"
    );
    assert_blank(dev, "the disk after a discard wipe");
}

#[test]
fn busy_disks_are_described() {
    let mut d = Disk::default();
    assert!(busy_reasons(&d).is_empty());
    d.mounts = vec!["/boot".into(), "[swap]".into()];
    d.holders = vec!["md127".into()];
    let r = busy_reasons(&d).join("; ");
    assert_eq!(r, "mounted at /boot, [swap]; held by md127");
    let e = WipeError::Busy {
        disk: "/dev/sda".into(),
        reasons: r,
    }
    .to_string();
    assert!(
        e.contains("refusing to wipe /dev/sda: mounted at /boot") && e.contains("force"),
        "{e}"
    );
}

#[test]
fn wipe_removes_a_stale_partition_past_the_end_and_the_disk_takes_a_new_table() {
    let lo = Loop::with_stale_partition();
    let dev = lo.dev.to_str().unwrap().to_string();
    run_ok("mkfs.ext4", &["-q", "-F", &dev]);

    let report = wipe_disk(&lo.dev, Policy::Signatures, false).unwrap();
    assert!(
        report.erased.iter().any(|e| e.kind == "ext4"),
        "{:?}",
        report.erased
    );
    assert_eq!(report.forgot_partitions, vec![1]);
    assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);
    assert!(blockdev::kernel_partitions(&lo.dev).unwrap().is_empty());
    assert_blank(&dev, "the wiped disk");

    // Provisioned again: a new table the kernel takes, checked by sgdisk.
    let plan = place(&lo.dev, 32 << 20, 512, &[req("root", "16MiB")]).unwrap();
    write_table(&lo.dev, 512, &plan).unwrap();
    let (ok, out) = tool("sgdisk", &["-v", &dev]);
    assert!(ok && out.contains("No problems found"), "{out}");
    let parts = blockdev::kernel_partitions(&lo.dev).unwrap();
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(parts[0].len_bytes, 16 << 20);
}
