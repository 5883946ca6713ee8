//! Signed documents (issue 16): with a trust root, `apply` accepts a document only with
//! a valid detached signature by a trusted key (`<url>.minisig`, then `<url>.sig`),
//! made here by the real `minisign` and `gpg`, and only before its `expires` time. Each
//! refusal exits 10 before any disk is touched (the loop device byte for byte as it
//! was), with a failure report naming the cause and carrying nothing of the document.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::Server;
use imprint_tests::signing::keys;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const REPORT: &str = "/report/web-01";
const DOC: &str = "/docs/web-01.yaml";
/// The exit code of a document not accepted as authentic.
const UNAUTHENTICATED: i32 = 10;
/// A line of the document's user data: it must never reach a refusal's report.
const MARKER: &str = "imprint-ok";

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(16, 512))
}

/// A server with the image and the single-disk document (plus `extra` top-level lines).
fn server_with_doc(extra: &str) -> (Server, Vec<u8>) {
    let s = Server::start();
    let z = image().zstd();
    let url = s.url("/images/web.raw.zst");
    let doc = single_disk_document(&url, &sha256_hex(&z), &s.url(REPORT)) + extra;
    s.serve_bytes("/images/web.raw.zst", z);
    s.serve_bytes(DOC, doc.clone().into_bytes());
    (s, doc.into_bytes())
}

/// `imprint apply --yes --disks DEV --trust-dir EMPTY [trust…] SRC`.
fn apply_src(disk: &LoopDev, trust: &[&str], src: &str) -> Run {
    let empty = tempfile::tempdir().unwrap();
    let mut args = vec![
        "apply",
        "--yes",
        "--disks",
        disk.dev(),
        "--trust-dir",
        path_str(empty.path()),
    ];
    args.extend_from_slice(trust);
    args.push(src);
    imprint(&args)
}

fn ops_pub() -> String {
    keys().path("ops.pub").display().to_string()
}

/// Runs `apply` of `src` on a used disk and asserts the refusal: exit 10 with every
/// phrase in stderr and in the report's error, the disk byte for byte as it was, and
/// nothing of the document (its user data, its host name) in the reports.
fn refused(server: &Server, trust: &[&str], src: &str, phrases: &[&str]) {
    let disk = LoopDev::used(256 << 20);
    let before = disk.sha256();
    let run = apply_src(&disk, trust, src);
    assert_eq!(run.code, UNAUTHENTICATED, "{}", run.stderr);
    let fin = final_report(server, REPORT);
    assert_eq!(fin["failed_step"], "authenticate", "{fin:#}");
    assert_eq!(fin["disks_after"], "untouched", "{fin:#}");
    assert_ne!(
        fin["hostname"], "web-01",
        "the host name came from the document"
    );
    let error = fin["error"].as_str().unwrap();
    for p in phrases {
        assert!(
            run.stderr.contains(p),
            "stderr lacks {p:?}:\n{}",
            run.stderr
        );
        assert!(error.contains(p), "the report's error lacks {p:?}: {error}");
    }
    for post in server.posts() {
        let body = String::from_utf8_lossy(&post.body);
        assert!(
            !body.contains(MARKER) && !body.contains("cloud-config"),
            "the report leaks the document: {body}"
        );
    }
    assert!(
        !run.stderr.contains("provisioning"),
        "nothing ran: {}",
        run.stderr
    );
    assert_eq!(disk.sha256(), before, "the disk changed");
    assert_eq!(disk.partition_offsets().len(), 2, "the old GPT is gone");
}

fn assert_deployed(server: &Server, run: &Run, disk: &LoopDev, signer: &str) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("by {signer} verified")),
        "{}",
        run.stderr
    );
    let fin: Value = final_report(server, REPORT);
    assert_eq!(fin["result"], "success", "{fin:#}");
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
}

#[test]
fn a_minisign_signed_document_provisions_and_the_keys_in_force_are_printed() {
    let (s, doc) = server_with_doc("");
    s.serve_bytes(&format!("{DOC}.minisig"), keys().sign("ops", &doc));
    // The key comes from a trust directory this time.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(ops_pub(), dir.path().join("ops.pub")).unwrap();
    let disk = LoopDev::new(2 << 30, 512);
    let run = imprint(&[
        "apply",
        "--yes",
        "--disks",
        disk.dev(),
        "--trust-dir",
        path_str(dir.path()),
        &s.url(DOC),
    ]);
    let id = format!("minisign:{}", keys().minisign_id("ops"));
    let line = format!(
        "trust: {id} (from {})",
        dir.path().join("ops.pub").display()
    );
    assert!(run.stderr.contains(&line), "{}", run.stderr);
    assert_deployed(&s, &run, &disk, &id);
}

#[test]
fn a_gpg_signed_document_with_only_a_sig_provisions() {
    let (s, doc) = server_with_doc("");
    s.serve_bytes(&format!("{DOC}.sig"), keys().sign("gpg", &doc));
    let disk = LoopDev::new(2 << 30, 512);
    let cert = keys().path("release.asc").display().to_string();
    let run = apply_src(&disk, &["--trust", &cert], &s.url(DOC));
    assert!(
        run.stderr
            .contains(&format!("trust: openpgp:{} (from {cert})", keys().gpg_fpr)),
        "{}",
        run.stderr
    );
    assert_deployed(&s, &run, &disk, &format!("openpgp:{}", keys().gpg_fpr));
}

#[test]
fn a_tampered_document_is_refused() {
    let (s, doc) = server_with_doc("");
    s.serve_bytes(&format!("{DOC}.minisig"), keys().sign("ops", &doc));
    let mut tampered = doc.clone();
    let at = doc.len() - 2;
    tampered[at] ^= 0x01;
    s.serve_bytes(DOC, tampered);
    let url = s.url(DOC);
    refused(
        &s,
        &["--trust", &ops_pub()],
        &url,
        &[
            &format!("{url}.minisig does not verify"),
            "changed after it was signed",
        ],
    );
}

#[test]
fn a_document_signed_by_another_key_is_refused() {
    let (s, doc) = server_with_doc("");
    s.serve_bytes(&format!("{DOC}.minisig"), keys().sign("rogue", &doc));
    let rogue = format!("minisign:{}", keys().minisign_id("rogue"));
    let ops = format!("minisign:{}", keys().minisign_id("ops"));
    refused(
        &s,
        &["--trust", &ops_pub()],
        &s.url(DOC),
        &[
            &format!("signed by key {rogue}"),
            &format!("(trusted: {ops})"),
        ],
    );
}

#[test]
fn a_stripped_signature_is_refused_naming_both_places_tried() {
    // Signed, but the .minisig was removed on the way: neither signature is served.
    let (s, _) = server_with_doc("");
    let url = s.url(DOC);
    refused(
        &s,
        &["--trust", &ops_pub()],
        &url,
        &[
            "is not signed",
            &format!("neither {url}.minisig nor {url}.sig exists"),
        ],
    );
}

#[test]
fn an_unsigned_local_document_is_refused() {
    let (s, doc) = server_with_doc("");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web-01.yaml");
    std::fs::write(&path, doc).unwrap();
    let p = path.display().to_string();
    refused(
        &s,
        &["--trust", &ops_pub()],
        &p,
        &[&format!("neither {p}.minisig nor {p}.sig exists")],
    );
}

#[test]
fn an_expired_document_is_refused_even_when_signed() {
    let (s, doc) = server_with_doc("expires: 2026-01-01T00:00:00Z\n");
    s.serve_bytes(&format!("{DOC}.minisig"), keys().sign("ops", &doc));
    refused(
        &s,
        &["--trust", &ops_pub()],
        &s.url(DOC),
        &["expired at 2026-01-01T00:00:00Z", "the clock says"],
    );
    let (code, out) = {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.yaml");
        std::fs::write(&p, &doc).unwrap();
        let r = imprint(&["validate", path_str(&p)]);
        (r.code, r.stderr)
    };
    assert_eq!(code, 3, "validate reports the expired document: {out}");
    assert!(
        out.contains("expires") && out.contains("expired at"),
        "{out}"
    );
}

#[test]
fn without_a_trust_root_the_document_is_applied_unauthenticated_and_stdin_needs_a_signature() {
    // A disk too small for the document: the run stops at planning, after the lines.
    let (s, _) = server_with_doc("");
    let small = LoopDev::new(64 << 20, 512);
    let url = s.url(DOC);
    let run = apply_src(&small, &[], &url);
    assert_eq!(run.code, 4, "{}", run.stderr);
    for line in [
        "trust: none — the document will not be authenticated".to_string(),
        format!("document {url} is not authenticated (no trust root)"),
    ] {
        assert!(run.stderr.contains(&line), "{}", run.stderr);
    }
    let run = apply_src(&small, &["--trust", &ops_pub()], "-");
    assert_eq!(run.code, UNAUTHENTICATED, "{}", run.stderr);
    assert!(run.stderr.contains("--signature FILE"), "{}", run.stderr);
    let bad = keys().path("ops.sec").display().to_string();
    let run = apply_src(&small, &["--trust", &bad], &url);
    assert_eq!(run.code, UNAUTHENTICATED, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("the trust key {bad}")),
        "{}",
        run.stderr
    );
}

/// A file holding a blank customization area 64 KiB in, where the sector scan finds it.
fn iso_with_area(dir: &Path) -> PathBuf {
    let len: u32 = 256 * 1024;
    let mut bytes = vec![0u8; 1 << 20];
    let area = &mut bytes[64 << 10..];
    area[..23].copy_from_slice(b"IMPRINT-CONFIG-AREA-v1\n");
    area[32..36].copy_from_slice(&len.to_le_bytes());
    let iso = dir.join("imprint.iso");
    std::fs::write(&iso, &bytes).unwrap();
    iso
}

#[test]
fn iso_customize_stores_trust_keys_and_show_lists_their_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let iso = iso_with_area(dir.path());
    let iso_s = path_str(&iso);
    let cert = keys().path("release.asc").display().to_string();
    let run = imprint(&[
        "iso",
        "customize",
        "--trust",
        &ops_pub(),
        "--trust",
        &cert,
        "--karg",
        "ip=dhcp",
        iso_s,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("2 trust key(s)"), "{}", run.stdout);
    let shown = imprint(&["iso", "show", iso_s]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    for line in [
        format!(
            "trust key: minisign:{} (ops.pub)",
            keys().minisign_id("ops")
        ),
        format!("trust key: openpgp:{} (release.asc)", keys().gpg_fpr),
    ] {
        assert!(shown.stdout.contains(&line), "{}", shown.stdout);
    }
    // A file that is not a key: refused (usage), naming it, and the ISO stays as it was.
    let before = std::fs::read(&iso).unwrap();
    let bad = keys().path("ops.sec").display().to_string();
    let run = imprint(&["iso", "customize", "--trust", &bad, iso_s]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&bad), "{}", run.stderr);
    assert!(std::fs::read(&iso).unwrap() == before, "the ISO changed");
}

#[test]
fn run_refuses_an_unsigned_document_from_imprint_config_as_the_ramdisk_would() {
    let (s, _) = server_with_doc("");
    let url = s.url(DOC);
    let disk = LoopDev::used(256 << 20);
    let before = disk.sha256();
    let empty = tempfile::tempdir().unwrap();
    let run = imprint(&[
        "run",
        "--no-finish",
        "--report-timeout",
        "5",
        "--disks",
        disk.dev(),
        "--trust-dir",
        path_str(empty.path()),
        "--trust",
        &ops_pub(),
        "--config",
        &url,
    ]);
    assert_eq!(run.code, UNAUTHENTICATED, "{}", run.stderr);
    let phrase = format!("neither {url}.minisig nor {url}.sig exists");
    assert!(run.stderr.contains(&phrase), "{}", run.stderr);
    let fin = final_report(&s, REPORT);
    assert_eq!(fin["failed_step"], "authenticate", "{fin:#}");
    assert_eq!(disk.sha256(), before, "the disk changed");
}
