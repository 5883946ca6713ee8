//! Report protocol v1 (docs/report-protocol.md) as a receiver sees it: every event
//! carries the protocol, run id and seq in its body and headers; an event whose answer
//! was lost is sent again with the same run id, seq and bytes, so a receiver that
//! dedupes by run id + seq gets each event exactly once, the final one included; the
//! orchestrator's `built`/`failed` hook is asked once, after the final report, and its
//! token (in the query) is never printed.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::{Fault, Post, Server};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const REPORT: &str = "/report/web-01";
const IMAGE: &str = "/images/web.raw.zst";
const HOOK_TOKEN: &str = "build-token-5f3a9";

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(16, 512))
}

/// The single-disk document with the `built` and `failed` hooks on `s`.
fn document(s: &Server, image_url: &str) -> String {
    let doc = single_disk_document(image_url, &sha256_hex(&image().zstd()), &s.url(REPORT));
    doc.replacen(
        "report: {",
        &format!(
            "report: {{ built: \"{}?token={HOOK_TOKEN}\", failed: \"{}?token={HOOK_TOKEN}\",",
            s.url("/unattended/built"),
            s.url("/unattended/failed")
        ),
        1,
    )
}

fn report_posts(s: &Server) -> Vec<Post> {
    s.posts().into_iter().filter(|p| p.path == REPORT).collect()
}

/// Dedupes `posts` by run id + seq as a receiver would, checking that every copy of an
/// event is the same bytes with the envelope in its headers; returns the events by seq
/// and how many copies were dropped.
fn dedupe(posts: &[Post]) -> (BTreeMap<u64, Value>, usize) {
    let mut seen: BTreeMap<(String, u64), Vec<u8>> = BTreeMap::new();
    let mut dropped = 0;
    for p in posts {
        let v = p.json();
        let run = v["run_id"].as_str().expect("run_id").to_string();
        let seq = v["seq"].as_u64().expect("seq");
        assert_eq!(p.header("x-imprint-protocol"), Some("1"), "{v}");
        assert_eq!(p.header("x-imprint-run-id"), Some(run.as_str()), "{v}");
        assert_eq!(
            p.header("x-imprint-seq"),
            Some(seq.to_string().as_str()),
            "{v}"
        );
        match seen.get(&(run.clone(), seq)) {
            Some(first) => {
                assert_eq!(first, &p.body, "a retry of seq {seq} carries other bytes");
                dropped += 1;
            }
            None => {
                seen.insert((run, seq), p.body.clone());
            }
        }
    }
    let runs: std::collections::BTreeSet<&String> = seen.keys().map(|(r, _)| r).collect();
    assert_eq!(runs.len(), 1, "one run, one run id: {runs:?}");
    let events = seen
        .into_iter()
        .map(|((_, seq), body)| (seq, serde_json::from_slice(&body).unwrap()))
        .collect();
    (events, dropped)
}

#[test]
fn lost_acknowledgements_are_retried_with_the_same_seq_and_the_built_hook_is_asked_once() {
    let s = Server::start();
    s.serve_bytes(IMAGE, image().zstd());
    // The receiver processes the first three events but their answers are lost.
    s.set_fault(REPORT, Fault::LoseAnswer { times: 3 });
    s.serve_bytes("/unattended/built", b"built\n".to_vec());
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(&document(&s, &s.url(IMAGE)), &disk, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let posts = report_posts(&s);
    let (events, dropped) = dedupe(&posts);
    assert!(
        dropped >= 3,
        "the three lost answers were retried: {dropped}"
    );
    let seqs: Vec<u64> = events.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every event arrived, none missing after dedup"
    );
    let finals: Vec<&Value> = events.values().filter(|e| e["kind"] == "final").collect();
    assert_eq!(finals.len(), 1, "one final report after dedup");
    assert_eq!(finals[0]["result"], "success");
    assert_eq!(
        finals[0]["seq"].as_u64(),
        seqs.last().copied(),
        "the final is the last event"
    );

    // The hook: asked once, with its token, after the final report was delivered.
    let requests = s.requests();
    let built: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].path.starts_with("/unattended/built"))
        .collect();
    assert_eq!(built.len(), 1, "{requests:#?}");
    assert_eq!(requests[built[0]].method, "GET");
    assert_eq!(
        requests[built[0]].path,
        format!("/unattended/built?token={HOOK_TOKEN}")
    );
    let last_report = requests.iter().rposition(|r| r.path == REPORT).unwrap();
    assert!(
        built[0] > last_report,
        "the hook comes after the final report"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.path.starts_with("/unattended/failed")),
        "a success does not ask the failed hook"
    );
    assert!(!run.stderr.contains(HOOK_TOKEN), "{}", run.stderr);
    assert!(!run.stdout.contains(HOOK_TOKEN), "{}", run.stdout);
    s.assert_reports_valid();
}

#[test]
fn a_failed_run_posts_its_cause_to_the_failed_hook() {
    let s = Server::start();
    // No image there: preflight fails before any disk is touched.
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(&document(&s, &s.url("/images/missing.raw.zst")), &disk, &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let fin = final_report(&s, REPORT);
    assert_eq!(fin["result"], "failure", "{fin:#}");
    let hooks: Vec<Post> = s
        .posts()
        .into_iter()
        .filter(|p| p.path.starts_with("/unattended/"))
        .collect();
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    assert_eq!(
        hooks[0].path,
        format!("/unattended/failed?token={HOOK_TOKEN}")
    );
    let text = String::from_utf8_lossy(&hooks[0].body);
    assert!(
        text.contains(&format!(
            "failed at step {}",
            fin["failed_step"].as_str().unwrap()
        )) && text.contains("missing.raw.zst"),
        "{text}"
    );
    assert!(
        !s.requests()
            .iter()
            .any(|r| r.path.starts_with("/unattended/built")),
        "a failure does not ask the built hook"
    );
    assert!(!run.stderr.contains(HOOK_TOKEN), "{}", run.stderr);
}

#[test]
fn the_plan_shows_the_hooks_without_their_tokens() {
    let s = Server::start();
    s.serve_bytes(IMAGE, image().zstd());
    let disk = LoopDev::new(2 << 30, 512);
    let doc = document(&s, &s.url(IMAGE));
    let text = imprint_with_doc(&["plan", "--disks", disk.dev()], &doc);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains(&format!(
            "After a success, GET {}?<redacted>",
            s.url("/unattended/built")
        )),
        "{}",
        text.stdout
    );
    let json = imprint_with_doc(&["plan", "--json", "--disks", disk.dev()], &doc);
    assert_eq!(json.code, 0, "{}", json.stderr);
    assert!(!text.stdout.contains(HOOK_TOKEN) && !json.stdout.contains(HOOK_TOKEN));
    let plan: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        plan["report"]["failed"],
        format!("{}?<redacted>", s.url("/unattended/failed"))
    );
}
