//! Check before destroying (issue 16): everything a plan needs from outside the disks
//! is checked before the first step, and a failure there leaves every disk exactly as it
//! was, byte for byte, with a failure report that says so. Run through the real binary
//! on loop devices holding a GPT and data, against a real HTTP server and a real tang.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::Server;
use imprint_tests::tang::{free_port, TangServer};
use serde_json::Value;
use std::sync::OnceLock;

const REPORT: &str = "/report/web-01";

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(16, 512))
}

/// Applies `doc` to a used disk and asserts the run stopped at `preflight` with every
/// phrase in stderr and the report's error, the disk unchanged; returns the report.
fn refused_untouched(server: &Server, doc: &str, phrases: &[&str]) -> Value {
    let disk = LoopDev::used(2 << 30);
    let before = disk.sha256();
    let run = apply(doc, &disk, &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("Checked first, before any disk is touched"),
        "the plan lists the checks:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("provisioning failed; no disk was touched"),
        "{}",
        run.stderr
    );
    let fin = final_report(server, REPORT);
    assert_eq!(fin["failed_step"], "preflight", "{fin:#}");
    assert_eq!(fin["disks_after"], "untouched", "{fin:#}");
    assert_eq!(fin["undone"], serde_json::json!([]), "{fin:#}");
    let steps: Vec<&str> = fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["preflight"],
        "no step ran after the checks: {fin:#}"
    );
    let error = fin["error"].as_str().unwrap();
    assert!(error.contains("before any disk was touched"), "{error}");
    for p in phrases {
        assert!(
            run.stderr.contains(p),
            "stderr lacks {p:?}:\n{}",
            run.stderr
        );
        assert!(error.contains(p), "the report's error lacks {p:?}: {error}");
    }
    assert_eq!(
        disk.sha256(),
        before,
        "the disk changed although the run failed before its first step"
    );
    fin
}

#[test]
fn an_unreachable_image_server_fails_before_the_disk_is_touched() {
    let server = Server::start();
    let dead = format!("http://127.0.0.1:{}/images/web.raw.zst", free_port());
    let doc = single_disk_document(&dead, &sha256_hex(&image().zstd()), &server.url(REPORT));
    refused_untouched(&server, &doc, &["the image answers at", &dead]);
}

#[test]
fn an_image_that_is_not_there_fails_before_the_disk_is_touched() {
    let server = Server::start();
    let doc = single_disk_document(
        &server.url("/images/missing.raw.zst"),
        &sha256_hex(&image().zstd()),
        &server.url(REPORT),
    );
    refused_untouched(&server, &doc, &["404", "/images/missing.raw.zst"]);
    // Only ranged probes reached the server: nothing was downloaded.
    for r in server.requests() {
        if r.path.ends_with("missing.raw.zst") {
            assert_eq!(r.range.as_deref(), Some("bytes=0-0"), "{r:?}");
        }
    }
}

#[test]
fn a_served_image_passes_the_check_and_deploys() {
    let server = Server::start();
    let z = image().zstd();
    server.serve_bytes("/images/web.raw.zst", z.clone());
    let doc = single_disk_document(
        &server.url("/images/web.raw.zst"),
        &sha256_hex(&z),
        &server.url(REPORT),
    );
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let fin = final_report(&server, REPORT);
    assert_eq!(fin["disks_after"], "provisioned", "{fin:#}");
    let pre = &fin["steps"][0];
    assert_eq!(pre["step"], "preflight", "{fin:#}");
    let found: Vec<&str> = pre["output"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["found"].as_str().unwrap())
        .collect();
    assert!(
        found
            .iter()
            .any(|f| f.contains(&format!("({} bytes)", z.len()))),
        "the image check found the served size: {found:?}"
    );
    assert!(
        found.iter().any(|f| f.contains("bytes of files fit")),
        "the configdrive was checked: {found:?}"
    );
    assert_single_disk_deployed(disk.dev(), image(), "web-01");
}

/// A layout bound to tang servers and the TPM, with no image.
fn bound_layout(tang: &[(String, String)], report: &str) -> String {
    let pins: Vec<String> = tang
        .iter()
        .map(|(url, thp)| format!("{{ url: \"{url}\", thumbprint: \"{thp}\" }}"))
        .collect();
    format!(
        r#"version: 1
host: {{ hostname: web-01 }}
disks:
  - name: root
    match: {{ smallest: true, min_size: 1GiB }}
storage:
  layout:
    disk: root
    luks:
      tang: [{}]
      tpm2: {{ pcrs: [] }}
      threshold: 1
    lvm:
      - {{ mount: /, size: 256MiB, type: ext4 }}
report: {{ url: "{report}", token: "{TOKEN}" }}
finish: none
"#,
        pins.join(", ")
    )
}

#[test]
fn tang_down_a_wrong_tang_key_and_a_missing_tpm_are_all_named_before_the_disk_is_touched() {
    let server = Server::start();
    let tang = TangServer::start();
    let dead = format!("http://127.0.0.1:{}", free_port());
    // A real tang whose keys are not the pinned one, and one that does not answer.
    let wrong = "A".repeat(43);
    let doc = bound_layout(
        &[
            (tang.url(), wrong.clone()),
            (dead.clone(), tang.thumbprint()),
        ],
        &server.url(REPORT),
    );
    let mut phrases = vec![
        format!("tang {} advertises signing key {wrong}", tang.url()),
        tang.thumbprint(),
        format!("tang {dead} advertises"),
    ];
    // This machine has no TPM unless one is plugged in; the check is only expected to
    // fail where there is none.
    let no_tpm = !std::path::Path::new("/dev/tpmrm0").exists()
        && !std::path::Path::new("/dev/tpm0").exists();
    if no_tpm {
        phrases.push("check \"the TPM answers (PCR bank sha256)\" failed".into());
    }
    let phrases: Vec<&str> = phrases.iter().map(String::as_str).collect();
    let fin = refused_untouched(&server, &doc, &phrases);
    let want = if no_tpm {
        "3 checks failed"
    } else {
        "2 checks failed"
    };
    assert!(
        fin["error"].as_str().unwrap().contains(want),
        "{want}: {fin:#}"
    );
}

#[test]
fn a_configdrive_too_small_for_its_files_fails_before_the_disk_is_touched() {
    let server = Server::start();
    let z = image().zstd();
    server.serve_bytes("/images/web.raw.zst", z.clone());
    let big = "x".repeat(3 << 20);
    let doc = single_disk_document(
        &server.url("/images/web.raw.zst"),
        &sha256_hex(&z),
        &server.url(REPORT),
    )
    .replace(
        "configdrive:\n  format: nocloud\n",
        &format!("configdrive:\n  format: nocloud\n  size: 1MiB\n  vendor_data: \"{big}\"\n"),
    );
    refused_untouched(&server, &doc, &["the configdrive's files fit its 1.0 MiB"]);
}

/// The "byte for byte" comparisons above rest on `LoopDev::sha256`, which reads only the
/// backing file's allocated extents: one byte written through the device, into a hole or
/// into the data, must change it.
#[test]
fn the_disk_digest_sees_one_byte_written_anywhere() {
    use std::io::{Seek, SeekFrom, Write};
    let disk = LoopDev::used(2 << 30);
    let mut last = disk.sha256();
    assert_eq!(disk.sha256(), last, "the digest is stable");
    for at in [(1u64 << 30) + 12345, (1 << 20) + 7, (2u64 << 30) - 1] {
        let was = disk.read_at(at, 1)[0];
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(disk.dev())
            .unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[!was]).unwrap();
        drop(f);
        let now = disk.sha256();
        assert_ne!(now, last, "a byte written at {at} went unseen");
        last = now;
    }
}
