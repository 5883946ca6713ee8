//! The boot part of `make bench`: the initramfs size, the time from QEMU start to the
//! final report for a direct kernel boot with each phase's share, and the least RAM
//! (`-m`) with which the agent still provisions the Debian disk image. Writes
//! `out/bench/boot.json`.

use imprint_tests::fixtures::repo_root;
use imprint_tests::images::debian_disk;
use imprint_tests::qemu::{Boot, Disk, Vm};
use imprint_tests::server::Server;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Phases, each ending at the first console line holding its marker.
const PHASES: &[(&str, &str)] = &[
    ("kernel boot to agent start", "provisioning agent starting"),
    ("modules, network (DHCP)", "network:"),
    (
        "find and fetch the document",
        "found the provisioning document",
    ),
    ("wipe", "step write-image: started"),
    ("write image", "step configdrive: started"),
    ("configdrive", "provisioning succeeded"),
];

struct Run {
    ok: bool,
    total: f64,
    marks: Vec<(String, f64)>,
    final_at: Option<f64>,
}

fn provision(server: &Server, base: &str, mem: u32, host: &str) -> Run {
    let out = repo_root().join("out");
    let mut vm = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append: format!(
                "console=ttyS0 imprint.config={base}/{host}.yaml imprint.failure_delay=0"
            ),
        })
        .disk(Disk::virtio(4 << 30, "SN-BENCH"))
        .memory_mib(mem)
        .start()
        .expect("start QEMU");
    let start = Instant::now();
    let mut marks: Vec<(String, f64)> = Vec::new();
    let mut final_at = None;
    let deadline = start + Duration::from_secs(600);
    loop {
        let log = vm.serial_log();
        for (_, m) in PHASES {
            if !marks.iter().any(|(k, _)| k == m) && log.contains(m) {
                marks.push((m.to_string(), vm.elapsed().as_secs_f64()));
            }
        }
        if final_at.is_none()
            && server.posts().iter().any(|p| {
                p.path == format!("/report/{host}")
                    && serde_json::from_slice::<Value>(&p.body)
                        .map(|v| v["kind"] == "final")
                        .unwrap_or(false)
            })
        {
            final_at = Some(vm.elapsed().as_secs_f64());
        }
        let failed = log.contains("imprint: FAILED")
            || log.contains("Kernel panic")
            || log.contains("Out of memory");
        if final_at.is_some() || failed || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ok = final_at.is_some() && vm.serial_log().contains("provisioning succeeded");
    vm.kill();
    Run {
        ok,
        total: vm.elapsed().as_secs_f64(),
        marks,
        final_at,
    }
}

fn main() {
    let out = repo_root().join("out");
    let initramfs = std::fs::metadata(out.join("initramfs.img"))
        .expect("out/initramfs.img: run make")
        .len();
    let kernel = std::fs::metadata(out.join("vmlinuz"))
        .map(|m| m.len())
        .unwrap_or(0);
    let img = debian_disk();
    let server = Server::start();
    server.serve_file("/images/debian.raw.zst", &img.path);
    let base = imprint_tests::fixtures::guest_base(&server);
    let doc = |host: &str| {
        format!(
            "version: 1\nhost: {{ hostname: {host} }}\ndisks:\n  - {{ name: root, match: {{ smallest: true, min_size: 4GiB }} }}\n\
             image: {{ url: {base}/images/debian.raw.zst, sha256: {}, format: disk, target: root }}\n\
             configdrive: {{ user_data: \"#cloud-config\\n\" }}\nreport: {{ url: \"{base}/report/{host}\" }}\nfinish: poweroff\n",
            img.sha256
        )
    };
    println!("initramfs: {:.1} MiB, kernel {:.1} MiB; image: Debian 12 disk, {:.0} MiB raw, {:.0} MiB zstd",
        initramfs as f64 / 1048576.0, kernel as f64 / 1048576.0, img.raw_size as f64 / 1048576.0,
        std::fs::metadata(&img.path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0);

    server.serve_bytes("/t512.yaml", doc("t512").into_bytes());
    let r = provision(&server, &base, 512, "t512");
    println!(
        "\ndirect kernel boot, -m 512: {} ; final report after {:.1} s",
        if r.ok { "provisioned" } else { "FAILED" },
        r.final_at.unwrap_or(r.total)
    );
    let mut phases = Vec::new();
    let mut prev = 0.0;
    let total = r.final_at.unwrap_or(r.total);
    for (name, m) in PHASES {
        if let Some((_, t)) = r.marks.iter().find(|(k, _)| k == m) {
            println!(
                "  {name:<32} {:>6.1} s  {:>5.1} %",
                t - prev,
                100.0 * (t - prev) / total
            );
            phases.push(json!({ "phase": name, "seconds": t - prev, "share": (t - prev) / total }));
            prev = *t;
        }
    }
    println!(
        "  {:<32} {:>6.1} s  {:>5.1} %",
        "final report",
        total - prev,
        100.0 * (total - prev) / total
    );

    let mut lowest = None;
    let mut tried = Vec::new();
    for mem in [384u32, 256, 192, 160, 128] {
        let host = format!("m{mem}");
        server.serve_bytes(&format!("/{host}.yaml"), doc(&host).into_bytes());
        let r = provision(&server, &base, mem, &host);
        println!(
            "-m {mem}: {}",
            if r.ok {
                format!("provisioned in {:.1} s", r.final_at.unwrap_or(r.total))
            } else {
                "failed".into()
            }
        );
        tried.push(json!({ "memory_mib": mem, "ok": r.ok, "seconds": r.final_at }));
        if !r.ok {
            break;
        }
        lowest = Some(mem);
    }
    println!(
        "lowest RAM that provisions: {} MiB",
        lowest.map_or("512".into(), |m| m.to_string())
    );
    let result = json!({
        "initramfs_bytes": initramfs, "kernel_bytes": kernel,
        "direct_boot": { "ok": r.ok, "final_report_seconds": r.final_at, "phases": phases },
        "memory": { "tried": tried, "lowest_mib": lowest.unwrap_or(512) },
    });
    std::fs::create_dir_all(out.join("bench")).unwrap();
    std::fs::write(
        out.join("bench/boot.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
    println!("written to out/bench/boot.json");
}
