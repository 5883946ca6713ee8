//! Power cuts: QEMU is killed at seeded, reproducible points across every phase of a
//! single-disk provisioning (boot, wipe, image write, configdrive), then the agent boots
//! again on the same disk files. Each time: a disk cut before the image verified holds no
//! partition table (nothing half-written can boot), and the rerun cleans up and succeeds,
//! verified from the host. `IMPRINT_FAULT_SEED` replays a run.

use imprint_tests::fixtures::*;
use imprint_tests::provision::Rng;
use imprint_tests::qemu::{Boot, Disk, Vm};
use imprint_tests::server::Server;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const CUTS: usize = 10;

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(48, 512))
}

/// Where a cut lands: after a console marker, plus a delay (ms) drawn from a range.
const PHASES: &[(&str, &str, u64)] = &[
    ("boot", "", 9000),
    ("wipe", "step wipe:root: started", 300),
    ("write-image", "step write-image: started", 1800),
    ("configdrive", "step configdrive: started", 1200),
];

fn vm(disk: Disk, append: &str) -> Vm {
    let out = repo_root().join("out");
    Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append: append.to_string(),
        })
        .disk(disk)
        .memory_mib(512)
        .start()
        .expect("start QEMU")
}

fn cut_and_rerun(i: usize, phase: usize, delay_ms: u64, server: &Server, append: &str) -> String {
    let (name, marker, _) = PHASES[phase];
    let mut first = vm(Disk::virtio(4 << 30, &format!("SN-CUT-{i}")), append);
    if marker.is_empty() {
        std::thread::sleep(Duration::from_millis(delay_ms));
    } else {
        first
            .wait_for_serial(marker, Duration::from_secs(240))
            .unwrap_or_else(|e| panic!("cut {i}: {e}"));
        std::thread::sleep(Duration::from_millis(delay_ms));
    }
    first.kill();
    let log = first.serial_log();
    let disk = first.disk_path(0);
    let dev = disk.to_str().unwrap().to_string();
    if !log.contains("step write-image: succeeded") {
        // The first MiB (MBR, primary GPT) is written only after the image verified, and the
        // wipe zeroed the disk's last MiB: nothing a firmware or a kernel reads as a table —
        // a boot signature at byte 510, a GPT header at LBA 1 or at the last LBA — can be
        // there unless the whole image is. (A partly written image may hold its own backup
        // header mid-disk, at the image's end, where neither looks.) The console lags the
        // disk: a cut just after the head went down may not have shown the step's success
        // yet, so a table on disk is checked against the image itself.
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&disk).unwrap();
        let size = f.metadata().unwrap().len();
        let read = |at: u64, len: usize| {
            let mut b = vec![0u8; len];
            f.read_exact_at(&mut b, at).unwrap();
            b
        };
        let (mbr, lba1, last) = (read(0, 512), read(512, 512), read(size - 512, 512));
        let found = [
            (mbr[510..512] == [0x55, 0xAA], "an MBR boot signature"),
            (&lba1[..8] == b"EFI PART", "a primary GPT header"),
            (
                &last[..8] == b"EFI PART",
                "a backup GPT header at the disk's end",
            ),
        ];
        // The image between its held-back first MiB and its own backup table at its end.
        let raw = &image().raw;
        let body = (1usize << 20)..raw.len() - (1 << 20);
        let whole = read(body.start as u64, body.len()) == raw[body.clone()];
        for (there, what) in found {
            assert!(
                !there || whole,
                "cut {i} ({name} +{delay_ms} ms) left {what} on a disk that does not hold the whole image"
            );
        }
        if found.iter().any(|f| f.0) {
            eprintln!("cut {i} ({name} +{delay_ms} ms) landed after the image verified, before the console said so");
        }
    }
    let before = server.posts().len();
    let mut again = vm(Disk::existing(&disk, &format!("SN-CUT-{i}")), append);
    again
        .wait_for_serial("provisioning succeeded", Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("rerun after cut {i} ({name} +{delay_ms} ms) failed: {e}"));
    let _ = again.wait_exit(Duration::from_secs(60));
    let finals: Vec<serde_json::Value> = server.posts()[before..]
        .iter()
        .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&p.body).ok())
        .filter(|v| v["kind"] == "final")
        .collect();
    assert!(
        finals.iter().any(|f| f["result"] == "success"),
        "cut {i}: no successful final report after the rerun"
    );
    assert_single_disk_deployed(&dev, image(), "cut-01");
    drop(again);
    drop(first);
    format!("cut {i}: {name} +{delay_ms} ms -> rerun ok")
}

#[test]
fn reruns_after_power_cuts_at_seeded_points_always_succeed() {
    let server = Arc::new(Server::start());
    let data = image().zstd();
    let sha = sha256_hex(&data);
    server.serve_bytes("/images/web.raw.zst", data);
    let base = guest_base(&server);
    let doc = vm_single_disk_document(
        "cut-01",
        &base,
        &format!("{base}/images/web.raw.zst"),
        &sha,
        "imprint-ok",
        "cut-token",
    );
    server.serve_bytes("/host.yaml", doc.into_bytes());
    let append = format!("console=ttyS0 imprint.config={base}/host.yaml imprint.failure_delay=0");

    // Draw every cut up front so the plan is reproducible whatever the timing; cover
    // each phase at least twice.
    let mut rng = Rng::from_env(20261121);
    let cuts: Vec<(usize, u64)> = (0..CUTS)
        .map(|i| {
            let phase = if i < 2 * PHASES.len() {
                i % PHASES.len()
            } else {
                rng.range(0, PHASES.len() as u64) as usize
            };
            let max = PHASES[phase].2;
            let lo = if phase == 0 { 2000 } else { 0 };
            (phase, rng.range(lo, max))
        })
        .collect();
    let t0 = Instant::now();
    let results = Arc::new(Mutex::new(Vec::new()));
    // Two VMs at a time: the machine has two cores.
    let queue = Arc::new(Mutex::new(cuts.into_iter().enumerate().collect::<Vec<_>>()));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (queue, results, server, append) = (
                queue.clone(),
                results.clone(),
                server.clone(),
                append.clone(),
            );
            std::thread::spawn(move || loop {
                let Some((i, (phase, delay))) = queue.lock().unwrap().pop() else {
                    break;
                };
                let line = cut_and_rerun(i, phase, delay, &server, &append);
                eprintln!("{line}");
                results.lock().unwrap().push(line);
            })
        })
        .collect();
    for w in workers {
        if let Err(e) = w.join() {
            std::panic::resume_unwind(e);
        }
    }
    assert_eq!(results.lock().unwrap().len(), CUTS);
    eprintln!(
        "{CUTS} power cuts and reruns in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
}
