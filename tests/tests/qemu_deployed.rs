//! The deployed OS boots: the agent (direct kernel boot, 512 MiB) writes the Debian 12
//! whole-disk image from `images/` with the single-disk document, then a second VM boots
//! from that disk alone under UEFI, and cloud-init runs the document's user-data from the
//! configdrive the agent appended — proven by a marker only a run command can print.

use imprint_tests::fixtures::*;
use imprint_tests::images::debian_disk;
use imprint_tests::qemu::{Boot, Disk, Firmware, Vm};
use imprint_tests::server::Server;
use serde_json::Value;
use std::time::Duration;

#[test]
fn the_deployed_debian_image_boots_and_cloud_init_runs_the_user_data() {
    let img = debian_disk();
    let out = repo_root().join("out");
    let server = Server::start();
    server.serve_file("/images/debian-12.raw.zst", &img.path);
    let base = guest_base(&server);
    // Only a run command can print 42: the document's own text says $((6*7)).
    let doc = vm_single_disk_document(
        "deb-01",
        &base,
        &format!("{base}/images/debian-12.raw.zst"),
        &img.sha256,
        "imprint-$((6*7))-ok",
        "deb-token",
    );
    server.serve_bytes("/host.yaml", doc.into_bytes());

    let mut agent = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append: format!(
                "console=ttyS0 imprint.config={base}/host.yaml imprint.failure_delay=0"
            ),
        })
        .disk(Disk::virtio(4 << 30, "SN-DEB-0001"))
        .memory_mib(512)
        .start()
        .unwrap();
    agent
        .wait_for_serial("provisioning succeeded", Duration::from_secs(600))
        .unwrap();
    let provision_secs = agent.elapsed().as_secs_f64();
    agent.wait_exit(Duration::from_secs(60)).unwrap();
    let fin: Value = server
        .posts()
        .iter()
        .filter(|p| p.path == "/report/deb-01")
        .map(|p| serde_json::from_slice::<Value>(&p.body).unwrap())
        .find(|v| v["kind"] == "final")
        .expect("a final report");
    assert_eq!(fin["result"], "success", "{fin:#}");
    let disk = agent.disk_path(0);
    assert_sgdisk_clean(disk.to_str().unwrap());

    let mut booted = Vm::builder()
        .boot(Boot::Disk)
        .firmware(Firmware::Uefi)
        .disk(Disk::existing(&disk, "SN-DEB-0001"))
        .memory_mib(1536)
        .no_network()
        .start()
        .unwrap();
    booted
        .wait_for_serial("imprint-42-ok", Duration::from_secs(420))
        .unwrap();
    eprintln!(
        "provisioned in {provision_secs:.1} s; the deployed OS ran the user-data after {:.1} s",
        booted.elapsed().as_secs_f64()
    );
}
