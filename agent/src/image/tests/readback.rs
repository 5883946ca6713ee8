//! Read-back verification and zero runs on devices with and without write-zeroes.

use super::*;
use std::os::unix::fs::FileExt;

fn readback_plan(url: String, served: &[u8], dev: &Path) -> ImagePlan {
    ImagePlan {
        urls: vec![url],
        digest: Some(sha(DigestAlgorithm::Sha256, served)),
        signature: None,
        registry_signature: None,
        pin: crate::plan::ImagePin::Digest,
        format: ImageFormat::Disk,
        target_disk: "root".into(),
        target_path: dev.to_path_buf(),
        grow: false,
        verify: Some(crate::plan::VerifyMode::Readback),
        auth: None,
        stores: Vec::new(),
    }
}

#[test]
fn readback_of_a_good_write_reports_the_same_hash_list() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/rb.zst", &f.zst);
    let lo = Loop::new(64 * M, 4096, 0xA5);
    let o = write_image(&readback_plan(url, &f.zst, &lo.dev), &fast()).unwrap();
    assert_eq!(o.written_blake3, Some(hash_list_hex(&f.raw)));
    assert_eq!(o.readback_blake3, o.written_blake3);
    assert!(o.readback_seconds.is_some());
}

#[test]
fn readback_catches_a_sector_flipped_on_the_backing_file() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/rbflip.zst", &f.zst);
    let lo = Loop::new(64 * M, 512, 0xA5);
    let backing = lo.backing();
    // Between the write and the read-back, one byte of the 41st MiB changes on "the disk".
    let at = 40 * MIB + 4096 + 17;
    let flip = || flip_bytes(&backing, &[at], 0x10);
    let mut opts = fast();
    opts.before_readback = Some(&flip);
    let err = write_image(&readback_plan(url, &f.zst, &lo.dev), &opts).unwrap_err();
    match &err {
        ImageError::ReadbackMismatch {
            path,
            offset,
            more,
            written,
            read,
        } => {
            assert_eq!(path, &lo.dev);
            assert_eq!(*offset, 40 * MIB, "names the MiB that changed");
            assert_eq!(*more, 0, "and only that one");
            assert_eq!(written, &hash_list_hex(&f.raw));
            assert_ne!(read, written);
        }
        other => panic!("expected ReadbackMismatch, got {other}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("MiB at byte {}", 40 * MIB)),
        "{err}"
    );
}

#[test]
fn readback_names_the_first_of_several_changed_mibs_whichever_worker_read_them() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/rbflips.zst", &f.zst);
    let lo = Loop::new(64 * M, 4096, 0xA5);
    let backing = lo.backing();
    // The data runs (up to 4 MiB each) alternate between the read-back's workers:
    // MiB 28 is in the 4th run, 42 in the 5th and 47 in the 6th.
    let flip = || {
        flip_bytes(
            &backing,
            &[47 * MIB + 777, 28 * MIB + 777, 42 * MIB + 777],
            0xFF,
        )
    };
    let mut opts = fast();
    opts.before_readback = Some(&flip);
    let err = write_image(&readback_plan(url, &f.zst, &lo.dev), &opts).unwrap_err();
    match &err {
        ImageError::ReadbackMismatch { offset, more, .. } => {
            assert_eq!(*offset, 28 * MIB, "names the first MiB that changed");
            assert_eq!(*more, 2, "and counts the others");
        }
        other => panic!("expected ReadbackMismatch, got {other}"),
    }
}

#[test]
fn a_target_cut_short_before_the_readback_is_named_at_its_first_missing_byte() {
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/rbcut.zst", &f.zst);
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, IMAGE_LEN, 0xA5);
    // Cut inside the run of MiBs 28..32; the other worker's later runs fail too,
    // possibly sooner, but the first failure in disk order is the one reported.
    let cut = 30 * MIB;
    let shorten = || {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .unwrap();
        file.set_len(cut).unwrap();
    };
    let mut opts = fast();
    opts.before_readback = Some(&shorten);
    let err = write_image(&readback_plan(url, &f.zst, &target), &opts).unwrap_err();
    match &err {
        ImageError::Readback { path, cause } => {
            assert_eq!(path, &target);
            assert_eq!(cause, &format!("the target ends at byte {cut}"));
        }
        other => panic!("expected Readback, got {other}"),
    }
}

#[test]
fn zero_runs_are_written_as_data_on_a_device_without_write_zeroes() {
    // The device is real (a loop device holding 0xFF); only its report of
    // write-zeroes support is overridden, since no host device here lacks it.
    let lo = Loop::new(64 * M, 512, 0xFF);
    let server = Server::start();
    let f = fixture();
    let url = serve(&server, "/nowz.zst", &f.zst);
    let mut opts = fast();
    opts.write_zeroes = Some(false);
    let o = stream_to(
        &[url],
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
        &lo.dev,
        &opts,
    )
    .unwrap();
    assert_eq!(
        o.zero_bytes_skipped, 0,
        "nothing skipped: zeros went down as data"
    );
    let back = lo.read(IMAGE_LEN);
    assert!(
        sink::is_zero(&back[8 * M..24 * M]),
        "the 0xFF under the zero run was overwritten"
    );
    assert!(back == f.raw);
}

#[test]
fn a_compressed_qcow2_image_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("disk.qcow2");
    crate::runner::run(
        "qemu-img",
        ["create", "-q", "-f", "qcow2", q.to_str().unwrap(), "64M"],
        Duration::from_secs(30),
    )
    .expect("qemu-img create");
    let qcow = std::fs::read(&q).unwrap();
    let zst = zstd::encode_all(&qcow[..], 3).unwrap();
    let server = Server::start();
    let url = serve(&server, "/disk.qcow2.zst", &zst);
    let target = file_target(&dir, 4 * M, 0xA5);
    let err = stream_to(
        &[url],
        Some(&sha(DigestAlgorithm::Sha256, &zst)),
        &target,
        &fast(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Qcow2Compressed {
                compression: Compression::Zstd
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("cannot be read at random"),
        "{err}"
    );
    assert!(
        std::fs::read(&target).unwrap().iter().all(|&b| b == 0xA5),
        "target untouched"
    );
}

/// Changes the bytes at `offsets` of the loop device's backing file (XOR `mask`), as a
/// disk that does not keep what it was given would, between the write and the read-back.
fn flip_bytes(backing: &std::path::Path, offsets: &[u64], mask: u8) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(backing)
        .unwrap();
    for &at in offsets {
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, at).unwrap();
        file.write_all_at(&[b[0] ^ mask], at).unwrap();
    }
    file.sync_all().unwrap();
}
