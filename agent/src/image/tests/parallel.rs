//! zstd streams of independent frames (what `pzstd` writes), decoded by several threads.

use super::*;

/// One frame with a checksum, as `pzstd` writes them: a changed byte in a frame
/// that is decoded fails it.
fn frame_of(data: &[u8]) -> Vec<u8> {
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.include_checksum(true).unwrap();
    c.compress(data).unwrap()
}

/// The fixture cut into frames of uneven sizes, most not whole MiBs, with
/// skippable frames and an empty frame among them.
const FIRST_FRAME: usize = M + 3;

fn frames_fixture() -> &'static Vec<u8> {
    static F: OnceLock<Vec<u8>> = OnceLock::new();
    F.get_or_init(|| {
        let raw = &fixture().raw;
        let skippable = [0x50u8, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
        let mut out = skippable.to_vec();
        let sizes = [FIRST_FRAME, 8 * M, 5 * M - 7, 0, 2 * M, 16 * M, 3 * M + 1];
        let mut at = 0;
        for (i, len) in sizes.iter().chain(std::iter::repeat(&(7 * M))).enumerate() {
            if at >= raw.len() && i >= sizes.len() {
                break;
            }
            let end = (at + len).min(raw.len());
            out.extend(frame_of(&raw[at..end]));
            if i % 3 == 1 {
                out.extend_from_slice(&skippable);
            }
            at = end;
        }
        out
    })
}

/// The fixture in 1 MiB frames (`pzstd` cuts at a fixed size too): the frames of
/// zeros are recognised without decoding them and go to the sink as zero runs.
fn mib_frames_fixture() -> &'static Vec<u8> {
    static F: OnceLock<Vec<u8>> = OnceLock::new();
    F.get_or_init(|| {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        c.include_checksum(true).unwrap();
        let frames = fixture().raw.chunks(M).map(|f| c.compress(f).unwrap());
        frames.collect::<Vec<_>>().concat()
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
            Some(&sha(DigestAlgorithm::Sha256, served)),
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
    // Inside the second frame (8 MiB of random data, whose checksum then fails).
    let at = 12 + frame_of(&fixture().raw[..FIRST_FRAME]).len() + 100_000;
    bad[at] ^= 0xFF;
    bad[at + 1] ^= 0x55;
    let url = serve(&server, "/bad.zst", &bad);
    // The document's digest is of the good file: the download is what is corrupt.
    let lo = Loop::new(64 * M, 512, 0xA5);
    let e = stream_to(
        std::slice::from_ref(&url),
        Some(&sha(DigestAlgorithm::Sha256, good)),
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
        Some(&sha(DigestAlgorithm::Sha256, &bad)),
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
        Some(&sha(DigestAlgorithm::Sha256, &served)),
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

#[test]
fn frames_of_zeros_become_zero_runs_on_devices_with_and_without_write_zeroes() {
    let server = Server::start();
    let served = mib_frames_fixture();
    let url = serve(&server, "/mib.zst", served);
    for (n, write_zeroes) in [(1, None), (2, None), (2, Some(false)), (3, None)] {
        let lo = Loop::new(64 * M, 512, 0xA5);
        let opts = WriteOptions {
            write_zeroes,
            readback: true,
            ..with_decoders(n)
        };
        let o = stream_to(
            std::slice::from_ref(&url),
            Some(&sha(DigestAlgorithm::Sha256, served)),
            &lo.dev,
            &opts,
        )
        .unwrap();
        assert!(
            lo.read(IMAGE_LEN) == fixture().raw,
            "{n} decoders, write_zeroes {write_zeroes:?}: the device differs from the image"
        );
        // The fixture's 16 MiB and 8 MiB zero runs: offloaded, or written as zeros.
        let offloaded = o.zero_bytes_skipped >= 24 * MIB;
        assert_eq!(
            offloaded,
            write_zeroes.is_none(),
            "{n} decoders, write_zeroes {write_zeroes:?}: {} bytes offloaded",
            o.zero_bytes_skipped
        );
        // The read-back's hash list accounts for the zero runs it never saw as data.
        assert_eq!(
            o.readback_blake3.as_deref(),
            Some(hash_list_hex(&fixture().raw).as_str())
        );
    }
}
