//! Disk images from an OCI registry (issue 12) through the real binary onto loop
//! devices: Debian's `docker-registry` on 127.0.0.1, artifacts pushed with `skopeo`.
//! Pinned and tag-only references, an index, Basic auth, a blob cut mid-way; and every
//! refusal (a wrong pinned digest, a wrong password) made in the check before any disk
//! is touched, the disk compared byte for byte.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::registry::layout::Layout;
use imprint_tests::registry::relay::Relay;
use imprint_tests::registry::{Access, Registry};
use imprint_tests::server::Server;
use serde_json::Value;
use std::sync::OnceLock;

const REPORT: &str = "/report/web-01";
const REPO: &str = "os/web";

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(16, 512))
}

/// The single-disk document for `url`, with `auth` lines under `image` if any.
fn document(server: &Server, url: &str, auth: &str) -> String {
    let doc = single_disk_document(url, &sha256_hex(&image().zstd()), &server.url(REPORT));
    doc.replacen("  target: root\n", &format!("  target: root\n{auth}"), 1)
}

/// Applies `doc` to a fresh disk; asserts the image is deployed and returns the
/// write-image step's report.
fn deployed(server: &Server, doc: &str) -> Value {
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(doc, &disk, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
    let fin = final_report(server, REPORT);
    assert_eq!(fin["result"], "success", "{fin:#}");
    fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "write-image")
        .expect("a write-image step")["output"]["image"]
        .clone()
}

/// Applies `doc` to a used disk: refused in the preflight with every phrase said,
/// the disk byte-identical.
fn refused_untouched(server: &Server, doc: &str, phrases: &[&str]) -> String {
    let disk = LoopDev::used(2 << 30);
    let before = disk.sha256();
    let run = apply(doc, &disk, &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let fin = final_report(server, REPORT);
    assert_eq!(fin["failed_step"], "preflight", "{fin:#}");
    assert_eq!(fin["disks_after"], "untouched", "{fin:#}");
    let error = fin["error"].as_str().unwrap().to_string();
    for p in phrases {
        assert!(
            run.stderr.contains(p),
            "stderr lacks {p:?}:\n{}",
            run.stderr
        );
        assert!(error.contains(p), "the report's error lacks {p:?}: {error}");
    }
    assert_eq!(disk.sha256(), before, "the disk changed");
    run.stderr
}

#[test]
fn a_pinned_reference_is_deployed_and_reported() {
    let reg = Registry::start(Access::Open);
    let manifest = reg.push_file(REPO, "v1", "web.raw.zst", &image().zstd());
    let server = Server::start();
    let url = reg.oci(&format!("{REPO}@{manifest}"));
    let out = deployed(&server, &document(&server, &url, ""));
    assert_eq!(out["url_used"], url.as_str());
    assert_eq!(out["registry"]["manifest"], manifest.as_str(), "{out:#}");
    assert_eq!(out["registry"]["pinned"], true);
    assert_eq!(out["registry"]["layer"]["title"], "web.raw.zst");
    assert_eq!(out["digest"]["hex"], sha256_hex(&image().zstd()));
}

#[test]
fn a_tag_alone_is_deployed_and_its_manifest_digest_reported() {
    let reg = Registry::start(Access::Open);
    let manifest = reg.push_file(REPO, "v1", "web.raw.zst", &image().zstd());
    let server = Server::start();
    let out = deployed(
        &server,
        &document(&server, &reg.oci(&format!("{REPO}:v1")), ""),
    );
    assert_eq!(out["registry"]["manifest"], manifest.as_str(), "{out:#}");
    assert_eq!(out["registry"]["pinned"], false);
}

#[test]
fn a_wrong_pinned_digest_is_refused_before_the_disk_is_touched() {
    let reg = Registry::start(Access::Open);
    reg.push_file(REPO, "v1", "web.raw.zst", &image().zstd());
    // Another image's manifest, pushed under another tag: the tag says v1, the pin wins.
    let other = reg.push_file(REPO, "v2", "other.raw", b"another image");
    let server = Server::start();
    let url = reg.oci(&format!("{REPO}:v1@{other}"));
    refused_untouched(
        &server,
        &document(&server, &url, ""),
        &[
            "the document expects sha256:",
            &other,
            "nothing is downloaded",
        ],
    );
    let unknown = format!("sha256:{}", "0".repeat(64));
    let url = reg.oci(&format!("{REPO}@{unknown}"));
    let server = Server::start();
    refused_untouched(
        &server,
        &document(&server, &url, ""),
        &["has no manifest in repository os/web", "MANIFEST_UNKNOWN"],
    );
}

#[test]
fn basic_auth_with_the_right_and_a_wrong_password() {
    let reg = Registry::start(Access::Basic {
        user: "alice".into(),
        password: "pw-right-4711".into(),
    });
    reg.push_file(REPO, "v1", "web.raw.zst", &image().zstd());
    let url = reg.oci(&format!("{REPO}:v1"));
    let server = Server::start();
    let auth = "  auth: { username: alice, password: pw-right-4711 }\n";
    let doc = document(&server, &url, auth);
    deployed(&server, &doc);
    let plan = imprint_with_doc(&["plan", "--json"], &doc);
    assert!(
        !plan.stdout.contains("pw-right-4711"),
        "the password is printed: {}",
        plan.stdout
    );
    for p in server.posts() {
        assert!(!String::from_utf8_lossy(&p.body).contains("pw-right-4711"));
    }

    let server = Server::start();
    let auth = "  auth: { username: alice, password: pw-wrong-0815 }\n";
    let stderr = refused_untouched(
        &server,
        &document(&server, &url, auth),
        &["without valid credentials", "UNAUTHORIZED"],
    );
    assert!(!stderr.contains("pw-wrong-0815"));
}

#[test]
fn an_index_gives_its_linux_amd64_image() {
    let reg = Registry::start(Access::Open);
    let l = Layout::new();
    let amd = l.artifact("web.x86_64.raw.zst", &image().zstd());
    let arm = l.artifact("web.aarch64.raw", &vec![0xa5; 1 << 20]);
    let ix = l.index(&[(&arm, "linux", "arm64"), (&amd, "linux", "amd64")]);
    l.tag(&ix, "multi");
    reg.push_layout(l.path(), "multi", REPO, true);
    let index = reg.manifest_digest(REPO, "multi");
    let server = Server::start();
    let url = reg.oci(&format!("{REPO}@{index}"));
    let out = deployed(&server, &document(&server, &url, ""));
    assert_eq!(out["registry"]["index"], index.as_str(), "{out:#}");
    assert_eq!(out["registry"]["manifest"], amd.digest.as_str());
}

#[test]
fn a_blob_cut_mid_way_is_resumed() {
    // The raw image (16 MiB), cut 8 MiB in: far past the check's few hundred bytes.
    let raw = image().raw.clone();
    let reg = Registry::start(Access::Open);
    let manifest = reg.push_file(REPO, "v1", "web.raw", &raw);
    let relay = Relay::start(reg.port(), 8 << 20);
    let server = Server::start();
    let url = format!("oci://127.0.0.1:{}/{REPO}@{manifest}", relay.port());
    let doc = document(&server, &url, "").replace(&sha256_hex(&image().zstd()), &sha256_hex(&raw));
    let out = deployed(&server, &doc);
    assert_eq!(relay.cuts(), 1);
    assert_eq!(out["resumes"], 1, "{out:#}");
    assert_eq!(out["bytes_downloaded"], raw.len() as u64);
}
