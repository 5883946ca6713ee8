//! Undo that really undoes and says so truthfully (issue 16): a rootfs on a loop
//! device whose finalize command hangs with a background child. With a short
//! `boot.finalize_timeout` the command is killed with its child, every undo step
//! succeeds and the disk ends wiped; when something imprint may not stop (a process
//! outside the target, like an operator's shell) holds the target, the console and the
//! report list what is left instead of saying "cleaned up".
//!
//! The runs share the agent's one staging root, so they run one after the other.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::Server;
use serde_json::Value;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const REPORT: &str = "/report/web-01";
const STAGING: &str = "/run/imprint/target";

/// One run at a time: the agent assembles every target under the same staging root.
static SERIAL: Mutex<()> = Mutex::new(());

/// The single-disk layout with the busybox root and `finalize` commands.
fn document(server: &Server, finalize: &str) -> String {
    let tar = busybox_rootfs();
    server.serve_bytes("/images/root.tar.zst", tar.clone());
    format!(
        r#"version: 1
host: {{ hostname: web-01 }}
disks:
  - name: root
    match: {{ smallest: true, min_size: 1GiB }}
storage:
  partitions:
    - {{ name: rootp, disk: root, size: rest }}
  filesystems:
    - {{ device: rootp, type: ext4, mount: / }}
image:
  url: {}
  sha256: {}
  format: rootfs
boot:
  finalize:
{finalize}
  finalize_timeout: 4
report: {{ url: "{}", token: "{TOKEN}" }}
finish: none
"#,
        server.url("/images/root.tar.zst"),
        sha256_hex(&tar),
        server.url(REPORT)
    )
}

/// `pgrep -f` for an exact command line.
fn running(cmdline: &str) -> bool {
    let out = Command::new("pgrep")
        .args(["-f", &format!("^{cmdline}$")])
        .output()
        .unwrap();
    !out.stdout.is_empty()
}

fn undone(fin: &Value) -> Vec<String> {
    fin["undone"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_hanging_finalize_is_killed_with_its_child_and_everything_is_undone() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start();
    let marker = format!("sleep {}", 7100 + std::process::id() % 500);
    let doc = document(
        &server,
        &format!("    - [sh, -c, \"{marker} & {marker}; echo done\"]"),
    );
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let fin = final_report(&server, REPORT);
    assert_eq!(fin["failed_step"], "finalize", "{fin:#}");
    let error = fin["error"].as_str().unwrap();
    assert!(
        error.contains("did not finish within 4 s and was killed"),
        "{error}"
    );
    assert!(
        !running(&marker),
        "the finalize command's background child survived"
    );
    assert_eq!(fin["disks_after"], "cleaned_up", "{fin:#}");
    assert!(fin.get("remaining").is_none(), "{fin:#}");
    let u = undone(&fin);
    assert!(
        u.iter().all(|l| !l.starts_with("FAILED")),
        "every undo step succeeded: {u:#?}"
    );
    assert!(
        u.iter().any(|l| l.starts_with("unmounted ")),
        "the target was unmounted: {u:#?}"
    );
    assert!(
        run.stderr
            .contains("provisioning failed; the disks were cleaned up"),
        "{}",
        run.stderr
    );
    assert_no_partition_table(disk.dev());
    assert!(
        !sh("findmnt", &["-rn", "-o", "TARGET"]).contains(STAGING),
        "nothing is left mounted"
    );
}

/// A process outside the target (an operator's shell, say) that waits for the target to
/// appear, then keeps its working directory there for `secs`.
fn squatter(secs: u64) -> Child {
    Command::new("sh")
        .args([
            "-c",
            &format!(
                "for i in $(seq 600); do [ -d {STAGING}/tmp ] && cd {STAGING}/tmp && exec sleep {secs}; sleep 0.1; done"
            ),
        ])
        .spawn()
        .unwrap()
}

#[test]
fn an_undo_that_cannot_finish_lists_what_is_left_instead_of_cleaned_up() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start();
    // The finalize command fails at once; the squatter holds the target by then.
    let doc = document(&server, "    - [sh, -c, \"sleep 2; false\"]");
    let disk = LoopDev::new(2 << 30, 512);
    let mut holder = squatter(40);
    let t0 = Instant::now();
    let run = apply(&doc, &disk, &[]);
    let fin = final_report(&server, REPORT);
    let holder_pid = holder.id();
    let _ = holder.kill();
    let _ = holder.wait();
    // What imprint had to leave, taken down before anything is asserted (the next run
    // needs the staging root).
    unmount_staging();
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert_eq!(fin["failed_step"], "finalize", "{fin:#}");
    assert_eq!(fin["disks_after"], "not_cleaned_up", "{fin:#}");
    let remaining: Vec<&str> = fin["remaining"]
        .as_array()
        .unwrap_or_else(|| panic!("nothing listed as remaining: {fin:#}"))
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        remaining
            .iter()
            .any(|r| r.contains(&format!("{STAGING} still mounted"))
                && r.contains(&format!("pid {holder_pid} (sleep)"))),
        "the mount and who holds it are named: {remaining:#?}"
    );
    assert!(
        run.stderr
            .contains("provisioning failed; the disks were NOT fully cleaned up: left behind:"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("were cleaned up"), "{}", run.stderr);
    assert!(t0.elapsed() < Duration::from_secs(120));
}

/// Unmounts whatever is left under the staging root, innermost first.
fn unmount_staging() {
    for _ in 0..20 {
        let mounts = sh("findmnt", &["-rn", "-o", "TARGET"]);
        let mut ours: Vec<&str> = mounts.lines().filter(|m| m.starts_with(STAGING)).collect();
        if ours.is_empty() {
            return;
        }
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").arg(m).status();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
