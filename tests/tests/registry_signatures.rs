//! Registry images pinned by their reference or their signature (issue: images from
//! OCI registries, the trust part), through the real binary onto loop devices:
//! Debian's `docker-registry`, artifacts pushed and signed by the real `skopeo copy
//! --sign-by` with a real GnuPG key into a lookaside store served over HTTP.
//!
//! A signed tag deploys; an unsigned one, one signed by another key, a signature over
//! another digest and a tampered signature are refused in preflight with the disk byte
//! for byte as it was. A pinned reference needs no `image.sha256` and its layer digest
//! still catches a changed blob; a bare tag is refused at plan time unless `--insecure`.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::registry::layout::Layout;
use imprint_tests::registry::sigstore::Sigstore;
use imprint_tests::registry::{Access, Registry};
use imprint_tests::server::Server;
use imprint_tests::signing::{keys, rogue};
use serde_json::Value;
use std::sync::OnceLock;

const REPORT: &str = "/report/web-01";
const REPO: &str = "os/web";
const DOC: &str = "/docs/web-01.yaml";

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(16, 512))
}

/// The single-disk document for `url` without `image.sha256`, with `extra` lines
/// under `image:`.
fn document(server: &Server, url: &str, extra: &str) -> String {
    let z = image().zstd();
    let doc = single_disk_document(url, &sha256_hex(&z), &server.url(REPORT));
    doc.replace(&format!("  sha256: {}\n", sha256_hex(&z)), extra)
}

/// `signature: { lookaside: <server>/sigstore }`.
fn lookaside(server: &Server) -> String {
    format!("  signature:\n    lookaside: {}\n", server.url("/sigstore"))
}

/// The image as a single-file artifact titled `title`, pushed to `tag` and signed by
/// the gpg key in `home` (`fpr`); returns the manifest digest.
fn push_signed(
    reg: &Registry,
    store: &Sigstore,
    tag: &str,
    title: &str,
    home: &std::path::Path,
    fpr: &str,
) -> String {
    let l = Layout::new();
    let m = l.artifact(title, &image().zstd());
    l.tag(&m, tag);
    reg.push_signed(l.path(), tag, REPO, store, home, fpr, false);
    m.digest
}

/// Signed by the suite's trusted gpg key (`release.asc`).
fn push_signed_by_ops(reg: &Registry, store: &Sigstore, tag: &str) -> String {
    push_signed(
        reg,
        store,
        tag,
        "web.raw.zst",
        &keys().path("gnupg"),
        &keys().gpg_fpr,
    )
}

/// Applies `doc`, signed by `ops`, with the suite's trust root.
fn apply_signed(server: &Server, doc: &str, disk: &LoopDev) -> Run {
    imprint_tests::signing::apply_signed(server, DOC, doc, disk)
}

/// The write-image step's `output.image` of the final report.
fn written(fin: &Value) -> Value {
    fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "write-image")
        .unwrap_or_else(|| panic!("no write-image step: {fin:#}"))["output"]["image"]
        .clone()
}

/// A signed document for the tag `v1` applied to a used disk: refused in preflight
/// with every phrase said (stderr and report), the disk byte for byte as it was.
fn refused_untouched(server: &Server, reg: &Registry, phrases: &[&str]) {
    let doc = document(server, &reg.oci(&format!("{REPO}:v1")), &lookaside(server));
    let disk = LoopDev::used(2 << 30);
    let before = disk.sha256();
    let run = apply_signed(server, &doc, &disk);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let fin = final_report(server, REPORT);
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
fn a_signed_tag_deploys_and_the_report_names_the_signer_and_the_manifest() {
    let reg = Registry::start(Access::Open);
    let store = Sigstore::new();
    let manifest = push_signed_by_ops(&reg, &store, "v1");
    let server = Server::start();
    store.serve(&server, "/sigstore");
    let doc = document(
        &server,
        &reg.oci(&format!("{REPO}:v1")),
        &lookaside(&server),
    );
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply_signed(&server, &doc, &disk);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
    let fin = final_report(&server, REPORT);
    let out = written(&fin);
    let signer = format!("openpgp:{}", keys().gpg_fpr);
    assert_eq!(out["registry"]["manifest"], manifest.as_str(), "{out:#}");
    assert_eq!(out["registry"]["signed_by"], signer.as_str(), "{out:#}");
    assert_eq!(out["registry"]["pinned"], false);
    assert_eq!(out["digest"]["hex"], sha256_hex(&image().zstd()));
    assert!(
        run.stderr.contains(&format!("manifest {manifest} of")) && run.stderr.contains(&signer),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unsigned_tag_is_refused_before_any_disk() {
    let reg = Registry::start(Access::Open);
    let manifest = reg.push_file(REPO, "v1", "web.raw.zst", &image().zstd());
    let server = Server::start();
    refused_untouched(
        &server,
        &reg,
        &[
            &format!("(manifest {manifest}) is not signed"),
            &format!(
                "{}/{REPO}@sha256={}/signature-1 does not exist",
                server.url("/sigstore"),
                &manifest[7..]
            ),
        ],
    );
}

#[test]
fn a_signature_by_another_key_is_refused_before_any_disk() {
    let reg = Registry::start(Access::Open);
    let store = Sigstore::new();
    push_signed(
        &reg,
        &store,
        "v1",
        "web.raw.zst",
        rogue().home(),
        &rogue().fpr,
    );
    let server = Server::start();
    store.serve(&server, "/sigstore");
    refused_untouched(
        &server,
        &reg,
        &[
            "is acceptable",
            &format!(
                "signed by key openpgp:{}, which is not in the trust root",
                rogue().fpr
            ),
        ],
    );
}

#[test]
fn a_signature_over_another_digest_is_refused_before_any_disk() {
    let reg = Registry::start(Access::Open);
    let store = Sigstore::new();
    let v1 = push_signed_by_ops(&reg, &store, "v1");
    // Another manifest (another title), signed too; its signature is put in v1's place.
    let v2 = push_signed(
        &reg,
        &store,
        "v2",
        "other.raw.zst",
        &keys().path("gnupg"),
        &keys().gpg_fpr,
    );
    assert_ne!(v1, v2);
    std::fs::copy(store.signature(REPO, &v2, 1), store.signature(REPO, &v1, 1)).unwrap();
    let server = Server::start();
    store.serve(&server, "/sigstore");
    refused_untouched(
        &server,
        &reg,
        &[&format!("it signs manifest {v2}, not {v1}")],
    );
}

#[test]
fn a_tampered_signature_is_refused_before_any_disk() {
    let reg = Registry::start(Access::Open);
    let store = Sigstore::new();
    let manifest = push_signed_by_ops(&reg, &store, "v1");
    let path = store.signature(REPO, &manifest, 1);
    let mut sig = std::fs::read(&path).unwrap();
    let mid = sig.len() / 2;
    sig[mid] ^= 0x20;
    std::fs::write(&path, sig).unwrap();
    let server = Server::start();
    store.serve(&server, "/sigstore");
    refused_untouched(
        &server,
        &reg,
        &[&format!(
            "no signature of the image {} (manifest {manifest}) is acceptable",
            reg.oci(&format!("{REPO}:v1"))
        )],
    );
}

#[test]
fn a_pinned_reference_needs_no_sha256_and_its_layer_digest_catches_a_changed_blob() {
    let reg = Registry::start(Access::Open);
    let manifest = reg.push_file(REPO, "v1", "web.raw.zst", &image().zstd());
    let server = Server::start();
    let url = reg.oci(&format!("{REPO}:v1@{manifest}"));
    let doc = document(&server, &url, "");
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
    let out = written(&final_report(&server, REPORT));
    let layer = format!("sha256:{}", sha256_hex(&image().zstd()));
    assert_eq!(out["registry"]["pinned"], true, "{out:#}");
    assert_eq!(out["registry"]["manifest"], manifest.as_str());
    assert_eq!(out["registry"]["layer"]["digest"], layer.as_str());
    assert_eq!(out["digest"]["hex"], sha256_hex(&image().zstd()));

    // One byte of the stored blob changed: the stream fails its layer digest and
    // nothing bootable is left.
    let blob = reg.blob_path(&layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();
    let server = Server::start();
    let doc = document(&server, &url, "");
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let fin = final_report(&server, REPORT);
    assert_eq!(fin["failed_step"], "write-image", "{fin:#}");
    let error = fin["error"].as_str().unwrap();
    assert!(error.contains(&sha256_hex(&image().zstd())), "{error}");
    assert_no_partition_table(disk.dev());
}

#[test]
fn a_bare_tag_is_refused_at_plan_time_and_deploys_with_insecure() {
    let reg = Registry::start(Access::Open);
    let manifest = reg.push_file(REPO, "v1", "web.raw.zst", &image().zstd());
    let server = Server::start();
    let url = reg.oci(&format!("{REPO}:v1"));
    let doc = document(&server, &url, "");
    let disk = LoopDev::used(2 << 30);
    let before = disk.sha256();
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    for p in [
        format!("image.url: {url} names a tag without a digest"),
        "run imprint with --insecure".to_string(),
    ] {
        assert!(
            run.stderr.contains(&p),
            "stderr lacks {p:?}:\n{}",
            run.stderr
        );
    }
    assert_eq!(disk.sha256(), before, "the disk changed");
    let fin = final_report(&server, REPORT);
    assert_eq!(fin["failed_step"], "plan", "{fin:#}");

    let server = Server::start();
    let doc = document(&server, &url, "");
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(&doc, &disk, &["--insecure"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("INSECURE"), "{}", run.stderr);
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
    let out = written(&final_report(&server, REPORT));
    assert_eq!(out["registry"]["insecure"], true, "{out:#}");
    assert_eq!(out["registry"]["manifest"], manifest.as_str());
}

#[test]
fn keys_in_an_unsigned_document_do_not_pin_a_tag() {
    let reg = Registry::start(Access::Open);
    let store = Sigstore::new();
    push_signed_by_ops(&reg, &store, "v1");
    let server = Server::start();
    store.serve(&server, "/sigstore");
    let cert = std::fs::read_to_string(keys().path("release.asc")).unwrap();
    let mut sig = lookaside(&server);
    sig.push_str("    keys:\n      - |\n");
    for line in cert.lines() {
        sig.push_str(&format!("        {line}\n"));
    }
    let doc = document(&server, &reg.oci(&format!("{REPO}:v1")), &sig);
    let disk = LoopDev::used(2 << 30);
    let before = disk.sha256();
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("is a tag without a digest and the document is not signed, yet image.signature.keys lists"),
        "{}",
        run.stderr
    );
    assert_eq!(disk.sha256(), before, "the disk changed");
}

#[test]
fn a_signed_index_is_checked_by_its_own_digest_and_gives_its_linux_amd64_image() {
    let reg = Registry::start(Access::Open);
    let store = Sigstore::new();
    let l = Layout::new();
    let amd = l.artifact("web.x86_64.raw.zst", &image().zstd());
    let arm = l.artifact("web.aarch64.raw", &vec![0xa5; 1 << 20]);
    let ix = l.index(&[(&arm, "linux", "arm64"), (&amd, "linux", "amd64")]);
    l.tag(&ix, "multi");
    let (home, fpr) = (keys().path("gnupg"), keys().gpg_fpr.clone());
    reg.push_signed(l.path(), "multi", REPO, &store, &home, &fpr, true);
    // skopeo re-serializes the index: the registry's digest is the one it signed.
    let index = reg.manifest_digest(REPO, "multi");
    assert!(
        store.signature(REPO, &index, 1).exists(),
        "skopeo signed another digest"
    );
    let server = Server::start();
    store.serve(&server, "/sigstore");
    let doc = document(
        &server,
        &reg.oci(&format!("{REPO}:multi")),
        &lookaside(&server),
    );
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply_signed(&server, &doc, &disk);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
    let out = written(&final_report(&server, REPORT));
    assert_eq!(out["registry"]["index"], index.as_str(), "{out:#}");
    assert_eq!(out["registry"]["manifest"], amd.digest.as_str());
    assert_eq!(out["registry"]["signed_by"], format!("openpgp:{fpr}"));
}
