//! Signed images (issue 16): `image.signature` names a detached signature over the file
//! as served, made here by the real `minisign` and `gpg`. It is fetched and matched to
//! a key before any disk is touched, and checked over the bytes as they stream, before
//! the head of the disk is committed. Each refusal names its cause in stderr and in the
//! failure report; a refusal before the first step leaves the used loop device byte for
//! byte as it was, one during the write leaves no partition table.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::Server;
use imprint_tests::signing::keys;
use serde_json::Value;
use std::sync::OnceLock;

const REPORT: &str = "/report/web-01";
const IMAGE: &str = "/images/web.raw.zst";

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(16, 512))
}

/// The single-disk document with `signature:` lines under `image:`, and the digest
/// line only when `sha256` is given.
fn document(s: &Server, sha256: Option<&str>, signature: &str) -> String {
    let z = image().zstd();
    let doc = single_disk_document(&s.url(IMAGE), &sha256_hex(&z), &s.url(REPORT));
    let digest_line = format!("  sha256: {}\n", sha256_hex(&z));
    let with = match sha256 {
        Some(h) => format!("  sha256: {h}\n{signature}"),
        None => signature.to_string(),
    };
    doc.replace(&digest_line, &with)
}

/// `signature:` under `image:` with the URL and the minisign/OpenPGP keys given as text.
fn signature_block(s: &Server, sig_path: &str, keys: &[String]) -> String {
    let mut out = format!("  signature:\n    url: {}\n", s.url(sig_path));
    if !keys.is_empty() {
        out.push_str("    keys:\n");
        for k in keys {
            out.push_str("      - |\n");
            for line in k.lines() {
                out.push_str(&format!("        {line}\n"));
            }
        }
    }
    out
}

fn ops_key() -> String {
    std::fs::read_to_string(keys().path("ops.pub")).unwrap()
}

fn gpg_cert() -> String {
    std::fs::read_to_string(keys().path("release.asc")).unwrap()
}

/// A server with the image and its signature by `signer` at `IMAGE.minisig`/`.sig`.
fn serve(signer: &str) -> (Server, String) {
    let s = Server::start();
    let z = image().zstd();
    let sig_path = if signer == "gpg" {
        format!("{IMAGE}.sig")
    } else {
        format!("{IMAGE}.minisig")
    };
    s.serve_bytes(&sig_path, keys().sign(signer, &z));
    s.serve_bytes(IMAGE, z);
    (s, sig_path)
}

/// The write-image step of a final report.
fn write_image(fin: &Value) -> &Value {
    fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "write-image")
        .unwrap_or_else(|| panic!("no write-image step: {fin:#}"))
}

/// Applies `doc` to a used disk, expects the refusal at `preflight` with `phrases` in
/// stderr and the report, and the disk byte for byte as it was.
fn refused_before_any_disk(s: &Server, doc: &str, extra: &[&str], phrases: &[&str]) {
    let disk = LoopDev::used(2 << 30);
    let before = disk.sha256();
    let run = apply(doc, &disk, extra);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let fin = final_report(s, REPORT);
    assert_eq!(fin["failed_step"], "preflight", "{fin:#}");
    assert_eq!(fin["disks_after"], "untouched", "{fin:#}");
    let error = fin["error"].as_str().unwrap();
    for p in phrases {
        assert!(
            run.stderr.contains(p),
            "stderr lacks {p:?}:\n{}",
            run.stderr
        );
        assert!(error.contains(p), "the report's error lacks {p:?}: {error}");
    }
    assert_eq!(disk.sha256(), before, "the disk changed");
}

#[test]
fn a_minisign_signed_image_deploys_and_the_report_names_the_signer() {
    let (s, sig) = serve("ops");
    let z = image().zstd();
    let doc = document(
        &s,
        Some(&sha256_hex(&z)),
        &signature_block(&s, &sig, &[ops_key()]),
    );
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("signed by one of the 1 keys the document lists")
            && run.stderr.contains("is by a key that may sign it"),
        "the plan shows the signature and its check:\n{}",
        run.stderr
    );
    let fin = final_report(&s, REPORT);
    let id = format!("minisign:{}", keys().minisign_id("ops"));
    let signed_by = write_image(&fin)["output"]["image"]["signed_by"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(signed_by.starts_with(&id), "{signed_by} / {fin:#}");
    assert!(
        signed_by.contains("timestamp:"),
        "minisign's trusted comment: {signed_by}"
    );
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
}

#[test]
fn a_tampered_image_byte_fails_the_signature_and_leaves_no_partition_table() {
    let (s, sig) = serve("ops");
    // One byte changed after signing; the document pins the changed file's digest, so
    // only the signature can catch it.
    let mut z = image().zstd();
    let at = z.len() / 2;
    z[at] ^= 0x01;
    s.serve_bytes(IMAGE, z.clone());
    let doc = document(
        &s,
        Some(&sha256_hex(&z)),
        &signature_block(&s, &sig, &[ops_key()]),
    );
    let disk = LoopDev::used(2 << 30);
    let run = apply(&doc, &disk, &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let fin = final_report(&s, REPORT);
    assert_eq!(fin["failed_step"], "write-image", "{fin:#}");
    let error = fin["error"].as_str().unwrap();
    let id = format!("minisign:{}", keys().minisign_id("ops"));
    for p in [
        format!("the signature by {id} does not verify"),
        "does not match the signed bytes".to_string(),
    ] {
        assert!(error.contains(&p), "{p:?} in {error}");
        assert!(run.stderr.contains(&p), "{p:?} in {}", run.stderr);
    }
    assert_no_partition_table(disk.dev());
}

#[test]
fn wrong_key_missing_signature_and_legacy_form_are_refused_before_any_disk() {
    // Signed by a key the document does not list.
    let (s, sig) = serve("rogue");
    let z = image().zstd();
    let rogue = format!("minisign:{}", keys().minisign_id("rogue"));
    let doc = document(
        &s,
        Some(&sha256_hex(&z)),
        &signature_block(&s, &sig, &[ops_key()]),
    );
    refused_before_any_disk(
        &s,
        &doc,
        &[],
        &[&rogue, "is not one of the keys image.signature.keys lists"],
    );

    // No signature where the document says.
    let s = Server::start();
    s.serve_bytes(IMAGE, z.clone());
    let doc = document(
        &s,
        Some(&sha256_hex(&z)),
        &signature_block(&s, "/images/web.raw.zst.minisig", &[ops_key()]),
    );
    refused_before_any_disk(&s, &doc, &[], &["web.raw.zst.minisig does not exist"]);

    // minisign -l signs the whole file at once: refused, with what to do instead.
    let s = Server::start();
    s.serve_bytes(IMAGE, z.clone());
    s.serve_bytes("/legacy.minisig", keys().sign_legacy("ops", &z));
    let doc = document(
        &s,
        Some(&sha256_hex(&z)),
        &signature_block(&s, "/legacy.minisig", &[ops_key()]),
    );
    refused_before_any_disk(&s, &doc, &[], &["legacy signature (minisign -l)"]);

    // No keys in the document and no trust root: nothing can check it.
    let (s, sig) = serve("ops");
    let doc = document(&s, Some(&sha256_hex(&z)), &signature_block(&s, &sig, &[]));
    let empty = tempfile::tempdir().unwrap();
    refused_before_any_disk(
        &s,
        &doc,
        &["--trust-dir", path_str(empty.path())],
        &["no key can check the image's signature"],
    );
}

#[test]
fn an_image_pinned_by_its_signature_alone_needs_a_signed_document() {
    // Unsigned document, no digest: refused before any disk, whatever the signature.
    let (s, sig) = serve("gpg");
    let doc = document(&s, None, &signature_block(&s, &sig, &[gpg_cert()]));
    refused_before_any_disk(
        &s,
        &doc,
        &[],
        &["the image has no digest and the document is not signed"],
    );

    // The same image, no digest, no keys in the document: the document is signed by
    // the trust root's minisign key and the image by its OpenPGP key.
    let (s, sig) = serve("gpg");
    let doc = document(&s, None, &signature_block(&s, &sig, &[]));
    let doc_path = "/docs/web-01.yaml";
    s.serve_bytes(doc_path, doc.clone().into_bytes());
    s.serve_bytes(
        &format!("{doc_path}.minisig"),
        keys().sign("ops", doc.as_bytes()),
    );
    let empty = tempfile::tempdir().unwrap();
    let disk = LoopDev::new(2 << 30, 512);
    let ops = keys().path("ops.pub").display().to_string();
    let cert = keys().path("release.asc").display().to_string();
    let run = imprint(&[
        "apply",
        "--yes",
        "--disks",
        disk.dev(),
        "--trust-dir",
        path_str(empty.path()),
        "--trust",
        &ops,
        "--trust",
        &cert,
        &s.url(doc_path),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let fin = final_report(&s, REPORT);
    let out = &write_image(&fin)["output"]["image"];
    assert_eq!(
        out["signed_by"],
        format!("openpgp:{}", keys().gpg_fpr),
        "{fin:#}"
    );
    // The digest of what was served is reported, for pinning it later.
    assert_eq!(out["digest"]["hex"], sha256_hex(&image().zstd()), "{out:#}");
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
}
