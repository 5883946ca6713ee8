//! Bad paths of the ramdisk in QEMU (TCG): each ends with the cause on the console,
//! a failure report where the network allows, the failure action (power off), and
//! never a kernel panic.

use imprint_tests::fixtures::{guest_base, repo_root};
use imprint_tests::qemu::{Boot, Disk, Vm};
use imprint_tests::server::Server;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(240);

fn out_dir() -> PathBuf {
    let out = repo_root().join("out");
    for f in ["vmlinuz", "initramfs.img"] {
        assert!(
            out.join(f).exists(),
            "{} is missing: run `make` first",
            out.join(f).display()
        );
    }
    out
}

fn boot(append: String, disk: Option<Disk>, network: bool) -> Vm {
    let out = out_dir();
    let mut b = Vm::builder().boot(Boot::Direct {
        kernel: out.join("vmlinuz"),
        initrd: out.join("initramfs.img"),
        append: format!("console=ttyS0 imprint.failure_delay=0 {append}"),
    });
    if let Some(d) = disk {
        b = b.disk(d);
    }
    if !network {
        b = b.no_network();
    }
    b.start().unwrap()
}

/// Waits for the failure, the power-off that follows, and checks there was no panic.
fn fails(mut vm: Vm, what: &str) -> String {
    vm.wait_for_serial("imprint: FAILED", TIMEOUT)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!(
        "{what}: failure shown after {:.1} s",
        vm.elapsed().as_secs_f64()
    );
    vm.wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{what}: no power-off after the failure: {e}"));
    let log = vm.serial_log();
    assert!(
        !log.contains("Kernel panic"),
        "{what}: the kernel panicked:\n{log}"
    );
    assert!(log.contains("reboot: Power down"), "{what}: {log}");
    log
}

fn final_reports(server: &Server, path: &str) -> Vec<Value> {
    server
        .posts()
        .into_iter()
        .filter(|p| p.path == path)
        .map(|p| serde_json::from_slice::<Value>(&p.body).unwrap())
        .filter(|v| v["kind"] == "final")
        .collect()
}

#[test]
fn a_document_url_that_404s_is_explained_and_reported() {
    let server = Server::start();
    let base = guest_base(&server);
    let url = format!("{base}/missing.yaml");
    let vm = boot(
        format!("imprint.config={url} imprint.report={base}/report/unknown"),
        Some(Disk::virtio(1 << 30, "SN-1")),
        true,
    );
    let log = fails(vm, "404");
    assert!(
        log.contains("404") && log.contains(&url),
        "the 404 is not explained:\n{log}"
    );
    let fin = final_reports(&server, "/report/unknown");
    assert_eq!(fin.len(), 1, "one failure report");
    assert_eq!(fin[0]["result"], "failure");
    assert!(fin[0]["error"].as_str().unwrap().contains("404"));
}

#[test]
fn no_network_link_is_explained() {
    let vm = boot(
        "imprint.config=http://10.0.2.2:9/host.yaml".into(),
        Some(Disk::virtio(1 << 30, "SN-1")),
        false,
    );
    let log = fails(vm, "no network");
    let lower = log.to_lowercase();
    assert!(
        lower.contains("network") || lower.contains("link"),
        "the cause is not named:\n{log}"
    );
}

#[test]
fn no_matching_disk_is_explained_and_reported() {
    let server = Server::start();
    let base = guest_base(&server);
    let doc = format!(
        "version: 1\nhost: {{ hostname: nodisk-01 }}\ndisks:\n  - {{ name: a, match: {{ serial: SN-NOT-HERE }} }}\n\
         image: {{ url: {base}/images/x.raw, sha256: {}, target: a }}\n\
         report: {{ url: \"{base}/report/nodisk-01\", token: t0k }}\n",
        "ab".repeat(32)
    );
    server.serve_bytes("/host.yaml", doc.into_bytes());
    let vm = boot(
        format!("imprint.config={base}/host.yaml"),
        Some(Disk::virtio(1 << 30, "SN-OTHER-1")),
        true,
    );
    let log = fails(vm, "no matching disk");
    assert!(
        log.contains("SN-NOT-HERE") && log.contains("SN-OTHER-1"),
        "candidates are not listed:\n{log}"
    );
    let fin = final_reports(&server, "/report/nodisk-01");
    assert_eq!(fin.len(), 1, "one failure report");
    assert_eq!(fin[0]["result"], "failure");
    assert_eq!(fin[0]["failed_step"], "plan");
}
