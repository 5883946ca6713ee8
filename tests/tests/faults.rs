//! Issue 7, the fault matrix: the single-disk document through the real binary
//! while the image server misbehaves. Every fault ends in one of two ways — imprint
//! resumes or retries and the disk holds exactly the image, or it fails cleanly
//! (exit 5, the cause in stderr and in the failure report, no partition table
//! left) — and never in a success with wrong bytes on disk.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::{Fault, Server};
use std::sync::OnceLock;
use std::time::Duration;

const IMAGE: &str = "/images/web.raw.zst";
const RAW: &str = "/images/web.raw";
const REPORT: &str = "/report/web-01";

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(48, 512))
}

fn zstd() -> &'static Vec<u8> {
    static Z: OnceLock<Vec<u8>> = OnceLock::new();
    Z.get_or_init(|| image().zstd())
}

/// How a faulty run must end.
enum Expect {
    /// Success, and the disk holds exactly the image.
    Deploys,
    /// Exit 5; every phrase in stderr and in the final report's error; no table left.
    FailsCleanly(&'static [&'static str]),
}

/// A server holding the zstd image at IMAGE and the raw image at RAW.
fn server() -> Server {
    let s = Server::start();
    s.serve_bytes(IMAGE, zstd().clone());
    s.serve_bytes(RAW, image().raw.clone());
    s
}

/// Runs the document for `path` (with `faults` set on it) and checks the outcome; returns the server.
fn provision_with(path: &str, faults: &[Fault], expect: Expect) -> (Server, Run) {
    let s = server();
    for f in faults {
        s.add_fault(path, f.clone());
    }
    let body = if path == RAW { &image().raw } else { zstd() };
    let doc = single_disk_document(&s.url(path), &sha256_hex(body), &s.url(REPORT));
    let disk = LoopDev::new(2 << 30, 512);
    // An old table on the disk: a failed run must not leave this one (or any) behind.
    sh("sgdisk", &["-n", "1:1MiB:+16MiB", disk.dev()]);
    let run = apply(&doc, &disk, &[]);
    assert!(!run.stderr.contains(TOKEN), "the token appeared in the log");
    let fin = final_report(&s, REPORT);
    match expect {
        Expect::Deploys => {
            assert_eq!(
                run.code, 0,
                "faults {faults:?} should be survived:\n{}",
                run.stderr
            );
            assert_eq!(fin["result"], "success", "{fin:#}");
            assert_single_disk_deployed(disk.dev(), image(), "web-01");
        }
        Expect::FailsCleanly(phrases) => {
            assert_eq!(
                run.code, 5,
                "faults {faults:?} should fail cleanly:\n{}",
                run.stderr
            );
            assert_eq!(fin["result"], "failure", "{fin:#}");
            assert_eq!(fin["failed_step"], "write-image", "{fin:#}");
            let error = fin["error"].as_str().unwrap_or_default().to_lowercase();
            for p in phrases {
                assert!(
                    run.stderr.to_lowercase().contains(p),
                    "stderr lacks {p:?}:\n{}",
                    run.stderr
                );
                assert!(
                    error.contains(p),
                    "the failure report's error lacks {p:?}: {error}"
                );
            }
            assert!(
                !fin["undone"].as_array().is_none_or(|u| u.is_empty()),
                "nothing listed as undone: {fin:#}"
            );
            assert_no_partition_table(disk.dev());
        }
    }
    (s, run)
}

/// Requests for `path` other than the check before any disk is touched (a read of
/// byte 0 alone, which faults do not act on).
fn downloads(s: &Server, path: &str) -> usize {
    s.requests()
        .iter()
        .filter(|r| r.path == path && r.range.as_deref() != Some("bytes=0-0"))
        .count()
}

/// GETs of `path` that asked for a range (resumes).
fn resumes(s: &Server, path: &str) -> Vec<String> {
    s.requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .filter_map(|r| r.range)
        .filter(|r| r != "bytes=0-0")
        .collect()
}

#[test]
fn drops_at_chosen_offsets_are_resumed_with_range() {
    let len = zstd().len() as u64;
    for at in [0, 1, 4096, len / 2, len - 1] {
        let (s, _) = provision_with(IMAGE, &[Fault::DropAfter(at)], Expect::Deploys);
        if at > 0 {
            assert_eq!(
                resumes(&s, IMAGE),
                vec![format!("bytes={at}-")],
                "drop at {at}: resumed where it stopped"
            );
        }
    }
}

#[test]
fn drops_at_seeded_random_offsets_are_resumed() {
    let mut rng = Rng::from_env(0x01F4_0017);
    for _ in 0..3 {
        let at = rng.range(1, zstd().len() as u64);
        provision_with(IMAGE, &[Fault::DropAfter(at)], Expect::Deploys);
    }
    // The uncompressed image is 48 MiB: drops land inside partitions, not just the header.
    for _ in 0..2 {
        let at = rng.range(1, image().raw.len() as u64);
        let (s, _) = provision_with(RAW, &[Fault::DropAfter(at)], Expect::Deploys);
        assert_eq!(resumes(&s, RAW), vec![format!("bytes={at}-")]);
    }
}

#[test]
fn a_connection_dropped_again_and_again_still_completes() {
    let step = image().raw.len() as u64 / 7;
    let (s, _) = provision_with(RAW, &[Fault::DropEvery(step)], Expect::Deploys);
    assert!(resumes(&s, RAW).len() >= 6, "{:?}", resumes(&s, RAW));
}

#[test]
fn a_short_stall_is_waited_out() {
    let (s, run) = provision_with(
        RAW,
        &[Fault::Stall {
            after: 8 << 20,
            secs: 3,
        }],
        Expect::Deploys,
    );
    assert!(
        resumes(&s, RAW).is_empty(),
        "a stall shorter than the stall timeout needs no resume"
    );
    assert!(run.took >= Duration::from_secs(3));
}

#[test]
fn a_long_stall_times_out_and_resumes() {
    // Longer than the agent's 30 s stall timeout: the connection is abandoned and resumed.
    let (s, run) = provision_with(
        RAW,
        &[Fault::Stall {
            after: 8 << 20,
            secs: 45,
        }],
        Expect::Deploys,
    );
    assert_eq!(resumes(&s, RAW), vec![format!("bytes={}-", 8 << 20)]);
    assert!(
        run.took < Duration::from_secs(44),
        "resumed before the stall ended: {:?}",
        run.took
    );
}

#[test]
fn not_found_fails_cleanly_naming_the_status_and_url() {
    provision_with(
        IMAGE,
        &[Fault::Status {
            status: 404,
            retry_after: None,
            times: 100,
        }],
        Expect::FailsCleanly(&["404", IMAGE]),
    );
}

#[test]
fn transient_500s_are_retried() {
    let (s, _) = provision_with(
        IMAGE,
        &[Fault::Status {
            status: 500,
            retry_after: None,
            times: 2,
        }],
        Expect::Deploys,
    );
    assert_eq!(downloads(&s, IMAGE), 3);
}

#[test]
fn persistent_500s_fail_cleanly_after_bounded_retries() {
    let (s, run) = provision_with(
        IMAGE,
        &[Fault::Status {
            status: 500,
            retry_after: None,
            times: 1000,
        }],
        Expect::FailsCleanly(&["500", IMAGE]),
    );
    // First try plus five retries, backing off 1+2+4+8+16 s.
    assert_eq!(downloads(&s, IMAGE), 6);
    assert!(run.took < Duration::from_secs(60), "{:?}", run.took);
}

#[test]
fn a_503_with_retry_after_is_honoured() {
    let (s, run) = provision_with(
        IMAGE,
        &[Fault::Status {
            status: 503,
            retry_after: Some(2),
            times: 2,
        }],
        Expect::Deploys,
    );
    assert_eq!(downloads(&s, IMAGE), 3);
    assert!(
        run.took >= Duration::from_secs(4),
        "waited the Retry-After twice: {:?}",
        run.took
    );
}

#[test]
fn a_503_without_retry_after_backs_off_and_succeeds() {
    let (s, _) = provision_with(
        IMAGE,
        &[Fault::Status {
            status: 503,
            retry_after: None,
            times: 2,
        }],
        Expect::Deploys,
    );
    assert_eq!(downloads(&s, IMAGE), 3);
}

#[test]
fn a_503_that_never_ends_fails_cleanly() {
    provision_with(
        IMAGE,
        &[Fault::Status {
            status: 503,
            retry_after: Some(1),
            times: 1000,
        }],
        Expect::FailsCleanly(&["503", IMAGE]),
    );
}

#[test]
fn a_file_truncated_on_every_response_fails_cleanly() {
    let at = zstd().len() as u64 / 2;
    let (s, _) = provision_with(
        IMAGE,
        &[Fault::Truncate(at)],
        Expect::FailsCleanly(&[IMAGE]),
    );
    assert!(
        resumes(&s, IMAGE)
            .iter()
            .all(|r| *r == format!("bytes={at}-")),
        "every retry resumed at the cut"
    );
}

#[test]
fn a_flipped_bit_fails_the_digest_and_is_wiped() {
    let at = image().raw.len() as u64 / 2 + 12345;
    provision_with(
        RAW,
        &[Fault::FlipBit(at)],
        Expect::FailsCleanly(&["digest", "sha256"]),
    );
}

#[test]
fn a_flipped_bit_in_compressed_data_never_deploys() {
    let at = zstd().len() as u64 / 2;
    provision_with(IMAGE, &[Fault::FlipBit(at)], Expect::FailsCleanly(&[]));
}

#[test]
fn a_content_length_larger_than_the_body_fails_cleanly() {
    // The body ends early by the header's count; the resume asks past the real end.
    provision_with(
        IMAGE,
        &[Fault::LieLength(4096)],
        Expect::FailsCleanly(&[IMAGE]),
    );
}

#[test]
fn a_content_length_smaller_than_the_body_fails_the_digest() {
    provision_with(
        IMAGE,
        &[Fault::LieLength(-4096)],
        Expect::FailsCleanly(&["digest"]),
    );
}

#[test]
fn a_server_ignoring_range_resends_and_the_agent_skips_what_it_has() {
    let at = image().raw.len() as u64 / 3;
    let (s, _) = provision_with(
        RAW,
        &[Fault::IgnoreRange, Fault::DropAfter(at)],
        Expect::Deploys,
    );
    assert_eq!(
        resumes(&s, RAW),
        vec![format!("bytes={at}-")],
        "a range was asked for (and ignored)"
    );
}

#[test]
fn a_206_with_the_wrong_content_range_is_refused() {
    let at = image().raw.len() as u64 / 3;
    provision_with(
        RAW,
        &[Fault::WrongContentRange(-512), Fault::DropAfter(at)],
        Expect::FailsCleanly(&["range", RAW]),
    );
}

#[test]
fn a_206_with_the_wrong_bytes_fails_the_digest() {
    let at = image().raw.len() as u64 / 3;
    provision_with(
        RAW,
        &[Fault::WrongRangeBytes(-4096), Fault::DropAfter(at)],
        Expect::FailsCleanly(&["digest"]),
    );
}
