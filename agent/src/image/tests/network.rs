//! Sources: resume, mirrors, retries, statuses, stalls.

use super::*;

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
        Some(&sha(DigestAlgorithm::Sha256, &f.xz)),
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
        Some(&sha(DigestAlgorithm::Sha256, &f.gz)),
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
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
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
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
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
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
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
    let err = stream_to(
        &urls,
        Some(&sha(DigestAlgorithm::Sha256, b"")),
        &target,
        &fast(),
    )
    .unwrap_err();
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
    // Never reached at all: a wrong URL, not an outage to wait out.
    let t = Instant::now();
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
        Some(&sha(DigestAlgorithm::Sha256, b"")),
        &target,
        &fast(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ImageError::Fetch { url: u, .. } if *u == url),
        "{err}"
    );
    assert!(err.to_string().contains(&url));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "failed after {:?}",
        t.elapsed()
    );
}

/// Streams `url` in a thread while the server serving it goes away after the first
/// stall and (if `back_after` is given) comes back on the same port.
fn outage(
    back_after: Option<Duration>,
    outage: Duration,
) -> (
    Result<WriteOutcome, ImageError>,
    Duration,
    Vec<imprint_tests::server::RequestRecord>,
) {
    let f = fixture();
    let first = Server::start();
    let port = first.port();
    let url = serve(&first, "/outage.zst", &f.zst);
    first.set_fault(
        "/outage.zst",
        Fault::Stall {
            after: 4 * MIB,
            secs: 60,
        },
    );
    // The outage starts once bytes have arrived (before that a URL "never answered"):
    // progress reports say when the first ones did.
    let downloaded = std::sync::atomic::AtomicU64::new(0);
    let seen = |p: &Progress| {
        downloaded.fetch_max(p.bytes_downloaded, std::sync::atomic::Ordering::Relaxed);
    };
    let mut opts = fast();
    opts.stall_timeout = Duration::from_millis(800);
    opts.retry.outage = outage;
    opts.progress = Some(&seen);
    opts.progress_interval = Duration::from_millis(10);
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let t = Instant::now();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            stream_to(
                std::slice::from_ref(&url),
                Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
                &target,
                &opts,
            )
        });
        while downloaded.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            assert!(t.elapsed() < Duration::from_secs(20), "no bytes arrived");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(first);
        let second = back_after.map(|d| {
            std::thread::sleep(d);
            // Serving before it listens: a request in between would get a final 404.
            Server::start_on_with(port, |s| {
                serve(s, "/outage.zst", &f.zst);
            })
        });
        let res = writer.join().unwrap();
        let elapsed = t.elapsed();
        if res.is_ok() {
            assert!(std::fs::read(&target).unwrap() == f.raw);
        }
        (
            res,
            elapsed,
            second.map(|s| s.requests()).unwrap_or_default(),
        )
    })
}

#[test]
fn a_network_outage_mid_download_is_waited_out_and_resumed() {
    // Gone for 3 s: longer than the stall timeout plus every retry of the one URL.
    let (res, _, after) = outage(Some(Duration::from_secs(3)), Duration::from_secs(20));
    let o = res.unwrap();
    // The server's going away cut the first response short of its stall point.
    let from: u64 = after[0]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or(0);
    assert!(
        from > 0 && from <= 4 * MIB,
        "resumed, not restarted: {after:?}"
    );
    assert_eq!(
        o.resumes, 1,
        "one resumed connection; the refused attempts are not resumes"
    );
}

#[test]
fn an_outage_longer_than_the_budget_fails_naming_the_url() {
    let (res, elapsed, _) = outage(None, Duration::from_millis(1500));
    let err = res.unwrap_err();
    assert!(
        matches!(&err, ImageError::Fetch { .. }) && err.to_string().contains("/outage.zst"),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
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
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
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
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
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
