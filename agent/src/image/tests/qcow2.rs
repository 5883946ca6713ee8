//! qcow2 files made by the real `qemu-img`, served over HTTP and written onto
//! regular files: the disk that lands is the one `qemu-img` describes.

use super::*;

/// Runs qemu-img (or qemu-io) with `args`, failing the test on an error.
fn qemu(prog: &str, args: &[&str]) {
    crate::runner::run(prog, args.iter().copied(), Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{prog} {args:?}: {e}"));
}

/// The fixture converted to qcow2 with the extra `qemu-img convert` options.
fn convert(dir: &tempfile::TempDir, name: &str, opts: &[&str]) -> Vec<u8> {
    let raw = dir.path().join("src.raw");
    if !raw.exists() {
        std::fs::write(&raw, &fixture().raw).unwrap();
    }
    let q = dir.path().join(name);
    let mut args = vec!["convert", "-q", "-f", "raw", "-O", "qcow2"];
    args.extend_from_slice(opts);
    args.extend([raw.to_str().unwrap(), q.to_str().unwrap()]);
    qemu("qemu-img", &args);
    std::fs::read(&q).unwrap()
}

/// Serves `qcow`, writes it onto a file of garbage, and checks disk, digests and outcome.
fn writes_as_raw(qcow: &[u8], raw: &[u8], opts: &WriteOptions) -> WriteOutcome {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let url = serve(&server, "/disk.qcow2", qcow);
    let target = file_target(&dir, raw.len(), 0xA5);
    let o = stream_to(
        &[url],
        Some(&sha(DigestAlgorithm::Sha256, qcow)),
        &target,
        opts,
    )
    .unwrap();
    let back = std::fs::read(&target).unwrap();
    assert_eq!(back.len(), raw.len());
    let first_diff = back.iter().zip(raw).position(|(a, b)| a != b);
    assert_eq!(
        first_diff, None,
        "the written disk differs from the raw image"
    );
    assert_eq!(o.container, Container::Qcow2);
    assert_eq!(
        o.bytes_downloaded,
        qcow.len() as u64,
        "the whole file streamed once"
    );
    assert_eq!(o.bytes_written, raw.len() as u64);
    if opts.readback {
        assert_eq!(
            o.written_blake3.as_deref(),
            Some(hash_list_hex(raw).as_str()),
            "hash list in disk order"
        );
    } else {
        assert_eq!(
            o.written_blake3, None,
            "a written digest only for a read-back"
        );
    }
    assert_eq!(o.digest.hex, hex::encode(sha2::Sha256::digest(qcow)));
    o
}

#[test]
fn qemu_img_files_become_their_disks_in_every_cluster_flavour() {
    let dir = tempfile::tempdir().unwrap();
    let raw = &fixture().raw;
    let cases: [(&str, &[&str]); 6] = [
        ("plain", &[]),
        ("deflate", &["-c"]),
        ("zstd", &["-c", "-o", "compression_type=zstd"]),
        ("v2", &["-o", "compat=0.10"]),
        ("2m", &["-o", "cluster_size=2M"]),
        ("small", &["-c", "-o", "cluster_size=1k"]),
    ];
    for (name, opts) in cases {
        let q = convert(&dir, name, opts);
        let o = writes_as_raw(&q, raw, &fast());
        assert!(
            o.zero_bytes_skipped > 0,
            "{name}: the zero runs were punched, not written"
        );
    }
}

#[test]
fn clusters_stored_out_of_disk_order_land_in_place_and_read_back() {
    // qemu-io writes clusters in the order asked: the file holds the disk's end first.
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("scattered.qcow2");
    let size = 12 * M + 4096;
    qemu(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            q.to_str().unwrap(),
            &size.to_string(),
        ],
    );
    let mut raw = vec![0u8; size];
    let mut cmds = Vec::new();
    for (i, at) in [
        12 * M,
        11 * M + 65536,
        5 * M,
        0,
        3 * M + 4096 * 16,
        65536,
        7 * M,
    ]
    .iter()
    .enumerate()
    {
        let len = 65536.min(size - at);
        let pattern = 0x11 * (i as u8 + 1);
        raw[*at..at + len].fill(pattern);
        cmds.push(format!("write -P {pattern} {at} {len}"));
    }
    let mut args = vec!["-f", "qcow2"];
    for c in &cmds {
        args.extend(["-c", c.as_str()]);
    }
    args.push(q.to_str().unwrap());
    qemu("qemu-io", &args);
    let qcow = std::fs::read(&q).unwrap();
    let opts = WriteOptions {
        readback: true,
        ..fast()
    };
    let o = writes_as_raw(&qcow, &raw, &opts);
    assert_eq!(o.readback_blake3, o.written_blake3);
    assert!(o.readback_blake3.is_some());
}

#[test]
fn a_backing_file_is_refused_naming_it_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    qemu(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "16M"],
    );
    let b = base.to_str().unwrap();
    qemu(
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
    let qcow = std::fs::read(&top).unwrap();
    let server = Server::start();
    let url = serve(&server, "/top.qcow2", &qcow);
    let target = file_target(&dir, 16 * M, 0xA5);
    let err = stream_to(
        &[url],
        Some(&sha(DigestAlgorithm::Sha256, &qcow)),
        &target,
        &fast(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Qcow2 {
                cause: crate::image::qcow2::Qcow2Error::BackingFile(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("backing file") && err.to_string().contains(b),
        "{err}"
    );
    assert!(
        std::fs::read(&target).unwrap().iter().all(|&b| b == 0xA5),
        "target untouched"
    );
}

#[test]
fn a_wrong_digest_leaves_the_first_mib_unwritten() {
    let dir = tempfile::tempdir().unwrap();
    let qcow = convert(&dir, "d.qcow2", &[]);
    let server = Server::start();
    let url = serve(&server, "/d.qcow2", &qcow);
    let target = file_target(&dir, fixture().raw.len(), 0xA5);
    let wrong = sha(DigestAlgorithm::Sha256, b"another file");
    let err = stream_to(&[url], Some(&wrong), &target, &fast()).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    let back = std::fs::read(&target).unwrap();
    assert!(
        back[..M].iter().all(|&b| b == 0xA5),
        "the boot MiB was written before the digest matched"
    );
}

#[test]
fn on_a_4k_sector_device_without_write_zeroes_the_zeros_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let raw = &fixture().raw;
    let server = Server::start();
    for (name, opts) in [
        ("plain", &[][..]),
        ("zstd", &["-c", "-o", "compression_type=zstd"][..]),
    ] {
        let qcow = convert(&dir, name, opts);
        let url = serve(&server, &format!("/{name}.qcow2"), &qcow);
        // Full of 0x5A: every zero of the image must be written over it.
        let lo = Loop::new(64 * M, 4096, 0x5A);
        let opts = WriteOptions {
            write_zeroes: Some(false),
            readback: true,
            ..fast()
        };
        let o = stream_to(
            &[url],
            Some(&sha(DigestAlgorithm::Sha256, &qcow)),
            &lo.dev,
            &opts,
        )
        .unwrap();
        assert!(
            lo.read(raw.len()) == *raw,
            "{name}: the device differs from the raw image"
        );
        assert_eq!(
            o.zero_bytes_skipped, 0,
            "{name}: zeros were written, not skipped"
        );
        assert_eq!(
            o.readback_blake3.as_deref(),
            Some(hash_list_hex(raw).as_str())
        );
    }
}

#[test]
fn mibs_too_scattered_to_hash_in_memory_are_hashed_from_the_target() {
    // Two 4 KiB clusters in each of 12 MiBs, written first-halves-then-second-halves:
    // in file order every MiB stays incomplete until the second round, more than
    // the digest keeps open at once.
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("scattered.qcow2");
    let size = 12 * M;
    let qs = q.to_str().unwrap();
    qemu(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=4k",
            qs,
            &size.to_string(),
        ],
    );
    let mut raw = vec![0u8; size];
    let mut cmds = Vec::new();
    for round in 0..2 {
        for mib in (0..12).rev() {
            let at = mib * M + round * 8192;
            let pattern = (mib * 2 + round + 1) as u8;
            raw[at..at + 4096].fill(pattern);
            cmds.push(format!("write -P {pattern} {at} 4096"));
        }
    }
    let mut args = vec!["-f", "qcow2"];
    for c in &cmds {
        args.extend(["-c", c.as_str()]);
    }
    args.push(qs);
    qemu("qemu-io", &args);
    let qcow = std::fs::read(&q).unwrap();
    let o = writes_as_raw(
        &qcow,
        &raw,
        &WriteOptions {
            readback: true,
            ..fast()
        },
    );
    assert_eq!(o.readback_blake3, o.written_blake3);
    assert!(o.readback_blake3.is_some());
}

#[test]
fn a_server_that_ignores_range_is_named_as_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let qcow = convert(&dir, "r.qcow2", &[]);
    let server = Server::start();
    let url = serve(&server, "/r.qcow2", &qcow);
    server.add_fault("/r.qcow2", Fault::IgnoreRange);
    let target = file_target(&dir, fixture().raw.len(), 0xA5);
    let err = stream_to(
        &[url],
        Some(&sha(DigestAlgorithm::Sha256, &qcow)),
        &target,
        &fast(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("ignores Range requests"), "{err}");
    assert!(
        std::fs::read(&target).unwrap().iter().all(|&b| b == 0xA5),
        "target untouched"
    );
}

#[test]
fn a_disk_larger_than_the_target_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let qcow = convert(&dir, "big.qcow2", &[]);
    let server = Server::start();
    let url = serve(&server, "/big.qcow2", &qcow);
    let lo = Loop::new(32 * M, 512, 0x5A);
    let err = stream_to(
        &[url],
        Some(&sha(DigestAlgorithm::Sha256, &qcow)),
        &lo.dev,
        &fast(),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
    assert!(
        lo.read(32 * M).iter().all(|&b| b == 0x5A),
        "the device was written"
    );
}
