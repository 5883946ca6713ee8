//! Issue 7, secrets: the report token and a LUKS recovery passphrase never appear in
//! a log line (normal or verbose), a report body, a printed plan or an error — on a
//! successful run and on failed ones. (The token is expected in exactly one place:
//! the `Authorization` header of each report.)

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::{Fault, Server};
use std::sync::OnceLock;

const IMAGE: &str = "/images/web.raw.zst";
const REPORT: &str = "/report/web-01";
const PASSPHRASE: &str = "correct-horse-battery-staple-4711";

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(48, 512))
}

/// Asserts no secret occurs in `text` (named `what` in the failure).
fn clean(what: &str, text: &str) {
    for secret in [TOKEN, PASSPHRASE] {
        assert!(
            !text.contains(secret),
            "{what} contains a secret ({secret}):\n{text}"
        );
    }
}

/// Every POST body and every header except Authorization.
fn everything_sent(s: &Server) -> String {
    let mut all = String::new();
    for p in s.posts() {
        for (k, v) in &p.headers {
            if k != "authorization" {
                all.push_str(&format!("{k}: {v}\n"));
            }
        }
        all.push_str(&String::from_utf8_lossy(&p.body));
        all.push('\n');
    }
    all
}

#[test]
fn a_verbose_successful_run_leaks_nothing() {
    let s = Server::start();
    let z = image().zstd();
    s.serve_bytes(IMAGE, z.clone());
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(
        &single_disk_document(&s.url(IMAGE), &sha256_hex(&z), &s.url(REPORT)),
        &disk,
        &["--verbose"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    clean("stderr", &run.stderr);
    clean("stdout", &run.stdout);
    let sent = everything_sent(&s);
    assert!(sent.contains("\"final\""), "the reports arrived: {sent}");
    clean("the reports", &sent);
    let with_token = s
        .posts()
        .iter()
        .filter(|p| p.header("authorization") == Some(&format!("Bearer {TOKEN}")))
        .count();
    assert_eq!(
        with_token,
        s.posts().len(),
        "every report authenticates with the token"
    );
    // The configdrive carries what the document gave it, and not the report token.
    let seed = extract_vfat(disk.dev(), disk.partition_offsets()[2].1);
    for f in std::fs::read_dir(seed.path()).unwrap().flatten() {
        clean(
            &format!("configdrive file {:?}", f.file_name()),
            &String::from_utf8_lossy(&std::fs::read(f.path()).unwrap_or_default()),
        );
    }
}

#[test]
fn failed_runs_leak_nothing() {
    let s = Server::start();
    let z = image().zstd();
    s.serve_bytes(IMAGE, z.clone());
    s.set_fault(IMAGE, Fault::FlipBit(100));
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(
        &single_disk_document(&s.url(IMAGE), &sha256_hex(&z), &s.url(REPORT)),
        &disk,
        &["--verbose"],
    );
    assert_eq!(run.code, 5, "{}", run.stderr);
    clean("stderr of a failed run", &run.stderr);
    clean("the reports of a failed run", &everything_sent(&s));
    // A document rejected at planning still reports its failure, without the token.
    let s = Server::start();
    let doc = single_disk_document(&s.url(IMAGE), &sha256_hex(&z), &s.url(REPORT))
        .replace("min_size: 1GiB", "min_size: 1TiB");
    let run = apply(&doc, &disk, &["--verbose"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    clean("stderr of a plan failure", &run.stderr);
    let sent = everything_sent(&s);
    assert!(sent.contains("failure"), "{sent}");
    clean("the early failure report", &sent);
}

#[test]
fn a_recovery_passphrase_never_appears_in_plans_or_errors() {
    let s = Server::start();
    let doc = format!(
        r#"version: 1
host: {{ hostname: web-01 }}
disks:
  - {{ name: a, match: {{ max_size: 10GiB }} }}
storage:
  layout:
    luks:
      tpm2: {{ pcrs: [7] }}
      recovery_passphrase: "{PASSPHRASE}"
    lvm:
      - {{ mount: /, size: 2GiB, type: xfs }}
image: {{ url: "{img}", sha256: "{sha}", format: rootfs }}
report: {{ url: "{report}", token: "{TOKEN}" }}
"#,
        img = s.url("/r.tar.zst"),
        sha = "ab".repeat(32),
        report = s.url(REPORT),
    );
    let inv = repo_root().join("tests/corpus/inventory.json");
    for args in [
        vec!["validate"],
        vec!["plan", "--inventory", path_str(&inv)],
        vec!["plan", "--json", "--inventory", path_str(&inv)],
        vec!["--verbose", "plan", "--inventory", path_str(&inv)],
    ] {
        let run = imprint_with_doc(&args, &doc);
        assert!(run.code == 0, "{args:?}: {}", run.stderr);
        clean(&format!("stdout of {args:?}"), &run.stdout);
        clean(&format!("stderr of {args:?}"), &run.stderr);
    }
    // apply on a small disk: planning fails (or the engine refuses a step it lacks) — never with the passphrase.
    let disk = LoopDev::new(1 << 30, 512);
    let run = apply(&doc, &disk, &["--verbose"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    clean("stderr of apply", &run.stderr);
    clean("reports of apply", &everything_sent(&s));
}
