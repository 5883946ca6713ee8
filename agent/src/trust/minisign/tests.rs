//! Keys and signatures made by the real `minisign` tool.

use super::*;
use std::path::Path;
use std::process::Command;

/// A key pair made by `minisign -G` (no password) in `dir`, and its public key text.
pub(in crate::trust) fn keypair(dir: &Path, name: &str) -> String {
    let run = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(dir.join(format!("{name}.pub")))
        .arg("-s")
        .arg(dir.join(format!("{name}.sec")))
        .output()
        .expect("minisign is installed (make deps)");
    assert!(
        run.status.success(),
        "minisign -G: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap()
}

/// `minisign -S` over `data` with the key `name`; `legacy` signs the raw file (`-l`).
pub(in crate::trust) fn sign(
    dir: &Path,
    name: &str,
    data: &[u8],
    comment: &str,
    legacy: bool,
) -> String {
    let file = dir.join("data");
    std::fs::write(&file, data).unwrap();
    let mut cmd = Command::new("minisign");
    cmd.arg("-S")
        .arg("-s")
        .arg(dir.join(format!("{name}.sec")))
        .arg("-m")
        .arg(&file);
    cmd.args(["-t", comment]);
    if legacy {
        cmd.arg("-l");
    }
    let run = cmd.output().unwrap();
    assert!(
        run.status.success(),
        "minisign -S: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read_to_string(dir.join("data.minisig")).unwrap()
}

#[test]
fn verifies_prehashed_and_legacy_signatures_from_minisign() {
    let dir = tempfile::tempdir().unwrap();
    let key = PublicKey::parse(&keypair(dir.path(), "k")).unwrap();
    let data = b"version: 1\nhost: {hostname: a}\n";
    for legacy in [false, true] {
        let sig = Signature::parse(&sign(dir.path(), "k", data, "doc a", legacy)).unwrap();
        assert_eq!(key.verify(&sig, data).unwrap(), "doc a");
        // Fed in pieces, the same answer.
        let mut v = key.verifier(&sig).unwrap();
        for piece in data.chunks(5) {
            v.update(piece);
        }
        assert_eq!(v.finish().unwrap(), "doc a");
    }
}

#[test]
fn key_id_is_the_one_minisign_prints() {
    let dir = tempfile::tempdir().unwrap();
    let text = keypair(dir.path(), "k");
    let printed = text
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let key = PublicKey::parse(&text).unwrap();
    assert_eq!(key.key_id(), printed);
    // The bare base64 line (what `minisign -P` takes) is the same key.
    assert_eq!(PublicKey::parse(text.lines().nth(1).unwrap()).unwrap(), key);
    let sig = Signature::parse(&sign(dir.path(), "k", b"x", "c", false)).unwrap();
    assert_eq!(sig.key_id(), printed);
}

#[test]
fn a_changed_byte_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let key = PublicKey::parse(&keypair(dir.path(), "k")).unwrap();
    let mut data = b"image digest sha256:0123".to_vec();
    let sig = Signature::parse(&sign(dir.path(), "k", &data, "c", false)).unwrap();
    data[7] ^= 1;
    assert_eq!(key.verify(&sig, &data), Err(MinisignError::Mismatch));
}

#[test]
fn an_edited_trusted_comment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = PublicKey::parse(&keypair(dir.path(), "k")).unwrap();
    let text = sign(dir.path(), "k", b"data", "expires 2026", false);
    let edited = text.replace(
        "trusted comment: expires 2026",
        "trusted comment: expires 2099",
    );
    let sig = Signature::parse(&edited).unwrap();
    assert_eq!(
        key.verify(&sig, b"data"),
        Err(MinisignError::CommentMismatch)
    );
}

#[test]
fn another_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let a = PublicKey::parse(&keypair(dir.path(), "a")).unwrap();
    keypair(dir.path(), "b");
    let sig = Signature::parse(&sign(dir.path(), "b", b"data", "c", false)).unwrap();
    match a.verify(&sig, b"data") {
        Err(MinisignError::OtherKey { signer, key }) => {
            assert_eq!(key, a.key_id());
            assert_eq!(signer, sig.key_id());
            assert_ne!(signer, key);
        }
        other => panic!("expected OtherKey, got {other:?}"),
    }
}

#[test]
fn malformed_inputs_are_named() {
    assert_eq!(
        PublicKey::parse(""),
        Err(MinisignError::BadKey("no base64 line"))
    );
    assert_eq!(
        PublicKey::parse("untrusted comment: x\n!!!\n"),
        Err(MinisignError::BadKey("the key line is not base64"))
    );
    assert_eq!(
        PublicKey::parse("RWQ="),
        Err(MinisignError::BadKey("the key is not 42 bytes"))
    );
    assert!(matches!(
        Signature::parse(""),
        Err(MinisignError::BadSignature("it is empty"))
    ));
    assert!(matches!(
        Signature::parse("hello\n"),
        Err(MinisignError::BadSignature(
            "the first line is not an untrusted comment"
        ))
    ));
    let dir = tempfile::tempdir().unwrap();
    keypair(dir.path(), "k");
    let good = sign(dir.path(), "k", b"d", "c", false);
    let cut: String = good.lines().take(3).map(|l| format!("{l}\n")).collect();
    assert!(matches!(
        Signature::parse(&cut),
        Err(MinisignError::BadSignature("no global signature"))
    ));
    let mut lines: Vec<String> = good.lines().map(String::from).collect();
    let mut raw = STANDARD.decode(&lines[1]).unwrap();
    raw[1] = b'X';
    lines[1] = STANDARD.encode(&raw);
    assert!(matches!(
        Signature::parse(&lines.join("\n")),
        Err(MinisignError::BadSignature("unknown signature algorithm"))
    ));
}
