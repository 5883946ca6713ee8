//! Key files made by the real `minisign` and `gpg`, loaded from a directory and by name.

use super::*;
use std::process::Command;

fn minisign_key(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.pub"));
    let out = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&p)
        .arg("-s")
        .arg(dir.join(format!("{name}.sec")))
        .output()
        .expect("minisign is installed (make deps)");
    assert!(out.status.success(), "{out:?}");
    p
}

fn gpg_cert(dir: &Path, armor: bool) -> Vec<u8> {
    let home = tempfile::tempdir().unwrap();
    let gpg = |args: &[&str]| {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(home.path())
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg is installed (make deps)");
        assert!(out.status.success(), "{out:?}");
        out.stdout
    };
    gpg(&[
        "--quick-gen-key",
        "ops <ops@example.com>",
        "ed25519",
        "sign",
        "never",
    ]);
    let mut args = vec!["--export"];
    if armor {
        args.insert(0, "--armor");
    }
    let _ = dir;
    gpg(&args)
}

#[test]
fn a_directory_of_minisign_and_openpgp_keys_is_merged_with_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("trust.d");
    std::fs::create_dir(&d).unwrap();
    let ops = minisign_key(&d, "ops");
    std::fs::write(d.join("build.asc"), gpg_cert(dir.path(), true)).unwrap();
    std::fs::write(d.join("README"), "not a key").unwrap();
    let extra = minisign_key(dir.path(), "extra");
    let binary = dir.path().join("rel.gpg");
    std::fs::write(&binary, gpg_cert(dir.path(), false)).unwrap();
    let medium = vec![("the boot medium".to_string(), std::fs::read(&ops).unwrap())];
    let loaded = load(&d, &medium, &[extra.clone(), binary]).unwrap();
    let lines = loaded.describe();
    // ops.pub from the area is the same key as in the directory: kept once.
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("trust: openpgp:"), "{lines:?}");
    assert!(lines[0].ends_with(&format!("(from {})", d.join("build.asc").display())));
    assert!(lines[1].starts_with("trust: minisign:"), "{lines:?}");
    assert!(lines[2].contains(&extra.display().to_string()), "{lines:?}");
    assert_eq!(loaded.root().fingerprints().len(), 4);
}

#[test]
fn no_keys_says_so_and_a_missing_directory_is_empty() {
    let loaded = load(Path::new("/nonexistent/trust.d"), &[], &[]).unwrap();
    assert!(loaded.is_empty());
    assert_eq!(
        loaded.describe(),
        vec!["trust: none — the document will not be authenticated"]
    );
}

#[test]
fn bad_and_unreadable_key_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pub");
    std::fs::write(&bad, "untrusted comment: x\nnot base64!\n").unwrap();
    let e = load_file(&bad).unwrap_err().to_string();
    assert!(
        e.contains(&bad.display().to_string()) && e.contains("neither"),
        "{e}"
    );
    let e = load(dir.path(), &[], &[]).unwrap_err().to_string();
    assert!(e.contains("bad.pub"), "{e}");
    let missing = dir.path().join("missing.asc");
    let e = load_file(&missing).unwrap_err().to_string();
    assert!(e.contains("missing.asc") && e.contains("reading"), "{e}");
}
