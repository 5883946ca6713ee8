//! The slice of JOSE that clevis and tang speak: base64url, EC JWKs on P-521 and their
//! RFC 7638 thumbprints, ES512 JWS verification, and JWE with `enc` A256GCM (compact and
//! flattened serializations, `dir` and ECDH-ES key management with the Concat KDF).

use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p521::ecdsa::signature::Verifier;
use p521::elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
use serde_json::{json, Value};
use sha2::Digest;
use zeroize::Zeroizing;

/// A JOSE object that is malformed or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    #[error("{what} is not base64url without padding")]
    Base64 { what: String },
    #[error("{what} is not valid JSON: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Malformed(String),
    #[error("the key is not an EC P-521 key: {0}")]
    BadKey(String),
    #[error(
        "the JWE does not decrypt: wrong key or tampered ciphertext (AES-256-GCM tag mismatch)"
    )]
    Decrypt,
    #[error("reading random bytes from the kernel: {0}")]
    Random(String),
}

/// base64url without padding, as every JOSE member is encoded.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `what` names the field for the error.
pub fn unb64(s: &str, what: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| JoseError::Base64 {
        what: what.to_string(),
    })
}

/// Fills a buffer from the kernel's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), JoseError> {
    getrandom::fill(buf).map_err(|e| JoseError::Random(e.to_string()))
}

/// A JSON value parsed from a base64url member.
pub fn unb64_json(s: &str, what: &str) -> Result<Value, JoseError> {
    let raw = unb64(s, what)?;
    serde_json::from_slice(&raw).map_err(|source| JoseError::Json {
        what: what.to_string(),
        source,
    })
}

/// The hash of a JWK thumbprint (RFC 7638); jose names them S1, S256 ….
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThpAlg {
    S1,
    S256,
}

/// The RFC 7638 thumbprint of an EC JWK: the hash of `{"crv","kty","x","y"}`, sorted, compact.
pub fn thumbprint(jwk: &Value, alg: ThpAlg) -> Result<String, JoseError> {
    let member = |k: &str| {
        jwk.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| JoseError::BadKey(format!("member {k:?} missing")))
    };
    if member("kty")? != "EC" {
        return Err(JoseError::BadKey(format!("kty is {:?}", member("kty")?)));
    }
    // RFC 7638: the required members in lexicographic order, no whitespace; JSON-escaped.
    let q = |s: &str| Value::from(s).to_string();
    let canon = format!(
        r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
        q(member("crv")?),
        q(member("x")?),
        q(member("y")?)
    );
    Ok(match alg {
        ThpAlg::S1 => b64(&sha1::Sha1::digest(canon.as_bytes())),
        ThpAlg::S256 => b64(&sha2::Sha256::digest(canon.as_bytes())),
    })
}

/// Whether `jwk` has thumbprint `thp` in S256 or (clevis' fallback) S1.
pub fn thumbprint_matches(jwk: &Value, thp: &str) -> bool {
    [ThpAlg::S256, ThpAlg::S1]
        .iter()
        .any(|a| thumbprint(jwk, *a).is_ok_and(|t| t == thp))
}

/// Whether the JWK explicitly permits `op` (`key_ops`, or `use` as jose maps it).
pub fn permits(jwk: &Value, op: &str) -> bool {
    if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array) {
        return ops.iter().any(|o| o.as_str() == Some(op));
    }
    match jwk.get("use").and_then(Value::as_str) {
        Some("sig") => matches!(op, "sign" | "verify"),
        Some("enc") => matches!(
            op,
            "encrypt" | "decrypt" | "wrapKey" | "unwrapKey" | "deriveKey" | "deriveBits"
        ),
        _ => false,
    }
}

/// The P-521 public key of an EC JWK (`crv` P-521, 66-byte `x` and `y`).
pub fn ec_public(jwk: &Value) -> Result<p521::PublicKey, JoseError> {
    if jwk.get("kty").and_then(Value::as_str) != Some("EC")
        || jwk.get("crv").and_then(Value::as_str) != Some("P-521")
    {
        return Err(JoseError::BadKey(format!(
            "kty/crv are {}/{}",
            jwk["kty"], jwk["crv"]
        )));
    }
    let coord = |k: &str| -> Result<Vec<u8>, JoseError> {
        let v = unb64(jwk.get(k).and_then(Value::as_str).unwrap_or(""), k)?;
        if v.len() != 66 {
            return Err(JoseError::BadKey(format!(
                "{k} is {} bytes, P-521 needs 66",
                v.len()
            )));
        }
        Ok(v)
    };
    let mut sec1 = vec![4u8];
    sec1.extend(coord("x")?);
    sec1.extend(coord("y")?);
    let point = p521::Sec1Point::from_bytes(&sec1)
        .map_err(|_| JoseError::BadKey("not a SEC1 point".into()))?;
    Option::from(p521::PublicKey::from_sec1_point(&point))
        .ok_or_else(|| JoseError::BadKey("the point is not on P-521".into()))
}

/// The public EC JWK `{"crv","kty","x","y"}` of a P-521 point.
pub fn ec_jwk(point: &p521::AffinePoint) -> Value {
    let enc = point.to_sec1_point(false);
    let (x, y) = (enc.x().map(|x| b64(x)), enc.y().map(|y| b64(y)));
    json!({"crv": "P-521", "kty": "EC", "x": x.unwrap_or_default(), "y": y.unwrap_or_default()})
}

/// A fresh random P-521 secret scalar (rejection sampling over the kernel's CSPRNG).
pub fn random_p521_secret() -> Result<p521::SecretKey, JoseError> {
    let mut bytes = Zeroizing::new([0u8; 66]);
    // 1 - 2^-512 chance per draw of landing in [1, n); the bound only guards a broken RNG.
    for _ in 0..64 {
        random_bytes(&mut bytes[..])?;
        bytes[0] &= 0x01;
        if let Ok(k) = p521::SecretKey::from_slice(&bytes[..]) {
            return Ok(k);
        }
    }
    Err(JoseError::Random(
        "no valid P-521 scalar in 64 draws".into(),
    ))
}

/// Verifies one ES512 JWS signature (r‖s, 132 bytes) over `protected "." payload`.
pub fn es512_verify(
    key: &p521::PublicKey,
    protected_b64: &str,
    payload_b64: &str,
    sig_b64: &str,
) -> bool {
    let Ok(sig) = unb64(sig_b64, "signature") else {
        return false;
    };
    let Ok(sig) = p521::ecdsa::Signature::from_slice(&sig) else {
        return false;
    };
    let vk = p521::ecdsa::VerifyingKey::from(key);
    let input = format!("{protected_b64}.{payload_b64}");
    vk.verify(input.as_bytes(), &sig).is_ok()
}

/// The JWE Concat KDF (RFC 7518 §4.6.2) for direct ECDH-ES with `enc` A256GCM, no apu/apv.
pub fn concat_kdf_a256gcm(z: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = sha2::Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    for part in [&b"A256GCM"[..], b"", b""] {
        h.update((part.len() as u32).to_be_bytes());
        h.update(part);
    }
    h.update(256u32.to_be_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&h.finalize());
    out
}

/// A JWE with an empty `encrypted_key` (`dir` and direct ECDH-ES), as clevis writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwe {
    /// The protected header, base64url exactly as received (it is the AAD).
    pub protected: String,
    pub iv: String,
    pub ciphertext: String,
    pub tag: String,
}

impl Jwe {
    /// Encrypts `plaintext` with A256GCM under `cek`, the header given as JSON.
    pub fn seal(header: &Value, cek: &[u8; 32], plaintext: &[u8]) -> Result<Jwe, JoseError> {
        let protected = b64(header.to_string().as_bytes());
        let mut iv = [0u8; 12];
        random_bytes(&mut iv)?;
        let cipher = Aes256Gcm::new(cek.into());
        let mut buf = plaintext.to_vec();
        let tag = cipher
            .encrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(iv),
                protected.as_bytes(),
                buf.as_mut_slice().into(),
            )
            .map_err(|_| JoseError::Malformed("AES-GCM refused the plaintext length".into()))?;
        Ok(Jwe {
            protected,
            iv: b64(&iv),
            ciphertext: b64(&buf),
            tag: b64(&tag),
        })
    }

    /// Decrypts with `cek`; the AAD is the protected header exactly as stored.
    pub fn open(&self, cek: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>, JoseError> {
        let iv: [u8; 12] = unb64(&self.iv, "JWE iv")?
            .try_into()
            .map_err(|_| JoseError::Malformed("JWE iv is not 12 bytes".into()))?;
        let tag: [u8; 16] = unb64(&self.tag, "JWE tag")?
            .try_into()
            .map_err(|_| JoseError::Malformed("JWE tag is not 16 bytes".into()))?;
        let mut buf = Zeroizing::new(unb64(&self.ciphertext, "JWE ciphertext")?);
        Aes256Gcm::new(cek.into())
            .decrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(iv),
                self.protected.as_bytes(),
                buf.as_mut_slice().into(),
                &Tag::<Aes256Gcm>::from(tag),
            )
            .map_err(|_| JoseError::Decrypt)?;
        Ok(buf)
    }

    /// The decoded protected header.
    pub fn header(&self) -> Result<Value, JoseError> {
        unb64_json(&self.protected, "JWE protected header")
    }

    /// Compact serialization `protected..iv.ciphertext.tag` (what `clevis decrypt` reads).
    pub fn to_compact(&self) -> String {
        format!(
            "{}..{}.{}.{}",
            self.protected, self.iv, self.ciphertext, self.tag
        )
    }

    /// Parses the compact serialization; the encrypted key must be empty.
    pub fn from_compact(s: &str) -> Result<Jwe, JoseError> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        if parts.len() != 5 {
            return Err(JoseError::Malformed(format!(
                "a compact JWE has 5 parts, this one has {}",
                parts.len()
            )));
        }
        if !parts[1].is_empty() {
            return Err(JoseError::Malformed(
                "the JWE has an encrypted key; clevis pins use none".into(),
            ));
        }
        Ok(Jwe {
            protected: parts[0].into(),
            iv: parts[2].into(),
            ciphertext: parts[3].into(),
            tag: parts[4].into(),
        })
    }

    /// Flattened JSON serialization, as the LUKS2 clevis token holds it.
    pub fn to_flattened(&self) -> Value {
        json!({"protected": self.protected, "encrypted_key": "", "iv": self.iv, "ciphertext": self.ciphertext, "tag": self.tag})
    }

    /// Parses the flattened JSON serialization (the five string members clevis reads).
    pub fn from_flattened(v: &Value) -> Result<Jwe, JoseError> {
        let m = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    JoseError::Malformed(format!("the flattened JWE has no string member {k:?}"))
                })
        };
        if !m("encrypted_key")?.is_empty() {
            return Err(JoseError::Malformed(
                "the JWE has an encrypted key; clevis pins use none".into(),
            ));
        }
        Ok(Jwe {
            protected: m("protected")?,
            iv: m("iv")?,
            ciphertext: m("ciphertext")?,
            tag: m("tag")?,
        })
    }
}

/// The `oct` JWK clevis keeps a 32-byte A256GCM content key in (sorted, compact).
pub fn oct_jwk(cek: &[u8; 32]) -> Zeroizing<String> {
    Zeroizing::new(format!(
        r#"{{"alg":"A256GCM","k":"{}","key_ops":["encrypt","decrypt"],"kty":"oct"}}"#,
        b64(cek)
    ))
}

/// The 32-byte key of an `oct` JWK (what the tpm2 pin unseals).
pub fn oct_key(jwk_json: &[u8]) -> Result<Zeroizing<[u8; 32]>, JoseError> {
    let v: Zeroizing<Vec<u8>> = Zeroizing::new(jwk_json.to_vec());
    let jwk: Value = serde_json::from_slice(v.trim_ascii()).map_err(|source| JoseError::Json {
        what: "the unsealed JWK".into(),
        source,
    })?;
    let k = Zeroizing::new(unb64(
        jwk.get("k").and_then(Value::as_str).unwrap_or(""),
        "JWK k",
    )?);
    let mut out = Zeroizing::new([0u8; 32]);
    if k.len() != 32 {
        return Err(JoseError::Malformed(format!(
            "the unsealed key is {} bytes, A256GCM needs 32",
            k.len()
        )));
    }
    out.copy_from_slice(&k);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc7638_example_shape() {
        // The thumbprint hashes only crv/kty/x/y, sorted and compact, whatever else the key holds.
        let k =
            json!({"alg":"ES512","kty":"EC","crv":"P-521","x":"AA","y":"AQ","key_ops":["verify"]});
        let want = b64(&sha2::Sha256::digest(
            br#"{"crv":"P-521","kty":"EC","x":"AA","y":"AQ"}"#,
        ));
        assert_eq!(thumbprint(&k, ThpAlg::S256).unwrap(), want);
        assert_eq!(want.len(), 43);
        assert_eq!(thumbprint(&k, ThpAlg::S1).unwrap().len(), 27);
        assert!(thumbprint_matches(&k, &thumbprint(&k, ThpAlg::S1).unwrap()));
        assert!(!thumbprint_matches(&k, "nope"));
    }

    #[test]
    fn compact_and_flattened_round_trip_and_decrypt() {
        let cek = [7u8; 32];
        let jwe = Jwe::seal(&json!({"alg":"dir","enc":"A256GCM"}), &cek, b"secret").unwrap();
        let compact = jwe.to_compact();
        assert_eq!(compact.split('.').nth(1), Some(""));
        let back = Jwe::from_compact(&compact).unwrap();
        assert_eq!(back, Jwe::from_flattened(&jwe.to_flattened()).unwrap());
        assert_eq!(&back.open(&cek).unwrap()[..], b"secret");
        assert!(matches!(back.open(&[8u8; 32]), Err(JoseError::Decrypt)));
        // The header is authenticated: changing it breaks decryption.
        let mut tampered = back.clone();
        tampered.protected = b64(br#"{"alg":"dir","enc":"A256GCM","x":1}"#);
        assert!(matches!(tampered.open(&cek), Err(JoseError::Decrypt)));
    }

    #[test]
    fn ec_jwk_round_trips_and_rejects_bad_points() {
        let k = random_p521_secret().unwrap();
        let jwk = ec_jwk(k.public_key().as_affine());
        assert_eq!(jwk["x"].as_str().unwrap().len(), 88);
        assert_eq!(ec_public(&jwk).unwrap(), k.public_key());
        let mut bad = jwk.clone();
        bad["y"] = json!(jwk["x"]);
        assert!(ec_public(&bad).is_err());
    }

    #[test]
    fn es512_verifies_only_the_signed_bytes() {
        use p521::ecdsa::signature::Signer;
        let k = random_p521_secret().unwrap();
        let sk = p521::ecdsa::SigningKey::from(p521::NonZeroScalar::from(&k));
        let sig: p521::ecdsa::Signature = sk.sign(b"aGVhZA.Ym9keQ");
        let sig_b64 = b64(&sig.to_bytes());
        assert!(es512_verify(&k.public_key(), "aGVhZA", "Ym9keQ", &sig_b64));
        assert!(!es512_verify(&k.public_key(), "aGVhZA", "Ym9keR", &sig_b64));
    }

    #[test]
    fn oct_jwk_round_trips() {
        let cek = [9u8; 32];
        let jwk = oct_jwk(&cek);
        assert_eq!(*oct_key(format!("{}\n", *jwk).as_bytes()).unwrap(), cek);
    }
}
