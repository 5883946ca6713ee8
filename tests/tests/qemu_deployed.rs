//! The deployed OS boots: the agent (direct kernel boot, 512 MiB) writes the Debian 12
//! whole-disk image from `images/` with the single-disk document, then a second VM boots
//! from that disk alone under UEFI, and cloud-init runs the document's user-data from the
//! configdrive the agent appended — proven by a marker only a run command can print.
//!
//! Then the same host is re-imaged (issue 17) with version 2 of the image — the same
//! Debian image with one file added to its root filesystem — served as a casync index
//! and chunk store made by the real `casync make`: the agent in the ramdisk scans the
//! disk the first deployment left (booted once since, so cloud-init and the journal
//! changed it), fetches only what differs, and the re-imaged disk boots and prints the
//! new file's contents from its user-data.

use imprint_tests::fixtures::*;
use imprint_tests::images::{debian_disk, Built};
use imprint_tests::qemu::{Boot, Disk, Firmware, Vm};
use imprint_tests::server::Server;
use serde_json::Value;
use std::path::Path;
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
    booted.kill();
    drop(booted);

    reimage_with_version_2(&server, &base, &img, &disk);
}

/// Makes version 2 (the image with `/etc/imprint-v2` added), chunks it with `casync
/// make`, re-images `disk` from the store with the agent and boots the result.
fn reimage_with_version_2(server: &Server, base: &str, img: &Built, disk: &Path) {
    let work = tempfile::tempdir().unwrap();
    let v2 = work.path().join("v2.raw");
    sh(
        "zstd",
        &[
            "-dqf",
            img.path.to_str().unwrap(),
            "-o",
            v2.to_str().unwrap(),
        ],
    );
    let root = gpt_partitions(v2.to_str().unwrap())
        .into_iter()
        .max_by_key(|&(_, _, size)| size)
        .expect("a root partition");
    let content = work.path().join("content");
    std::fs::write(&content, "reimaged\n").unwrap();
    let cmds = work.path().join("cmds");
    std::fs::write(
        &cmds,
        format!("cd /etc\nwrite {} imprint-v2\n", content.display()),
    )
    .unwrap();
    let part = sh(
        "losetup",
        &[
            "-f",
            "--show",
            "-o",
            &root.1.to_string(),
            "--sizelimit",
            &root.2.to_string(),
            v2.to_str().unwrap(),
        ],
    );
    let part = part.trim().to_string();
    let wrote = sh_any("debugfs", &["-w", "-f", cmds.to_str().unwrap(), &part]);
    sh("losetup", &["-d", &part]);
    assert!(wrote.status.success(), "debugfs: {wrote:?}");
    let store = work.path().join("store");
    let index = work.path().join("v2.caibx");
    sh(
        "casync",
        &[
            "make",
            &format!("--store={}", store.display()),
            index.to_str().unwrap(),
            v2.to_str().unwrap(),
        ],
    );
    let idx = std::fs::read(&index).unwrap();
    server.serve_bytes("/images/debian-12-v2.caibx", idx.clone());
    let files = chunk_store_files(&store);
    for f in &files {
        server.serve_file(&format!("/store/{f}"), store.join(f));
    }
    let chunks = files.len() as u64;
    let doc = vm_single_disk_document(
        "deb-01",
        base,
        &format!("{base}/images/debian-12-v2.caibx"),
        &sha256_hex(&idx),
        "imprint-v2-$(cat /etc/imprint-v2)",
        "deb-token",
    )
    .replace(
        "  format: disk\n",
        &format!("  format: disk\n  stores: [\"{base}/store\"]\n"),
    );
    server.serve_bytes("/host-v2.yaml", doc.into_bytes());
    let out = repo_root().join("out");
    let mut agent = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append: format!(
                "console=ttyS0 imprint.config={base}/host-v2.yaml imprint.failure_delay=0"
            ),
        })
        .disk(Disk::existing(disk, "SN-DEB-0001"))
        .memory_mib(512)
        .start()
        .unwrap();
    agent
        .wait_for_serial("provisioning succeeded", Duration::from_secs(600))
        .unwrap();
    let reimage_secs = agent.elapsed().as_secs_f64();
    agent.wait_exit(Duration::from_secs(60)).unwrap();
    let fin = server
        .posts()
        .iter()
        .filter(|p| p.path == "/report/deb-01")
        .map(|p| serde_json::from_slice::<Value>(&p.body).unwrap())
        .rfind(|v| v["kind"] == "final")
        .expect("a final report");
    assert_eq!(fin["result"], "success", "{fin:#}");
    let step = fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "write-image")
        .expect("a write-image step");
    let report = &step["output"]["image"]["chunks"];
    let network = report["network_bytes"].as_u64().unwrap();
    let in_place = report["in_place_bytes"].as_u64().unwrap();
    // The first boot changed the journal, cloud-init's state and logs; the rest is in place.
    assert!(
        network * 4 < img.raw_size && in_place * 2 > img.raw_size,
        "most of the image should have been on the disk already: {report:#}"
    );
    let fetched = report["stores"][0]["chunks"].as_u64().unwrap();
    assert!(fetched < chunks, "{report:#}");
    assert_sgdisk_clean(disk.to_str().unwrap());

    let mut booted = Vm::builder()
        .boot(Boot::Disk)
        .firmware(Firmware::Uefi)
        .disk(Disk::existing(disk, "SN-DEB-0001"))
        .memory_mib(1536)
        .no_network()
        .start()
        .unwrap();
    booted
        .wait_for_serial("imprint-v2-reimaged", Duration::from_secs(420))
        .unwrap();
    eprintln!(
        "re-imaged in {reimage_secs:.1} s ({} fetched in {fetched} chunks of {chunks}, {} in place); \
         version 2 ran its user-data after {:.1} s",
        network,
        in_place,
        booted.elapsed().as_secs_f64()
    );
}
