//! Lookup (`imprint.lookup=`, `run --lookup`): the real binary POSTs this machine's
//! inventory to the test server on 127.0.0.1, which answers from a script. The
//! documents fail harmlessly at planning (their smallest disk must be 1 GiB; the only
//! disk offered is a 64 MiB loop device), so every run ends before touching a disk.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::report_schema::ReportSchema;
use imprint_tests::server::{Answer, Post, Server};
use imprint_tests::signing::keys;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const LOOKUP: &str = "/lookup";
const DOC: &str = "/docs/web-01.yaml";
const REPORT: &str = "/report/web-01";
/// The exit code of a document that cannot be planned on this machine.
const PLAN_FAILED: i32 = 4;
const UNAUTHENTICATED: i32 = 10;

/// `imprint schema inventory`, compiled once.
fn inventory_schema() -> &'static ReportSchema {
    static S: OnceLock<ReportSchema> = OnceLock::new();
    S.get_or_init(|| {
        let out = sh(
            &imprint_bin().display().to_string(),
            &["schema", "inventory"],
        );
        ReportSchema::new(&serde_json::from_str(&out).expect("the schema is JSON"))
    })
}

/// A document the server hands out: valid, but it needs a 1 GiB disk.
fn document(s: &Server) -> String {
    single_disk_document(
        &s.url("/images/web.raw.zst"),
        &sha256_hex(b"never fetched"),
        &s.url(REPORT),
    )
}

/// `imprint run --no-finish` against the lookup URL, offering only `disk`.
fn run_args<'a>(disk: &'a LoopDev, url: &'a str, trust_dir: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--no-finish",
        "--report-timeout",
        "3",
        "--disks",
        disk.dev(),
        "--trust-dir",
        trust_dir,
        "--lookup",
        url,
        "--lookup-min-wait",
        "1",
    ]
}

/// Every lookup POST: JSON matching the inventory schema, with the protocol headers
/// and one run id throughout.
fn assert_lookup_posts(posts: &[Post]) {
    assert!(!posts.is_empty(), "no lookup POST arrived");
    let run_id = posts[0]
        .header("x-imprint-run-id")
        .expect("a run id header");
    assert_eq!(run_id.len(), 36, "a UUID: {run_id}");
    for p in posts {
        assert_eq!(p.header("content-type"), Some("application/json"));
        assert_eq!(p.header("x-imprint-protocol"), Some("1"));
        assert_eq!(p.header("x-imprint-run-id"), Some(run_id), "one run id");
        let inv = p.json();
        inventory_schema()
            .check(&inv)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv["schema_version"], 1);
    }
}

fn lookup_posts(s: &Server) -> Vec<Post> {
    s.posts().into_iter().filter(|p| p.path == LOOKUP).collect()
}

#[test]
fn the_inventory_of_this_machine_matches_its_schema_and_names_its_nics_and_disks() {
    let disk = LoopDev::new(64 << 20, 512);
    let r = imprint(&["inventory"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inv: Value = serde_json::from_str(&r.stdout).expect("inventory is JSON");
    inventory_schema()
        .check(&inv)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut nics: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    nics.sort();
    let named: Vec<&str> = inv["nics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(named, nics);
    let disks: Vec<&str> = inv["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(
        disks.contains(&disk.dev()),
        "{} not in {disks:?}",
        disk.dev()
    );
    assert!(
        inv["cpu"]["logical"].as_u64().unwrap() >= 1,
        "{:#}",
        inv["cpu"]
    );
    assert!(inv["memory"]["total_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn two_202s_then_a_document_and_the_run_goes_on() {
    let s = Server::start();
    let not_yet = Answer::status(202).header("Retry-After", "1");
    let doc = Answer::status(200).body(document(&s));
    s.script_posts(LOOKUP, vec![not_yet.clone(), not_yet, doc]);
    let disk = LoopDev::new(64 << 20, 512);
    let empty = tempfile::tempdir().unwrap();
    let url = s.url(LOOKUP);
    let r = imprint(&run_args(&disk, &url, path_str(empty.path())));
    assert_eq!(r.code, PLAN_FAILED, "{}", r.stderr);
    let asked = format!(
        "lookup: the server has no document for this machine yet (202); asking {url} again in 1 s"
    );
    assert_eq!(r.stderr.matches(&asked).count(), 2, "{}", r.stderr);
    assert!(r.stderr.contains("no disk matches"), "{}", r.stderr);
    let posts = lookup_posts(&s);
    assert_eq!(posts.len(), 3);
    assert_lookup_posts(&posts);
    // The plan's failure went to the document's report URL: the document was used.
    assert_eq!(final_report(&s, REPORT)["failed_step"], "plan");
    assert!(r.took < Duration::from_secs(30), "{:?}", r.took);
}

#[test]
fn a_retired_machine_is_told_so_and_not_powered_off_with_no_finish() {
    let s = Server::start();
    s.script_posts(LOOKUP, vec![Answer::status(410)]);
    let disk = LoopDev::new(64 << 20, 512);
    let empty = tempfile::tempdir().unwrap();
    let url = s.url(LOOKUP);
    let r = imprint(&run_args(&disk, &url, path_str(empty.path())));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "lookup at {url}: the server retired this machine (HTTP 410 Gone); not powering off (--no-finish)"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(lookup_posts(&s).len(), 1);
}

#[test]
fn another_4xx_fails_at_once_with_the_server_s_words() {
    let s = Server::start();
    s.script_posts(
        LOOKUP,
        vec![Answer::status(403).body("this token may not look up hosts")],
    );
    let disk = LoopDev::new(64 << 20, 512);
    let empty = tempfile::tempdir().unwrap();
    let url = s.url(LOOKUP);
    let r = imprint(&run_args(&disk, &url, path_str(empty.path())));
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(
        r.stderr.contains(&url)
            && r.stderr.contains("HTTP 403")
            && r.stderr.contains("this token may not look up hosts"),
        "{}",
        r.stderr
    );
    assert_eq!(lookup_posts(&s).len(), 1);
}

#[test]
fn a_server_down_at_first_is_asked_again_until_it_answers() {
    // A port nobody listens on, for now.
    let port = Server::start().port();
    let url = format!("http://127.0.0.1:{port}{LOOKUP}");
    let disk = LoopDev::new(64 << 20, 512);
    let empty = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let child = Command::new(imprint_bin())
        .args(run_args(&disk, &url, path_str(empty.path())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start imprint");
    std::thread::sleep(Duration::from_secs(8));
    let s = Server::start_on_with(port, |s| {
        s.script_posts(LOOKUP, vec![Answer::status(200).body(document(s))]);
    });
    let out = child.wait_with_output().expect("imprint ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(PLAN_FAILED), "{stderr}");
    assert!(
        stderr.contains(&format!("; asking {url} again in ")) && stderr.contains("no answer"),
        "{stderr}"
    );
    assert!(stderr.contains("no disk matches"), "{stderr}");
    assert_lookup_posts(&lookup_posts(&s));
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
}

/// The `imprint: error:` line of a run.
fn error_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with("imprint: error:"))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"))
        .to_string()
}

#[test]
fn a_looked_up_document_with_a_bad_signature_is_refused_as_from_imprint_config() {
    let s = Server::start();
    let doc = document(&s).into_bytes();
    // Signed, then changed: the signature no longer verifies.
    s.serve_bytes(&format!("{DOC}.minisig"), keys().sign("ops", &doc));
    let mut tampered = doc.clone();
    let at = doc.len() - 2;
    tampered[at] ^= 0x01;
    s.serve_bytes(DOC, tampered.clone());
    s.script_posts(
        LOOKUP,
        vec![Answer::status(200)
            .header("Content-Location", DOC)
            .body(tampered)],
    );
    let disk = LoopDev::new(64 << 20, 512);
    let before = disk.sha256();
    let empty = tempfile::tempdir().unwrap();
    let ops = keys().path("ops.pub").display().to_string();
    let url = s.url(LOOKUP);
    let mut by_lookup = run_args(&disk, &url, path_str(empty.path()));
    by_lookup.extend(["--trust", &ops]);
    let looked_up = imprint(&by_lookup);
    assert_eq!(looked_up.code, UNAUTHENTICATED, "{}", looked_up.stderr);
    let doc_url = s.url(DOC);
    let by_config = imprint(&[
        "run",
        "--no-finish",
        "--report-timeout",
        "3",
        "--disks",
        disk.dev(),
        "--trust-dir",
        path_str(empty.path()),
        "--trust",
        &ops,
        "--config",
        &doc_url,
    ]);
    assert_eq!(by_config.code, UNAUTHENTICATED, "{}", by_config.stderr);
    let line = error_line(&looked_up.stderr);
    assert_eq!(line, error_line(&by_config.stderr));
    assert!(
        line.contains(&format!("{doc_url}.minisig does not verify")),
        "{line}"
    );
    assert_eq!(disk.sha256(), before, "the disk changed");
}
