//! Large-file signatures made by the real `minisign` and `gpg`, checked as streams.

use super::*;
use crate::trust::minisign::tests::{keypair, sign};
use crate::trust::openpgp::tests::{sqv_accepts, Gpg};
use crate::trust::root::parse_key;

const NOW: u32 = 1_800_000_000;

/// A few MiB that are not all alike, so a changed byte anywhere matters.
fn image() -> Vec<u8> {
    (0..3 * 1024 * 1024 + 17)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A reader that hands out `data` a few bytes at a time, as a slow download would.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(out.len()).min(4093);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn root(keys: &[&[u8]]) -> TrustRoot {
    TrustRoot::new(keys.iter().map(|k| parse_key(k, "test").unwrap()).collect())
}

#[test]
fn a_minisign_signature_checks_a_stream_and_names_signer_and_comment() {
    let dir = tempfile::tempdir().unwrap();
    let pubkey = keypair(dir.path(), "k");
    let data = image();
    let sig = sign(dir.path(), "k", &data, "debian-12 build 7", false);
    let r = root(&[pubkey.as_bytes()]);
    let c = Checker::new(&r, sig.as_bytes()).unwrap();
    assert!(c.signer().starts_with("minisign:"));
    let who = c.verify(Trickle(&data), NOW).unwrap();
    assert!(who.contains("debian-12 build 7"), "{who}");

    let mut bad = data.clone();
    bad[2 * 1024 * 1024 + 5] ^= 1;
    let e = c.verify(Trickle(&bad), NOW).unwrap_err().to_string();
    assert!(e.contains("does not match the signed bytes"), "{e}");
    // Cut short is as wrong as changed.
    assert!(c.verify(&data[..data.len() - 1], NOW).is_err());
}

#[test]
fn a_legacy_minisign_signature_is_refused_up_front_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let pubkey = keypair(dir.path(), "k");
    let sig = sign(dir.path(), "k", b"small", "c", true);
    let e = Checker::new(&root(&[pubkey.as_bytes()]), sig.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("legacy") && e.contains("prehashed"), "{e}");
}

#[test]
fn a_signature_by_a_key_outside_the_set_is_refused_before_any_byte() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = keypair(dir.path(), "trusted");
    keypair(dir.path(), "other");
    let sig = sign(dir.path(), "other", b"x", "c", false);
    let e = Checker::new(&root(&[trusted.as_bytes()]), sig.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not in the trust root"), "{e}");
    let e = Checker::new(&root(&[trusted.as_bytes()]), b"garbage")
        .unwrap_err()
        .to_string();
    assert!(e.contains("OpenPGP"), "{e}");
}

#[test]
fn an_openpgp_signature_by_a_subkey_checks_a_stream() {
    let gpg = Gpg::new();
    let fpr = gpg.key("images@example.org", "ed25519", "cert", "never");
    gpg.run(&["--quick-add-key", &fpr, "ed25519", "sign", "never"]);
    let cert = gpg.export("images@example.org", true);
    let data = image();
    let sig = gpg.sign("images@example.org", &data, false, "SHA256");
    let dir = tempfile::tempdir().unwrap();
    assert!(sqv_accepts(dir.path(), &cert, &sig, &data));
    // A minisign key beside it does not confuse the choice.
    let mdir = tempfile::tempdir().unwrap();
    let mkey = keypair(mdir.path(), "m");
    let r = root(&[mkey.as_bytes(), &cert]);
    let c = Checker::new(&r, &sig).unwrap();
    assert_eq!(c.signer(), format!("openpgp:{fpr}"));
    let who = c.verify(Trickle(&data), NOW).unwrap();
    assert!(who.starts_with("openpgp:"), "{who}");
    assert_ne!(who, format!("openpgp:{fpr}"), "the subkey signed: {who}");

    let mut bad = data.clone();
    bad[17] ^= 0x80;
    let e = c.verify(Trickle(&bad), NOW).unwrap_err().to_string();
    assert!(e.contains("does not match"), "{e}");
}
