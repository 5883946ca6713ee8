//! End-to-end tests of the image pipeline against the harness HTTP server,
//! onto regular files and loop devices (512- and 4096-byte sectors).

use super::*;
use crate::plan::DigestAlgorithm;
use crate::units::MIB;
use imprint_tests::server::{Fault, Server};
use sha2::Digest as _;
use std::io::Write;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod network;
mod parallel;
mod qcow2;
mod readback;
mod registry;
mod targets;

/// Image size: not a multiple of 1 MiB or 4 KiB, so the unaligned tail is exercised.
const IMAGE_LEN: usize = 64 * MIB as usize - 1536;
const M: usize = MIB as usize;

/// The raw "disk image" and its compressed forms, built once per test binary.
struct Fixture {
    raw: Vec<u8>,
    zst: Vec<u8>,
    xz: Vec<u8>,
    gz: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let raw = build_image();
        let zst = zstd::encode_all(&raw[..], 3).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 0);
        xz.write_all(&raw).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        Fixture {
            raw,
            zst,
            xz: xz.finish().unwrap(),
            gz: gz.finish().unwrap(),
        }
    })
}

/// Random, text and long zero runs, like a real disk: a boot MiB with a marker,
/// incompressible data, 16 MiB and 8 MiB of zeros, text, and an unaligned tail.
fn build_image() -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
    };
    let mut img = vec![0u8; IMAGE_LEN];
    random(&mut img[..M]);
    img[..16].copy_from_slice(b"IMPRINT-BOOT-MIB");
    random(&mut img[M..8 * M]);
    // 8..24 MiB zeros.
    let text: Vec<u8> = (0..)
        .map(|i| format!("line {i}: the quick brown fox jumps over the lazy dog\n"))
        .flat_map(String::into_bytes)
        .take(8 * M)
        .collect();
    img[24 * M..32 * M].copy_from_slice(&text);
    // 32..40 MiB zeros.
    random(&mut img[40 * M..48 * M]);
    img[48 * M..56 * M].copy_from_slice(&text);
    // 56..63 MiB zeros; then a random unaligned tail.
    random(&mut img[63 * M..]);
    img
}

/// Aligned zero MiBs after the held-back first MiB: what the sink should skip.
fn expected_zero_skip(raw: &[u8]) -> u64 {
    raw.chunks(M)
        .skip(1)
        .filter(|c| c.len() == M && sink::is_zero(c))
        .count() as u64
        * MIB
}

fn sha(alg: DigestAlgorithm, data: &[u8]) -> Digest {
    let hex = match alg {
        DigestAlgorithm::Sha256 => hex::encode(sha2::Sha256::digest(data)),
        DigestAlgorithm::Sha512 => hex::encode(sha2::Sha512::digest(data)),
    };
    Digest {
        algorithm: alg,
        hex,
    }
}

/// The written bytes' hash list, computed independently of `verify.rs`.
fn hash_list_hex(data: &[u8]) -> String {
    imprint_tests::fixtures::hash_list_blake3(data)
}

/// Options with fast retries for tests.
fn fast() -> WriteOptions<'static> {
    WriteOptions {
        connect_timeout: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(5),
            // Long enough that a test wrongly waiting out an "outage" shows.
            outage: Duration::from_secs(30),
        },
        ..WriteOptions::default()
    }
}

/// A regular-file target pre-filled with a marker byte.
fn file_target(dir: &tempfile::TempDir, len: usize, fill: u8) -> PathBuf {
    let p = dir.path().join("target.img");
    std::fs::write(&p, vec![fill; len]).unwrap();
    p
}

/// A loop device over a temp file, detached on drop.
struct Loop {
    dev: PathBuf,
    _dir: tempfile::TempDir,
}

impl Loop {
    fn new(len: usize, sector: u32, fill: u8) -> Loop {
        let dir = tempfile::tempdir().unwrap();
        let backing = file_target(&dir, len, fill);
        let out = crate::runner::run(
            "losetup",
            [
                "-f",
                "--show",
                "--sector-size",
                &sector.to_string(),
                backing.to_str().unwrap(),
            ],
            Duration::from_secs(30),
        )
        .expect("losetup (tests need root and loop devices)");
        Loop {
            dev: PathBuf::from(out.stdout.trim()),
            _dir: dir,
        }
    }

    /// The regular file behind the device.
    fn backing(&self) -> PathBuf {
        self._dir.path().join("target.img")
    }

    fn read(&self, len: usize) -> Vec<u8> {
        let mut f = std::fs::File::open(&self.dev).unwrap();
        let mut v = vec![0; len];
        f.read_exact(&mut v).unwrap();
        v
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = crate::runner::run(
            "losetup",
            ["-d", self.dev.to_str().unwrap()],
            Duration::from_secs(30),
        );
    }
}

fn serve(server: &Server, path: &str, bytes: &[u8]) -> String {
    server.serve_bytes(path, bytes.to_vec());
    server.url(path)
}

fn variants() -> [(Compression, &'static [u8], DigestAlgorithm); 4] {
    let f = fixture();
    [
        (Compression::Zstd, &f.zst, DigestAlgorithm::Sha256),
        (Compression::Xz, &f.xz, DigestAlgorithm::Sha512),
        (Compression::Gzip, &f.gz, DigestAlgorithm::Sha256),
        (Compression::None, &f.raw, DigestAlgorithm::Sha512),
    ]
}

fn check_outcome(o: &WriteOutcome, c: Compression, served: &[u8], alg: DigestAlgorithm) {
    let raw = &fixture().raw;
    assert_eq!(o.compression, c);
    assert_eq!(o.bytes_downloaded, served.len() as u64);
    assert_eq!(o.bytes_written, raw.len() as u64);
    assert_eq!(
        o.digest,
        sha(alg, served),
        "the digest reported is that of the bytes as served"
    );
    assert_eq!(
        o.written_blake3, None,
        "the written bytes are hashed for a read-back only"
    );
    assert_eq!(o.readback_blake3, None, "no read-back unless asked");
}
