//! Issue 7, TLS: the document and the image over https from a server whose
//! certificate a self-signed CA issued (openssl CLI, Python's ssl server, real TLS
//! on 127.0.0.1). Without the CA both are rejected with the URL and the certificate
//! problem named; with `--ca` (apply) and the CA of `run` (what `imprint.ca=` sets)
//! they are accepted; a certificate for another host name is rejected.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::Server;
use imprint_tests::tls::{HttpsServer, Pki};
use std::sync::OnceLock;

const REPORT: &str = "/report/web-01";

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(48, 512))
}

/// A root holding `web.raw.zst` and `host.yaml` (whose image URL is on the https server).
struct Site {
    pki: Pki,
    https: HttpsServer,
    reports: Server,
    _root: tempfile::TempDir,
}

fn site() -> Site {
    let root = tempfile::tempdir().unwrap();
    let z = image().zstd();
    std::fs::write(root.path().join("web.raw.zst"), &z).unwrap();
    let pki = Pki::new("IP:127.0.0.1");
    let https = HttpsServer::start(root.path(), &pki);
    let reports = Server::start();
    let doc = single_disk_document(
        &https.url("127.0.0.1", "web.raw.zst"),
        &sha256_hex(&z),
        &reports.url(REPORT),
    );
    std::fs::write(root.path().join("host.yaml"), doc).unwrap();
    Site {
        pki,
        https,
        reports,
        _root: root,
    }
}

fn ca(s: &Site) -> String {
    path_str(&s.pki.ca()).to_string()
}

#[test]
fn an_https_image_without_the_ca_is_rejected_naming_url_and_certificate() {
    let s = site();
    let disk = LoopDev::new(2 << 30, 512);
    let doc = site_file(&s, "host.yaml");
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let url = s.https.url("127.0.0.1", "web.raw.zst");
    assert!(
        run.stderr.contains(&url),
        "the URL is named: {}",
        run.stderr
    );
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "the certificate problem is named: {}",
        run.stderr
    );
    let fin = final_report(&s.reports, REPORT);
    assert_eq!(fin["result"], "failure");
    assert!(fin["error"].as_str().unwrap().contains(&url));
    assert_no_partition_table(disk.dev());
}

#[test]
fn an_https_image_with_the_ca_deploys() {
    let s = site();
    let disk = LoopDev::new(2 << 30, 512);
    let doc = site_file(&s, "host.yaml");
    let run = apply(&doc, &disk, &["--ca", &ca(&s)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
}

#[test]
fn an_https_document_without_the_ca_is_rejected_before_any_disk_is_touched() {
    let s = site();
    let disk = LoopDev::new(2 << 30, 512);
    let url = s.https.url("127.0.0.1", "host.yaml");
    let run = imprint(&["apply", "--yes", "--disks", disk.dev(), &url]);
    assert_eq!(run.code, 8, "{}", run.stderr);
    assert!(
        run.stderr.contains(&url) && run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );
    assert_untouched(disk.dev());
}

#[test]
fn an_https_document_and_image_with_the_ca_deploy_through_apply_and_run() {
    let s = site();
    let url = s.https.url("127.0.0.1", "host.yaml");
    let disk = LoopDev::new(2 << 30, 512);
    let run = imprint(&[
        "apply",
        "--yes",
        "--ca",
        &ca(&s),
        "--disks",
        disk.dev(),
        &url,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
    // `run` takes its CA where `imprint.ca=` puts it; --ca overrides the kernel command line.
    let disk = LoopDev::new(2 << 30, 512);
    let run = imprint(&[
        "run",
        "--no-finish",
        "--config",
        &url,
        "--ca",
        &ca(&s),
        "--disks",
        disk.dev(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
}

#[test]
fn a_certificate_for_another_host_name_is_rejected() {
    let s = site();
    // The certificate names IP 127.0.0.1 only; "localhost" resolves there but is not named.
    let url = s.https.url("localhost", "host.yaml");
    let disk = LoopDev::new(2 << 30, 512);
    let run = imprint(&[
        "apply",
        "--yes",
        "--ca",
        &ca(&s),
        "--disks",
        disk.dev(),
        &url,
    ]);
    assert_eq!(run.code, 8, "{}", run.stderr);
    let err = run.stderr.to_lowercase();
    assert!(
        run.stderr.contains(&url) && err.contains("certificate") && err.contains("name"),
        "{}",
        run.stderr
    );
    assert_untouched(disk.dev());
    // The same for an image URL, through the engine and its failure report.
    let z = image().zstd();
    let doc = single_disk_document(
        &s.https.url("localhost", "web.raw.zst"),
        &sha256_hex(&z),
        &s.reports.url(REPORT),
    );
    let run = apply(&doc, &disk, &["--ca", &ca(&s)]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stderr.to_lowercase().contains("name"), "{}", run.stderr);
    assert_no_partition_table(disk.dev());
}

/// The document as written to the site (read back from its root, no TLS involved).
fn site_file(s: &Site, name: &str) -> String {
    std::fs::read_to_string(s._root.path().join(name)).unwrap()
}
