//! md levels end to end (issue 14), and the seed customer's storage on four disks: one
//! set of four virtio disks provisioned six times, each run over what the previous one
//! left.
//!
//! 1. The seed customer's `layout.mirror` (RAID1 on two of the disks), RAID6, RAID5 and
//!    RAID0 (`layout.raid`), then RAID10 under LUKS2 and LVM, with a
//!    busybox root and a finalize command that writes a mark into every ESP finalize
//!    mounts. After each, the host reads the disk files with `mdadm --examine` on every
//!    member: the level, the member count, the near-2 layout and chunk, one array UUID
//!    (the plan's), an array size (mdadm's, from the superblocks) at least what the plan
//!    said and within md's per-member overhead of it; `/boot` RAID1 with metadata 1.0
//!    across all four; the mark on each disk's ESP. The RAID10 run boots under OVMF with
//!    a variable store kept in a file and its finalize command leaves a stand-in
//!    removable loader on every ESP: the agent makes an entry for each.
//! 2. Over those arrays, LUKS headers and LVM metadata, the seed customer's Debian as
//!    product.md writes it (LUKS2 bound to a real `tang` on loopback AND a software TPM,
//!    threshold 2, plus a recovery passphrase; LVM with every STIG volume) on RAID10,
//!    under OVMF with its variables in a file: the old metadata is found and erased
//!    first; the agent verified the binding; the host
//!    checks the disks as an operator would (sgdisk, `mdadm --examine`, `cryptsetup
//!    luksDump`); the report's `boot-entries` names one entry per ESP (GRUB in
//!    `\EFI\debian`), first in `BootOrder`, and the busybox run's four entries as
//!    replaced (`efibootmgr` later lists four imprint entries, not eight); the removable-media path
//!    `\EFI\BOOT\BOOTX64.EFI` is then deleted from every ESP host-side.
//! 3. The machine boots — through the entry, which `efibootmgr` in the deployed system
//!    shows as `BootCurrent` — and unlocks **unattended** with its own clevis (tang and
//!    the same TPM); cloud-init prints every mount with its options and all four members
//!    of both arrays. The secrets the agent generated, read back by the deployed
//!    system's own tools (the volume key through the recovery passphrase, the binding's
//!    passphrase through tang and the TPM), are in no console output or report body.
//! 4. With disk a gone it boots degraded through disk b's entry, again unattended: both
//!    arrays run on three members, every mount is there, `/` is writable, cloud-init
//!    finds its configdrive copy (same instance), systemd is not in maintenance.
//! 5. With tang stopped, one of two pins is not enough: it waits at the unlock prompt,
//!    and the recovery passphrase typed there opens the volume. With tang back but
//!    another machine's TPM, it waits at the prompt again.
//!
//! This host's kernel has no md, so the arrays are made in QEMU (md needs a kernel);
//! `mdadm --examine` reads superblocks from files and needs none.

use imprint_tests::fixtures::{
    assert_sgdisk_clean, busybox_rootfs, extract_vfat, guest_base, sh, sha256_hex,
};
use imprint_tests::images::debian_rootfs;
use imprint_tests::qemu::{uefi_vars_file, Boot, Disk, Firmware, Vm, VmError};
use imprint_tests::seed::{
    assert_stig_layout, disk_file, examine, md_member_data, partition, provision, step,
    wait_for_marker, SeedDoc, Tang, BOOTED, SERIAL_A, SERIAL_B, SERIAL_C, SERIAL_D,
};
use imprint_tests::server::Server;
use imprint_tests::tang::TangServer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const DISK: u64 = 6 << 30;
const SERIALS: [&str; 4] = [SERIAL_A, SERIAL_B, SERIAL_C, SERIAL_D];
/// GPT partition numbers of the layout: BIOS boot, ESP, /boot member, configdrive, root member.
const ESP: u32 = 2;
const BOOT: u32 = 3;
const ROOT: u32 = 5;

/// The document: four disks, `layout` (its fields after `raid`), the busybox root, a
/// finalize command marking every ESP it finds mounted in the target (and putting a
/// stand-in removable loader there, for the boot entries of a run under OVMF).
fn document(doc: &SeedDoc, layout: &str, sha256: &str) -> String {
    let mut d = format!(
        "version: 1\nhost: {{ hostname: {} }}\ndisks:\n",
        doc.hostname
    );
    for (name, serial) in ["a", "b", "c", "d"].iter().zip(SERIALS) {
        d += &format!("  - {{ name: {name}, match: {{ serial: \"{serial}\" }} }}\n");
    }
    d += &format!(
        "storage:\n  layout: {layout}\n\
         image: {{ url: \"{base}/images/busybox.tar.zst\", sha256: \"{sha256}\", format: rootfs }}\n\
         boot:\n  finalize:\n    - [sh, -c, \"for d in /boot/efi /run/imprint-esp*; do echo {host} > $d/IMPRINT-ESP; mkdir -p $d/EFI/BOOT; echo {host} > $d/EFI/BOOT/BOOTX64.EFI; done\"]\n\
         configdrive: {{ format: nocloud }}\n\
         report: {{ url: \"{base}{report}\", token: \"{token}\" }}\nfinish: reboot\n",
        base = doc.base,
        host = doc.hostname,
        report = doc.report_path(),
        token = doc.report_token,
    );
    d
}

/// The fields of `mdadm --examine` (`Key : value`), keys trimmed.
fn fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(" : "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn field<'a>(f: &'a [(String, String)], key: &str, what: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{what}: no {key:?} in mdadm --examine: {f:?}"))
}

/// A size field (`2093056 KiB (…)` or `4186112 sectors (…)`) in bytes.
fn bytes(f: &[(String, String)], key: &str, what: &str) -> u64 {
    let v = field(f, key, what);
    let mut w = v.split_whitespace();
    let n: u64 = w.next().and_then(|n| n.parse().ok()).unwrap();
    match w.next() {
        Some("KiB") => n * 1024,
        Some("sectors") => n * 512,
        u => panic!("{what}: {key} in unknown units {u:?}: {v}"),
    }
}

/// One array as its members' superblocks describe it.
struct Examined {
    level: String,
    devices: String,
    version: String,
    uuid: String,
    layout: Option<String>,
    chunk: Option<String>,
    /// mdadm's `Array Size` (the component size md recorded times the level's share);
    /// for RAID0, which records none, each member's data area in whole chunks, summed.
    array_bytes: u64,
}

/// `512K` → bytes.
fn chunk_bytes(c: &str) -> u64 {
    c.strip_suffix('K')
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// Examines partition `n` of every disk; every member must describe the same array.
fn examine_members(disks: &[PathBuf], n: u32, what: &str) -> Examined {
    let all: Vec<Vec<(String, String)>> = disks.iter().map(|d| fields(&examine(d, n))).collect();
    let f = &all[0];
    let opt = |k: &str| f.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let uuid = |f: &[(String, String)]| field(f, "Array UUID", what).replace(':', "");
    for g in &all[1..] {
        assert_eq!(uuid(g), uuid(f), "{what}: members of two arrays");
    }
    let array_bytes = match opt("Array Size") {
        Some(_) => bytes(f, "Array Size", what),
        None => {
            let chunk = chunk_bytes(field(f, "Chunk Size", what));
            all.iter()
                .map(|g| bytes(g, "Avail Dev Size", what) / chunk * chunk)
                .sum()
        }
    };
    Examined {
        level: field(f, "Raid Level", what).into(),
        devices: field(f, "Raid Devices", what).into(),
        version: field(f, "Version", what).into(),
        uuid: uuid(f),
        layout: opt("Layout"),
        chunk: opt("Chunk Size"),
        array_bytes,
    }
}

/// The level's share of its members, in halves (RAID10 near-2 on 4: 4/2 = 4 halves).
fn share_halves(level: u8, members: u64) -> u64 {
    match level {
        0 => 2 * members,
        1 => 2,
        5 => 2 * (members - 1),
        6 => 2 * (members - 2),
        10 => members,
        l => panic!("level {l}"),
    }
}

/// The array `name` on partition `n` of `disks` is what the plan (the report's `raid:`
/// step) said: level, members, UUID, and a size at least the plan's and no more above
/// it than md's per-member overhead times the level's share (a plan that took the wrong
/// share would be a whole member off).
fn assert_array(fin: &Value, disks: &[PathBuf], n: u32, name: &str, level: u8) -> Examined {
    let out = &step(fin, &format!("raid:{name}"))["output"];
    let what = format!("{name} (RAID{level})");
    let e = examine_members(disks, n, &what);
    assert_eq!(e.level, format!("raid{level}"), "{what}");
    assert_eq!(e.devices, disks.len().to_string(), "{what}");
    assert_eq!(
        e.uuid,
        out["uuid"].as_str().unwrap().replace('-', ""),
        "{what}: the plan's UUID"
    );
    assert_eq!(out["level"], level, "{what}: the report's level");
    let planned = out["size_bytes"]
        .as_u64()
        .expect("size_bytes in the raid step");
    let halves = share_halves(level, disks.len() as u64);
    let (_, member) = partition(&disks[0], n);
    assert!(
        e.array_bytes <= member * halves / 2,
        "{what}: {} bytes from members of {member}",
        e.array_bytes
    );
    let per_member_slack = 8 * MIB + (member / 512).min(128 * MIB) + 512 * 1024;
    assert!(
        e.array_bytes >= planned && e.array_bytes - planned <= per_member_slack * halves / 2,
        "{what}: md made {} bytes, the plan said at least {planned}",
        e.array_bytes
    );
    eprintln!("{what}: md {} bytes, plan {planned} bytes", e.array_bytes);
    e
}

/// The mark finalize wrote is on every disk's ESP, and finalize reported each ESP.
fn assert_every_esp_marked(fin: &Value, disks: &[PathBuf], host: &str) {
    let esps = step(fin, "finalize")["output"]["esps"]
        .as_array()
        .expect("finalize reports its ESPs")
        .clone();
    let at: Vec<&str> = esps
        .iter()
        .map(|e| e["mounted_at"].as_str().unwrap())
        .collect();
    assert_eq!(
        at,
        [
            "/boot/efi",
            "/run/imprint-esp1",
            "/run/imprint-esp2",
            "/run/imprint-esp3"
        ]
    );
    for d in disks {
        let (off, _) = partition(d, ESP);
        let dir = extract_vfat(d.to_str().unwrap(), off);
        let mark = std::fs::read_to_string(dir.path().join("IMPRINT-ESP"))
            .unwrap_or_else(|e| panic!("{}: no mark on the ESP: {e}", d.display()));
        assert_eq!(mark.trim(), host, "{}", d.display());
    }
}

/// Provisions `layout` on the four disk files as host `host` (under SeaBIOS, or under
/// OVMF with the variable store `vars`); the final report.
fn run(
    server: &Server,
    disks: &[PathBuf],
    host: &str,
    layout: &str,
    sha256: &str,
    vars: Option<&Path>,
) -> Value {
    let mut doc = SeedDoc::new(&guest_base(server), host);
    doc.uefi_vars = vars.map(Path::to_path_buf);
    let firmware = if vars.is_some() {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    let path = format!("/{host}.yaml");
    server.serve_bytes(&path, document(&doc, layout, sha256).into_bytes());
    let vm_disks = disks
        .iter()
        .zip(SERIALS)
        .map(|(d, s)| Disk::existing(d, s))
        .collect();
    let (_, _, fin) = provision(server, &doc, &path, vm_disks, firmware, None);
    fin
}

fn disks(dir: &Path) -> Vec<PathBuf> {
    ["a", "b", "c", "d"]
        .iter()
        .map(|n| disk_file(dir, &format!("{n}.raw"), DISK))
        .collect()
}

const PHRASE: &str = "raid ten debian phrase";
/// What systemd prints on the console when a boot stops in emergency mode.
const EMERGENCY: &str = "You are in emergency mode";
/// What Debian's initramfs prints when it gives up on the root device.
const INITRAMFS_SHELL: &str = "Dropping to a shell!";
/// The unlock prompt of Debian's initramfs (clevis works beside it).
const PROMPT: &str = "Please unlock disk luks-root";
/// What Debian's initramfs prints once it has opened the root volume.
const UNLOCKED: &str = "luks-root: set up successfully";

/// The machine: the disks given, under OVMF with `vars`, with the TPM in `tpm`.
fn machine(disks: &[(PathBuf, &str)], vars: &Path, tpm: &Path) -> Vm {
    let mut b = Vm::builder()
        .boot(Boot::Disk)
        .firmware(Firmware::Uefi)
        .uefi_vars(vars)
        .memory_mib(1536)
        .tpm(tpm)
        .serial_input();
    for (p, serial) in disks {
        b = b.disk(Disk::existing(p, serial));
    }
    b.start().unwrap()
}

/// Boots the four disks (or those given), lets clevis unlock the root volume unattended
/// (nothing is typed), logs in as root. Under TCG on a loaded machine a boot can be
/// starved past systemd's limits: its device timeout lands it in emergency mode, or
/// (once in many runs) the fstab generator is stopped half-way and `/` stays read-only
/// with mounts missing. Such a boot is shown and the machine booted once more; a second
/// one fails the test.
fn boot_and_login(disks: &[(PathBuf, &str)], vars: &Path, tpm: &Path) -> Vm {
    for attempt in 1..=2 {
        let mut vm = machine(disks, vars, tpm);
        let t = Instant::now();
        // Emergency mode prints no login prompt: seen, it is known at once.
        let prompt = vm
            .wait_for_any(
                &[" login: ", EMERGENCY, INITRAMFS_SHELL],
                Duration::from_secs(1800),
            )
            .unwrap();
        if prompt == 2 {
            let log = vm.serial_log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            // What the initramfs saw when it gave up, from its own shell.
            let state = vm
                .run(
                    "cat /proc/uptime /proc/cmdline /proc/mdstat; ls /dev/mapper; ps",
                    Duration::from_secs(120),
                )
                .unwrap_or_default();
            // Debian's initramfs gives a degraded array 30 s of wall clock from its
            // start (arrays are started degraded at 20 s, their LUKS opened after): a
            // TCG guest starved by the other lanes can miss that. Shown, and booted
            // once more, like emergency mode below; a second time fails the test.
            if attempt == 1 {
                eprintln!(
                    "boot 1: the initramfs gave up on the root device; booting again:\n{tail}\n{state}"
                );
                continue;
            }
            panic!("the initramfs gave up on the root device:\n{tail}\n{state}");
        }
        let login = if prompt == 1 {
            Err(VmError {
                what: "the system came up in emergency mode".into(),
                log: vm.serial_log(),
            })
        } else {
            vm.login("root", "imprint", Duration::from_secs(300))
        };
        match login {
            Ok(()) => {
                eprintln!(
                    "unlocked unattended, logged in {:.0} s after power-on",
                    t.elapsed().as_secs_f64()
                );
                let root = vm
                    .run("findmnt -rn -o OPTIONS /", Duration::from_secs(60))
                    .unwrap();
                if attempt == 1 && root.trim_start().starts_with("ro") {
                    let journal = vm
                        .run("journalctl -b --no-pager -o short-monotonic | grep -iE 'generator|timed out|timeout' | tail -20", Duration::from_secs(120))
                        .unwrap_or_default();
                    eprintln!(
                        "boot 1: / is read-only ({root}); journal:\n{journal}\nbooting again"
                    );
                    continue;
                }
                return vm;
            }
            Err(e) if attempt == 1 && vm.serial_log().contains(EMERGENCY) => {
                let log = vm.serial_log();
                let timed_out: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("Timed out waiting for device"))
                    .collect();
                eprintln!(
                    "boot 1 ended in emergency mode ({}); booting again:\n{}",
                    e.what,
                    timed_out.join("\n")
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    unreachable!("the second attempt returns or panics")
}

/// `efibootmgr`'s `BootCurrent` and `BootOrder` on the deployed system.
fn efibootmgr(vm: &mut Vm) -> (String, Vec<String>, String) {
    let out = vm.run("efibootmgr -v", Duration::from_secs(120)).unwrap();
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("efibootmgr printed no {k}\n{out}"))
    };
    let order = field("BootOrder:")
        .split(',')
        .map(|n| n.trim().to_string())
        .collect();
    (field("BootCurrent:"), order, out)
}

/// The `LAYOUT-BEGIN … LAYOUT-END` block cloud-init's bootcmd printed (the last one).
fn printed_layout(vm: &mut Vm) -> String {
    let log = vm
        .wait_for_serial("LAYOUT-END", Duration::from_secs(900))
        .unwrap();
    let begin = log.rfind("LAYOUT-BEGIN").expect("layout printed");
    let end = log[begin..].find("LAYOUT-END").map(|e| begin + e).unwrap();
    log[begin..end].replace('\r', "")
}

/// What an operator checks on the disks after the Debian run: clean GPTs, both arrays'
/// superblocks (metadata version, name, bitmap), and LUKS2 in md-root's data area with
/// two keyslots: the recovery passphrase and clevis's (its token names it). RAID10
/// near-2 keeps the array's first
/// chunk (which holds the LUKS header) on disks a and b.
fn host_checks(files: &[PathBuf], host: &str) {
    for f in files {
        assert_sgdisk_clean(f.to_str().unwrap());
        let boot = examine(f, BOOT);
        assert!(boot.contains(&format!("Name : {host}:md-boot")), "{boot}");
        let root = examine(f, ROOT);
        assert!(root.contains("Internal Bitmap"), "{root}");
        assert!(root.contains(&format!("Name : {host}:md-root")), "{root}");
    }
    for f in &files[..2] {
        let w = md_member_data(f, ROOT);
        let dump = sh("cryptsetup", &["luksDump", &w.0]);
        assert!(dump.contains("Version:       \t2"), "{dump}");
        assert!(
            dump.contains("aes-xts-plain64") && dump.contains("argon2id"),
            "{dump}"
        );
        assert!(
            dump.contains("  0: luks2") && dump.contains("  1: luks2"),
            "keyslots 0 and 1: the recovery passphrase and the binding\n{dump}"
        );
        assert!(!dump.contains("  2: luks2"), "no other keyslot\n{dump}");
        assert!(dump.contains("  0: clevis"), "clevis's token\n{dump}");
    }
}

/// Debian on RAID10 under OVMF with persistent variables over what `previous` left on
/// the same disks: the erase of the old metadata, the disks as an operator checks them,
/// the entries, a boot through them with the removable path gone, and a degraded boot
/// without disk a.
fn debian_on_raid10(server: &Server, files: &[PathBuf], vars: &Path, previous: &Value) {
    let img = debian_rootfs();
    server.serve_file("/images/debian-12-rootfs.tar.zst", &img.path);
    let mut tang = TangServer::start();
    let tpm = tempfile::tempdir().unwrap();
    let host = "r10-debian";
    let mut doc = SeedDoc::new(&guest_base(server), host);
    doc.raid10 = true;
    doc.tang.push(Tang {
        url: format!("http://10.0.2.2:{}", tang.port()),
        thumbprint: tang.thumbprint(),
    });
    doc.tpm2 = true;
    doc.threshold = Some(2);
    doc.passphrase = Some(PHRASE.into());
    doc.rootfs_sha512 = Some(img.sha512.clone());
    doc.uefi_vars = Some(vars.to_path_buf());
    // No `rootdelay`: Debian 12's initramfs sleeps that long before anything else and
    // then measures its wait for the root (max(30 s, rootdelay)) from before the sleep,
    // so a degraded array's LUKS, opened only in local-block, never gets its turn and
    // the boot drops to the initramfs shell every time (docs/storage.md).
    server.serve_bytes("/r10-debian.yaml", doc.render().into_bytes());
    let vm_disks = files
        .iter()
        .zip(SERIALS)
        .map(|(f, s)| Disk::existing(f, s))
        .collect();
    let (agent, _, fin) = provision(
        server,
        &doc,
        "/r10-debian.yaml",
        vm_disks,
        Firmware::Uefi,
        Some(tpm.path()),
    );
    let agent_console = agent.serial_log();
    drop(agent);
    let luks = step(&fin, "luks:luks-root");
    let binding = &luks["output"]["bindings"][0];
    assert_eq!(
        binding["verified"], true,
        "the agent verified the binding: {luks:#}"
    );
    assert_eq!(binding["threshold"], 2);

    // The previous run's arrays, LUKS and LVM were found and erased first.
    for disk in ["a", "b", "c", "d"] {
        let kinds: Vec<String> = step(&fin, &format!("wipe:{disk}"))["output"]["erased"]["erased"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect();
        for k in ["linux_raid_member", "gpt"] {
            assert!(
                kinds.iter().any(|x| x == k),
                "wipe:{disk} erased the old {k}: {kinds:?}"
            );
        }
    }
    assert_ne!(
        step(previous, "raid:md-root")["output"]["uuid"],
        step(&fin, "raid:md-root")["output"]["uuid"],
        "the arrays are this run's"
    );
    for s in [
        "luks:luks-root",
        "lvm:vg0",
        "mount:/var/log/audit",
        "write-image",
    ] {
        step(&fin, s);
    }
    let fz = &step(&fin, "finalize")["output"];
    assert_eq!(fz["family"], "debian", "{fz:#}");
    assert!(
        fz["kernel_cmdline"]
            .to_string()
            .contains("root=/dev/mapper/vg0-root"),
        "{fz:#}"
    );
    // GRUB was installed on the first ESP; the three others hold copies of its tree.
    let copies: Vec<Option<u64>> = fz["esps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["copied_files"].as_u64())
        .collect();
    assert!(
        copies.len() == 4 && copies[0].is_none() && copies[1..].iter().all(|c| c.unwrap_or(0) >= 2),
        "{fz:#}"
    );
    let root = assert_array(&fin, files, ROOT, "md-root", 10);
    assert_eq!(root.layout.as_deref(), Some("near=2"));
    assert_eq!(root.chunk.as_deref(), Some("512K"));
    assert_eq!(root.version, "1.2");
    let boot = assert_array(&fin, files, BOOT, "md-boot", 1);
    assert_eq!(boot.version, "1.0", "/boot's superblock is at the end");
    host_checks(files, host);

    // One entry per ESP, GRUB in the vendor directory, first in BootOrder, in disk order.
    let out = &step(&fin, "boot-entries")["output"];
    let entries = out["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 4, "{out:#}");
    let numbers: Vec<String> = entries
        .iter()
        .map(|e| e["number"].as_str().unwrap().to_string())
        .collect();
    for (e, serial) in entries.iter().zip(SERIALS) {
        assert_eq!(e["loader"], "\\EFI\\debian\\grubx64.efi", "{e:#}");
        assert_eq!(e["loader_kind"], "grub", "{e:#}");
        assert!(
            e["description"].as_str().unwrap().contains(serial),
            "the entry names its disk: {e:#}"
        );
    }
    let order: Vec<String> = out["boot_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert_eq!(order[..4], numbers[..], "imprint's entries first: {out:#}");
    // The busybox run before left an entry per disk (its stand-in removable loaders):
    // those four were replaced, not piled up.
    let mut earlier: Vec<String> = step(previous, "boot-entries")["output"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["number"].as_str().unwrap().to_string())
        .collect();
    let mut replaced: Vec<String> = out["replaced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    earlier.sort();
    replaced.sort();
    assert_eq!(replaced, earlier, "{out:#}");

    // Firmware may no longer fall back to the removable path: only the entries boot.
    for f in files {
        let (off, _) = partition(f, ESP);
        let spec = format!("{}@@{off}", f.display());
        sh("mdel", &["-i", &spec, "::/EFI/BOOT/BOOTX64.EFI"]);
        let left = sh("mdir", &["-i", &spec, "-b", "-/", "::/EFI"]);
        assert!(
            !left.to_uppercase().contains("BOOTX64.EFI") && left.contains("grubx64.efi"),
            "{}: {left}",
            f.display()
        );
    }

    // All four disks: the entry of disk a boots, cloud-init runs and prints every mount
    // with its options and all members of both arrays.
    let all: Vec<(PathBuf, &str)> = files.iter().cloned().zip(SERIALS).collect();
    let mut vm = boot_and_login(&all, vars, tpm.path());
    let (current, order_now, raw) = efibootmgr(&mut vm);
    assert_eq!(current, numbers[0], "booted through disk a's entry:\n{raw}");
    assert_eq!(order_now[..4], numbers[..], "{raw}");
    assert_eq!(
        raw.lines().filter(|l| l.contains("(imprint, ")).count(),
        4,
        "one imprint entry per disk, the earlier ones gone:\n{raw}"
    );
    wait_for_marker(&mut vm, Duration::from_secs(600));
    let layout = printed_layout(&mut vm);
    assert_stig_layout(&layout, "/dev/md");
    assert!(
        layout.contains("raid10") && layout.matches("[4/4] [UUUU]").count() == 2,
        "RAID10 root and RAID1 /boot, all four members in each:\n{layout}"
    );
    assert!(
        !vm.serial_log().contains(PHRASE),
        "the passphrase was echoed on the console"
    );
    secrets_stay_secret(&mut vm, server, &doc, &agent_console, binding);
    drop(vm);

    // Disk a gone: disk b's entry boots, both arrays run on three members, the system
    // comes up whole without the ESP it had mounted.
    let mut vm = boot_and_login(&all[1..], vars, tpm.path());
    let (current, _, raw) = efibootmgr(&mut vm);
    assert_eq!(current, numbers[1], "booted through disk b's entry:\n{raw}");
    let mounts = vm
        .run(
            "findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS",
            Duration::from_secs(60),
        )
        .unwrap();
    let mdstat = vm.run("cat /proc/mdstat", Duration::from_secs(60)).unwrap();
    assert_eq!(
        mdstat.matches("[4/3]").count(),
        2,
        "both arrays degraded, running:\n{mdstat}"
    );
    for target in [
        "/",
        "/home",
        "/tmp",
        "/var",
        "/var/log",
        "/var/log/audit",
        "/var/tmp",
        "/boot",
    ] {
        assert!(
            mounts.lines().any(|l| l.split(' ').next() == Some(target)),
            "{target} is mounted on the degraded system:\n{mounts}"
        );
    }
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("/ ") && l.contains(" rw,")),
        "/ is writable:\n{mounts}"
    );
    // Disk b carries its own copy of the configdrive: the same instance as provisioned.
    let iid = vm
        .run(
            "mount -o ro LABEL=cidata /mnt && grep instance-id /mnt/meta-data; umount /mnt; hostname",
            Duration::from_secs(120),
        )
        .unwrap();
    let want_iid = fin["instance_id"].as_str().unwrap();
    assert!(
        iid.contains(want_iid) && iid.contains(host),
        "instance {want_iid}, host {host} kept: {iid}"
    );
    let state = vm
        .run("systemctl is-system-running", Duration::from_secs(60))
        .unwrap();
    assert!(
        !state.contains("maintenance") && !state.contains("offline"),
        "system state: {state}"
    );
    drop(vm);

    // Tang stopped: one of two pins is not enough; the recovery passphrase typed at the
    // prompt opens the volume. (That the system then boots is what the boots above
    // showed; the passphrase itself opened the volume key in the first.)
    tang.stop();
    let mut vm = machine(&all, vars, tpm.path());
    stays_locked(&mut vm, 30, "tang stopped");
    vm.send(&format!("{PHRASE}\r")).unwrap();
    vm.wait_for_serial(UNLOCKED, Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("the recovery passphrase at the prompt: {e}"));
    drop(vm);

    // Tang back, but another machine's TPM: still locked.
    tang.resume();
    let other_tpm = tempfile::tempdir().unwrap();
    let mut vm = machine(&all, vars, other_tpm.path());
    stays_locked(&mut vm, 30, "another machine's TPM");
}

/// Waits at the unlock prompt for `secs` and asserts the system did not come up by itself
/// (cloud-init's every-boot `bootcmd` output would show it had).
fn stays_locked(vm: &mut Vm, secs: u64, why: &str) {
    vm.wait_for_serial(PROMPT, Duration::from_secs(900))
        .unwrap_or_else(|e| panic!("{why}: {e}"));
    std::thread::sleep(Duration::from_secs(secs));
    assert!(
        !vm.serial_log().contains(BOOTED),
        "{why}: the volume unlocked by itself"
    );
}

/// The secrets the agent generated, read back by the deployed system's own tools: the
/// volume key (through the recovery passphrase) and the clevis binding's passphrase
/// (through tang and the TPM). None of them, nor the recovery passphrase or the report
/// token, is in the agent's console output or in any report body.
fn secrets_stay_secret(
    vm: &mut Vm,
    server: &Server,
    doc: &SeedDoc,
    agent_console: &str,
    binding: &Value,
) {
    let t = Duration::from_secs(300);
    let dev = "$(blkid -t TYPE=crypto_LUKS -o device | head -1)";
    let dump = vm
        .run(&format!("printf %s '{PHRASE}' | cryptsetup luksDump --dump-volume-key --batch-mode --key-file=- {dev}"), t)
        .unwrap();
    let volume_key: String = dump
        .split("MK dump:")
        .nth(1)
        .unwrap_or_else(|| panic!("no volume key dumped:\n{dump}"))
        .split_whitespace()
        .take_while(|w| w.len() == 2 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    assert_eq!(volume_key.len(), 128, "a 512-bit volume key: {dump}");
    let slot = binding["keyslot"]
        .as_u64()
        .expect("the binding's keyslot in the report");
    // Through tang and the TPM: with a DHCP lease of its own if the deployed system has
    // no route yet (the initramfs's network is gone after switch-root), bounded tries.
    let net = vm
        .run(
            "ip -4 route | grep -q default || dhclient -1 $(ls /sys/class/net | grep -v '^lo$' | head -1) 2>&1; \
             ip -4 -o addr show scope global; ip -4 route",
            Duration::from_secs(300),
        )
        .unwrap();
    let pass = vm
        .run(
            &format!(
                "for i in 1 2 3 4 5 6; do \
                 clevis luks pass -d {dev} -s {slot} > /run/p && break; sleep 10; done; \
                 echo; base64 -w0 /run/p; rm -f /run/p"
            ),
            Duration::from_secs(600),
        )
        .unwrap();
    let encoded = pass.lines().last().unwrap_or("").trim().to_string();
    let binding_pass = {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .unwrap_or_else(|e| panic!("{e}: {pass:?}\nnetwork: {net}"));
        String::from_utf8(raw).expect("a text passphrase")
    };
    assert!(
        binding_pass.len() >= 32,
        "the binding's passphrase from clevis: {pass:?}\nnetwork: {net}"
    );
    let reports: String = server
        .posts()
        .iter()
        .map(|p| String::from_utf8_lossy(&p.body).into_owned())
        .collect();
    for (what, secret) in [
        ("the recovery passphrase", PHRASE.to_string()),
        ("the report token", doc.report_token.clone()),
        ("the LUKS volume key", volume_key.clone()),
        ("the LUKS volume key", volume_key.to_ascii_uppercase()),
        ("the binding passphrase", binding_pass.clone()),
    ] {
        assert!(
            !agent_console.contains(&secret),
            "{what} is on the agent's console"
        );
        assert!(!reports.contains(&secret), "{what} is in a report body");
    }
}

#[test]
fn four_disks_take_every_level_then_debian_on_raid10_boots_through_uefi_entries_whole_and_degraded()
{
    let tar = busybox_rootfs();
    let sha = sha256_hex(&tar);
    let server = Server::start();
    server.serve_bytes("/images/busybox.tar.zst", tar);
    let keep = tempfile::tempdir().unwrap();
    let disks = disks(keep.path());
    let vars = uefi_vars_file(keep.path());

    // The seed customer's form, `layout.mirror` on two of the disks: `/boot` and root
    // RAID1 across a and b (their boot with LUKS bound to tang and the TPM is the RAID10
    // Debian's below: the same md → LUKS → LVM stack, two more members).
    let m1 = run(&server, &disks, "m1", "{ mirror: [a, b] }", &sha, None);
    let root = assert_array(&m1, &disks[..2], ROOT, "md-root", 1);
    assert_eq!(root.version, "1.2");
    let boot = assert_array(&m1, &disks[..2], BOOT, "md-boot", 1);
    assert_eq!(boot.version, "1.0", "/boot's superblock is at the end");

    for (level, host, chunk) in [(6u8, "r6", "64K"), (5, "r5", "512K"), (0, "r0", "512K")] {
        let extra = if chunk == "64K" { ", chunk: 64KiB" } else { "" };
        let fin = run(
            &server,
            &disks,
            host,
            &format!("{{ raid: {{ level: {level}, disks: [a, b, c, d]{extra} }} }}"),
            &sha,
            None,
        );
        let root = assert_array(&fin, &disks, ROOT, "md-root", level);
        assert_eq!(root.chunk.as_deref(), Some(chunk), "RAID{level}");
        let boot = assert_array(&fin, &disks, BOOT, "md-boot", 1);
        assert_eq!(boot.version, "1.0");
        assert_every_esp_marked(&fin, &disks, host);
    }

    let r10 = run(
        &server,
        &disks,
        "r10",
        "{ raid: { level: 10, disks: [a, b, c, d] }, luks: { recovery_passphrase: \"raid ten phrase\" }, \
         lvm: [{ mount: /, size: 256MiB }, { mount: /var, size: rest }] }",
        &sha,
        Some(&vars),
    );
    let entries = &step(&r10, "boot-entries")["output"]["entries"];
    assert_eq!(
        entries.as_array().map(Vec::len),
        Some(4),
        "an entry per disk for the stand-in loaders: {entries:#}"
    );
    let root = assert_array(&r10, &disks, ROOT, "md-root", 10);
    assert_eq!(root.layout.as_deref(), Some("near=2"));
    assert_eq!(root.chunk.as_deref(), Some("512K"));
    assert_eq!(root.version, "1.2");
    let boot = assert_array(&r10, &disks, BOOT, "md-boot", 1);
    assert_eq!(boot.version, "1.0", "/boot's superblock is at the end");
    assert_every_esp_marked(&r10, &disks, "r10");

    debian_on_raid10(&server, &disks, &vars, &r10);
}
