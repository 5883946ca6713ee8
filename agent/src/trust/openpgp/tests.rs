//! Certificates and signatures made by the real `gpg`, each checked by `sqv` first so the
//! vectors are known good.

use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A throw-away GnuPG home.
pub(in crate::trust) struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    pub(in crate::trust) fn new() -> Gpg {
        Gpg {
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// The GnuPG home (for tools that read `GNUPGHOME`, such as skopeo).
    pub(in crate::trust) fn home(&self) -> &Path {
        self.home.path()
    }

    pub(in crate::trust) fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args([
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .expect("gpg is installed (make deps)");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A new primary key (`algo`: ed25519, rsa3072, …) with the given usage; its fingerprint.
    pub(in crate::trust) fn key(&self, uid: &str, algo: &str, usage: &str, expire: &str) -> String {
        self.run(&["--quick-gen-key", uid, algo, usage, expire]);
        self.fingerprint(uid)
    }

    pub(in crate::trust) fn fingerprint(&self, uid: &str) -> String {
        let list = String::from_utf8(self.run(&["--with-colons", "--list-keys", uid])).unwrap();
        list.lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string()
    }

    pub(in crate::trust) fn export(&self, uid: &str, armor: bool) -> Vec<u8> {
        let mut args = vec!["--export"];
        if armor {
            args.push("--armor");
        }
        args.push(uid);
        self.run(&args)
    }

    /// `gpg --detach-sign` over `data` with `signer`; armored or binary.
    pub(in crate::trust) fn sign(
        &self,
        signer: &str,
        data: &[u8],
        armor: bool,
        digest: &str,
    ) -> Vec<u8> {
        let file = self.home.path().join("data");
        std::fs::write(&file, data).unwrap();
        let mut args = vec![
            "--local-user",
            signer,
            "--digest-algo",
            digest,
            "--detach-sign",
            "--output",
            "-",
        ];
        if armor {
            args.push("--armor");
        }
        let file = file.to_str().unwrap().to_string();
        args.push(&file);
        self.run(&args)
    }
}

/// `sqv` (Sequoia's verifier) must accept the signature: the vector is real and good.
pub(in crate::trust) fn sqv_accepts(dir: &Path, cert: &[u8], sig: &[u8], data: &[u8]) -> bool {
    let p = |n: &str, b: &[u8]| -> PathBuf {
        let f = dir.join(n);
        std::fs::write(&f, b).unwrap();
        f
    };
    let (k, s, d) = (p("k", cert), p("s", sig), p("d", data));
    Command::new("sqv")
        .arg("--keyring")
        .arg(k)
        .arg(s)
        .arg(d)
        .output()
        .expect("sqv is installed (make deps)")
        .status
        .success()
}

const NOW: u32 = 1_800_000_000;

#[test]
fn verifies_ed25519_and_rsa_signatures_armored_or_binary() {
    let gpg = Gpg::new();
    let data = b"version: 1\nimage: {url: http://x/y.zst}\n";
    for (uid, algo, digest) in [
        ("ed <ed@example.org>", "ed25519", "SHA256"),
        ("rsa <rsa@example.org>", "rsa3072", "SHA512"),
    ] {
        let fpr = gpg.key(uid, algo, "sign", "never");
        for armor in [false, true] {
            let cert_bytes = gpg.export(uid, armor);
            let sig_bytes = gpg.sign(uid, data, armor, digest);
            assert!(sqv_accepts(gpg.home.path(), &cert_bytes, &sig_bytes, data));
            let cert = Certificate::parse(&cert_bytes).unwrap();
            assert_eq!(cert.fingerprint(), fpr);
            let sig = Signature::parse(&sig_bytes).unwrap();
            assert_eq!(
                cert.verify(&sig, data, NOW).unwrap(),
                fpr,
                "{algo} armor={armor}"
            );
        }
    }
}

#[test]
fn a_signing_subkey_is_found_and_named() {
    let gpg = Gpg::new();
    let primary = gpg.key("sub <sub@example.org>", "ed25519", "cert", "never");
    gpg.run(&["--quick-add-key", &primary, "ed25519", "sign", "never"]);
    let data = b"signed by the subkey";
    let sig_bytes = gpg.sign("sub <sub@example.org>", data, false, "SHA256");
    let cert_bytes = gpg.export("sub <sub@example.org>", false);
    assert!(sqv_accepts(gpg.home.path(), &cert_bytes, &sig_bytes, data));
    let cert = Certificate::parse(&cert_bytes).unwrap();
    let by = cert
        .verify(&Signature::parse(&sig_bytes).unwrap(), data, NOW)
        .unwrap();
    assert_ne!(
        by, primary,
        "the subkey signed, not the certify-only primary"
    );
    assert_eq!(cert.fingerprint(), primary);
}

#[test]
fn a_changed_byte_and_another_key_are_refused() {
    let gpg = Gpg::new();
    let a = gpg.key("a <a@example.org>", "ed25519", "sign", "never");
    gpg.key("b <b@example.org>", "ed25519", "sign", "never");
    let data = b"sha256:0123456789".to_vec();
    let cert_a = Certificate::parse(&gpg.export("a <a@example.org>", false)).unwrap();
    let by_a = Signature::parse(&gpg.sign("a <a@example.org>", &data, false, "SHA256")).unwrap();
    let mut changed = data.clone();
    changed[3] ^= 1;
    assert_eq!(
        cert_a.verify(&by_a, &changed, NOW),
        Err(OpenPgpError::Mismatch(a.clone()))
    );
    let by_b = Signature::parse(&gpg.sign("b <b@example.org>", &data, false, "SHA256")).unwrap();
    match cert_a.verify(&by_b, &data, NOW) {
        Err(OpenPgpError::OtherKey { cert, .. }) => assert_eq!(cert, a),
        other => panic!("expected OtherKey, got {other:?}"),
    }
}

#[test]
fn sha1_signatures_and_expired_keys_are_refused() {
    let gpg = Gpg::new();
    gpg.key("old <old@example.org>", "ed25519", "sign", "1d");
    let data = b"d";
    let cert = Certificate::parse(&gpg.export("old <old@example.org>", false)).unwrap();
    let sha1 = Signature::parse(&gpg.sign("old <old@example.org>", data, false, "SHA1")).unwrap();
    assert_eq!(
        cert.verify(&sha1, data, NOW),
        Err(OpenPgpError::WeakHash(HashAlgorithm::Sha1))
    );
    let good = Signature::parse(&gpg.sign("old <old@example.org>", data, false, "SHA256")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(cert.verify(&good, data, now).is_ok(), "valid today");
    let in_a_week = now + 7 * 86400;
    assert!(matches!(
        cert.verify(&good, data, in_a_week),
        Err(OpenPgpError::KeyNotUsable {
            why: "it has expired",
            ..
        })
    ));
}

#[test]
fn a_revoked_certificate_is_refused() {
    let gpg = Gpg::new();
    let fpr = gpg.key("rev <rev@example.org>", "ed25519", "sign", "never");
    // gpg keeps a revocation certificate for every key it makes; importing it revokes.
    let rev = gpg.home.path().join(format!("openpgp-revocs.d/{fpr}.rev"));
    let text = std::fs::read_to_string(&rev)
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
    std::fs::write(&rev, text).unwrap();
    gpg.run(&["--import", rev.to_str().unwrap()]);
    assert_eq!(
        Certificate::parse(&gpg.export("rev <rev@example.org>", false)),
        Err(OpenPgpError::Revoked(fpr))
    );
}

#[test]
fn garbage_is_named() {
    assert!(matches!(
        Certificate::parse(b"not a key"),
        Err(OpenPgpError::BadCertificate(_))
    ));
    assert!(matches!(
        Signature::parse(b"\x00\x01"),
        Err(OpenPgpError::BadSignature(_))
    ));
}
