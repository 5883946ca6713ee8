//! The cable pulled mid-download: the agent in the ramdisk is streaming the image when
//! the NIC loses its link (QEMU `set_link off`) for 100 s — longer than the stall timeout
//! and every retry of the source together — then gets it back. The download resumes with a `Range` request from the byte where it
//! stopped — not from zero — and the disk holds the verified image.

use imprint_tests::fixtures::*;
use imprint_tests::qemu::{Boot, Disk, Vm};
use imprint_tests::server::{Fault, Server};
use std::time::{Duration, Instant};

const IMAGE: &str = "/images/web.raw.zst";

/// The ramdisk booted directly with `<base>/host.yaml`, one fresh 4 GiB disk, `extra`
/// QEMU arguments.
fn agent_vm(base: &str, serial: &str, extra: &[&str]) -> Vm {
    let out = repo_root().join("out");
    let mut b = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append: format!(
                "console=ttyS0 imprint.config={base}/host.yaml imprint.failure_delay=0"
            ),
        })
        .disk(Disk::virtio(4 << 30, serial))
        .memory_mib(512);
    for a in extra {
        b = b.arg(a);
    }
    b.start().expect("start QEMU")
}

#[test]
fn a_cable_pulled_mid_download_resumes_where_it_stopped() {
    let img = TestImage::build(48, 512);
    let data = img.zstd();
    let sha = sha256_hex(&data);
    let half = data.len() as u64 / 2;
    let server = Server::start();
    server.serve_bytes(IMAGE, data);
    // The first response stops after half the file: the link goes down while the agent
    // is waiting for the rest, at a byte this test knows.
    server.set_fault(
        IMAGE,
        Fault::Stall {
            after: half,
            secs: 120,
        },
    );
    let base = guest_base(&server);
    let doc = vm_single_disk_document(
        "net-01",
        &base,
        &format!("{base}{IMAGE}"),
        &sha,
        "imprint-ok",
        "net-token",
    );
    server.serve_bytes("/host.yaml", doc.into_bytes());
    let mut vm = agent_vm(&base, "SN-NET-1", &[]);

    // The download's requests (not the one-byte check made before any disk is touched).
    let image_gets = |s: &Server| {
        s.requests()
            .into_iter()
            .filter(|r| r.path == IMAGE && r.method == "GET")
            .filter(|r| r.range.as_deref() != Some("bytes=0-0"))
            .collect::<Vec<_>>()
    };
    let t0 = Instant::now();
    while image_gets(&server).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "the agent never asked for the image:\n{}",
            vm.serial_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    vm.set_link(false).expect("pull the cable");
    // Longer than the 30 s stall timeout plus every retry of the one URL (~75 s): the
    // agent must see an outage to wait out, not a source to give up on.
    std::thread::sleep(Duration::from_secs(100));
    assert_eq!(
        image_gets(&server).len(),
        1,
        "nothing reaches the server while the cable is out"
    );
    vm.set_link(true).expect("plug the cable back in");

    vm.wait_for_serial("provisioning succeeded", Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("no success after the link came back: {e}"));
    let _ = vm.wait_exit(Duration::from_secs(60));

    let gets = image_gets(&server);
    assert_eq!(
        gets[0].range, None,
        "the first request reads from the start"
    );
    let resumed: Vec<_> = gets[1..].iter().filter_map(|r| r.range.clone()).collect();
    assert_eq!(
        resumed.first().map(String::as_str),
        Some(format!("bytes={half}-").as_str()),
        "resumed at the byte where it stopped: {gets:?}"
    );
    let finals: Vec<serde_json::Value> = server
        .posts()
        .iter()
        .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&p.body).ok())
        .filter(|v| v["kind"] == "final")
        .collect();
    let fin = finals.last().expect("a final report");
    assert_eq!(fin["result"], "success", "{fin:#}");
    let wi = fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "write-image")
        .unwrap();
    assert!(
        wi["output"]["image"]["resumes"].as_u64().unwrap_or(0) >= 1,
        "{wi:#}"
    );
    assert_eq!(wi["output"]["image"]["digest"]["hex"], sha);
    let log = vm.serial_log();
    let tail = &log[log.len().saturating_sub(4000)..];
    assert!(
        log.contains("the connection stalled") && log.contains("retrying in"),
        "the console says why the download paused:\n{tail}"
    );
    assert!(
        log.contains("no image source answers"),
        "the console says it waits for the network:\n{tail}"
    );
    assert_single_disk_deployed(vm.disk_path(0).to_str().unwrap(), &img, "net-01");
}

/// A switch port that has carrier but forwards nothing yet (spanning tree listening and
/// learning, 30-50 s on a port without portfast): a QEMU packet filter holds every
/// frame until the test removes it. The first DHCP round gets no answer; a later one
/// does, and the host provisions.
#[test]
fn dhcp_is_retried_until_the_switch_port_forwards() {
    let img = TestImage::build(48, 512);
    let data = img.zstd();
    let sha = sha256_hex(&data);
    let server = Server::start();
    server.serve_bytes(IMAGE, data);
    let base = guest_base(&server);
    let doc = vm_single_disk_document(
        "stp-01",
        &base,
        &format!("{base}{IMAGE}"),
        &sha,
        "imprint-ok",
        "stp-token",
    );
    server.serve_bytes("/host.yaml", doc.into_bytes());
    // Buffers every frame both ways for an hour: nothing gets through while it exists.
    let mut vm = agent_vm(
        &base,
        "SN-STP-1",
        &[
            "-object",
            "filter-buffer,id=stp,netdev=n,queue=all,interval=3600000000",
        ],
    );
    vm.wait_for_serial("no DHCP lease yet", Duration::from_secs(240))
        .unwrap_or_else(|e| {
            panic!("the first DHCP round should go unanswered and be retried: {e}")
        });
    assert!(
        server.requests().is_empty(),
        "nothing passed the blocked port"
    );
    let out = vm.monitor("object_del stp").expect("unblock the port");
    assert!(!out.contains("rror"), "object_del: {out}");
    vm.wait_for_serial("provisioning succeeded", Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("no success once the port forwarded: {e}"));
    let _ = vm.wait_exit(Duration::from_secs(60));
    let log = vm.serial_log();
    assert!(
        log.contains("network: eth0") && log.contains("(dhcp)"),
        "a lease on a later round"
    );
    assert_single_disk_deployed(vm.disk_path(0).to_str().unwrap(), &img, "stp-01");
}
