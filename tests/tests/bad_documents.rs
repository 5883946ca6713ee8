//! Issue 7, bad documents: every document of `tests/corpus/bad/` is rejected by
//! `imprint validate` and `imprint plan --inventory` (or, for contradictions only a
//! disk reveals, accepted by `validate` and rejected by `plan`), with the JSON path
//! and a sentence a person understands; `apply` on real loop devices of the
//! inventory's sizes rejects it the same way before touching either disk.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use std::path::PathBuf;

struct Case {
    file: String,
    /// `validate` or `plan`: the first command that must reject it.
    stage: String,
    path: String,
    phrase: String,
}

fn corpus() -> PathBuf {
    repo_root().join("tests/corpus")
}

fn cases() -> Vec<Case> {
    let table =
        std::fs::read_to_string(corpus().join("bad/expected.tsv")).expect("bad/expected.tsv");
    let cases: Vec<Case> = table
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(
                f.len(),
                4,
                "expected.tsv: file, stage, path, phrase separated by tabs: {l:?}"
            );
            Case {
                file: f[0].into(),
                stage: f[1].into(),
                path: f[2].into(),
                phrase: f[3].into(),
            }
        })
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(corpus().join("bad"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = cases.iter().map(|c| c.file.clone()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every corpus document has exactly one row in expected.tsv"
    );
    cases
}

/// The error names the path (as `path:` at the start of the sentence) and says the phrase.
fn assert_explained(c: &Case, cmd: &str, run: &Run) {
    let err = run.stderr.trim();
    assert!(
        c.path == "-" || err.contains(&format!("{}: ", c.path)),
        "{} / {cmd}: the error does not name {:?}:\n{err}",
        c.file,
        c.path
    );
    assert!(
        err.contains(&c.phrase),
        "{} / {cmd}: the error does not say {:?}:\n{err}",
        c.file,
        c.phrase
    );
    assert!(!err.contains("panicked"), "{} / {cmd}: {err}", c.file);
}

#[test]
fn the_corpus_holds_at_least_forty_documents() {
    assert!(cases().len() >= 40, "{} documents", cases().len());
}

#[test]
fn every_bad_document_is_rejected_by_validate_and_plan_with_path_and_sentence() {
    let inventory = corpus().join("inventory.json");
    for c in cases() {
        let doc = corpus().join("bad").join(&c.file);
        let validate = imprint(&["validate", path_str(&doc)]);
        let plan = imprint(&["plan", "--inventory", path_str(&inventory), path_str(&doc)]);
        match c.stage.as_str() {
            "validate" => {
                assert_eq!(
                    validate.code, 3,
                    "{}: validate must reject it (exit 3):\n{}",
                    c.file, validate.stderr
                );
                assert_explained(&c, "validate", &validate);
                assert_eq!(
                    plan.code, 3,
                    "{}: plan must reject it (exit 3):\n{}",
                    c.file, plan.stderr
                );
                assert_explained(&c, "plan", &plan);
            }
            "plan" => {
                assert_eq!(
                    validate.code, 0,
                    "{}: only a disk shows this contradiction:\n{}",
                    c.file, validate.stderr
                );
                assert_eq!(
                    plan.code, 4,
                    "{}: plan must reject it (exit 4):\n{}",
                    c.file, plan.stderr
                );
                assert_explained(&c, "plan", &plan);
            }
            s => panic!("{}: unknown stage {s:?}", c.file),
        }
        assert!(
            plan.stdout.trim().is_empty(),
            "{}: a plan was printed for a bad document:\n{}",
            c.file,
            plan.stdout
        );
    }
}

#[test]
fn apply_rejects_every_bad_document_before_touching_a_disk() {
    // Loop devices of the inventory's sizes (sparse), so plan-stage errors happen for real.
    let a = LoopDev::new(8 << 30, 512);
    let b = LoopDev::new(16 << 30, 512);
    let disks = format!("{},{}", a.dev(), b.dev());
    for c in cases() {
        let doc = corpus().join("bad").join(&c.file);
        let run = imprint(&["apply", "--yes", "--disks", &disks, path_str(&doc)]);
        let want = if c.stage == "validate" { 3 } else { 4 };
        assert_eq!(run.code, want, "{}: apply:\n{}", c.file, run.stderr);
        assert_explained(&c, "apply", &run);
        assert_untouched(a.dev());
        assert_untouched(b.dev());
    }
}
