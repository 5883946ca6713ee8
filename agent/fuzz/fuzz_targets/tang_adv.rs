//! What a binding's verification reads from outside: tang advertisements (flattened and
//! general JWS), clevis JWEs (compact, flattened, as in a LUKS2 token) and the decrypt
//! path of each pin with garbage in place of the tang server's reply and the sss shares.
//! Every input must end in a value or an error, never a panic.
//!
//! Input: `object [\0 reply]`; `object` is tried as an advertisement, a compact JWE, a
//! flattened JWE, a LUKS2 clevis token and a JWE's protected header in clear (so the
//! fuzzer mutates the header's JSON, not its base64); `reply` stands for the tang
//! server's answer.
#![no_main]
use imprint::binding::jose::{self, Jwe};
use imprint::binding::{sss, tang, tpm2, TpmLocation};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use zeroize::Zeroizing;

/// A thumbprint no key has: the pinned-thumbprint path runs to its end.
const SOME_THP: &str = "9_Id2VkkTBiFaGPqx3rt8-Oh4RnN7mKO3wbLjHsN2bU";

fn unbind_offline(jwe: &Jwe, reply: &[u8], depth: u32) {
    let Ok(hdr) = jwe.header() else { return };
    match hdr["clevis"]["pin"].as_str().unwrap_or("") {
        "tang" => {
            let _ = tang::decrypt_with(jwe, |_url, _jwk| Ok(reply.to_vec()));
        }
        // The header is read in full before the (missing) device is opened.
        "tpm2" => {
            let nowhere = TpmLocation::Device("/nonexistent/imprint-fuzz-tpm".into());
            let _ = tpm2::decrypt(&nowhere, jwe);
        }
        "sss" => {
            let Ok((t, p, children)) = sss::parse(&hdr) else { return };
            if depth < 3 {
                for child in children.iter().take(4) {
                    unbind_offline(child, reply, depth + 1);
                }
            }
            // Shares as children would return them: the reply cut into x‖y points.
            let shares: Vec<Zeroizing<Vec<u8>>> = reply
                .chunks(64)
                .take(t.min(32))
                .map(|c| Zeroizing::new(c.to_vec()))
                .collect();
            if let Ok(key) = sss::combine(&p, &shares) {
                let _ = jwe.open(&key);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let (object, reply) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let url = "http://tang.invalid";
    if let Ok(adv) = tang::verify_advertisement(url, object, None) {
        let _ = tang::encrypt(url, &adv, b"fuzz");
    }
    let _ = tang::verify_advertisement(url, object, Some(SOME_THP));

    let mut jwes = Vec::new();
    if let Ok(text) = std::str::from_utf8(object) {
        jwes.extend(Jwe::from_compact(text).ok());
    }
    if let Ok(v) = serde_json::from_slice::<Value>(object) {
        jwes.extend(Jwe::from_flattened(&v).ok());
        // A LUKS2 clevis token holds the flattened JWE under "jwe".
        jwes.extend(Jwe::from_flattened(&v["jwe"]).ok());
        let _ = jose::ec_public(&v);
        if v.is_object() {
            jwes.push(Jwe {
                protected: jose::b64(object),
                iv: "AAAAAAAAAAAAAAAA".into(),
                ciphertext: "AAAA".into(),
                tag: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            });
        }
    }
    for jwe in &jwes {
        unbind_offline(jwe, reply, 0);
    }
    let _ = jose::oct_key(object);
});
