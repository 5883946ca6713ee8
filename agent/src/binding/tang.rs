//! The tang pin: fetch and verify the signed advertisement, encrypt with ECDH-ES against
//! the server's exchange (ECMR) key exactly as `clevis encrypt tang` does, and recover the
//! key with the McCallum-Relyea exchange (`POST /rec/{kid}`) as `clevis decrypt tang` does.

use super::jose::{self, JoseError, Jwe, ThpAlg};
use serde_json::{json, Value};
use std::time::Duration;
use zeroize::Zeroizing;

/// Why a tang binding or recovery failed.
#[derive(Debug, thiserror::Error)]
pub enum TangError {
    #[error(
        "tang server {url} unreachable after {attempts} attempt(s): {reason}; check the URL and that the network is up"
    )]
    Unreachable {
        url: String,
        attempts: u32,
        reason: String,
    },
    #[error("tang server answered {url} with HTTP {status}{hint}")]
    Http {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("the advertisement from {url} is malformed: {reason}")]
    Malformed { url: String, reason: String },
    #[error(
        "the advertisement from {url} is not signed by any key it advertises; refusing to trust it"
    )]
    Unsigned { url: String },
    #[error(
        "the advertisement from {url} has no valid signature by its signing key {thumbprint}; it was altered or the server is misconfigured"
    )]
    BadSignature { url: String, thumbprint: String },
    #[error(
        "no signing key of tang server {url} has thumbprint {wanted}; it advertises {found:?} (check with tang-show-keys)"
    )]
    ThumbprintMismatch {
        url: String,
        wanted: String,
        found: Vec<String>,
    },
    #[error(
        "no thumbprint configured for tang server {url}; set one, or opt into trust_on_first_use"
    )]
    NoThumbprint { url: String },
    #[error("the advertisement from {url} has no ECMR deriveKey (exchange) key")]
    NoExchangeKey { url: String },
    #[error("the JWE is not a clevis tang JWE: {0}")]
    NotTangJwe(String),
    #[error("tang server {url} sent an invalid recovery reply: {reason}")]
    BadReply { url: String, reason: String },
    #[error("building the HTTP client for tang: {0}")]
    Client(#[from] crate::http::ClientError),
    #[error(transparent)]
    Jose(#[from] JoseError),
}

/// How long to keep trying a tang server while the network comes up.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Total attempts (at least 1).
    pub attempts: u32,
    /// Wait after the first failure; doubled after each, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    /// About 45 s in all: long enough for DHCP, short enough to report a dead server.
    fn default() -> Self {
        Retry {
            attempts: 7,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// A tang server to bind to.
#[derive(Debug, Clone)]
pub struct TangConfig {
    pub url: String,
    /// S256 (or S1) thumbprint of a signing key of the server.
    pub thumbprint: Option<String>,
    /// Accept whatever signing key the server presents (the thumbprint is then reported).
    pub trust_on_first_use: bool,
}

/// A verified advertisement.
#[derive(Debug, Clone)]
pub struct Advertisement {
    /// The payload JWKSet `{"keys":[…]}`, embedded in every JWE.
    pub jwks: Value,
    /// S256 thumbprint of the signing key that was trusted.
    pub trusted_thumbprint: String,
}

fn malformed(url: &str, reason: impl Into<String>) -> TangError {
    TangError::Malformed {
        url: url.to_string(),
        reason: reason.into(),
    }
}

/// Verifies an advertisement JWS (flattened or general) received from `url`: every key in
/// the payload that permits `verify` must have a valid ES512 signature over the received
/// bytes, and `thumbprint` (if given) must name one of them.
pub fn verify_advertisement(
    url: &str,
    body: &[u8],
    thumbprint: Option<&str>,
) -> Result<Advertisement, TangError> {
    let jws: Value =
        serde_json::from_slice(body).map_err(|e| malformed(url, format!("not JSON: {e}")))?;
    let payload_b64 = jws
        .get("payload")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(url, "no payload"))?;
    let jwks = jose::unb64_json(payload_b64, "advertisement payload")?;
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(url, "the payload has no keys array"))?;
    let sigs: Vec<(&str, &str)> = match (jws.get("signatures"), jws.get("signature")) {
        (Some(Value::Array(list)), _) => list
            .iter()
            .map(|s| {
                (
                    s.get("protected").and_then(Value::as_str).unwrap_or(""),
                    s.get("signature").and_then(Value::as_str).unwrap_or(""),
                )
            })
            .collect(),
        (None, Some(Value::String(sig))) => vec![(
            jws.get("protected").and_then(Value::as_str).unwrap_or(""),
            sig.as_str(),
        )],
        _ => Vec::new(),
    };
    let verify_keys: Vec<&Value> = keys.iter().filter(|k| jose::permits(k, "verify")).collect();
    if sigs.is_empty() || verify_keys.is_empty() {
        return Err(TangError::Unsigned {
            url: url.to_string(),
        });
    }
    let mut found = Vec::new();
    for key in &verify_keys {
        let thp = jose::thumbprint(key, ThpAlg::S256)?;
        let public = jose::ec_public(key)?;
        let es512 =
            |p: &str| jose::unb64_json(p, "signature header").is_ok_and(|h| h["alg"] == "ES512");
        let signed = sigs
            .iter()
            .any(|(p, s)| es512(p) && jose::es512_verify(&public, p, payload_b64, s));
        if !signed {
            return Err(TangError::BadSignature {
                url: url.to_string(),
                thumbprint: thp,
            });
        }
        found.push(thp);
    }
    let trusted_thumbprint = match thumbprint {
        None => found[0].clone(),
        Some(want) => match verify_keys
            .iter()
            .position(|k| jose::thumbprint_matches(k, want))
        {
            Some(i) => found[i].clone(),
            None => {
                return Err(TangError::ThumbprintMismatch {
                    url: url.to_string(),
                    wanted: want.to_string(),
                    found,
                });
            }
        },
    };
    Ok(Advertisement {
        jwks,
        trusted_thumbprint,
    })
}

/// The first key of the advertisement that permits `deriveKey`, as clevis picks it.
fn exchange_key(url: &str, jwks: &Value) -> Result<Value, TangError> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let key = keys
        .iter()
        .find(|k| jose::permits(k, "deriveKey"))
        .ok_or_else(|| TangError::NoExchangeKey {
            url: url.to_string(),
        })?;
    let mut key = key.clone();
    if let Some(m) = key.as_object_mut() {
        m.remove("key_ops");
        m.remove("alg");
    }
    Ok(key)
}

/// Encrypts `plaintext` for a verified advertisement: the JWE `clevis encrypt tang` writes.
pub fn encrypt(url: &str, adv: &Advertisement, plaintext: &[u8]) -> Result<Jwe, TangError> {
    let server_jwk = exchange_key(url, &adv.jwks)?;
    let server = jose::ec_public(&server_jwk)?;
    let eph = jose::random_p521_secret()?;
    let shared =
        p521::elliptic_curve::ecdh::diffie_hellman(eph.to_nonzero_scalar(), server.as_affine());
    let cek = jose::concat_kdf_a256gcm(shared.raw_secret_bytes());
    let header = json!({
        "alg": "ECDH-ES",
        "enc": "A256GCM",
        "clevis": {"pin": "tang", "tang": {"url": url, "adv": adv.jwks}},
        "kid": jose::thumbprint(&server_jwk, ThpAlg::S256)?,
        "epk": jose::ec_jwk(eph.public_key().as_affine()),
    });
    Ok(Jwe::seal(&header, &cek, plaintext)?)
}

/// Fetches, verifies and encrypts: one tang binding. Returns the JWE and the S256
/// thumbprint of the signing key trusted.
pub fn bind(cfg: &TangConfig, plaintext: &[u8], retry: Retry) -> Result<(Jwe, String), TangError> {
    let adv = advertise(cfg, retry)?;
    if cfg.thumbprint.is_none() {
        crate::runner::log::warn(&format!(
            "tang {}: trusting signing key {} on first use (trust_on_first_use)",
            cfg.url, adv.trusted_thumbprint
        ));
    }
    let jwe = encrypt(&cfg.url, &adv, plaintext)?;
    Ok((jwe, adv.trusted_thumbprint))
}

/// Fetches the server's advertisement and verifies it: signed by its keys, one of them
/// the pinned thumbprint (any, with `trust_on_first_use`).
pub fn advertise(cfg: &TangConfig, retry: Retry) -> Result<Advertisement, TangError> {
    if cfg.thumbprint.is_none() && !cfg.trust_on_first_use {
        return Err(TangError::NoThumbprint {
            url: cfg.url.clone(),
        });
    }
    let base = cfg.url.trim_end_matches('/');
    let adv_url = match &cfg.thumbprint {
        Some(t) => format!("{base}/adv/{t}"),
        None => format!("{base}/adv"),
    };
    let body = match request(&adv_url, None, retry) {
        // tang answers 404 for a thumbprint it has no key for: fetch the plain
        // advertisement so the error can list the keys the server does have.
        Err(TangError::Http { status: 404, .. }) if cfg.thumbprint.is_some() => {
            request(&format!("{base}/adv"), None, retry)?
        }
        other => other?,
    };
    verify_advertisement(&cfg.url, &body, cfg.thumbprint.as_deref())
}

/// Recovers the plaintext of a clevis tang JWE with the server's help (the server sees
/// only a blinded point).
pub fn decrypt(jwe: &Jwe, retry: Retry) -> Result<Zeroizing<Vec<u8>>, TangError> {
    decrypt_with(jwe, |url, body| request(url, Some(body), retry))
}

/// [`decrypt`] with the recovery exchange given: `exchange(url, jwk)` POSTs the blinded
/// JWK to `url` and returns the reply's body. Everything read from the JWE and the reply
/// is untrusted: anything malformed is an error.
pub fn decrypt_with(
    jwe: &Jwe,
    exchange: impl FnOnce(&str, String) -> Result<Vec<u8>, TangError>,
) -> Result<Zeroizing<Vec<u8>>, TangError> {
    let hdr = jwe.header()?;
    let bad = |what: &str| TangError::NotTangJwe(format!("missing or invalid {what}"));
    let tang = &hdr["clevis"]["tang"];
    let url = tang["url"].as_str().ok_or_else(|| bad("clevis.tang.url"))?;
    let kid = hdr["kid"].as_str().ok_or_else(|| bad("kid"))?;
    let client_pub =
        jose::ec_public(&hdr["epk"]).map_err(|e| TangError::NotTangJwe(format!("epk: {e}")))?;
    let keys = tang["adv"]["keys"]
        .as_array()
        .ok_or_else(|| bad("clevis.tang.adv"))?;
    let server_jwk = keys
        .iter()
        .find(|k| jose::thumbprint_matches(k, kid))
        .ok_or_else(|| {
            TangError::NotTangJwe(format!("kid {kid} names no key of clevis.tang.adv"))
        })?;
    let server = jose::ec_public(server_jwk)?;

    // Blind the client point with an ephemeral one: X = C + E.
    let eph = jose::random_p521_secret()?;
    let x = (client_pub.to_projective() + eph.public_key().to_projective()).to_affine();
    let mut req = jose::ec_jwk(&x);
    req["alg"] = json!("ECMR");
    let rec_url = format!("{}/rec/{kid}", url.trim_end_matches('/'));
    let reply = exchange(&rec_url, req.to_string())?;
    let reply: Value = serde_json::from_slice(&reply).map_err(|e| TangError::BadReply {
        url: rec_url.clone(),
        reason: format!("not JSON: {e}"),
    })?;
    let y = jose::ec_public(&reply).map_err(|e| TangError::BadReply {
        url: rec_url.clone(),
        reason: e.to_string(),
    })?;
    // K = Y - e·S = s·(C + E) - e·s·G = s·C, the ECDH point of the encryption.
    let k =
        (y.to_projective() - server.to_projective() * eph.to_nonzero_scalar().as_ref()).to_affine();
    let k = p521::PublicKey::from_affine(k).map_err(|_| TangError::BadReply {
        url: rec_url,
        reason: "the recovered point is the identity".into(),
    })?;
    let k_jwk = jose::ec_jwk(k.as_affine());
    let z = Zeroizing::new(jose::unb64(
        k_jwk["x"].as_str().unwrap_or(""),
        "recovered x",
    )?);
    let cek = jose::concat_kdf_a256gcm(&z);
    Ok(jwe.open(&cek)?)
}

/// GET (no body) or POST (a JWK body) with bounded retries on transport errors and 5xx.
fn request(url: &str, body: Option<String>, retry: Retry) -> Result<Vec<u8>, TangError> {
    let client = crate::http::client(&crate::http::ClientOptions {
        connect_timeout: Some(Duration::from_secs(5)),
        read_timeout: Some(Duration::from_secs(15)),
        ..Default::default()
    })?;
    let mut delay = retry.first_delay;
    let attempts = retry.attempts.max(1);
    let mut reason = String::new();
    for attempt in 1..=attempts {
        let resp = match &body {
            None => client.get(url).send(),
            Some(b) => client
                .post(url)
                .header("Content-Type", "application/jwk+json")
                .body(b.clone())
                .send(),
        };
        match resp {
            Ok(r) if r.status().is_success() => match r.bytes() {
                Ok(b) => return Ok(b.to_vec()),
                Err(e) => reason = crate::http::describe(&e),
            },
            Ok(r) if r.status().is_server_error() => {
                reason = format!("HTTP {}", r.status().as_u16())
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let hint = match (status, body.is_some()) {
                    (404, false) => " (no signing key with that thumbprint: check the thumbprint)",
                    (404, true) => {
                        " (the server no longer has the exchange key this JWE was made for)"
                    }
                    _ => "",
                };
                return Err(TangError::Http {
                    url: url.to_string(),
                    status,
                    hint,
                });
            }
            Err(e) => reason = crate::http::describe(&e),
        }
        if attempt < attempts {
            crate::runner::log::warn(&format!(
                "tang {url}: {reason}; retrying in {} ms",
                delay.as_millis()
            ));
            std::thread::sleep(delay);
            delay = (delay * 2).min(retry.max_delay);
        }
    }
    Err(TangError::Unreachable {
        url: url.to_string(),
        attempts,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p521::ecdsa::signature::Signer;

    fn key_jwk(k: &p521::SecretKey, alg: &str, op: &str) -> Value {
        let mut j = jose::ec_jwk(k.public_key().as_affine());
        j["alg"] = json!(alg);
        j["key_ops"] = json!([op]);
        j
    }

    /// A tang-like advertisement signed by `signers`, in flattened or general form.
    fn advertisement(keys: &[Value], signers: &[&p521::SecretKey]) -> Vec<u8> {
        let payload = jose::b64(json!({ "keys": keys }).to_string().as_bytes());
        let protected = jose::b64(br#"{"alg":"ES512","cty":"jwk-set+json"}"#);
        let sign = |k: &p521::SecretKey| {
            let sk = p521::ecdsa::SigningKey::from(p521::NonZeroScalar::from(k));
            let sig: p521::ecdsa::Signature = sk.sign(format!("{protected}.{payload}").as_bytes());
            json!({"protected": protected, "signature": jose::b64(&sig.to_bytes())})
        };
        let v = match signers {
            [one] => {
                let mut s = sign(one);
                s["payload"] = json!(payload);
                s
            }
            many => {
                json!({"payload": payload, "signatures": many.iter().map(|k| sign(k)).collect::<Vec<_>>()})
            }
        };
        v.to_string().into_bytes()
    }

    #[test]
    fn flattened_and_general_advertisements_verify_and_pin_the_thumbprint() {
        let (sig1, sig2, exc) = (
            jose::random_p521_secret().unwrap(),
            jose::random_p521_secret().unwrap(),
            jose::random_p521_secret().unwrap(),
        );
        let k1 = key_jwk(&sig1, "ES512", "verify");
        let k2 = key_jwk(&sig2, "ES512", "verify");
        let kx = key_jwk(&exc, "ECMR", "deriveKey");
        let thp1 = jose::thumbprint(&k1, ThpAlg::S256).unwrap();

        let flat = advertisement(&[k1.clone(), kx.clone()], &[&sig1]);
        let adv = verify_advertisement("u", &flat, Some(&thp1)).unwrap();
        assert_eq!(adv.trusted_thumbprint, thp1);
        // S1 thumbprints are accepted too and reported as S256.
        let s1 = jose::thumbprint(&k1, ThpAlg::S1).unwrap();
        assert_eq!(
            verify_advertisement("u", &flat, Some(&s1))
                .unwrap()
                .trusted_thumbprint,
            thp1
        );

        let general = advertisement(&[k1.clone(), k2.clone(), kx.clone()], &[&sig1, &sig2]);
        let thp2 = jose::thumbprint(&k2, ThpAlg::S256).unwrap();
        assert_eq!(
            verify_advertisement("u", &general, Some(&thp2))
                .unwrap()
                .trusted_thumbprint,
            thp2
        );

        // A verify key without its signature: rejected, naming the key.
        let missing = advertisement(&[k1.clone(), k2.clone(), kx.clone()], &[&sig1]);
        assert!(
            matches!(verify_advertisement("u", &missing, None), Err(TangError::BadSignature { thumbprint, .. }) if thumbprint == thp2)
        );
        assert!(matches!(
            verify_advertisement("u", &flat, Some("AAAA")),
            Err(TangError::ThumbprintMismatch { found, .. }) if found == vec![thp1.clone()]
        ));
    }

    #[test]
    fn unsigned_and_tampered_advertisements_are_rejected() {
        let (sig, exc) = (
            jose::random_p521_secret().unwrap(),
            jose::random_p521_secret().unwrap(),
        );
        let keys = [
            key_jwk(&sig, "ES512", "verify"),
            key_jwk(&exc, "ECMR", "deriveKey"),
        ];
        let mut v: Value = serde_json::from_slice(&advertisement(&keys, &[&sig])).unwrap();
        let unsigned = json!({"payload": v["payload"]}).to_string();
        assert!(matches!(
            verify_advertisement("u", unsigned.as_bytes(), None),
            Err(TangError::Unsigned { .. })
        ));
        // Flip one bit of the signature.
        let mut raw = jose::unb64(v["signature"].as_str().unwrap(), "s").unwrap();
        raw[10] ^= 1;
        v["signature"] = json!(jose::b64(&raw));
        assert!(matches!(
            verify_advertisement("u", v.to_string().as_bytes(), None),
            Err(TangError::BadSignature { .. })
        ));
    }

    #[test]
    fn decrypt_with_recovers_through_the_exchange_and_rejects_bad_replies() {
        let (sig, exc) = (
            jose::random_p521_secret().unwrap(),
            jose::random_p521_secret().unwrap(),
        );
        let keys = [
            key_jwk(&sig, "ES512", "verify"),
            key_jwk(&exc, "ECMR", "deriveKey"),
        ];
        let adv = verify_advertisement("u", &advertisement(&keys, &[&sig]), None).unwrap();
        let jwe = encrypt("http://t", &adv, b"payload").unwrap();
        // The server's side of McCallum-Relyea: Y = s·X.
        let out = decrypt_with(&jwe, |url, body| {
            assert!(url.starts_with("http://t/rec/"), "{url}");
            let x = jose::ec_public(&serde_json::from_str(&body).unwrap()).unwrap();
            let y = (x.to_projective() * exc.to_nonzero_scalar().as_ref()).to_affine();
            Ok(jose::ec_jwk(&y).to_string().into_bytes())
        })
        .unwrap();
        assert_eq!(&out[..], b"payload");
        let off_curve = br#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}"#;
        for reply in [&b"not json"[..], b"{}", off_curve] {
            let r = decrypt_with(&jwe, |_, _| Ok(reply.to_vec()));
            assert!(
                matches!(r, Err(TangError::BadReply { .. })),
                "{:?}",
                r.err()
            );
        }
        // Any other point on the curve: the key is wrong, and the tag says so.
        let other = jose::ec_jwk(sig.public_key().as_affine()).to_string();
        let r = decrypt_with(&jwe, |_, _| Ok(other.clone().into_bytes()));
        assert!(
            matches!(r, Err(TangError::Jose(JoseError::Decrypt))),
            "{:?}",
            r.err()
        );
    }

    #[test]
    fn encrypt_then_recover_by_hand_with_the_server_key() {
        let (sig, exc) = (
            jose::random_p521_secret().unwrap(),
            jose::random_p521_secret().unwrap(),
        );
        let keys = [
            key_jwk(&sig, "ES512", "verify"),
            key_jwk(&exc, "ECMR", "deriveKey"),
        ];
        let adv = verify_advertisement("u", &advertisement(&keys, &[&sig]), None).unwrap();
        let jwe = encrypt("http://t", &adv, b"payload").unwrap();
        let hdr = jwe.header().unwrap();
        assert_eq!(
            hdr["kid"],
            json!(jose::thumbprint(&keys[1], ThpAlg::S256).unwrap())
        );
        assert_eq!(hdr["clevis"]["tang"]["adv"], adv.jwks);
        // What the server's key alone derives: s·C.
        let c = jose::ec_public(&hdr["epk"]).unwrap();
        let shared =
            p521::elliptic_curve::ecdh::diffie_hellman(exc.to_nonzero_scalar(), c.as_affine());
        assert_eq!(
            &jwe.open(&jose::concat_kdf_a256gcm(shared.raw_secret_bytes()))
                .unwrap()[..],
            b"payload"
        );
    }
}
