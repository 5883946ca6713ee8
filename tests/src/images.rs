//! The real Debian 12 images the QEMU suites deploy, built by `images/build.sh` on first
//! use and cached under `target/images/<key>/` (see `images/README.md`): x86_64 ones and,
//! for the arm64 (QEMU `virt` + AAVMF) tests, aarch64 ones (`IMPRINT_IMAGE_ARCH=aarch64`).

use crate::fixtures::repo_root;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A built image: the compressed file, the digests of that file, its decompressed size.
#[derive(Clone, Debug)]
pub struct Built {
    /// The compressed image (`.tar.zst` or `.raw.zst`).
    pub path: PathBuf,
    /// Hex sha256 of the compressed file (what a document's `image.sha256` holds).
    pub sha256: String,
    /// Hex sha512 of the compressed file (what a document's `image.sha512` holds).
    pub sha512: String,
    /// Bytes after decompression: the raw disk, or the tar archive.
    pub raw_size: u64,
}

/// Upper bound for a cold build (mmdebstrap from the mirror, then compression).
const BUILD_TIMEOUT_SECS: u32 = 3600;

/// The architecture an image is built for (`IMPRINT_IMAGE_ARCH` of `images/build.sh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arch {
    X86_64,
    Aarch64,
}

/// The output directory of `images/build.sh` for `arch`, built once per process; across
/// processes the script's own file lock makes concurrent callers wait for one build.
fn build_dir(arch: Arch) -> &'static Path {
    static X86_64: OnceLock<PathBuf> = OnceLock::new();
    static AARCH64: OnceLock<PathBuf> = OnceLock::new();
    let (dir, name) = match arch {
        Arch::X86_64 => (&X86_64, "x86_64"),
        Arch::Aarch64 => (&AARCH64, "aarch64"),
    };
    dir.get_or_init(|| {
        let script = repo_root().join("images/build.sh");
        let out = Command::new("timeout")
            .arg(BUILD_TIMEOUT_SECS.to_string())
            .arg("bash")
            .arg(&script)
            .env("IMPRINT_IMAGE_ARCH", name)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "IMPRINT_IMAGE_ARCH={name} {} failed ({}); its log is above",
            script.display(),
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = stdout.lines().last().map(str::trim).unwrap_or_default();
        assert!(
            !dir.is_empty(),
            "{} printed no output directory",
            script.display()
        );
        PathBuf::from(dir)
    })
}

/// Reads a one-line file the build wrote next to an image.
fn read_line(path: &Path) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.trim().to_string()
}

/// The image `name` in `arch`'s build directory, its digests and the size from `size_file`.
fn built(arch: Arch, name: &str, size_file: &str) -> Built {
    let dir = build_dir(arch);
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing after images/build.sh",
        path.display()
    );
    let sha256 = read_line(&dir.join(format!("{name}.sha256")));
    let sha512 = read_line(&dir.join(format!("{name}.sha512")));
    let size = read_line(&dir.join(size_file));
    let raw_size = size
        .parse()
        .unwrap_or_else(|e| panic!("{size_file} holds {size:?}: {e}"));
    Built {
        path,
        sha256,
        sha512,
        raw_size,
    }
}

/// The bootable whole-disk image (GPT: ESP with GRUB EFI, bios_grub, ext4 root `debroot`).
pub fn debian_disk() -> Built {
    built(
        Arch::X86_64,
        "debian-12-disk.raw.zst",
        "debian-12-disk.raw.size",
    )
}

/// The root filesystem archive (`format: rootfs`); `raw_size` is the size of the tar.
pub fn debian_rootfs() -> Built {
    built(
        Arch::X86_64,
        "debian-12-rootfs.tar.zst",
        "debian-12-rootfs.tar.size",
    )
}

/// The arm64 whole-disk image, UEFI only (GPT: ESP with `BOOTAA64.EFI`, ext4 root
/// `debroot` typed as an aarch64 root; serial console `ttyAMA0`, QEMU `virt`'s PL011).
/// The first call builds it under qemu-user emulation, several minutes.
pub fn debian_disk_arm64() -> Built {
    built(
        Arch::Aarch64,
        "debian-12-arm64-disk.raw.zst",
        "debian-12-arm64-disk.raw.size",
    )
}

/// The arm64 root filesystem archive (`format: rootfs`, GRUB's arm64-efi modules in it);
/// `raw_size` is the size of the tar.
pub fn debian_rootfs_arm64() -> Built {
    built(
        Arch::Aarch64,
        "debian-12-arm64-rootfs.tar.zst",
        "debian-12-arm64-rootfs.tar.size",
    )
}
