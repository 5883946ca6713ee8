//! tang, tpm2 and sss JWEs against clevis, tang and swtpm, both directions; and the
//! precise errors of each failure.

use super::*;
use imprint_tests::server::Server;
use serde_json::{json, Value};
use std::time::Instant;

/// The JSON with every string/number replaced: the shape two headers must share.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        _ => Value::Null,
    }
}

#[test]
fn tang_jwe_matches_clevis_and_decrypts_both_ways() {
    let tang = TangServer::start();
    let ours = bind_with(
        &ctx(None),
        &Pin {
            tang: vec![tang_pin(&tang)],
            ..Default::default()
        },
        b"imprint->clevis",
    )
    .unwrap();
    assert_eq!(ours.thumbprints_used, vec![tang.thumbprint()]);
    assert_eq!(clevis_decrypt(&ours.jwe, None).unwrap(), b"imprint->clevis");

    let cfg = json!({"url": tang.url(), "thp": tang.thumbprint()}).to_string();
    let theirs = clevis_encrypt("tang", &cfg, b"clevis->imprint", None);
    assert_eq!(
        &unbind_with(&ctx(None), &theirs).unwrap()[..],
        b"clevis->imprint"
    );

    // Same header members, same embedded advertisement, url and exchange key id.
    let (h1, h2) = (ours.jwe.header().unwrap(), theirs.header().unwrap());
    assert_eq!(shape(&h1), shape(&h2), "\nours:   {h1}\nclevis: {h2}");
    assert_eq!(h1["clevis"], h2["clevis"]);
    assert_eq!(h1["kid"], json!(tang.key_thumbprint("ECMR")));
    assert_eq!((&h1["alg"], &h1["enc"]), (&h2["alg"], &h2["enc"]));
}

#[test]
fn tang_trust_on_first_use_reports_the_thumbprint_and_is_opt_in() {
    let tang = TangServer::start();
    let mut pin = TangConfig {
        url: tang.url(),
        thumbprint: None,
        trust_on_first_use: false,
    };
    let e = tang::bind(&pin, b"x", ctx(None).tang_retry).unwrap_err();
    assert!(matches!(e, tang::TangError::NoThumbprint { .. }), "{e}");
    pin.trust_on_first_use = true;
    let (jwe, thp) = tang::bind(&pin, b"tofu", ctx(None).tang_retry).unwrap();
    assert_eq!(thp, tang.thumbprint());
    assert_eq!(clevis_decrypt(&jwe, None).unwrap(), b"tofu");
}

#[test]
fn tang_wrong_thumbprint_lists_the_servers_keys() {
    let tang = TangServer::start();
    let pin = TangConfig {
        url: tang.url(),
        thumbprint: Some("Qm9ndXMgdGh1bWJwcmludCBvZiBhIHNpZ25pbmcga2V5".into()),
        trust_on_first_use: false,
    };
    let e = tang::bind(&pin, b"x", ctx(None).tang_retry).unwrap_err();
    match &e {
        tang::TangError::ThumbprintMismatch { found, .. } => {
            assert_eq!(found, &vec![tang.thumbprint()])
        }
        other => panic!("expected ThumbprintMismatch, got {other}"),
    }
}

#[test]
fn unsigned_and_badly_signed_advertisements_are_refused() {
    let tang = TangServer::start();
    let adv: Value = serde_json::from_slice(&tang.adv()).unwrap();
    let server = Server::start();
    let pin = TangConfig {
        url: server.url(""),
        thumbprint: Some(tang.thumbprint()),
        trust_on_first_use: false,
    };
    let path = format!("/adv/{}", tang.thumbprint());

    server.serve_bytes(
        &path,
        json!({"payload": adv["payload"]}).to_string().into_bytes(),
    );
    let e = tang::bind(&pin, b"x", ctx(None).tang_retry).unwrap_err();
    assert!(matches!(e, tang::TangError::Unsigned { .. }), "{e}");

    // One byte of the signature changed.
    let mut sig = jose::unb64(adv["signature"].as_str().unwrap(), "sig").unwrap();
    sig[40] ^= 0x01;
    let mut bad = adv.clone();
    bad["signature"] = json!(jose::b64(&sig));
    server.serve_bytes(&path, bad.to_string().into_bytes());
    let e = tang::bind(&pin, b"x", ctx(None).tang_retry).unwrap_err();
    assert!(
        matches!(&e, tang::TangError::BadSignature { thumbprint, .. } if *thumbprint == tang.thumbprint()),
        "{e}"
    );

    // The genuine bytes served by the same fake server pass: the refusals were the signature's doing.
    server.serve_bytes(&path, tang.adv());
    tang::bind(&pin, b"x", ctx(None).tang_retry).unwrap();
}

#[test]
fn unreachable_tang_gives_up_after_bounded_retries() {
    let port = imprint_tests::tang::free_port();
    let pin = TangConfig {
        url: format!("http://127.0.0.1:{port}"),
        thumbprint: Some("x".into()),
        trust_on_first_use: false,
    };
    let retry = Retry {
        attempts: 3,
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(150),
    };
    let start = Instant::now();
    let e = tang::bind(&pin, b"x", retry).unwrap_err();
    assert!(
        matches!(e, tang::TangError::Unreachable { attempts: 3, .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(20),
        "{took:?}"
    );
}

/// The TPM2B_PUBLIC prefix up to the policy: size, type, nameAlg, attributes, authPolicy.
fn public_prefix(jwe: &Jwe) -> Vec<u8> {
    let pubb = jose::unb64(
        jwe.header().unwrap()["clevis"]["tpm2"]["jwk_pub"]
            .as_str()
            .unwrap(),
        "pub",
    )
    .unwrap();
    let policy_len = u16::from_be_bytes([pubb[10], pubb[11]]) as usize;
    pubb[..12 + policy_len].to_vec()
}

#[test]
fn tpm2_without_and_with_pcr_policy_matches_clevis_both_ways() {
    let tpm = Swtpm::start();
    for (pcrs, cfg) in [
        (vec![], r#"{}"#),
        (vec![7], r#"{"pcr_bank":"sha256","pcr_ids":"7"}"#),
    ] {
        let pin = Pin {
            tpm2: Some(Tpm2Config {
                pcrs: pcrs.clone(),
                bank: PcrBank::Sha256,
            }),
            ..Default::default()
        };
        let ours = bind_with(&ctx(Some(&tpm)), &pin, b"imprint->clevis")
            .unwrap()
            .jwe;
        assert_eq!(
            clevis_decrypt(&ours, Some(&tpm)).unwrap(),
            b"imprint->clevis",
            "pcrs {pcrs:?}"
        );
        let theirs = clevis_encrypt("tpm2", cfg, b"clevis->imprint", Some(&tpm));
        assert_eq!(
            &unbind_with(&ctx(Some(&tpm)), &theirs).unwrap()[..],
            b"clevis->imprint",
            "pcrs {pcrs:?}"
        );
        let (h1, h2) = (ours.header().unwrap(), theirs.header().unwrap());
        assert_eq!(shape(&h1), shape(&h2), "\nours:   {h1}\nclevis: {h2}");
        // Same object type, name algorithm, attributes and (same PCR values) policy digest.
        assert_eq!(
            public_prefix(&ours),
            public_prefix(&theirs),
            "pcrs {pcrs:?}"
        );
    }
    // Debian's clevis defaults to the sha1 bank: imprint unseals that too.
    let theirs = clevis_encrypt("tpm2", r#"{"pcr_ids":"0,7"}"#, b"sha1 bank", Some(&tpm));
    assert_eq!(
        theirs.header().unwrap()["clevis"]["tpm2"]["pcr_bank"],
        "sha1"
    );
    assert_eq!(
        &unbind_with(&ctx(Some(&tpm)), &theirs).unwrap()[..],
        b"sha1 bank"
    );
}

#[test]
fn tpm2_pcr_change_after_sealing_is_a_policy_mismatch() {
    let tpm = Swtpm::start();
    let pin = Pin {
        tpm2: Some(Tpm2Config {
            pcrs: vec![7],
            bank: PcrBank::Sha256,
        }),
        ..Default::default()
    };
    let jwe = bind_with(&ctx(Some(&tpm)), &pin, b"sealed").unwrap().jwe;
    assert_eq!(&unbind_with(&ctx(Some(&tpm)), &jwe).unwrap()[..], b"sealed");
    tpm.extend_pcr(7);
    let e = unbind_with(&ctx(Some(&tpm)), &jwe).unwrap_err();
    assert!(
        matches!(&e, BindError::Tpm2(tpm2::Tpm2Error::PolicyMismatch { pcrs, bank }) if pcrs == "7" && bank == "sha256"),
        "{e}"
    );
    assert!(
        clevis_decrypt(&jwe, Some(&tpm)).is_err(),
        "clevis must refuse too"
    );
}

#[test]
fn tpm2_absent_or_another_machines_tpm_are_precise_errors() {
    let pin = Pin {
        tpm2: Some(Tpm2Config::default()),
        ..Default::default()
    };
    let e = bind_with(&ctx(None), &pin, b"x").unwrap_err();
    assert!(
        matches!(e, BindError::Tpm2(tpm2::Tpm2Error::NoTpm(_))),
        "{e}"
    );
    let closed = Context {
        tpm: TpmLocation::Tcp(([127, 0, 0, 1], imprint_tests::tang::free_port()).into()),
        ..ctx(None)
    };
    let e = bind_with(&closed, &pin, b"x").unwrap_err();
    assert!(
        matches!(e, BindError::Tpm2(tpm2::Tpm2Error::NoTpm(_))),
        "{e}"
    );

    let (a, b) = (Swtpm::start(), Swtpm::start());
    let jwe = bind_with(&ctx(Some(&a)), &pin, b"x").unwrap().jwe;
    let e = unbind_with(&ctx(Some(&b)), &jwe).unwrap_err();
    assert!(
        matches!(e, BindError::Tpm2(tpm2::Tpm2Error::WrongTpm(_))),
        "{e}"
    );
}

#[test]
fn sss_two_of_tang_and_tpm2_both_ways() {
    let (tang, tpm) = (TangServer::start(), Swtpm::start());
    let pin = Pin {
        tang: vec![tang_pin(&tang)],
        tpm2: Some(Tpm2Config::default()),
        threshold: 2,
    };
    let ours = bind_with(&ctx(Some(&tpm)), &pin, b"two of two")
        .unwrap()
        .jwe;
    let hdr = ours.header().unwrap();
    assert_eq!(
        (
            hdr["clevis"]["pin"].as_str(),
            hdr["clevis"]["sss"]["t"].as_u64()
        ),
        (Some("sss"), Some(2))
    );
    assert_eq!(clevis_decrypt(&ours, Some(&tpm)).unwrap(), b"two of two");
    assert_eq!(
        &unbind_with(&ctx(Some(&tpm)), &ours).unwrap()[..],
        b"two of two"
    );

    let cfg = json!({"t": 2, "pins": {"tang": [{"url": tang.url(), "thp": tang.thumbprint()}], "tpm2": {}}}).to_string();
    let theirs = clevis_encrypt("sss", &cfg, b"clevis sss", Some(&tpm));
    assert_eq!(
        &unbind_with(&ctx(Some(&tpm)), &theirs).unwrap()[..],
        b"clevis sss"
    );
    assert_eq!(
        shape(&hdr["clevis"]["sss"]["p"]),
        shape(&theirs.header().unwrap()["clevis"]["sss"]["p"])
    );

    // Without the TPM, one share is not enough.
    let e = unbind_with(&ctx(None), &ours).unwrap_err();
    assert!(
        matches!(
            e,
            BindError::Sss(sss::SssError::NotEnough { got: 1, t: 2, .. })
        ),
        "{e}"
    );
}

#[test]
fn sss_one_of_two_tangs_both_ways_and_survives_one_down() {
    let (mut a, b) = (TangServer::start(), TangServer::start());
    let pin = Pin {
        tang: vec![tang_pin(&a), tang_pin(&b)],
        tpm2: None,
        threshold: 1,
    };
    let ours = bind_with(&ctx(None), &pin, b"one of two").unwrap();
    assert_eq!(ours.thumbprints_used, vec![a.thumbprint(), b.thumbprint()]);
    assert_eq!(clevis_decrypt(&ours.jwe, None).unwrap(), b"one of two");

    let cfg = json!({"t": 1, "pins": {"tang": [{"url": a.url(), "thp": a.thumbprint()}, {"url": b.url(), "thp": b.thumbprint()}]}});
    let theirs = clevis_encrypt("sss", &cfg.to_string(), b"clevis one of two", None);
    // The first share's server is down: the second alone recovers the key.
    a.stop();
    assert_eq!(
        &unbind_with(&ctx(None), &theirs).unwrap()[..],
        b"clevis one of two"
    );
    assert_eq!(
        &unbind_with(&ctx(None), &ours.jwe).unwrap()[..],
        b"one of two"
    );
}
