//! Issue 7, report server down: provisioning completes, the disk verifies, and imprint
//! exits within a bounded time whether the report URL refuses connections, answers
//! 500, or accepts and never answers. Reports are best effort; the machine's job is not.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::{Fault, Server};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const IMAGE: &str = "/images/web.raw.zst";

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(48, 512))
}

/// Serves the image; provisions with the report going to `report_url`; checks the disk.
fn provisions_despite(report_url: &str, extra: &[&str]) -> Run {
    let s = Server::start();
    let z = image().zstd();
    s.serve_bytes(IMAGE, z.clone());
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(
        &single_disk_document(&s.url(IMAGE), &sha256_hex(&z), report_url),
        &disk,
        extra,
    );
    assert_eq!(
        run.code, 0,
        "a dead report server failed the provisioning:\n{}",
        run.stderr
    );
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
    assert!(
        run.stderr.contains("not delivered"),
        "the undelivered report is logged:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains(TOKEN), "the token appeared in the log");
    eprintln!(
        "provisioning with the report server down took {:?}",
        run.took
    );
    run
}

/// A port nothing listens on.
fn refused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Accepts connections and never answers, until dropped.
struct BlackHole {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::SeqCst) {
                if let Ok((c, _)) = l.accept() {
                    held.push(c);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        BlackHole {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn refused_connections_with_the_default_budgets_end_within_two_minutes() {
    // Defaults: 15 s for the first step event (later ones get one try each while the
    // server stays down), then 90 s for the final report. Measured here: about 95-110 s.
    let run = provisions_despite(
        &format!("http://127.0.0.1:{}/report/web-01", refused_port()),
        &[],
    );
    assert!(run.took < Duration::from_secs(130), "took {:?}", run.took);
}

#[test]
fn refused_connections_with_a_short_report_timeout_end_quickly() {
    let run = provisions_despite(
        &format!("http://127.0.0.1:{}/report/web-01", refused_port()),
        &["--report-timeout", "3"],
    );
    assert!(run.took < Duration::from_secs(30), "took {:?}", run.took);
}

#[test]
fn a_report_server_answering_500_is_given_up_on() {
    let r = Server::start();
    r.set_fault(
        "/report/web-01",
        Fault::Status {
            status: 500,
            retry_after: None,
            times: 100_000,
        },
    );
    let run = provisions_despite(&r.url("/report/web-01"), &["--report-timeout", "3"]);
    assert!(run.took < Duration::from_secs(30), "took {:?}", run.took);
    assert!(run.stderr.contains("500"), "{}", run.stderr);
    assert!(r.requests().len() >= 2, "the final report was retried");
}

#[test]
fn a_report_server_that_never_answers_is_given_up_on() {
    let hole = BlackHole::start();
    // Each POST waits for its 10 s read timeout; the budget bounds the whole.
    let run = provisions_despite(
        &format!("http://127.0.0.1:{}/report/web-01", hole.port),
        &["--report-timeout", "3"],
    );
    assert!(run.took < Duration::from_secs(60), "took {:?}", run.took);
}
