//! qcow2 images through the real binary: files made by `qemu-img` from a small
//! partitioned image (data with zero holes), served by the test HTTP server,
//! written with `imprint write-image` onto loop devices full of garbage, and
//! compared with `cmp` against `qemu-img convert -O raw` of the same file.

use imprint_tests::fixtures::*;
use imprint_tests::provision::assert_no_partition_table;
use imprint_tests::server::{Fault, Server};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A disk larger than the image, so that the image's backup GPT is not at its end
/// (a failed run must leave no table a tool could find).
const DISK: u64 = 64 << 20;

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(48, 512))
}

/// A qcow2 file made with `qemu-img convert` and its own conversion back to raw.
struct Qcow2 {
    dir: tempfile::TempDir,
    file: PathBuf,
    bytes: Vec<u8>,
    /// `qemu-img convert -O raw` of `file`: the disk it describes, by qemu's reading.
    raw: PathBuf,
}

fn make(opts: &[&str]) -> Qcow2 {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    write_sparse(&src, &image().raw);
    let file = dir.path().join("disk.qcow2");
    let mut args = vec!["convert", "-q", "-f", "raw", "-O", "qcow2"];
    args.extend_from_slice(opts);
    args.extend([src.to_str().unwrap(), file.to_str().unwrap()]);
    sh("qemu-img", &args);
    let raw = dir.path().join("back.raw");
    sh(
        "qemu-img",
        &[
            "convert",
            "-q",
            "-f",
            "qcow2",
            "-O",
            "raw",
            file.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    let bytes = std::fs::read(&file).unwrap();
    Qcow2 {
        dir,
        file,
        bytes,
        raw,
    }
}

/// A `size`-byte loop device with garbage at the start of every 64 KiB (so an
/// unallocated cluster left alone shows), the rest of its backing file sparse.
fn garbage_disk(size: u64) -> LoopDev {
    let d = LoopDev::new(size, 512);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&d.path)
        .unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut chunk = vec![0u8; 4096];
    for at in (0..size).step_by(64 << 10) {
        for w in chunk.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            w.copy_from_slice(&(state | 1).to_le_bytes());
        }
        f.write_all_at(&chunk, at).unwrap();
    }
    f.sync_all().unwrap();
    d
}

/// Writes `data` to a new sparse file at `path` (its zero 4 KiB blocks are holes).
fn write_sparse(path: &Path, data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(data.len() as u64).unwrap();
    for (i, block) in data.chunks(4096).enumerate() {
        if block.iter().any(|&b| b != 0) {
            f.write_all_at(block, i as u64 * 4096).unwrap();
        }
    }
}

fn write_image(server: &Server, path: &str, sha: &str, disk: &LoopDev, extra: &[&str]) -> Output {
    let url = server.url(path);
    let mut args = vec![
        "write-image",
        "--yes",
        "--url",
        &url,
        "--sha256",
        sha,
        "--target",
        disk.dev(),
    ];
    args.extend_from_slice(extra);
    Command::new(imprint_bin()).args(&args).output().unwrap()
}

/// `cmp` of the disk's first bytes with the raw conversion: nothing printed, exit 0.
fn assert_same_as_qemu(disk: &LoopDev, raw: &Path) {
    let len = std::fs::metadata(raw).unwrap().len().to_string();
    let out = sh_any("cmp", &["-n", &len, disk.dev(), raw.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "the disk differs from qemu-img's reading: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// sha256 of the disk but its first and last MiB, which a failed run wipes.
fn middle(disk: &LoopDev) -> String {
    sha256_hex(&disk.read_at(1 << 20, (DISK - (2 << 20)) as usize))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a fresh qcow2 made with `opts` and checks the disk against qemu-img.
fn lands(opts: &[&str]) {
    let q = make(opts);
    let server = Server::start();
    server.serve_bytes("/disk.qcow2", q.bytes.clone());
    // Exactly the image's size: write-image then has no backup GPT to move, and the
    // whole device must equal qemu-img's reading of the file.
    let disk = garbage_disk(image().raw.len() as u64);
    let out = write_image(&server, "/disk.qcow2", &sha256_hex(&q.bytes), &disk, &[]);
    assert!(out.status.success(), "{opts:?}: {}", stderr(&out));
    assert_same_as_qemu(&disk, &q.raw);
    assert_sgdisk_clean(disk.dev());
    // One download: the file is streamed by a single GET (no Range, or an open one);
    // the header and tables come from its first bytes and closed Range reads.
    let requests = server.requests();
    let streams = requests
        .iter()
        .filter(|r| r.range.as_deref().is_none_or(|r| r.ends_with('-')))
        .count();
    assert_eq!(streams, 1, "{opts:?}: {requests:?}");
    drop(q.dir);
}

#[test]
fn a_plain_v3_qcow2_lands_byte_for_byte() {
    lands(&[]);
}

#[test]
fn deflate_compressed_clusters_land_byte_for_byte() {
    lands(&["-c"]);
}

#[test]
fn zstd_compressed_clusters_land_byte_for_byte() {
    lands(&["-c", "-o", "compression_type=zstd"]);
}

#[test]
fn two_mib_clusters_land_byte_for_byte() {
    lands(&["-o", "cluster_size=2M"]);
}

#[test]
fn a_version_2_qcow2_lands_byte_for_byte() {
    lands(&["-o", "compat=0.10"]);
}

#[test]
fn a_dropped_connection_resumes_and_lands_the_same_bytes() {
    let q = make(&["-c"]);
    let server = Server::start();
    server.serve_bytes("/disk.qcow2", q.bytes.clone());
    // Every response drops after this many bytes: the table reads are shorter, the file is not.
    let step = (q.bytes.len() as u64 / 3).max(256 << 10);
    server.add_fault("/disk.qcow2", Fault::DropEvery(step));
    let disk = garbage_disk(image().raw.len() as u64);
    let out = write_image(
        &server,
        "/disk.qcow2",
        &sha256_hex(&q.bytes),
        &disk,
        &["--verify", "readback"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The data pass is the GET after the table reads (closed ranges): it was resumed.
    let ranges: Vec<String> = server
        .requests()
        .into_iter()
        .filter_map(|r| r.range)
        .collect();
    let tables_read = ranges.iter().rposition(|r| !r.ends_with('-'));
    let resumed_after = tables_read.map_or(0, |i| ranges.len() - i - 1);
    assert!(
        tables_read.is_some() && resumed_after > 0,
        "no resume of the data pass: {ranges:?}"
    );
    assert_same_as_qemu(&disk, &q.raw);
    assert!(
        stderr(&out).contains("identical"),
        "no read-back: {}",
        stderr(&out)
    );
}

#[test]
fn a_wrong_digest_leaves_no_partition_table() {
    let q = make(&[]);
    let server = Server::start();
    server.serve_bytes("/disk.qcow2", q.bytes.clone());
    let disk = garbage_disk(DISK);
    let out = write_image(&server, "/disk.qcow2", &"0".repeat(64), &disk, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).to_lowercase().contains("digest"),
        "{}",
        stderr(&out)
    );
    assert_no_partition_table(disk.dev());
}

#[test]
fn a_backing_file_is_refused_naming_it_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    let b = base.to_str().unwrap();
    sh("qemu-img", &["create", "-q", "-f", "qcow2", b, "32M"]);
    sh(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            b,
            "-F",
            "qcow2",
            top.to_str().unwrap(),
        ],
    );
    let bytes = std::fs::read(&top).unwrap();
    let server = Server::start();
    server.serve_bytes("/top.qcow2", bytes.clone());
    let disk = garbage_disk(DISK);
    let before = middle(&disk);
    let out = write_image(&server, "/top.qcow2", &sha256_hex(&bytes), &disk, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("backing file") && err.contains(b), "{err}");
    assert_eq!(middle(&disk), before, "the image was written");
    assert_no_partition_table(disk.dev());
}

#[test]
fn a_zstd_compressed_qcow2_file_is_refused_clearly() {
    let q = make(&[]);
    let zst = zstd::encode_all(&q.bytes[..], 3).unwrap();
    let server = Server::start();
    server.serve_bytes("/disk.qcow2.zst", zst.clone());
    let disk = garbage_disk(DISK);
    let before = middle(&disk);
    let out = write_image(&server, "/disk.qcow2.zst", &sha256_hex(&zst), &disk, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("zstd-compressed") && err.contains("cannot be read at random"),
        "{err}"
    );
    assert_eq!(middle(&disk), before, "the image was written");
    assert_no_partition_table(disk.dev());
    drop(q.file);
}
