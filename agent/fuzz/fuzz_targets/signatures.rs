//! The signature parsers of the trust root: minisign public keys and `.minisig` files,
//! OpenPGP certificates and detached signatures (binary and armored), each parsed alone
//! and verified against each other. Every input must end in a value or an error, never
//! a panic.
//!
//! Input: `key \0 signature \0 data`; each part is also parsed on its own.
#![no_main]
use imprint::trust::{minisign, openpgp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut parts = input.splitn(3, |b| *b == 0);
    let key = parts.next().unwrap_or_default();
    let sig = parts.next().unwrap_or_default();
    let data = parts.next().unwrap_or_default();

    let _ = openpgp::Signature::parse(input);
    let _ = openpgp::Certificate::parse(input);
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = minisign::Signature::parse(text);
        let _ = minisign::PublicKey::parse(text);
    }

    if let (Ok(k), Ok(s)) = (std::str::from_utf8(key), std::str::from_utf8(sig)) {
        if let (Ok(k), Ok(s)) = (minisign::PublicKey::parse(k), minisign::Signature::parse(s)) {
            let _ = k.verify(&s, data);
            if let Ok(mut v) = k.verifier(&s) {
                v.update(data);
                let _ = v.finish();
            }
        }
    }
    if let (Ok(c), Ok(s)) = (
        openpgp::Certificate::parse(key),
        openpgp::Signature::parse(sig),
    ) {
        let _ = c.fingerprint();
        let _ = c.verify(&s, data, 1_800_000_000);
    }
});
