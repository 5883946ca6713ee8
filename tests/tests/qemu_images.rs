//! The Debian 12 whole-disk image boots under QEMU (TCG) and cloud-init finds a `cidata`
//! partition appended to the same disk — exactly what the agent produces.

use imprint_tests::fixtures::{gpt_partitions, sh};
use imprint_tests::images::{debian_disk, Built};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Size of the disk the image is written to (sparse).
const DISK_BYTES: u64 = 2 << 30;
/// Boot to the cloud-init marker must happen within this (measured ~70-120 s under TCG).
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// A loop device over `len` bytes at `offset` of a file, detached on drop.
struct Loop(String);

impl Loop {
    fn at(file: &Path, offset: u64, len: u64) -> Loop {
        let dev = sh(
            "losetup",
            &[
                "-f",
                "--show",
                "-o",
                &offset.to_string(),
                "--sizelimit",
                &len.to_string(),
                file.to_str().unwrap(),
            ],
        );
        Loop(dev.trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A running QEMU, killed and reaped on drop.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes the decompressed image to a sparse `DISK_BYTES` file after checking its digest.
fn write_disk(img: &Built, disk: &Path) {
    let dgst = sh("sha256sum", &[img.path.to_str().unwrap()]);
    assert_eq!(
        dgst.split_whitespace().next(),
        Some(img.sha256.as_str()),
        "published sha256 matches the file"
    );
    let out = std::fs::File::create(disk).unwrap();
    let status = Command::new("zstd")
        .args(["-dc", "--sparse", img.path.to_str().unwrap()])
        .stdout(out)
        .status()
        .expect("run zstd");
    assert!(status.success(), "zstd -dc {}", img.path.display());
    assert_eq!(
        std::fs::metadata(disk).unwrap().len(),
        img.raw_size,
        "raw size as published"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .unwrap()
        .set_len(DISK_BYTES)
        .unwrap();
}

/// Appends a 16 MiB `cidata` vfat partition holding a NoCloud seed whose runcmd prints
/// `marker-42` (computed by the guest's shell, so only an executed runcmd prints it).
fn append_cidata(disk: &Path, dir: &Path, marker: &str) {
    let d = disk.to_str().unwrap();
    let before = gpt_partitions(d).len();
    // -e: the image was grown, move the backup GPT to the new end first.
    sh(
        "sgdisk",
        &[
            "-e",
            "-n",
            "0:0:+16MiB",
            "-t",
            "0:0700",
            "-c",
            "0:cidata",
            d,
        ],
    );
    let parts = gpt_partitions(d);
    assert_eq!(parts.len(), before + 1, "one partition appended");
    let &(_, start, len) = parts.iter().max_by_key(|p| p.1).unwrap();
    let meta = dir.join("meta-data");
    let user = dir.join("user-data");
    std::fs::write(
        &meta,
        "instance-id: images-test-01\nlocal-hostname: images-test\n",
    )
    .unwrap();
    std::fs::write(
        &user,
        format!(
            "#cloud-config\nruncmd:\n  - [sh, -c, \"echo {marker}-$((40 + 2)) > /dev/console\"]\n"
        ),
    )
    .unwrap();
    let part = Loop::at(disk, start, len);
    // -I: the window is ours even if the kernel lists stale partitions on this loop number.
    sh("mkfs.vfat", &["-I", "-n", "cidata", &part.0]);
    sh(
        "mcopy",
        &[
            "-i",
            &part.0,
            meta.to_str().unwrap(),
            user.to_str().unwrap(),
            "::",
        ],
    );
}

/// Boots `disk` with `firmware` args; returns the seconds until `marker` is on the serial log.
fn boot_until(disk: &Path, firmware: &[String], log: &Path, marker: &str) -> Result<f64, String> {
    let mut args: Vec<String> = [
        "-accel",
        "tcg",
        "-m",
        "1536",
        "-nographic",
        "-monitor",
        "none",
        "-no-reboot",
        "-nic",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("-serial".into());
    args.push(format!("file:{}", log.display()));
    args.extend(firmware.iter().cloned());
    args.push("-drive".into());
    args.push(format!("file={},format=raw,if=virtio", disk.display()));
    let started = Instant::now();
    let child = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-x86_64");
    let mut qemu = Qemu(child);
    while started.elapsed() < BOOT_LIMIT {
        std::thread::sleep(Duration::from_millis(500));
        let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
        if text.contains(&format!("{marker}-42")) {
            return Ok(started.elapsed().as_secs_f64());
        }
        if let Ok(Some(status)) = qemu.0.try_wait() {
            return Err(format!("QEMU exited ({status}) before the marker"));
        }
    }
    Err(format!("no marker within {BOOT_LIMIT:?}"))
}

/// The tail of the serial log, for failure messages.
fn tail(log: &Path) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A disk holding the image plus a cidata seed, in its own temp dir.
fn prepared_disk(marker: &str) -> (tempfile::TempDir, PathBuf) {
    let img = debian_disk();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    write_disk(&img, &disk);
    append_cidata(&disk, dir.path(), marker);
    (dir, disk)
}

fn boots(firmware: &[String], dir: &Path, disk: &Path, marker: &str, what: &str) {
    let log = dir.join("serial.log");
    match boot_until(disk, firmware, &log, marker) {
        Ok(secs) => eprintln!("{what}: cloud-init runcmd marker after {secs:.1} s"),
        Err(e) => panic!("{what}: {e}; serial log tail:\n{}", tail(&log)),
    }
    // systemd marks a unit that failed (a mount, a cloud-init stage) with "FAILED".
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    let failed: Vec<&str> = text.lines().filter(|l| l.contains("FAILED")).collect();
    assert!(
        failed.is_empty(),
        "{what}: units failed during boot:\n{}",
        failed.join("\n")
    );
}

#[test]
fn debian_disk_boots_uefi_and_cloud_init_reads_appended_cidata() {
    let marker = "imprint-images-uefi-ok";
    let (dir, disk) = prepared_disk(marker);
    let vars = dir.path().join("OVMF_VARS.fd");
    std::fs::copy("/usr/share/OVMF/OVMF_VARS.fd", &vars).expect("ovmf is installed (OVMF_VARS.fd)");
    let firmware = vec![
        "-drive".to_string(),
        "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd".to_string(),
        "-drive".to_string(),
        format!("if=pflash,format=raw,file={}", vars.display()),
    ];
    boots(&firmware, dir.path(), &disk, marker, "UEFI boot");
}

#[test]
fn debian_disk_boots_bios_and_cloud_init_reads_appended_cidata() {
    let marker = "imprint-images-bios-ok";
    let (dir, disk) = prepared_disk(marker);
    // QEMU's default firmware is SeaBIOS: legacy boot through the MBR and bios_grub.
    boots(&[], dir.path(), &disk, marker, "BIOS boot");
}
