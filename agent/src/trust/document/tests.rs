//! Signatures beside a document file, made by the real `minisign`; `expires` and the clock.

use super::*;
use crate::timestamp::BUILD_FLOOR;
use std::process::Command;

/// A key pair in `dir`; the trust root holding its public key.
fn keypair(dir: &Path, name: &str) -> TrustRoot {
    let out = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(dir.join(format!("{name}.pub")))
        .arg("-s")
        .arg(dir.join(format!("{name}.sec")))
        .output()
        .expect("minisign is installed (make deps)");
    assert!(out.status.success(), "{out:?}");
    let a = crate::trust::root::load_file(&dir.join(format!("{name}.pub"))).unwrap();
    TrustRoot::new(vec![a.key])
}

fn sign(dir: &Path, key: &str, file: &Path) {
    let out = Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(dir.join(format!("{key}.sec")))
        .arg("-m")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn each_cause_of_refusal_has_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = keypair(dir.path(), "ops");
    let other = keypair(dir.path(), "other");
    let doc = dir.path().join("host.yaml");
    std::fs::write(&doc, "version: 1\n").unwrap();
    let src = doc.display().to_string();
    let check = |root: &TrustRoot, data: &[u8]| {
        authenticate(root, data, &src, SignatureSource::Beside(&src), None, 0)
    };
    let e = check(&root, b"version: 1\n").unwrap_err();
    assert!(matches!(e, AuthError::Missing { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("{src}.minisig nor {src}.sig")),
        "{e}"
    );
    sign(dir.path(), "ops", &doc);
    let ok = check(&root, b"version: 1\n").unwrap();
    assert!(ok.contains("minisign:") && ok.contains(".minisig"), "{ok}");
    let e = check(&root, b"version: 2\n").unwrap_err();
    assert!(matches!(e, AuthError::Bad { .. }), "{e}");
    let e = check(&other, b"version: 1\n").unwrap_err();
    assert!(matches!(e, AuthError::Untrusted { .. }), "{e}");
    assert!(e.to_string().contains(&other.fingerprints()[0]), "{e}");
    for junk in ["untrusted comment: x\n!!\n", "junk\n"] {
        std::fs::write(format!("{src}.minisig"), junk).unwrap();
        let e = check(&root, b"version: 1\n").unwrap_err();
        assert!(matches!(e, AuthError::Unreadable { .. }), "{e}");
        assert!(e.to_string().contains("not a minisign signature"), "{e}");
    }
    let e = authenticate(&root, b"", "stdin", SignatureSource::Stdin, None, 0).unwrap_err();
    assert!(e.to_string().contains("--signature FILE"), "{e}");
}

#[test]
fn expires_is_enforced_and_a_wrong_clock_refuses_it() {
    let day = 86_400;
    let now = BUILD_FLOOR + 30 * day;
    assert!(check_expiry("d", None, 0).is_ok());
    assert!(check_expiry("d", Some(now + day), now).is_ok());
    let e = check_expiry("d", Some(now - day), now)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&crate::timestamp::format(now - day)) && e.contains("the clock says"),
        "{e}"
    );
    let e = check_expiry("d", Some(now + day), 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("obviously wrong") && e.contains("1970-01-01T00:00:00Z"),
        "{e}"
    );
}
