//! A fleet booting at once: 64 agents (real `imprint run` processes, each offered one
//! loop device) ask one lookup server for their documents and report to it. The server
//! answers each machine's first lookup with 202 and `Retry-After: 1`, then with that
//! machine's own document, chosen by the disk its inventory names. Every host must get
//! its own document, provision its own disk, and — after deduplication by run id + seq,
//! as docs/report-protocol.md tells a receiver to do — deliver exactly one final
//! report, none lost. Prints the wall time and the receiver's peak memory.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::{Answer, Post, Server};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const HOSTS: usize = 64;
const IMAGE: &str = "/images/web.raw.zst";
const LOOKUP: &str = "/lookup";

fn host_name(i: usize) -> String {
    format!("node-{i:02}")
}

/// The peak resident memory of this process (the receiver runs in it), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn sixty_four_hosts_look_up_their_own_documents_and_each_final_report_arrives_once() {
    let s = Arc::new(Server::start());
    let img = TestImage::build(16, 512);
    let z = img.zstd();
    s.serve_bytes(IMAGE, z.clone());
    let disks: Vec<LoopDev> = (0..HOSTS).map(|_| LoopDev::new(1100 << 20, 512)).collect();
    let by_disk: HashMap<String, usize> = disks
        .iter()
        .enumerate()
        .map(|(i, d)| (d.dev().to_string(), i))
        .collect();
    let documents: Vec<String> = (0..HOSTS)
        .map(|i| {
            single_disk_document(
                &s.url(IMAGE),
                &sha256_hex(&z),
                &s.url(&format!("/report/{}", host_name(i))),
            )
            .replace("web-01", &host_name(i))
        })
        .collect();

    // The lookup server: a 202 first, then the document of the machine whose disk the
    // inventory names.
    let asked: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let answered: Arc<Mutex<HashMap<usize, String>>> = Arc::default();
    {
        let (asked, answered) = (asked.clone(), answered.clone());
        s.respond_posts(LOOKUP, move |p: &Post| {
            let inv: Value = serde_json::from_slice(&p.body).unwrap_or(Value::Null);
            let disk = inv["disks"][0]["path"].as_str().unwrap_or("");
            let Some(&i) = by_disk.get(disk) else {
                return Answer::status(404).header("Retry-After", "1");
            };
            if asked.lock().unwrap().insert(i) {
                return Answer::status(202).header("Retry-After", "1");
            }
            let run = p.header("x-imprint-run-id").unwrap_or("").to_string();
            answered.lock().unwrap().insert(i, run);
            Answer::status(200).body(documents[i].clone().into_bytes())
        });
    }

    let trust = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let children: Vec<_> = disks
        .iter()
        .map(|d| {
            Command::new(imprint_bin())
                .args([
                    "run",
                    "--no-finish",
                    "--report-timeout",
                    "60",
                    "--trust-dir",
                    trust.path().to_str().unwrap(),
                    "--disks",
                    d.dev(),
                    "--lookup",
                    &s.url(LOOKUP),
                    "--lookup-min-wait",
                    "1",
                    "--lookup-timeout",
                    "600",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start imprint")
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let wall = started.elapsed();
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "{}: {}",
            host_name(i),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Every host asked at least twice and got its own document.
    let posts = s.posts();
    let lookups = posts.iter().filter(|p| p.path == LOOKUP).count();
    assert!(lookups >= 2 * HOSTS, "{lookups} lookups");
    let answered = answered.lock().unwrap().clone();
    assert_eq!(answered.len(), HOSTS, "every host got a document");

    // The receiver's view: dedupe by run id + seq, then exactly one final per host.
    let mut duplicates = 0;
    for i in 0..HOSTS {
        let path = format!("/report/{}", host_name(i));
        let mut events: BTreeMap<(String, u64), Vec<u8>> = BTreeMap::new();
        for p in posts.iter().filter(|p| p.path == path) {
            let v = p.json();
            let key = (
                v["run_id"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
            );
            match events.get(&key) {
                Some(first) => {
                    assert_eq!(first, &p.body, "a retry carries the same bytes");
                    duplicates += 1;
                }
                None => {
                    events.insert(key, p.body.clone());
                }
            }
        }
        let finals: Vec<Value> = events
            .values()
            .map(|b| serde_json::from_slice::<Value>(b).unwrap())
            .filter(|e| e["kind"] == "final")
            .collect();
        assert_eq!(finals.len(), 1, "{}: one final report", host_name(i));
        let fin = &finals[0];
        assert_eq!(fin["result"], "success", "{fin:#}");
        assert_eq!(fin["hostname"], host_name(i), "its own document");
        assert_eq!(
            fin["run_id"].as_str(),
            Some(answered[&i].as_str()),
            "the reports carry the run id of the lookup that found the document"
        );
        assert_eq!(fin["disks"][0]["path"], disks[i].dev(), "{fin:#}");
        assert_sgdisk_clean(disks[i].dev());
    }
    // The disks hold what they should (a sample: reading cloud-init's view is slow).
    for i in [0, HOSTS / 2, HOSTS - 1] {
        assert_single_disk_deployed(disks[i].dev(), &img, &host_name(i));
    }
    s.assert_reports_valid();
    eprintln!(
        "fleet: {HOSTS} hosts provisioned through lookup in {:.1} s; {lookups} lookup \
         POSTs, {} POSTs in all, {duplicates} duplicate reports dropped; receiver (test \
         process) peak RSS {} MiB",
        wall.as_secs_f64(),
        posts.len(),
        peak_rss_kib() / 1024
    );
}
