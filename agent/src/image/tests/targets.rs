//! Targets: files and loop devices, compressions, the held-back head, zeros, size, memory.

use super::*;
use crate::image::parallel::{decoders, DEC_BUF, DEC_BUFS, MERGE_BUFS};

#[test]
fn each_compression_decodes_identically_onto_a_file() {
    let server = Server::start();
    for (c, served, alg) in variants() {
        let url = serve(&server, &format!("/web.raw.{c}"), served);
        let dir = tempfile::tempdir().unwrap();
        let target = file_target(&dir, 0, 0);
        let o = stream_to(&[url], Some(&sha(alg, served)), &target, &fast()).unwrap();
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
                digest: Some(sha(alg, served)),
                signature: None,
                registry_signature: None,
                pin: crate::plan::ImagePin::Digest,
                format: ImageFormat::Disk,
                target_disk: "root".into(),
                target_path: lo.dev.clone(),
                grow: false,
                verify: None,
                auth: None,
                stores: Vec::new(),
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
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
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
    let err = stream_to(std::slice::from_ref(&url), Some(&wrong), &target, &fast()).unwrap_err();
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
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
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
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
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
fn an_image_larger_than_the_device_is_refused_before_the_end() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/big.zst", &f.zst);
    let lo = Loop::new(32 * M, 512, 0xA5);
    let err = stream_to(
        &[url],
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
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
        Some(&sha(DigestAlgorithm::Sha512, &f.gz)),
        &target,
        &fast(),
    )
    .unwrap();
    assert_eq!(o.compression, Compression::Gzip);
    assert!(std::fs::read(&target).unwrap() == f.raw);
}

#[test]
fn pipeline_memory_is_bounded() {
    const { assert!(PIPELINE_BUFFER_BYTES <= 48 << 20) };
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/mem.zst", &f.zst);
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let (o, pools) = super::super::write_to(
        &[url],
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
        &target,
        &fast(),
    )
    .unwrap();
    // 64 MiB went through a few decoded and download buffers: they were recycled.
    let out_bufs = decoders() * DEC_BUFS + MERGE_BUFS;
    assert!(
        pools.out <= out_bufs && pools.fetch <= stages::FETCH_BUFS,
        "{pools:?}"
    );
    assert!(
        o.bytes_written as usize > out_bufs * DEC_BUF
            && o.bytes_downloaded as usize > stages::FETCH_BUFS * stages::FETCH_BUF
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
    let o = stream_to(
        &[url],
        Some(&sha(DigestAlgorithm::Sha256, &f.xz)),
        &target,
        &opts,
    )
    .unwrap();
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
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
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
    let mut s = open_verified_stream(&[url], Some(&wrong), &fast()).unwrap();
    let err = io::copy(&mut s, &mut io::sink()).unwrap_err();
    let inner = err.into_inner().unwrap().downcast::<ImageError>().unwrap();
    assert!(
        matches!(*inner, ImageError::DigestMismatch { .. }),
        "{inner}"
    );

    let err = open_verified_stream(&[server.url("/nope")], Some(&wrong), &fast())
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
        digest: Some(sha(DigestAlgorithm::Sha256, b"")),
        signature: None,
        registry_signature: None,
        pin: crate::plan::ImagePin::Digest,
        format: ImageFormat::Rootfs,
        target_disk: "root".into(),
        target_path: PathBuf::from("/nonexistent"),
        grow: false,
        verify: None,
        auth: None,
        stores: Vec::new(),
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
        Some(&sha(DigestAlgorithm::Sha256, b"data")),
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

#[test]
fn undecodable_data_with_a_matching_digest_is_a_decode_error() {
    let server = Server::start();
    let mut bogus = vec![0x28, 0xB5, 0x2F, 0xFD];
    bogus.extend((0..100_000u32).map(|i| (i * 7919 % 251) as u8));
    let url = serve(&server, "/bogus.zst", &bogus);
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 4 * M, 0xA5);
    let err = stream_to(
        &[url],
        Some(&sha(DigestAlgorithm::Sha256, &bogus)),
        &target,
        &fast(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Decode {
                compression: Compression::Zstd,
                ..
            }
        ),
        "{err}"
    );
    assert!(std::fs::read(&target).unwrap()[..M]
        .iter()
        .all(|&b| b == 0xA5));
}
