//! OpenPGP signed messages (RFC 4880 §11.3: [compressed →] one-pass signature →
//! literal data → signature), the form containers/image "simple signing" writes
//! (`skopeo copy --sign-by`, `skopeo standalone-sign`). The payload is handed out only
//! once its signature verified with a key of the given certificates: a caller never
//! parses bytes nobody vouched for.

use super::{names, usable_for_signing, Certificate, OpenPgpError};
use pgp::composed::Message;
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::Signature as SigPacket;
use pgp::types::VerifyingKey;
use std::io::Read;

/// The largest payload read: a simple-signing payload is a few hundred bytes.
pub const MAX_PAYLOAD: u64 = 64 * 1024;

/// A verified message: who signed it, and what they signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Fingerprint of the key (primary or subkey) that made the signature.
    pub signer: String,
    /// The literal data, verified.
    pub payload: Vec<u8>,
}

/// Why a message was not opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// Not an OpenPGP signed message, or one that cannot be read.
    #[error("not an OpenPGP signed message (damaged, or not a signature at all): {0}")]
    Unreadable(String),
    /// The signature names a key none of the certificates has.
    #[error("signed by key {signer}, which is not one of the allowed keys ({allowed})")]
    OtherKey {
        /// The issuer the signature names.
        signer: String,
        /// The allowed certificates' fingerprints.
        allowed: String,
    },
    /// The signature, or the key that made it, was refused.
    #[error(transparent)]
    Refused(#[from] OpenPgpError),
}

/// Opens the signed message `bytes` (binary, as skopeo writes it, or armored) with one
/// of `certs`, judging key expiry at `now` (unix seconds).
pub fn open(bytes: &[u8], certs: &[&Certificate], now: u32) -> Result<Opened, MessageError> {
    let bad = |e: &dyn std::fmt::Display| MessageError::Unreadable(e.to_string());
    let armored = bytes.starts_with(b"-----BEGIN PGP MESSAGE-----");
    let msg = if armored {
        Message::from_armor(bytes).map(|(m, _)| m)
    } else {
        Message::from_bytes(bytes)
    }
    .map_err(|e| bad(&e))?;
    let mut msg = msg.decompress().map_err(|e| bad(&e))?;
    if !msg.is_signed() {
        return Err(MessageError::Unreadable(
            "it carries no signature (a literal, compressed or encrypted message)".into(),
        ));
    }
    let mut payload = Vec::new();
    (&mut msg)
        .take(MAX_PAYLOAD + 1)
        .read_to_end(&mut payload)
        .map_err(|e| bad(&e))?;
    if payload.len() as u64 > MAX_PAYLOAD {
        return Err(MessageError::Unreadable(format!(
            "its payload is larger than {MAX_PAYLOAD} bytes"
        )));
    }
    let Message::Signed { reader, .. } = &msg else {
        return Err(MessageError::Unreadable("it carries no signature".into()));
    };
    if reader.num_signatures() != 1 {
        return Err(MessageError::Unreadable(format!(
            "it carries {} signatures; simple signing makes exactly one",
            reader.num_signatures()
        )));
    }
    let sig = reader
        .signature(0)
        .ok_or_else(|| MessageError::Unreadable("its signature packet is missing".into()))?
        .clone();
    if let Some(h @ (HashAlgorithm::Sha1 | HashAlgorithm::Md5 | HashAlgorithm::Ripemd160))
    | Some(h @ HashAlgorithm::None) = sig.hash_alg()
    {
        return Err(OpenPgpError::WeakHash(h).into());
    }
    for cert in certs {
        if let Some(result) = try_cert(&msg, &sig, cert, now) {
            return result.map(|signer| Opened {
                signer,
                payload: payload.clone(),
            });
        }
    }
    Err(MessageError::OtherKey {
        signer: issuer(&sig),
        allowed: certs
            .iter()
            .map(|c| format!("openpgp:{}", c.fingerprint()))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The message checked with the key of `cert` its signature names, if any.
fn try_cert(
    msg: &Message<'_>,
    sig: &SigPacket,
    cert: &Certificate,
    now: u32,
) -> Option<Result<String, MessageError>> {
    let primary = &cert.key.primary_key;
    if names(sig, primary) {
        return Some(verified(msg, primary, &cert.primary_sigs(), now));
    }
    cert.key
        .public_subkeys
        .iter()
        .find(|s| names(sig, &s.key))
        .map(|sub| {
            let bindings: Vec<&SigPacket> = sub.signatures.iter().collect();
            verified(msg, &sub.key, &bindings, now)
        })
}

/// The message's signature checked with `key`, and the key allowed to sign at `now`.
fn verified<K: VerifyingKey>(
    msg: &Message<'_>,
    key: &K,
    bindings: &[&SigPacket],
    now: u32,
) -> Result<String, MessageError> {
    let fpr = format!("{:X}", key.fingerprint());
    if msg.verify(key).is_err() {
        return Err(OpenPgpError::Mismatch(fpr).into());
    }
    // The signature holds; what remains is the key's own standing (flags, expiry).
    usable_for_signing(bindings, key.created_at(), now)
        .map(|()| fpr.clone())
        .map_err(|why| OpenPgpError::KeyNotUsable { key: fpr, why }.into())
}

/// The issuer a signature packet names, for messages.
fn issuer(sig: &SigPacket) -> String {
    sig.issuer_fingerprint()
        .first()
        .map(|f| format!("openpgp:{f:X}"))
        .or_else(|| {
            sig.issuer_key_id()
                .first()
                .map(|k| format!("openpgp:{}", hex::encode_upper(k.as_ref())))
        })
        .unwrap_or_else(|| "(unnamed)".into())
}

#[cfg(test)]
mod tests;
