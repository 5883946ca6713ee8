//! End-to-end tests of the image pipeline against the harness HTTP server,
//! onto regular files and loop devices (512- and 4096-byte sectors).

use super::*;
use crate::plan::DigestAlgorithm;
use crate::units::MIB;
use imprint_tests::server::{Fault, Server};
use sha2::Digest as _;
use std::io::Write;
use std::sync::OnceLock;

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

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
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
    assert_eq!(o.written_sha256, sha256_hex(raw));
}

#[test]
fn each_compression_decodes_identically_onto_a_file() {
    let server = Server::start();
    for (c, served, alg) in variants() {
        let url = serve(&server, &format!("/web.raw.{c}"), served);
        let dir = tempfile::tempdir().unwrap();
        let target = file_target(&dir, 0, 0);
        let o = stream_to(&[url], &sha(alg, served), &target, &fast()).unwrap();
        check_outcome(&o, c, served, alg);
        assert!(
            std::fs::read(&target).unwrap() == fixture().raw,
            "{c}: file content differs"
        );
        assert_eq!(
            o.zero_bytes_skipped,
            expected_zero_skip(&fixture().raw),
            "{c}: zero runs punched"
        );
    }
}

#[test]
fn each_compression_decodes_identically_onto_loop_devices() {
    let server = Server::start();
    for sector in [512, 4096] {
        for (c, served, alg) in variants() {
            let url = serve(&server, &format!("/img.{c}"), served);
            let lo = Loop::new(64 * M, sector, 0x5A);
            let plan = ImagePlan {
                urls: vec![url],
                digest: sha(alg, served),
                format: ImageFormat::Disk,
                target_disk: "root".into(),
                target_path: lo.dev.clone(),
                grow: false,
            };
            assert!(
                sink::Sink::open(&lo.dev).unwrap().is_direct(),
                "loop devices take O_DIRECT"
            );
            let o = write_image(&plan, &fast()).unwrap();
            check_outcome(&o, c, served, alg);
            assert!(
                lo.read(IMAGE_LEN) == fixture().raw,
                "{c} on {sector}-byte sectors: device content differs"
            );
        }
    }
}

#[test]
fn zero_runs_are_zeroed_by_the_device_not_skipped() {
    let lo = Loop::new(64 * M, 512, 0xFF);
    let name = lo.dev.file_name().unwrap().to_str().unwrap().to_string();
    let wz =
        std::fs::read_to_string(format!("/sys/block/{name}/queue/write_zeroes_max_bytes")).unwrap();
    assert!(
        wz.trim().parse::<u64>().unwrap() > 0,
        "loop devices offload write-zeroes on this kernel"
    );
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/z.zst", &f.zst);
    let o = stream_to(
        &[url],
        &sha(DigestAlgorithm::Sha256, &f.zst),
        &lo.dev,
        &fast(),
    )
    .unwrap();
    assert_eq!(o.zero_bytes_skipped, expected_zero_skip(&f.raw));
    assert!(o.zero_bytes_skipped >= 30 * MIB);
    // The device held 0xFF: zeros read back only because BLKZEROOUT wrote them.
    let back = lo.read(IMAGE_LEN);
    assert!(sink::is_zero(&back[8 * M..24 * M]) && sink::is_zero(&back[32 * M..40 * M]));
    assert!(back == f.raw);
}

#[test]
fn digest_mismatch_never_writes_the_first_mib() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/web.raw.zst", &f.zst);
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 64 * M, 0xA5);
    let wrong = Digest {
        algorithm: DigestAlgorithm::Sha256,
        hex: "00".repeat(32),
    };
    let err = stream_to(std::slice::from_ref(&url), &wrong, &target, &fast()).unwrap_err();
    let actual = sha(DigestAlgorithm::Sha256, &f.zst).hex;
    match &err {
        ImageError::DigestMismatch {
            expected,
            actual: a,
            url: u,
            ..
        } => {
            assert_eq!(
                (expected.as_str(), a.as_str(), u.as_str()),
                (wrong.hex.as_str(), actual.as_str(), url.as_str())
            )
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&wrong.hex) && msg.contains(&actual),
        "message names both digests: {msg}"
    );
    let back = std::fs::read(&target).unwrap();
    assert!(
        back[..M].iter().all(|&b| b == 0xA5),
        "the first MiB is untouched"
    );
}

#[test]
fn corrupted_download_is_a_digest_mismatch_and_leaves_the_device_unbootable() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/flip.zst", &f.zst);
    server.set_fault("/flip.zst", Fault::FlipBit(f.zst.len() as u64 / 2));
    let lo = Loop::new(64 * M, 4096, 0xA5);
    let err = stream_to(
        &[url],
        &sha(DigestAlgorithm::Sha256, &f.zst),
        &lo.dev,
        &fast(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ImageError::DigestMismatch { .. }),
        "a flipped bit is reported as corruption, got: {err}"
    );
    assert!(
        lo.read(M).iter().all(|&b| b == 0xA5),
        "the first MiB is untouched"
    );
}

#[test]
fn a_failure_midway_never_writes_the_first_mib() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/short.zst", &f.zst);
    server.set_fault("/short.zst", Fault::Truncate(f.zst.len() as u64 - 4096));
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 64 * M, 0xA5);
    let mut opts = fast();
    opts.retry.attempts = 1;
    let err = stream_to(
        std::slice::from_ref(&url),
        &sha(DigestAlgorithm::Sha256, &f.zst),
        &target,
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ImageError::Fetch { url: u, .. } if *u == url),
        "{err}"
    );
    assert!(std::fs::read(&target).unwrap()[..M]
        .iter()
        .all(|&b| b == 0xA5));
}

#[test]
fn resumes_with_range_after_repeated_drops() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/drop.xz", &f.xz);
    server.set_fault("/drop.xz", Fault::DropEvery(8 * MIB));
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let o = stream_to(
        &[url],
        &sha(DigestAlgorithm::Sha256, &f.xz),
        &target,
        &fast(),
    )
    .unwrap();
    assert!(std::fs::read(&target).unwrap() == f.raw);
    let ranged: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.range.is_some())
        .collect();
    let expected = f.xz.len() as u64 / (8 * MIB);
    assert_eq!(ranged.len() as u64, expected, "one Range request per drop");
    assert_eq!(
        ranged[0].range.as_deref(),
        Some(&*format!("bytes={}-", 8 * MIB))
    );
    assert!(
        ranged.iter().all(|r| r.if_range.is_some()),
        "resumes are validated with If-Range"
    );
    assert_eq!(o.resumes as u64, expected);
}

#[test]
fn a_server_ignoring_range_is_skipped_forward_correctly() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/norange.gz", &f.gz);
    server.set_fault("/norange.gz", Fault::IgnoreRange);
    server.add_fault("/norange.gz", Fault::DropAfter(5 * MIB + 123));
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let o = stream_to(
        &[url],
        &sha(DigestAlgorithm::Sha256, &f.gz),
        &target,
        &fast(),
    )
    .unwrap();
    assert!(std::fs::read(&target).unwrap() == f.raw);
    assert_eq!(o.resumes, 1);
    assert_eq!(
        o.bytes_downloaded,
        f.gz.len() as u64,
        "skipped bytes are not counted twice"
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[1].range.as_deref(),
        Some(&*format!("bytes={}-", 5 * MIB + 123))
    );
}

#[test]
fn falls_back_to_the_next_mirror() {
    let server = Server::start();
    let f = fixture();
    let good = serve(&server, "/good.zst", &f.zst);
    let urls = vec![server.url("/missing.zst"), good.clone()];
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let o = stream_to(
        &urls,
        &sha(DigestAlgorithm::Sha256, &f.zst),
        &target,
        &fast(),
    )
    .unwrap();
    assert_eq!(o.url_used, good);
    let reqs = server.requests();
    assert_eq!(
        reqs.iter().filter(|r| r.path == "/missing.zst").count(),
        1,
        "a 404 is not retried"
    );
}

#[test]
fn a_mirror_resumes_where_the_previous_one_dropped() {
    let server = Server::start();
    let f = fixture();
    let a = serve(&server, "/a.zst", &f.zst);
    let b = serve(&server, "/b.zst", &f.zst);
    server.set_fault("/a.zst", Fault::DropEvery(3 * MIB));
    let mut opts = fast();
    opts.retry.attempts = 0;
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let o = stream_to(
        &[a, b.clone()],
        &sha(DigestAlgorithm::Sha256, &f.zst),
        &target,
        &opts,
    )
    .unwrap();
    assert_eq!(o.url_used, b);
    assert!(std::fs::read(&target).unwrap() == f.raw);
    let to_b: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/b.zst")
        .collect();
    assert_eq!(to_b.len(), 1);
    assert_eq!(
        to_b[0].range.as_deref(),
        Some(&*format!("bytes={}-", 3 * MIB))
    );
    assert_eq!(
        to_b[0].if_range, None,
        "another server's validator is not sent"
    );
}

#[test]
fn retries_after_503_honouring_retry_after() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/busy.zst", &f.zst);
    server.set_fault(
        "/busy.zst",
        Fault::Status {
            status: 503,
            retry_after: Some(1),
            times: 1,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let t = Instant::now();
    stream_to(
        &[url],
        &sha(DigestAlgorithm::Sha256, &f.zst),
        &target,
        &fast(),
    )
    .unwrap();
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "waited as Retry-After asked, not the 20 ms backoff"
    );
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn not_found_everywhere_names_each_url() {
    let server = Server::start();
    let urls = vec![server.url("/a.zst"), server.url("/b.zst")];
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, M, 0);
    let err = stream_to(&urls, &sha(DigestAlgorithm::Sha256, b""), &target, &fast()).unwrap_err();
    match &err {
        ImageError::AllSourcesFailed { attempts } => assert_eq!(attempts.len(), 2),
        other => panic!("expected AllSourcesFailed, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&urls[0]) && msg.contains(&urls[1]) && msg.contains("404"),
        "{msg}"
    );
    assert_eq!(server.requests().len(), 2, "4xx is not retried");
}

#[test]
fn unreachable_server_is_a_fetch_error_naming_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/web.raw.zst");
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, M, 0);
    let err = stream_to(
        std::slice::from_ref(&url),
        &sha(DigestAlgorithm::Sha256, b""),
        &target,
        &fast(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ImageError::Fetch { url: u, .. } if *u == url),
        "{err}"
    );
    assert!(err.to_string().contains(&url));
}

#[test]
fn a_stall_is_detected_and_resumed_quickly() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/stall.zst", &f.zst);
    server.set_fault(
        "/stall.zst",
        Fault::Stall {
            after: 4 * MIB,
            secs: 30,
        },
    );
    let mut opts = fast();
    opts.stall_timeout = Duration::from_millis(500);
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let t = Instant::now();
    let o = stream_to(
        &[url],
        &sha(DigestAlgorithm::Sha256, &f.zst),
        &target,
        &opts,
    )
    .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(o.resumes, 1);
    assert!(std::fs::read(&target).unwrap() == f.raw);
    assert_eq!(
        server.requests()[1].range.as_deref(),
        Some(&*format!("bytes={}-", 4 * MIB))
    );
}

#[test]
fn a_stall_without_retries_left_is_a_stall_error() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/stall2.zst", &f.zst);
    server.set_fault(
        "/stall2.zst",
        Fault::Stall {
            after: MIB,
            secs: 30,
        },
    );
    let mut opts = fast();
    opts.stall_timeout = Duration::from_millis(300);
    opts.retry.attempts = 0;
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let t = Instant::now();
    let err = stream_to(
        std::slice::from_ref(&url),
        &sha(DigestAlgorithm::Sha256, &f.zst),
        &target,
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ImageError::Stalled { url: u, offset, .. } if *u == url && *offset == MIB),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_image_larger_than_the_device_is_refused_before_the_end() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/big.zst", &f.zst);
    let lo = Loop::new(32 * M, 512, 0xA5);
    let err = stream_to(
        &[url],
        &sha(DigestAlgorithm::Sha256, &f.zst),
        &lo.dev,
        &fast(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ImageError::TooLarge { capacity, .. } if capacity == 32 * MIB),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "image is larger than {} (32.0 MiB)",
            lo.dev.display()
        )),
        "{msg}"
    );
    assert!(lo.read(M).iter().all(|&b| b == 0xA5));
}

#[test]
fn file_urls_are_a_source() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("web.raw.gz");
    std::fs::write(&src, &f.gz).unwrap();
    let target = file_target(&dir, 0, 0);
    let url = format!("file://{}", src.display());
    let o = stream_to(
        &[url],
        &sha(DigestAlgorithm::Sha512, &f.gz),
        &target,
        &fast(),
    )
    .unwrap();
    assert_eq!(o.compression, Compression::Gzip);
    assert!(std::fs::read(&target).unwrap() == f.raw);
}

#[test]
fn pipeline_memory_is_bounded() {
    const { assert!(PIPELINE_BUFFER_BYTES <= 32 << 20) };
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/mem.zst", &f.zst);
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let (o, pools) = run_pipeline(
        &[url],
        &sha(DigestAlgorithm::Sha256, &f.zst),
        &target,
        &fast(),
    )
    .unwrap();
    // 64 MiB went through at most 6 output and 4 download buffers: they were recycled.
    assert!(
        pools.out <= OUT_BUFS && pools.fetch <= source::FETCH_BUFS,
        "{pools:?}"
    );
    assert!(
        o.bytes_written as usize > OUT_BUFS * OUT_BUF
            && o.bytes_downloaded as usize > source::FETCH_BUFS * source::FETCH_BUF
    );
}

#[test]
fn progress_is_reported_periodically_and_at_the_end() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/p.xz", &f.xz);
    let calls = std::sync::Mutex::new(Vec::<Progress>::new());
    let cb = |p: &Progress| calls.lock().unwrap().push(p.clone());
    let mut opts = fast();
    opts.progress = Some(&cb);
    opts.progress_interval = Duration::from_millis(100);
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let o = stream_to(&[url], &sha(DigestAlgorithm::Sha256, &f.xz), &target, &opts).unwrap();
    let calls = calls.into_inner().unwrap();
    let last = calls.last().unwrap();
    assert!(
        last.done
            && last.bytes_written == IMAGE_LEN as u64
            && last.total == Some(f.xz.len() as u64)
    );
    assert_eq!(calls.iter().filter(|p| p.done).count(), 1);
    let max_calls = o.duration.as_millis() / 100 + 2;
    assert!(
        calls.len() as u128 <= max_calls,
        "{} calls in {:?}",
        calls.len(),
        o.duration
    );
    assert!(calls
        .windows(2)
        .all(|w| w[0].bytes_written <= w[1].bytes_written));
}

#[test]
fn verified_stream_reads_the_image_and_fails_at_the_end_on_mismatch() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/s.zst", &f.zst);
    let mut s = open_verified_stream(
        std::slice::from_ref(&url),
        &sha(DigestAlgorithm::Sha256, &f.zst),
        &fast(),
    )
    .unwrap();
    assert_eq!(s.compression(), Compression::Zstd);
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out == f.raw);

    let wrong = Digest {
        algorithm: DigestAlgorithm::Sha256,
        hex: "11".repeat(32),
    };
    let mut s = open_verified_stream(&[url], &wrong, &fast()).unwrap();
    let err = io::copy(&mut s, &mut io::sink()).unwrap_err();
    let inner = err.into_inner().unwrap().downcast::<ImageError>().unwrap();
    assert!(
        matches!(*inner, ImageError::DigestMismatch { .. }),
        "{inner}"
    );

    let err = open_verified_stream(&[server.url("/nope")], &wrong, &fast())
        .err()
        .unwrap();
    assert!(
        matches!(err, ImageError::Status { status: 404, .. }),
        "{err}"
    );
}

#[test]
fn other_formats_are_refused_by_write_image() {
    let plan = ImagePlan {
        urls: vec!["http://127.0.0.1:1/x".into()],
        digest: sha(DigestAlgorithm::Sha256, b""),
        format: ImageFormat::Rootfs,
        target_disk: "root".into(),
        target_path: PathBuf::from("/nonexistent"),
        grow: false,
    };
    assert!(matches!(
        write_image(&plan, &fast()),
        Err(ImageError::Format(ImageFormat::Rootfs))
    ));
}

#[test]
fn a_device_in_use_is_refused_before_downloading() {
    use std::os::unix::fs::OpenOptionsExt;
    let lo = Loop::new(8 * M, 512, 0);
    let _claim = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(&lo.dev)
        .unwrap();
    let server = Server::start();
    let url = serve(&server, "/x", b"data");
    let err = stream_to(
        &[url],
        &sha(DigestAlgorithm::Sha256, b"data"),
        &lo.dev,
        &fast(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ImageError::Target { path, .. } if *path == lo.dev),
        "{err}"
    );
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(
        server.requests().is_empty(),
        "nothing fetched for an unusable target"
    );
}
