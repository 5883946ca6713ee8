//! The arm64 boot artifacts (`initramfs/build.sh iso aarch64`, docs/boot.md "arm64"), as
//! built: out/aarch64/imprint.iso boots UEFI only, from an El Torito EFI image holding an
//! arm64 GRUB as EFI/BOOT/BOOTAA64.EFI (also the GPT's EFI system partition for USB
//! sticks), and carries the customization area `imprint iso customize` writes; the
//! kernel has the EFI stub GRUB and iPXE start; the ramdisk's /init is the static aarch64
//! agent, every ELF in it is aarch64, every dynamic one finds its libraries in it, and the
//! tools run there: chrooted into the unpacked ramdisk through qemu-user's binfmt handler.
//! (`qemu_arm64` boots the ISO on QEMU's `virt` machine.)

use imprint_tests::fixtures::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const EM_AARCH64: u16 = 183;
const PE_ARM64: u16 = 0xaa64;
const EFI_PLATFORM: u8 = 0xef;

/// An artifact of `initramfs/build.sh iso aarch64`; the test does not build it.
fn artifact(name: &str) -> PathBuf {
    let p = repo_root().join("out/aarch64").join(name);
    assert!(
        p.exists(),
        "{} is missing: build the arm64 artifacts first \
         (`bash initramfs/build.sh iso aarch64`, after `make agent-aarch64`)",
        p.display()
    );
    p
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The machine field of a PE image (`MZ`, then `PE\0\0` at e_lfanew).
fn pe_machine(b: &[u8]) -> u16 {
    assert_eq!(&b[..2], b"MZ", "no DOS/PE header");
    let pe = u32le(b, 0x3c) as usize;
    assert_eq!(&b[pe..pe + 4], b"PE\0\0", "no PE signature at {pe:#x}");
    u16le(b, pe + 4)
}

/// El Torito boot entries of an ISO: (platform id, load RBA, sector count).
fn el_torito_entries(iso: &str) -> Vec<(u8, u32, u16)> {
    let brvd = read_at(iso, 17 * 2048, 2048);
    assert!(
        brvd[0] == 0 && &brvd[1..6] == b"CD001" && brvd[7..30] == *b"EL TORITO SPECIFICATION",
        "{iso}: no El Torito boot record at sector 17"
    );
    let cat = read_at(iso, u64::from(u32le(&brvd, 0x47)) * 2048, 2048);
    assert!(
        cat[0] == 1 && cat[0x1e] == 0x55 && cat[0x1f] == 0xaa,
        "{iso}: bad validation entry"
    );
    let entry = |e: &[u8], platform: u8| (platform, u32le(e, 8), u16le(e, 6));
    let mut out = vec![entry(&cat[32..64], cat[1])];
    let mut at = 64;
    while at + 32 <= cat.len() && matches!(cat[at], 0x90 | 0x91) {
        let (platform, n, last) = (cat[at + 1], u16le(&cat, at + 2), cat[at] == 0x91);
        at += 32;
        for _ in 0..n {
            while cat[at] == 0x44 {
                at += 32; // extension records
            }
            out.push(entry(&cat[at..at + 32], platform));
            at += 32;
        }
        if last {
            break;
        }
    }
    out
}

/// What matters of an ELF file for this test, from its header and program headers.
struct Elf {
    machine: u16,
    kind: u16,
    interp: Option<String>,
    dynamic: bool,
}

fn elf(b: &[u8]) -> Option<Elf> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return None;
    }
    let (machine, kind) = (u16le(b, 18), u16le(b, 16));
    let (mut interp, mut dynamic) = (None, false);
    if b[4] == 2 {
        let (phoff, size, n) = (u64le(b, 32) as usize, u16le(b, 54) as usize, u16le(b, 56));
        for i in 0..n as usize {
            let ph = &b[phoff + i * size..];
            match u32le(ph, 0) {
                2 => dynamic = true,
                3 => {
                    let (off, len) = (u64le(ph, 8) as usize, u64le(ph, 32) as usize);
                    let s = String::from_utf8_lossy(&b[off..off + len]);
                    interp = Some(s.trim_end_matches('\0').to_string());
                }
                _ => {}
            }
        }
    }
    Some(Elf {
        machine,
        kind,
        interp,
        dynamic,
    })
}

/// Whether `path` (absolute, inside the ramdisk at `root`) names a file there, following
/// symlinks without leaving the ramdisk.
fn exists_in(root: &Path, path: &str) -> bool {
    let mut p = PathBuf::from(path);
    for _ in 0..40 {
        let full = root.join(p.strip_prefix("/").unwrap_or(&p));
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&full).unwrap();
                p = if target.is_absolute() {
                    target
                } else {
                    p.parent().unwrap().join(target)
                };
            }
            Ok(m) => return m.is_file(),
            Err(_) => return false,
        }
    }
    false
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            files_under(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// The ramdisk unpacked (as root: it holds device nodes).
fn unpack_ramdisk() -> tempfile::TempDir {
    let img = artifact("initramfs.img");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("zstd -dc \"$1\" | (cd \"$2\" && cpio -idm --quiet --no-absolute-filenames)")
        .args(["sh", img.to_str().unwrap(), dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unpacking {}: {}",
        img.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn the_arm64_iso_boots_uefi_only_with_an_arm64_grub_and_has_the_customization_area() {
    let iso = artifact("imprint.iso");
    let iso_s = iso.to_str().unwrap();
    let entries = el_torito_entries(iso_s);
    assert!(
        entries.iter().all(|e| e.0 == EFI_PLATFORM),
        "an arm64 ISO boots UEFI only, yet it has a non-EFI El Torito entry: {entries:?}"
    );
    let (_, rba, _) = entries[0];

    // The EFI image is a FAT filesystem; its size is in its own boot sector.
    let offset = u64::from(rba) * 2048;
    let bs = read_at(iso_s, offset, 512);
    let sectors = match u16le(&bs, 19) {
        0 => u64::from(u32le(&bs, 32)),
        n => u64::from(n),
    };
    let fat_len = sectors * u64::from(u16le(&bs, 11));
    let dir = tempfile::tempdir().unwrap();
    let fat = dir.path().join("efi.img");
    std::fs::write(&fat, read_at(iso_s, offset, fat_len as usize)).unwrap();
    let loader = dir.path().join("BOOTAA64.EFI");
    sh(
        "mcopy",
        &[
            "-n",
            "-i",
            fat.to_str().unwrap(),
            "::/EFI/BOOT/BOOTAA64.EFI",
            loader.to_str().unwrap(),
        ],
    );
    let pe = std::fs::read(&loader).unwrap();
    assert_eq!(
        pe_machine(&pe),
        PE_ARM64,
        "EFI/BOOT/BOOTAA64.EFI is not an arm64 PE image"
    );
    assert!(
        !String::from_utf8_lossy(&pe).contains("ttyS0"),
        "the loader's built-in config names the x86 console"
    );

    // As a USB stick: a GPT whose EFI system partition is that same FAT image.
    let table = sh("sgdisk", &["-p", iso_s]);
    let esp = table
        .lines()
        .find(|l| l.contains(" EF00 "))
        .unwrap_or_else(|| panic!("no EFI system partition in the ISO's GPT:\n{table}"));
    let start: u64 = esp.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(
        start * 512,
        offset,
        "the ESP is not the El Torito EFI image:\n{table}"
    );

    // The customization area: one extent of 256 KiB with its header.
    let report = sh_any(
        "xorriso",
        &[
            "-indev",
            iso_s,
            "-find",
            "/imprint/config.img",
            "-exec",
            "report_lba",
            "--",
        ],
    );
    let text = String::from_utf8_lossy(&report.stdout).into_owned()
        + &String::from_utf8_lossy(&report.stderr);
    let extents: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("File data lba:"))
        .collect();
    assert_eq!(
        extents.len(),
        1,
        "/imprint/config.img is not one extent:\n{text}"
    );
    let f: Vec<&str> = extents[0].split(',').map(str::trim).collect();
    let lba: u64 = f[1].parse().unwrap();
    let area = read_at(iso_s, lba * 2048, 64);
    assert_eq!(&area[..23], b"IMPRINT-CONFIG-AREA-v1\n", "no area header");
    assert_eq!(u32le(&area, 32), 256 * 1024, "area size");

    // `imprint iso customize` (the x86_64 agent) writes it unchanged, and reads it back.
    let copy = dir.path().join("custom.iso");
    std::fs::copy(&iso, &copy).unwrap();
    let copy_s = copy.to_str().unwrap();
    let bin = imprint_bin();
    let bin = bin.to_str().unwrap();
    sh(bin, &["iso", "customize", "--karg", "ip=dhcp", copy_s]);
    let shown = sh(bin, &["iso", "show", copy_s]);
    assert!(shown.contains("ip=dhcp"), "{shown}");
}

#[test]
fn the_arm64_kernel_has_the_efi_stub_and_the_boot_store_names_it() {
    let kernel = std::fs::read(artifact("vmlinuz")).unwrap();
    // GRUB's arm64 `linux` and iPXE need the uncompressed Image with its EFI stub.
    assert_eq!(&kernel[0x38..0x3c], b"ARMd", "not an arm64 Image");
    assert_eq!(pe_machine(&kernel), PE_ARM64, "no arm64 EFI stub");

    let store = repo_root().join("out/aarch64/boot");
    let text = std::fs::read_to_string(store.join("current.json")).unwrap();
    let m: Value = serde_json::from_str(&text).unwrap();
    assert!(
        m["kernel_version"].as_str().unwrap().ends_with("-arm64"),
        "{m:#}"
    );
    for a in m["artifacts"].as_array().unwrap() {
        let name = a["name"].as_str().unwrap();
        let bytes = std::fs::read(store.join(a["path"].as_str().unwrap())).unwrap();
        assert_eq!(sha256_hex(&bytes), a["sha256"].as_str().unwrap(), "{a}");
        assert_eq!(
            bytes,
            std::fs::read(artifact(name)).unwrap(),
            "out/aarch64/{name} and its content-named copy differ"
        );
    }
    let script = std::fs::read_to_string(store.join("current.ipxe")).unwrap();
    assert!(
        script.contains("set imprint_console console=tty0 console=ttyAMA0,115200n8"),
        "{script}"
    );
}

#[test]
fn the_arm64_ramdisk_is_aarch64_throughout_and_complete() {
    let dir = unpack_ramdisk();
    let root = dir.path();
    let init = std::fs::read(root.join("init")).expect("the ramdisk has /init");
    let e = elf(&init).expect("/init is an ELF file");
    assert_eq!(e.machine, EM_AARCH64, "/init is not an aarch64 ELF");
    assert!(
        e.interp.is_none(),
        "/init is dynamically linked ({:?})",
        e.interp
    );

    let mut files = Vec::new();
    files_under(root, &mut files);
    let mut checked = 0;
    let mut missing = Vec::new();
    for f in &files {
        let Some(e) = elf(&std::fs::read(f).unwrap()) else {
            continue;
        };
        let name = f.strip_prefix(root).unwrap().display().to_string();
        assert_eq!(
            e.machine, EM_AARCH64,
            "/{name} is not aarch64 (e_machine {})",
            e.machine
        );
        // Executables and shared libraries; kernel modules (ET_REL) have no NEEDED.
        if e.kind == 1 || !e.dynamic {
            continue;
        }
        checked += 1;
        if let Some(i) = &e.interp {
            if !exists_in(root, i) {
                missing.push(format!("/{name}: interpreter {i}"));
            }
        }
        let dynamic = sh("readelf", &["-dW", f.to_str().unwrap()]);
        for lib in dynamic
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        {
            let found = [
                "/lib/aarch64-linux-gnu",
                "/usr/lib/aarch64-linux-gnu",
                "/lib",
                "/usr/lib",
            ]
            .iter()
            .any(|d| exists_in(root, &format!("{d}/{lib}")));
            if !found {
                missing.push(format!("/{name}: {lib}"));
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} dynamic ELF files in the ramdisk"
    );
    assert!(
        missing.is_empty(),
        "not in the ramdisk:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_arm64_ramdisk_tools_run_under_emulation() {
    let binfmt =
        std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap_or_default();
    assert!(
        binfmt.starts_with("enabled")
            && binfmt
                .lines()
                .any(|l| l.starts_with("flags:") && l.contains('F')),
        "qemu-user's binfmt handler for aarch64 is not registered with the F flag \
         (qemu-user-static, `make deps`): /proc/sys/fs/binfmt_misc/qemu-aarch64 = {binfmt:?}"
    );
    let dir = unpack_ramdisk();
    let root = dir.path().to_str().unwrap();
    for (argv, expect) in [
        (&["/bin/busybox", "uname", "-m"][..], "aarch64"),
        (&["/sbin/mdadm", "--version"], "mdadm - v"),
        (&["/sbin/lvm", "version"], "LVM version:"),
        (&["/sbin/sgdisk", "--version"], "GPT fdisk (sgdisk) version"),
        (&["/sbin/mkfs.ext4", "-V"], "mke2fs 1."),
    ] {
        let out = Command::new("chroot")
            .arg(root)
            .args(argv)
            .env_clear()
            .env("PATH", "/sbin:/bin")
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .stdin(Stdio::null())
            .output()
            .expect("running chroot");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains(expect),
            "{argv:?} in the ramdisk: {}\n{text}",
            out.status
        );
        eprintln!(
            "{}: {}",
            argv.join(" "),
            text.lines().next().unwrap_or("").trim()
        );
    }
}
