//! bind_luks on a LUKS2 file: one keyslot and one clevis token that the real tools
//! (cryptsetup, jose, clevis) turn back into a passphrase opening exactly that keyslot;
//! and nothing left behind when the binding does not verify.

use super::*;
use crate::binding::luks::{bind_luks_with, Existing, LuksBindError};
use imprint_tests::fixtures::sh;
use imprint_tests::server::Server;
use imprint_tests::tang::run_with_input;
use serde_json::Value;
use std::path::{Path, PathBuf};

const EXISTING: &[u8] = b"recovery passphrase";

/// A 32 MiB LUKS2 file formatted by cryptsetup (PBKDF2 for speed) with `EXISTING` in slot 0.
fn luks_file(dir: &Path) -> PathBuf {
    let f = dir.join("luks.img");
    std::fs::File::create(&f)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    run_with_input(
        "cryptsetup",
        &[
            "luksFormat",
            "--type",
            "luks2",
            "--batch-mode",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            "-",
            f.to_str().unwrap(),
        ],
        EXISTING,
        &[],
        dir,
    )
    .unwrap();
    f
}

/// The LUKS2 JSON metadata as cryptsetup dumps it.
fn metadata(f: &Path) -> Value {
    serde_json::from_str(&sh(
        "cryptsetup",
        &["luksDump", "--dump-json-metadata", f.to_str().unwrap()],
    ))
    .unwrap()
}

fn counts(f: &Path) -> (usize, usize) {
    let m = metadata(f);
    (
        m["keyslots"].as_object().unwrap().len(),
        m["tokens"].as_object().unwrap().len(),
    )
}

#[test]
fn bind_luks_adds_one_keyslot_and_a_clevis_token_the_real_tools_open() {
    let dir = tempfile::tempdir().unwrap();
    let f = luks_file(dir.path());
    let tang = TangServer::start();
    let pin = Pin {
        tang: vec![tang_pin(&tang)],
        ..Default::default()
    };
    let out = bind_luks_with(&ctx(None), &f, Existing::Passphrase(EXISTING), &pin).unwrap();
    assert_eq!(out.thumbprints_used, vec![tang.thumbprint()]);
    assert_eq!(counts(&f), (2, 1));

    let m = metadata(&f);
    let slot = &m["keyslots"][out.keyslot.to_string()];
    assert_eq!(
        (
            slot["kdf"]["type"].as_str(),
            slot["kdf"]["iterations"].as_u64()
        ),
        (Some("pbkdf2"), Some(1000))
    );
    let token = &m["tokens"][out.token_id.to_string()];
    assert_eq!(token["type"], "clevis");
    assert_eq!(
        token["keyslots"],
        serde_json::json!([out.keyslot.to_string()])
    );

    // The deployed OS's path: token → compact JWE (jose) → clevis decrypt → passphrase.
    let exported = sh(
        "cryptsetup",
        &[
            "token",
            "export",
            "--token-id",
            &out.token_id.to_string(),
            f.to_str().unwrap(),
        ],
    );
    let exported: Value = serde_json::from_str(&exported).unwrap();
    let compact = run_with_input(
        "jose",
        &["jwe", "fmt", "-i-", "-c"],
        exported["jwe"].to_string().as_bytes(),
        &[],
        dir.path(),
    )
    .unwrap();
    let pass = clevis(&["decrypt"], &compact, &[]).unwrap();
    assert_eq!(pass.len(), 54, "clevis-style passphrase");
    let slot_arg = out.keyslot.to_string();
    let args = [
        "open",
        "--test-passphrase",
        "--key-slot",
        &slot_arg,
        "--key-file",
        "-",
        f.to_str().unwrap(),
    ];
    run_with_input("cryptsetup", &args, &pass, &[], dir.path()).unwrap();
    // The recovery passphrase still opens its own slot.
    run_with_input(
        "cryptsetup",
        &[
            "open",
            "--test-passphrase",
            "--key-slot",
            "0",
            "--key-file",
            "-",
            f.to_str().unwrap(),
        ],
        EXISTING,
        &[],
        dir.path(),
    )
    .unwrap();
}

#[test]
fn bind_luks_that_does_not_verify_leaves_the_header_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let f = luks_file(dir.path());
    let tang = TangServer::start();
    // A server that advertises the real tang's keys but cannot recover (/rec is 404).
    let fake = Server::start();
    fake.serve_bytes(&format!("/adv/{}", tang.thumbprint()), tang.adv());
    let pin = Pin {
        tang: vec![TangConfig {
            url: fake.url(""),
            ..tang_pin(&tang)
        }],
        ..Default::default()
    };
    let before = metadata(&f);
    let e = bind_luks_with(&ctx(None), &f, Existing::Passphrase(EXISTING), &pin).unwrap_err();
    assert!(matches!(e, LuksBindError::Verify { .. }), "{e}");
    let after = metadata(&f);
    assert_eq!(
        (after["keyslots"].clone(), after["tokens"].clone()),
        (before["keyslots"].clone(), before["tokens"].clone())
    );
}

#[test]
fn bind_luks_with_a_wrong_key_or_unreachable_tang_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = luks_file(dir.path());
    let tang = TangServer::start();
    let pin = Pin {
        tang: vec![tang_pin(&tang)],
        ..Default::default()
    };
    let e = bind_luks_with(&ctx(None), &f, Existing::Passphrase(b"wrong"), &pin).unwrap_err();
    assert!(matches!(e, LuksBindError::ExistingKey { .. }), "{e}");
    drop(tang);
    let e = bind_luks_with(&ctx(None), &f, Existing::Passphrase(EXISTING), &pin).unwrap_err();
    assert!(
        matches!(
            e,
            LuksBindError::Bind {
                source: BindError::Tang(tang::TangError::Unreachable { .. }),
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(counts(&f), (1, 0));
}

/// The agent binds right after formatting, with the volume key in hand and possibly no
/// passphrase keyslot at all: the volume key authorises the new keyslot; a wrong one
/// changes nothing.
#[test]
fn bind_luks_by_volume_key_adds_a_keyslot_the_real_tools_open() {
    let dir = tempfile::tempdir().unwrap();
    let key: Vec<u8> = (0..64u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let key_file = dir.path().join("vk");
    std::fs::write(&key_file, &key).unwrap();
    let f = dir.path().join("luks.img");
    std::fs::File::create(&f)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    run_with_input(
        "cryptsetup",
        &[
            "luksFormat",
            "--type",
            "luks2",
            "--batch-mode",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--volume-key-file",
            key_file.to_str().unwrap(),
            "--key-size",
            "512",
            "--key-file",
            "-",
            f.to_str().unwrap(),
        ],
        EXISTING,
        &[],
        dir.path(),
    )
    .unwrap();
    let tang = TangServer::start();
    let pin = Pin {
        tang: vec![tang_pin(&tang)],
        ..Default::default()
    };
    let mut wrong = key.clone();
    wrong[0] ^= 1;
    let e = bind_luks_with(&ctx(None), &f, Existing::VolumeKey(&wrong), &pin).unwrap_err();
    assert!(matches!(e, LuksBindError::ExistingKey { .. }), "{e}");
    assert_eq!(counts(&f), (1, 0), "a wrong volume key changed the header");
    let out = bind_luks_with(&ctx(None), &f, Existing::VolumeKey(&key), &pin).unwrap();
    assert_eq!(counts(&f), (2, 1));
    // The token's JWE, decrypted by clevis itself, opens the new keyslot.
    let token = sh(
        "cryptsetup",
        &[
            "token",
            "export",
            "--token-id",
            &out.token_id.to_string(),
            f.to_str().unwrap(),
        ],
    );
    let jwe: Value = serde_json::from_str(&token).unwrap();
    let compact = run_with_input(
        "jose",
        &["jwe", "fmt", "-i-", "-c"],
        jwe["jwe"].to_string().as_bytes(),
        &[],
        dir.path(),
    )
    .unwrap();
    let pass = clevis(&["decrypt"], &compact, &[]).unwrap();
    run_with_input(
        "cryptsetup",
        &[
            "open",
            "--test-passphrase",
            "--key-slot",
            &out.keyslot.to_string(),
            "--key-file",
            "-",
            f.to_str().unwrap(),
        ],
        &pass,
        &[],
        dir.path(),
    )
    .unwrap();
}
