//! `make demo`: boots the agent from the customized ISO (as a CD, the way Redfish
//! virtual media presents it) in QEMU with two virtual disks, against a loopback
//! server that serves a small test image and receives the reports; shows the console
//! and every report as it arrives, then the final report and where the artifacts are.

use imprint_tests::fixtures::{
    guest_base, repo_root, sha256_hex, vm_single_disk_document, TestImage,
};
use imprint_tests::qemu::{Boot, Disk, Firmware, Vm};
use imprint_tests::server::Server;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let out = repo_root().join("out");
    println!(
        "== building a 48 MiB test disk image (GPT, ESP, ext4 root) and compressing it with zstd"
    );
    let img = TestImage::build(48, 512);
    let zst = img.zstd();
    let sha = sha256_hex(&zst);
    let server = Server::start();
    server.serve_bytes("/images/web.raw.zst", zst);
    let base = guest_base(&server);
    let doc = vm_single_disk_document(
        "demo-01",
        &base,
        &format!("{base}/images/web.raw.zst"),
        &sha,
        "imprint-ok",
        "demo-token",
    );
    let dir = tempfile::tempdir().unwrap();
    let doc_path = dir.path().join("demo-01.yaml");
    std::fs::write(&doc_path, &doc).unwrap();
    println!("== the document (served at {}):\n{doc}", server.url("/"));
    let iso = dir.path().join("demo-01.iso");
    let t = Instant::now();
    let st = Command::new(out.join("imprint"))
        .args(["iso", "customize", "--config"])
        .arg(&doc_path)
        .arg("-o")
        .arg(&iso)
        .arg(out.join("imprint.iso"))
        .status()
        .expect("run out/imprint");
    assert!(st.success(), "imprint iso customize failed");
    println!(
        "== embedded it into a copy of out/imprint.iso in {:.0?}",
        t.elapsed()
    );
    println!("== booting QEMU (TCG) from the ISO as a CD, 512 MiB RAM, disks 6 GiB and 4 GiB; `smallest` picks the 4 GiB one\n");
    let mut vm = Vm::builder()
        .boot(Boot::Cdrom(iso))
        .firmware(Firmware::Bios)
        .disk(Disk::virtio(6 << 30, "DEMO-BIG"))
        .disk(Disk::virtio(4 << 30, "DEMO-SMALL"))
        .memory_mib(512)
        .start()
        .expect("start QEMU");
    let (mut shown, mut seen_posts) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut final_report: Option<Value> = None;
    loop {
        let log = vm.serial_log();
        if log.len() > shown {
            for line in log[shown..].lines().filter(|l| l.contains("imprint")) {
                println!("  console | {}", line.trim_end());
            }
            shown = log.rfind('\n').map_or(shown, |i| i + 1).max(shown);
        }
        let posts = server.posts();
        for p in &posts[seen_posts..] {
            if let Ok(v) = serde_json::from_slice::<Value>(&p.body) {
                match v["kind"].as_str() {
                    Some("step") => println!(
                        "  report  | step {} {}",
                        v["step"].as_str().unwrap_or(""),
                        v["state"].as_str().unwrap_or("")
                    ),
                    Some("progress") => {
                        println!("  report  | progress {} bytes written", v["bytes_written"])
                    }
                    Some("final") => final_report = Some(v),
                    _ => {}
                }
            }
        }
        seen_posts = posts.len();
        if final_report.is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = vm.wait_exit(Duration::from_secs(60));
    match final_report {
        Some(f) => {
            println!(
                "\n== final report ({:.1} s after QEMU started):\n{}",
                vm.elapsed().as_secs_f64(),
                serde_json::to_string_pretty(&f).unwrap()
            );
            println!("\n== result: {}", f["result"]);
        }
        None => {
            println!(
                "no final report within 10 minutes; the console:\n{}",
                vm.serial_log()
            );
            std::process::exit(1);
        }
    }
    println!(
        "\n== artifacts: {}/imprint (static agent), vmlinuz, initramfs.img, boot.ipxe, imprint.iso",
        out.display()
    );
    println!("   boot them by PXE, virtual media or USB: docs/boot.md; document reference: docs/document.md");
}
