//! Signed messages made by the real `skopeo standalone-sign` and `gpg --sign`.

use super::super::tests::Gpg;
use super::*;
use std::process::Command;

const NOW: u32 = 1_800_000_000;

fn cert(gpg: &Gpg, uid: &str) -> Certificate {
    Certificate::parse(&gpg.export(uid, true)).unwrap()
}

/// `skopeo standalone-sign` over a manifest, with the key `fpr` of `gpg`'s home.
fn skopeo_sign(gpg: &Gpg, fpr: &str, reference: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, br#"{"schemaVersion":2,"layers":[]}"#).unwrap();
    let out = dir.path().join("signature-1");
    let run = Command::new("skopeo")
        .env("GNUPGHOME", gpg.home())
        .args(["standalone-sign", "-o"])
        .arg(&out)
        .arg(&manifest)
        .args([reference, fpr])
        .output()
        .expect("skopeo is installed (make deps)");
    assert!(run.status.success(), "skopeo: {run:?}");
    std::fs::read(out).unwrap()
}

/// `gpg --sign` (an inline signed message) over `data`, uncompressed with `plain`.
fn gpg_sign(gpg: &Gpg, uid: &str, data: &[u8], plain: bool) -> Vec<u8> {
    let file = gpg.home().join("payload");
    std::fs::write(&file, data).unwrap();
    let mut args = vec!["--local-user", uid, "--sign", "--output", "-"];
    if plain {
        args.extend(["--compress-level", "0"]);
    }
    let f = file.to_str().unwrap().to_string();
    args.push(&f);
    gpg.run(&args)
}

#[test]
fn opens_what_skopeo_signs_and_hands_out_its_payload() {
    let gpg = Gpg::new();
    let fpr = gpg.key("ops <ops@example.com>", "ed25519", "sign", "never");
    let sig = skopeo_sign(&gpg, &fpr, "127.0.0.1:5000/os/web:v1");
    let c = cert(&gpg, "ops");
    let opened = open(&sig, &[&c], NOW).unwrap();
    assert_eq!(opened.signer, fpr);
    let text = String::from_utf8(opened.payload).unwrap();
    assert!(text.contains("\"atomic container signature\""), "{text}");
    assert!(text.contains("127.0.0.1:5000/os/web:v1"), "{text}");
}

#[test]
fn a_message_by_another_key_is_refused_naming_it() {
    let gpg = Gpg::new();
    gpg.key("ops <ops@example.com>", "ed25519", "sign", "never");
    let rogue = gpg.key("rogue <rogue@example.com>", "ed25519", "sign", "never");
    let sig = gpg_sign(&gpg, "rogue", b"{}", false);
    let c = cert(&gpg, "ops");
    match open(&sig, &[&c], NOW) {
        Err(MessageError::OtherKey { signer, allowed }) => {
            assert_eq!(signer, format!("openpgp:{rogue}"));
            assert_eq!(allowed, format!("openpgp:{}", c.fingerprint()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_changed_payload_byte_does_not_verify() {
    let gpg = Gpg::new();
    let fpr = gpg.key("ops <ops@example.com>", "rsa3072", "sign", "never");
    let payload = br#"{"critical":{"type":"atomic container signature"}}"#;
    let mut sig = gpg_sign(&gpg, "ops", payload, true);
    let at = sig
        .windows(6)
        .position(|w| w == b"atomic")
        .expect("the literal data is in the clear");
    sig[at] = b'A';
    let c = cert(&gpg, "ops");
    assert_eq!(
        open(&sig, &[&c], NOW),
        Err(MessageError::Refused(OpenPgpError::Mismatch(fpr)))
    );
    // Unchanged, it opens.
    let good = gpg_sign(&gpg, "ops", payload, true);
    assert_eq!(open(&good, &[&c], NOW).unwrap().payload, payload);
}

#[test]
fn a_detached_signature_or_garbage_is_not_a_signed_message() {
    let gpg = Gpg::new();
    gpg.key("ops <ops@example.com>", "ed25519", "sign", "never");
    let c = cert(&gpg, "ops");
    let detached = gpg.sign("ops", b"data", false, "SHA256");
    assert!(matches!(
        open(&detached, &[&c], NOW),
        Err(MessageError::Unreadable(_))
    ));
    assert!(matches!(
        open(b"{\"critical\":{}}", &[&c], NOW),
        Err(MessageError::Unreadable(_))
    ));
}

#[test]
fn an_expired_key_is_refused() {
    let gpg = Gpg::new();
    gpg.key("old <old@example.com>", "ed25519", "sign", "1d");
    let sig = gpg_sign(&gpg, "old", b"{}", false);
    let c = cert(&gpg, "old");
    let later = u32::try_from(crate::timestamp::now()).unwrap() + 3 * 86_400;
    assert!(matches!(
        open(&sig, &[&c], later),
        Err(MessageError::Refused(OpenPgpError::KeyNotUsable { .. }))
    ));
}
