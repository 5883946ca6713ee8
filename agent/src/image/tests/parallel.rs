//! zstd streams of independent frames (what `pzstd` writes), decoded by several threads.

use super::*;

/// The fixture cut into frames of uneven sizes, most not whole MiBs, with
/// skippable frames and an empty frame among them.
fn frames_fixture() -> &'static Vec<u8> {
    static F: OnceLock<Vec<u8>> = OnceLock::new();
    F.get_or_init(|| {
        let raw = &fixture().raw;
        let skippable = [0x50u8, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
        let mut out = skippable.to_vec();
        let sizes = [M + 3, 8 * M, 5 * M - 7, 0, 2 * M, 16 * M, 3 * M + 1];
        let mut at = 0;
        for (i, len) in sizes.iter().chain(std::iter::repeat(&(7 * M))).enumerate() {
            if at >= raw.len() && i >= sizes.len() {
                break;
            }
            let end = (at + len).min(raw.len());
            // With checksums, as `pzstd` writes them: any changed byte fails to decode.
            let mut c = zstd::bulk::Compressor::new(3).unwrap();
            c.include_checksum(true).unwrap();
            out.extend(c.compress(&raw[at..end]).unwrap());
            if i % 3 == 1 {
                out.extend_from_slice(&skippable);
            }
            at = end;
        }
        out
    })
}

fn with_decoders(n: usize) -> WriteOptions<'static> {
    WriteOptions {
        decoders: Some(n),
        ..fast()
    }
}

#[test]
fn independent_frames_decode_identically_with_any_number_of_decoders() {
    let server = Server::start();
    let served = frames_fixture();
    assert!(
        zstd::stream::decode_all(&served[..]).unwrap() == fixture().raw,
        "the zstd library reads the fixture as the image"
    );
    let url = serve(&server, "/frames.zst", served);
    for n in [1, 2, 3] {
        let lo = Loop::new(64 * M, 512, 0xA5);
        let o = stream_to(
            std::slice::from_ref(&url),
            &sha(DigestAlgorithm::Sha256, served),
            &lo.dev,
            &with_decoders(n),
        )
        .unwrap();
        assert_eq!(o.compression, Compression::Zstd);
        assert_eq!(o.bytes_written, IMAGE_LEN as u64);
        assert!(
            lo.read(IMAGE_LEN) == fixture().raw,
            "{n} decoders: the device differs from the image"
        );
        assert!(
            o.zero_bytes_skipped >= 16 * MIB,
            "{n} decoders: zero runs still skipped ({})",
            o.zero_bytes_skipped
        );
    }
}

#[test]
fn a_bad_frame_is_a_corrupt_download_or_a_corrupt_image_and_nothing_boots() {
    let server = Server::start();
    let good = frames_fixture();
    let mut bad = good.clone();
    // Inside a frame's compressed data, well past the first.
    let at = bad.len() / 2;
    bad[at] ^= 0xFF;
    bad[at + 1] ^= 0x55;
    let url = serve(&server, "/bad.zst", &bad);
    // The document's digest is of the good file: the download is what is corrupt.
    let lo = Loop::new(64 * M, 512, 0xA5);
    let e = stream_to(
        std::slice::from_ref(&url),
        &sha(DigestAlgorithm::Sha256, good),
        &lo.dev,
        &with_decoders(2),
    )
    .unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert!(
        lo.read(M).iter().all(|&b| b == 0xA5),
        "the first MiB was written"
    );
    // The digest matches what is served: the image itself is corrupt.
    let lo = Loop::new(64 * M, 512, 0xA5);
    let e = stream_to(
        &[url],
        &sha(DigestAlgorithm::Sha256, &bad),
        &lo.dev,
        &with_decoders(2),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::Decode {
                compression: Compression::Zstd,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        lo.read(M).iter().all(|&b| b == 0xA5),
        "the first MiB was written"
    );
}

#[test]
fn bytes_after_the_last_frame_are_refused_by_offset() {
    let server = Server::start();
    let mut served = frames_fixture().clone();
    let end = served.len();
    served.extend_from_slice(b"not a frame");
    let url = serve(&server, "/trailing.zst", &served);
    let lo = Loop::new(64 * M, 512, 0xA5);
    let e = stream_to(
        &[url],
        &sha(DigestAlgorithm::Sha256, &served),
        &lo.dev,
        &with_decoders(2),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("byte {end}")) && msg.contains("zstd"),
        "{msg}"
    );
    assert!(
        lo.read(M).iter().all(|&b| b == 0xA5),
        "the first MiB was written"
    );
}
