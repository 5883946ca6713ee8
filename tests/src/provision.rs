//! Helpers for suites that run the single-disk document through the real binary:
//! the document, `imprint apply`, the reports the server received, the checks a
//! failed run must pass, and a small seeded random generator for reproducible faults.

use crate::fixtures::{imprint_bin, sh_any, LoopDev};
use crate::server::Server;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The report token every document here carries (it must never appear in logs or reports).
pub const TOKEN: &str = "s3cr3t-token-for-fault-tests";

/// The product's single-disk document with this test's image URL, digest and report URL.
pub fn single_disk_document(image_url: &str, sha256: &str, report_url: &str) -> String {
    format!(
        r#"version: 1
host: {{ hostname: web-01 }}
disks:
  - name: root
    match: {{ smallest: true, min_size: 1GiB }}
image:
  url: {image_url}
  sha256: {sha256}
  format: disk
  target: root
configdrive:
  format: nocloud
  meta_data: {{ instance-id: web-01 }}
  user_data: |
    #cloud-config
    runcmd: [[sh, -c, "echo imprint-ok > /dev/console"]]
  network_config: {{ version: 2, ethernets: {{ all: {{ match: {{ name: "e*" }}, dhcp4: true }} }} }}
report: {{ url: "{report_url}", token: "{TOKEN}" }}
finish: reboot
"#
    )
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs `imprint <args…> DOC` with the document written to a temp file.
pub fn imprint_with_doc(args: &[&str], doc: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.yaml");
    std::fs::write(&path, doc).expect("write document");
    let mut all: Vec<&str> = args.to_vec();
    all.push(path.to_str().expect("utf-8 temp path"));
    imprint(&all)
}

/// Runs `imprint <args…>` with stdin closed.
pub fn imprint(args: &[&str]) -> Run {
    let t0 = Instant::now();
    let out = Command::new(imprint_bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run imprint");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    }
}

/// `imprint apply --yes --disks DEV [extra…] DOC`.
pub fn apply(doc: &str, disk: &LoopDev, extra: &[&str]) -> Run {
    let mut args = vec!["apply", "--yes", "--disks", disk.dev()];
    args.extend_from_slice(extra);
    imprint_with_doc(&args, doc)
}

/// The JSON bodies POSTed to `path`, each checked to carry the bearer token in its header only.
pub fn reports(server: &Server, path: &str) -> Vec<Value> {
    server
        .posts()
        .into_iter()
        .filter(|p| p.path == path)
        .map(|p| {
            assert_eq!(
                p.header("authorization"),
                Some(format!("Bearer {TOKEN}").as_str())
            );
            assert!(
                !String::from_utf8_lossy(&p.body).contains(TOKEN),
                "the token is in a report body"
            );
            p.json()
        })
        .collect()
}

/// The one final report POSTed to `path`.
pub fn final_report(server: &Server, path: &str) -> Value {
    let finals: Vec<Value> = reports(server, path)
        .into_iter()
        .filter(|r| r["kind"] == "final")
        .collect();
    assert_eq!(finals.len(), 1, "exactly one final report: {finals:#?}");
    finals.into_iter().next().expect("one final report")
}

/// Asserts `dev` holds no partition table (blkid's probe and sgdisk both find none).
pub fn assert_no_partition_table(dev: &str) {
    let probe = sh_any("blkid", &["-p", "-o", "export", dev]);
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        !text.contains("PTTYPE"),
        "a partition table survived on {dev}: {text}"
    );
    let v = sh_any("sgdisk", &["-v", dev]);
    let vt = String::from_utf8_lossy(&v.stdout).to_lowercase()
        + &String::from_utf8_lossy(&v.stderr).to_lowercase();
    assert!(
        vt.contains("creating new gpt entries"),
        "sgdisk still sees a GPT on {dev}: {vt}"
    );
}

/// Asserts `dev` reads as zeros in its first MiB (nothing was written).
pub fn assert_untouched(dev: &str) {
    let head = crate::fixtures::read_at(dev, 0, 1 << 20);
    assert!(head.iter().all(|&b| b == 0), "{dev} was written to");
}

/// A temp file path inside `dir` as a string.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// SplitMix64: a tiny, seedable, reproducible generator for fault offsets and delays.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `$IMPRINT_FAULT_SEED` (printed, so a failure can be replayed), else `default`.
    pub fn from_env(default: u64) -> Rng {
        let seed = std::env::var("IMPRINT_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("fault seed: {seed} (set IMPRINT_FAULT_SEED to replay)");
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}
