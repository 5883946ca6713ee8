//! Fixtures built by the tests themselves: loop devices, GPT disk images with real
//! filesystems, the agent binary, and the real tools used as independent checkers.

use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs a command, panicking with its stderr when it fails.
pub fn sh(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and returns its whole output, whatever the status.
pub fn sh_any(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"))
}

/// The static agent binary under test: `$IMPRINT_BIN`, else `out/imprint` at the repo root.
pub fn imprint_bin() -> PathBuf {
    if let Ok(p) = std::env::var("IMPRINT_BIN") {
        return PathBuf::from(p);
    }
    let p = repo_root().join("out/imprint");
    assert!(p.exists(), "{} is missing: run `make` first", p.display());
    p
}

/// The architecture of the agent under test (`x86_64`, `aarch64`), from its ELF header:
/// with `IMPRINT_BIN` naming the aarch64 build, it runs here under qemu-aarch64.
pub fn agent_arch() -> &'static str {
    let bin = imprint_bin();
    let mut head = [0u8; 20];
    std::io::Read::read_exact(
        &mut std::fs::File::open(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display())),
        &mut head,
    )
    .unwrap_or_else(|e| panic!("reading {}: {e}", bin.display()));
    assert!(head.starts_with(b"\x7fELF"), "{} is not ELF", bin.display());
    match u16::from_le_bytes([head[18], head[19]]) {
        0x3e => "x86_64",
        0xb7 => "aarch64",
        m => panic!(
            "{}: ELF machine {m:#x} is neither x86_64 nor aarch64",
            bin.display()
        ),
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A loop device over a sparse backing file, detached and removed on drop.
pub struct LoopDev {
    pub path: PathBuf,
    pub backing: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDev {
    /// A new sparse loop device of `size` bytes with `sector`-byte logical sectors.
    pub fn new(size: u64, sector: u32) -> LoopDev {
        let dir = tempfile::tempdir().expect("tempdir");
        let backing = dir.path().join("disk.img");
        let f = std::fs::File::create(&backing).expect("create backing file");
        f.set_len(size).expect("size backing file");
        drop(f);
        let out = sh(
            "losetup",
            &[
                "-f",
                "--show",
                "--sector-size",
                &sector.to_string(),
                backing.to_str().unwrap(),
            ],
        );
        LoopDev {
            path: PathBuf::from(out.trim()),
            backing,
            _dir: dir,
        }
    }

    /// `path` as a &str.
    pub fn dev(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    /// Reads `len` bytes at `offset` from the device.
    pub fn read_at(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut f = std::fs::File::open(&self.path).expect("open loop device");
        f.seek(SeekFrom::Start(offset)).unwrap();
        let mut buf = vec![0; len];
        f.read_exact(&mut buf).unwrap();
        buf
    }

    /// A disk that was in use: `size` bytes with a GPT of two 64 MiB partitions, each
    /// starting with 2 MiB of random data.
    pub fn used(size: u64) -> LoopDev {
        let disk = LoopDev::new(size, 512);
        sh(
            "sgdisk",
            &["-n", "1:1MiB:+64MiB", "-n", "2:0:+64MiB", disk.dev()],
        );
        for (_, start, _) in disk.partition_offsets() {
            sh(
                "dd",
                &[
                    "if=/dev/urandom",
                    &format!("of={}", disk.dev()),
                    "bs=1M",
                    "count=2",
                    &format!("seek={}", start >> 20),
                    "conv=notrunc,fsync",
                    "status=none",
                ],
            );
        }
        disk
    }

    /// A digest of every byte of the device, read from its sparse backing file (the
    /// loop device writes through the same page cache): each allocated extent's offset,
    /// length and bytes; holes read as zeros and only their places count. A write
    /// anywhere changes it (a write into a hole allocates it), and a 2 GiB device holding
    /// a few MiB hashes in milliseconds instead of reading 2 GiB.
    pub fn sha256(&self) -> String {
        use std::os::fd::AsRawFd;
        // Whatever a buffered writer left in the device's own cache goes to the file first.
        sh("blockdev", &["--flushbufs", self.dev()]);
        let mut f = std::fs::File::open(&self.backing).expect("open the backing file");
        let len = f.metadata().expect("stat the backing file").len();
        let fd = f.as_raw_fd();
        let mut h = Sha256::new();
        let mut pos = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        while pos < len {
            // SAFETY: lseek on a file descriptor this function owns; no memory is passed.
            let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
            if data < 0 {
                break; // ENXIO: nothing but a hole to the end
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            let (data, hole) = (data as u64, (hole.max(data) as u64).min(len));
            h.update(data.to_le_bytes());
            h.update((hole - data).to_le_bytes());
            f.seek(SeekFrom::Start(data)).expect("seek");
            let mut left = hole - data;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                f.read_exact(&mut buf[..n]).expect("read the backing file");
                h.update(&buf[..n]);
                left -= n as u64;
            }
            pos = hole;
        }
        hex::encode(h.finalize())
    }

    /// `(number, start_byte, size_bytes)` of each partition, as sgdisk reads the table.
    pub fn partition_offsets(&self) -> Vec<(u32, u64, u64)> {
        gpt_partitions(self.dev())
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        // Partitions added with BLKPG outlive a detach unless they are deleted first.
        let _ = Command::new("partx").args(["-d", self.dev()]).output();
        let _ = Command::new("losetup").args(["-d", self.dev()]).status();
    }
}

/// `(number, start_byte, size_bytes)` of each GPT partition, read by `sgdisk` (an independent reader).
pub fn gpt_partitions(dev: &str) -> Vec<(u32, u64, u64)> {
    let out = sh("sgdisk", &["-p", dev]);
    let sector: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Sector size (logical/physical): "))
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.trim().parse().ok())
        .or_else(|| {
            out.lines()
                .find_map(|l| l.strip_prefix("Sector size (logical): "))
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
        })
        .expect("sgdisk prints the sector size");
    let mut parts = Vec::new();
    let mut in_table = false;
    for l in out.lines() {
        if l.starts_with("Number") {
            in_table = true;
            continue;
        }
        if in_table {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 3 {
                let (n, s, e): (u32, u64, u64) = (
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                );
                parts.push((n, s * sector, (e - s + 1) * sector));
            }
        }
    }
    parts
}

/// `sgdisk -v` output, asserted clean.
pub fn assert_sgdisk_clean(dev: &str) {
    let out = sh_any("sgdisk", &["-v", dev]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("No problems found"),
        "sgdisk -v {dev}:\n{text}"
    );
}

/// blkid's low-level probe of `len` bytes at `offset` of `dev` (through a read-only loop device).
pub fn blkid_at(dev: &str, offset: u64, len: u64) -> String {
    let l = sh(
        "losetup",
        &[
            "-f",
            "--show",
            "-r",
            "-o",
            &offset.to_string(),
            "--sizelimit",
            &len.to_string(),
            dev,
        ],
    );
    let l = l.trim().to_string();
    let out = sh_any("blkid", &["-p", "-o", "export", &l]);
    let _ = Command::new("losetup").args(["-d", &l]).status();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The agent's written digest: BLAKE3 over the BLAKE3 of each 1 MiB block (the last
/// may be shorter), computed here independently.
pub fn hash_list_blake3(data: &[u8]) -> String {
    let mut outer = blake3::Hasher::new();
    for block in data.chunks(1 << 20) {
        outer.update(blake3::hash(block).as_bytes());
    }
    outer.finalize().to_hex().to_string()
}

/// Hex sha256 of bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A whole-disk test image: GPT with an ext4 root holding known files and a small vfat ESP.
pub struct TestImage {
    pub raw: Vec<u8>,
    /// `(number, start_byte, size_bytes)` of the image's partitions.
    pub partitions: Vec<(u32, u64, u64)>,
    /// Files put on the ext4 filesystem and their contents.
    pub files: Vec<(String, String)>,
    pub root_label: String,
}

impl TestImage {
    /// Builds a `size_mib` MiB GPT image for disks with `sector`-byte logical sectors
    /// (sgdisk + mkfs.ext4 -d + mkfs.vfat, no mounts).
    pub fn build(size_mib: u64, sector: u32) -> TestImage {
        TestImage::build_numbered(size_mib, sector, 1, 2)
    }

    /// As [`TestImage::build`], with the ESP and root in GPT entries `esp` and `root`
    /// (stock cloud images use 15 and 1); `partitions` lists them by number.
    pub fn build_numbered(size_mib: u64, sector: u32, esp: u32, root: u32) -> TestImage {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.raw");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(size_mib << 20)
            .unwrap();
        let p = img.to_str().unwrap();
        // sgdisk lays a table out for the device's sector size: give it one.
        let l = sh(
            "losetup",
            &["-f", "--show", "--sector-size", &sector.to_string(), p],
        );
        let l = l.trim().to_string();
        sh(
            "sgdisk",
            &[
                "-n",
                &format!("{esp}:1MiB:+8MiB"),
                "-t",
                &format!("{esp}:ef00"),
                "-c",
                &format!("{esp}:esp"),
                "-n",
                &format!("{root}:0:0"),
                "-t",
                &format!("{root}:8300"),
                "-c",
                &format!("{root}:root"),
                &l,
            ],
        );
        let parts = gpt_partitions(&l);
        let by_number = |n: u32| {
            *parts
                .iter()
                .find(|p| p.0 == n)
                .expect("partition made above")
        };
        sh("losetup", &["-d", &l]);
        let files = vec![
            ("etc/hostname".to_string(), "image-default\n".to_string()),
            (
                "etc/imprint-test".to_string(),
                "written by the test image builder\n".to_string(),
            ),
            ("var/lib/data.txt".to_string(), "x".repeat(300_000)),
        ];
        let tree = dir.path().join("tree");
        for (f, c) in &files {
            let path = tree.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        let (_, rs, rl) = by_number(root);
        let rootfs = dir.path().join("root.ext4");
        std::fs::File::create(&rootfs).unwrap().set_len(rl).unwrap();
        sh(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-L",
                "imgroot",
                "-d",
                tree.to_str().unwrap(),
                rootfs.to_str().unwrap(),
            ],
        );
        let (_, es, el) = by_number(esp);
        let esp = dir.path().join("esp.vfat");
        std::fs::File::create(&esp).unwrap().set_len(el).unwrap();
        sh("mkfs.vfat", &["-n", "IMGESP", esp.to_str().unwrap()]);
        let mut raw = std::fs::read(&img).unwrap();
        let root = std::fs::read(&rootfs).unwrap();
        raw[rs as usize..(rs + rl) as usize].copy_from_slice(&root);
        let e = std::fs::read(&esp).unwrap();
        raw[es as usize..(es + el) as usize].copy_from_slice(&e);
        TestImage {
            raw,
            partitions: parts,
            files,
            root_label: "imgroot".into(),
        }
    }

    /// zstd-compressed image.
    pub fn zstd(&self) -> Vec<u8> {
        zstd::encode_all(&self.raw[..], 3).unwrap()
    }

    /// xz-compressed image.
    pub fn xz(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = liblzma::read::XzEncoder::new(&self.raw[..], 1);
        enc.read_to_end(&mut out).unwrap();
        out
    }
}

/// Copies every file of a vfat filesystem at `offset` in `dev` into a new directory (mtools).
pub fn extract_vfat(dev: &str, offset: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("{dev}@@{offset}");
    sh(
        "mcopy",
        &["-s", "-n", "-i", &spec, "::/", dir.path().to_str().unwrap()],
    );
    dir
}

/// What cloud-init's own NoCloud seed reader (Debian's cloud-init, system Python) reads from `dir`:
/// `{"meta_data": …, "user_data": "…", "network_config": …}`.
pub fn cloud_init_read_nocloud(dir: &Path) -> serde_json::Value {
    let script = r#"
import json, sys, os
from cloudinit import util
d = sys.argv[1].rstrip('/') + '/'
md, ud, vd = util.read_seeded(base='file://' + d, timeout=1, retries=0)
nc = None
if os.path.exists(d + 'network-config'):
    nc = util.load_yaml(util.load_file(d + 'network-config'))
print(json.dumps({"meta_data": md, "user_data": ud.decode() if isinstance(ud, bytes) else ud, "network_config": nc}))
"#;
    let out = sh("/usr/bin/python3", &["-c", script, dir.to_str().unwrap()]);
    serde_json::from_str(out.trim()).expect("cloud-init reader prints JSON")
}

/// Reads `len` bytes at `offset` of a device or disk file.
pub fn read_at(dev: &str, offset: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(dev).unwrap_or_else(|e| panic!("open {dev}: {e}"));
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// Checks a disk (device or disk file) that received `img` through the single-disk
/// document: a clean GPT spanning the disk, every image partition byte-identical, the
/// filesystems and a `cidata` drive found by blkid, and cloud-init reading the drive as
/// written for `hostname`.
pub fn assert_single_disk_deployed(dev: &str, img: &TestImage, hostname: &str) {
    assert_sgdisk_clean(dev);
    let parts = gpt_partitions(dev);
    assert_eq!(
        parts.len(),
        img.partitions.len() + 1,
        "image partitions plus the configdrive: {parts:?}"
    );
    for (i, &(n, start, len)) in img.partitions.iter().enumerate() {
        assert_eq!((parts[i].0, parts[i].1), (n, start), "partition {n} moved");
        let on_disk = read_at(dev, start, len as usize);
        assert_eq!(
            sha256_hex(&on_disk),
            sha256_hex(&img.raw[start as usize..(start + len) as usize]),
            "partition {n} differs"
        );
    }
    let (_, rs, rl) = img.partitions[img.partitions.len() - 1];
    let root = blkid_at(dev, rs, rl);
    assert!(
        root.contains("TYPE=ext4") && root.contains(&format!("LABEL={}", img.root_label)),
        "{root}"
    );
    let (_, cs, cl) = parts[parts.len() - 1];
    assert!(
        cs + (1 << 20) >= img.raw.len() as u64,
        "configdrive placed after the image's partitions"
    );
    let cd = blkid_at(dev, cs, cl);
    assert!(
        cd.contains("TYPE=vfat") && cd.to_lowercase().contains("label=cidata"),
        "{cd}"
    );
    let seed = extract_vfat(dev, cs);
    let ci = cloud_init_read_nocloud(seed.path());
    assert_eq!(ci["meta_data"]["local-hostname"], hostname);
    assert!(ci["meta_data"]["instance-id"].is_string());
    assert!(
        ci["user_data"]
            .as_str()
            .unwrap_or("")
            .contains("imprint-ok"),
        "{ci}"
    );
}

/// The server's base URL as a QEMU guest reaches it (user networking maps the host's
/// loopback to 10.0.2.2).
pub fn guest_base(server: &crate::server::Server) -> String {
    let port = server
        .url("/")
        .rsplit(':')
        .next()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    format!("http://10.0.2.2:{port}")
}

/// The product's single-disk document for `host`: the image at `image_url` with its
/// sha256, the smallest disk of at least 4 GiB, a NoCloud drive whose user-data prints
/// `marker` on the console, reports to `<base>/report/<host>` with `token`.
pub fn vm_single_disk_document(
    host: &str,
    base: &str,
    image_url: &str,
    sha256: &str,
    marker: &str,
    token: &str,
) -> String {
    format!(
        r#"version: 1
host: {{ hostname: {host} }}
disks:
  - name: root
    match: {{ smallest: true, min_size: 4GiB }}
image:
  url: {image_url}
  sha256: {sha256}
  format: disk
  target: root
configdrive:
  format: nocloud
  user_data: |
    #cloud-config
    runcmd: [[sh, -c, "echo {marker} > /dev/console"]]
  network_config: {{ version: 2, ethernets: {{ all: {{ match: {{ name: "e*" }}, dhcp4: true }} }} }}
report: {{ url: "{base}/report/{host}", token: "{token}" }}
finish: reboot
"#
    )
}

/// A root filesystem of busybox alone: enough for `sh`, `env` and `sleep` in a chroot.
pub fn busybox_rootfs() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for d in ["bin", "usr/bin", "etc", "boot", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for (link, to) in [
        ("bin/sh", "busybox"),
        ("bin/sleep", "busybox"),
        ("bin/false", "busybox"),
        ("usr/bin/env", "../../bin/busybox"),
    ] {
        std::os::unix::fs::symlink(to, root.join(link)).unwrap();
    }
    let tar = dir.path().join("root.tar.zst");
    sh(
        "tar",
        &[
            "--zstd",
            "-cf",
            tar.to_str().unwrap(),
            "-C",
            root.to_str().unwrap(),
            ".",
        ],
    );
    std::fs::read(tar).unwrap()
}

/// The chunk files of a casync store (`<4 hex>/<id>.cacnk`), relative to it, sorted.
pub fn chunk_store_files(store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(store).expect("the store").flatten() {
        for f in std::fs::read_dir(d.path())
            .expect("a store folder")
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".cacnk") {
                out.push(format!("{}/{name}", d.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}
