//! The choice of method, the sampling and its verdict, on loop devices over files the
//! tests fill with data. The NVMe methods are exercised by `tests/tests/qemu_erase.rs`.

use super::sample::{self, Sample, Samples};
use super::*;
use crate::blockdev::testutil::Loop;
use crate::units::MIB;
use std::os::unix::fs::FileExt;

/// Fills `dev` with a non-zero pattern that differs per MiB.
fn fill(dev: &Path, size: u64) {
    let f = OpenOptions::new().write(true).open(dev).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..size / MIB {
        for (j, b) in buf.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(j as u8) | 1;
        }
        f.write_all_at(&buf, i * MIB).unwrap();
    }
    blockdev::flush(&f).unwrap();
}

fn digest_of(dev: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(dev).unwrap()).to_vec()
}

#[test]
fn samples_span_the_disk_from_first_to_last_mib() {
    let size = 1u64 << 30;
    let p = sample::positions(size);
    assert_eq!(p.len() as u64, sample::COUNT);
    assert_eq!(p[0], (0, MIB));
    let (last, len) = *p.last().unwrap();
    assert_eq!(last + len, size, "the last sample ends at the disk's end");
    assert!(p.windows(2).all(|w| w[0].0 + MIB <= w[1].0), "no overlap");
    assert!(p.iter().all(|(o, _)| o % 4096 == 0));
    // The same disk size gives the same positions (before and after read the same blocks).
    assert_eq!(p, sample::positions(size));
    // A 10 MiB disk: ten samples, every MiB of it.
    assert_eq!(sample::positions(10 * MIB).len(), 10);
    assert!(sample::positions(100).is_empty());
}

fn s(offset: u64, digest: u8, zero: bool) -> Sample {
    Sample {
        offset,
        len: MIB,
        digest: [digest; 32],
        zero,
    }
}

#[test]
fn an_unchanged_block_holding_data_fails_the_erase() {
    let before = [s(0, 1, false), s(1, 2, false), s(2, 0, true)];
    let after = [s(0, 0, true), s(1, 2, false), s(2, 0, true)];
    let got = sample::compare(&before, &after);
    assert_eq!(
        got,
        Samples {
            count: 3,
            bytes_each: MIB,
            zero: 2,
            changed: 1,
            unchanged: 2,
            unchanged_data: 1,
        }
    );
    let e = verify("/dev/x", Method::NvmeFormatUserData, &got).unwrap_err();
    assert!(
        e.to_string()
            .contains("1 of 3 sampled blocks still hold the data"),
        "{e}"
    );
}

#[test]
fn random_data_after_a_crypto_erase_passes_but_not_after_a_discard() {
    let before = [s(0, 1, false), s(1, 2, false)];
    let after = [s(0, 7, false), s(1, 8, false)];
    let got = sample::compare(&before, &after);
    assert_eq!((got.changed, got.unchanged_data, got.zero), (2, 0, 0));
    verify("/dev/x", Method::NvmeSanitizeCrypto, &got).unwrap();
    let e = verify("/dev/x", Method::Discard, &got).unwrap_err();
    assert!(
        e.to_string()
            .contains("2 of 2 sampled blocks are not zeros"),
        "{e}"
    );
}

#[test]
fn a_disk_without_secure_erase_is_refused_unless_a_fallback_is_allowed() {
    let size = 96 * MIB;
    let lo = Loop::new(size, 512);
    fill(&lo.dev, size);
    let digest = digest_of(&lo.dev);

    let e = secure_erase(&lo.dev, &[]).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, EraseError::Unsupported { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!("refusing to securely erase {}", lo.dev.display()))
            && msg.contains("allows no fallback")
            && msg.contains("storage.erase.fallback: [overwrite]"),
        "{msg}"
    );
    assert_eq!(
        digest_of(&lo.dev),
        digest,
        "a refused disk is left as it was"
    );

    let r = secure_erase(&lo.dev, &[EraseFallback::Overwrite]).unwrap();
    assert_eq!((r.method, r.fallback), (Method::Overwrite, true));
    assert_eq!(r.claimed.interface, "other");
    assert_eq!(
        (r.samples.count, r.samples.zero, r.samples.changed),
        (64, 64, 64),
        "every sampled block held data and now reads zeros"
    );
    assert!(std::fs::read(&lo.dev).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn discard_is_chosen_where_the_device_discards_and_the_samples_prove_it() {
    let size = 64 * MIB;
    let lo = Loop::new(size, 512);
    fill(&lo.dev, size);
    let d = decide(&lo.dev, &[EraseFallback::Discard, EraseFallback::Overwrite]).unwrap();
    assert!(d.claimed.discard, "a loop device over a file discards");
    assert_eq!(d.method, Method::Discard);
    let r = secure_erase(&lo.dev, &[EraseFallback::Discard]).unwrap();
    assert_eq!(r.method, Method::Discard);
    assert_eq!((r.samples.zero, r.samples.unchanged), (64, 0));
}

#[test]
fn the_fallbacks_read_in_document_order() {
    assert_eq!(fallback_words(&[]), None);
    assert_eq!(
        fallback_words(&[EraseFallback::Discard, EraseFallback::Overwrite]).as_deref(),
        Some("discard, then overwrite")
    );
}
