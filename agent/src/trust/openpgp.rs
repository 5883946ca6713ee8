//! OpenPGP certificates and detached signatures (what `gpg --detach-sign` writes), read
//! with the pure-Rust rPGP crate.
//!
//! rPGP checks the cryptography; the policy is ours: a certificate's self-signatures must
//! verify, a revoked certificate is refused, the signing key (primary or subkey) must be
//! allowed to sign and not expired, and SHA-1/MD5 signatures are refused.

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::Signature as SigPacket;
use pgp::types::{KeyDetails, Timestamp, VerifyingKey};

pub mod message;

/// Why an OpenPGP certificate or signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenPgpError {
    /// The certificate could not be read or its self-signatures do not verify.
    #[error("not a usable OpenPGP certificate: {0}")]
    BadCertificate(String),
    /// The certificate carries a revocation.
    #[error("OpenPGP certificate {0} is revoked")]
    Revoked(String),
    /// The signature could not be read.
    #[error("not an OpenPGP detached signature: {0}")]
    BadSignature(String),
    /// No key of the certificate made the signature.
    #[error("OpenPGP signature by key {signer} was not made by certificate {cert}")]
    OtherKey {
        /// The issuer the signature names.
        signer: String,
        /// The certificate tried.
        cert: String,
    },
    /// The signature does not match the signed bytes.
    #[error(
        "the OpenPGP signature by {0} does not match the signed bytes (changed after signing?)"
    )]
    Mismatch(String),
    /// The signing key may not sign, or has expired.
    #[error("OpenPGP key {key} may not sign: {why}")]
    KeyNotUsable {
        /// The key's fingerprint.
        key: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The signature uses a broken hash.
    #[error("OpenPGP signature uses {0:?}, which is refused (SHA-256 or stronger is needed)")]
    WeakHash(HashAlgorithm),
}

/// An OpenPGP certificate (transferable public key) whose self-signatures verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    key: SignedPublicKey,
}

/// A parsed detached signature.
#[derive(Clone, Debug)]
pub struct Signature {
    sig: DetachedSignature,
}

impl Certificate {
    /// Reads a certificate, armored or binary (`gpg --export [--armor]`).
    pub fn parse(bytes: &[u8]) -> Result<Certificate, OpenPgpError> {
        let (key, _) = SignedPublicKey::from_reader_single(bytes)
            .map_err(|e| OpenPgpError::BadCertificate(e.to_string()))?;
        key.verify_bindings()
            .map_err(|e| OpenPgpError::BadCertificate(format!("self-signatures: {e}")))?;
        let cert = Certificate { key };
        if !cert.key.details.revocation_signatures.is_empty() {
            return Err(OpenPgpError::Revoked(cert.fingerprint()));
        }
        Ok(cert)
    }

    /// The primary key's fingerprint, upper-case hex as gpg prints it.
    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.key.primary_key.fingerprint())
    }

    /// Checks `sig` over `data` against the primary key and every signing subkey; returns
    /// the fingerprint of the key that made it.
    pub fn verify(&self, sig: &Signature, data: &[u8], now: u32) -> Result<String, OpenPgpError> {
        let packet = sig.checked_hash()?;
        if let Some(found) = try_key(
            packet,
            &self.key.primary_key,
            &self.primary_sigs(),
            data,
            now,
        ) {
            return found;
        }
        for sub in &self.key.public_subkeys {
            let bindings: Vec<&SigPacket> = sub.signatures.iter().collect();
            if let Some(found) = try_key(packet, &sub.key, &bindings, data, now) {
                return found;
            }
        }
        Err(OpenPgpError::OtherKey {
            signer: sig.issuer(),
            cert: self.fingerprint(),
        })
    }

    /// Like [`Certificate::verify`] over bytes read from `data` once, to its end: the
    /// signature must name its issuer (every current signer does), since a stream cannot
    /// be tried against one key after another.
    pub fn verify_stream<R: std::io::Read>(
        &self,
        sig: &Signature,
        data: R,
        now: u32,
    ) -> Result<String, OpenPgpError> {
        let packet = sig.checked_hash()?;
        if packet.issuer_fingerprint().is_empty() && packet.issuer_key_id().is_empty() {
            return Err(OpenPgpError::BadSignature(
                "it names no issuer key, so it cannot be checked while the file streams".into(),
            ));
        }
        if names(packet, &self.key.primary_key) {
            return check_key(
                packet,
                &self.key.primary_key,
                &self.primary_sigs(),
                data,
                now,
            );
        }
        for sub in &self.key.public_subkeys {
            if names(packet, &sub.key) {
                let bindings: Vec<&SigPacket> = sub.signatures.iter().collect();
                return check_key(packet, &sub.key, &bindings, data, now);
            }
        }
        Err(OpenPgpError::OtherKey {
            signer: sig.issuer(),
            cert: self.fingerprint(),
        })
    }

    /// Whether the signature names the primary key or a subkey of this certificate as
    /// its issuer (one that names no issuer names every key).
    pub fn names_signer_of(&self, sig: &Signature) -> bool {
        let packet = &sig.sig.signature;
        names(packet, &self.key.primary_key)
            || self
                .key
                .public_subkeys
                .iter()
                .any(|s| names(packet, &s.key))
    }

    /// The primary key's self-signatures (user id bindings and direct-key signatures).
    fn primary_sigs(&self) -> Vec<&SigPacket> {
        self.key
            .details
            .users
            .iter()
            .flat_map(|u| u.signatures.iter())
            .chain(self.key.details.direct_signatures.iter())
            .collect()
    }
}

/// The outcome of checking `sig` with `key`, or None when the signature names another key.
fn try_key<K: VerifyingKey, R: std::io::Read>(
    sig: &SigPacket,
    key: &K,
    bindings: &[&SigPacket],
    data: R,
    now: u32,
) -> Option<Result<String, OpenPgpError>> {
    if !names(sig, key) {
        return None;
    }
    Some(check_key(sig, key, bindings, data, now))
}

/// Checks `sig` with `key` over `data`, and that the key may sign at `now`.
fn check_key<K: VerifyingKey, R: std::io::Read>(
    sig: &SigPacket,
    key: &K,
    bindings: &[&SigPacket],
    data: R,
    now: u32,
) -> Result<String, OpenPgpError> {
    let fpr = format!("{:X}", key.fingerprint());
    if sig.verify(key, data).is_err() {
        return Err(OpenPgpError::Mismatch(fpr));
    }
    usable_for_signing(bindings, key.created_at(), now)
        .map(|()| fpr.clone())
        .map_err(|why| OpenPgpError::KeyNotUsable { key: fpr, why })
}

/// Whether the signature names `key` as its issuer (by fingerprint, else by key id; a
/// signature naming no issuer is tried with every key).
fn names<K: KeyDetails>(sig: &SigPacket, key: &K) -> bool {
    let fprs = sig.issuer_fingerprint();
    if !fprs.is_empty() {
        return fprs.iter().any(|f| **f == key.fingerprint());
    }
    let ids = sig.issuer_key_id();
    ids.is_empty() || ids.iter().any(|k| **k == key.legacy_key_id())
}

impl Signature {
    /// Reads a detached signature, armored (`.asc`) or binary (`.sig`).
    pub fn parse(bytes: &[u8]) -> Result<Signature, OpenPgpError> {
        let (sig, _) = DetachedSignature::from_reader_single(bytes)
            .map_err(|e| OpenPgpError::BadSignature(e.to_string()))?;
        Ok(Signature { sig })
    }

    /// The issuer the signature names, for messages: its fingerprint, else its key id.
    pub fn issuer(&self) -> String {
        let packet = &self.sig.signature;
        packet
            .issuer_fingerprint()
            .first()
            .map(|f| format!("{f:X}"))
            .or_else(|| {
                packet
                    .issuer_key_id()
                    .first()
                    .map(|k| hex::encode_upper(k.as_ref()))
            })
            .unwrap_or_else(|| "(unnamed)".into())
    }

    /// The signature packet, refused when its hash is broken.
    fn checked_hash(&self) -> Result<&SigPacket, OpenPgpError> {
        let packet = &self.sig.signature;
        match packet.hash_alg() {
            Some(HashAlgorithm::Sha1 | HashAlgorithm::Md5 | HashAlgorithm::Ripemd160) | None => {
                Err(OpenPgpError::WeakHash(
                    packet.hash_alg().unwrap_or(HashAlgorithm::None),
                ))
            }
            _ => Ok(packet),
        }
    }
}

/// Whether the newest binding signature lets the key sign at `now` (unix seconds).
fn usable_for_signing(
    bindings: &[&SigPacket],
    created: Timestamp,
    now: u32,
) -> Result<(), &'static str> {
    let newest = bindings
        .iter()
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
        .ok_or("it carries no self-signature")?;
    let flags = newest.key_flags();
    // A self-signature without key flags is an old key that predates them: any use.
    let any_flags = flags.certify()
        || flags.sign()
        || flags.encrypt_comms()
        || flags.encrypt_storage()
        || flags.authentication();
    if any_flags && !flags.sign() {
        return Err("its key flags do not allow signing");
    }
    if let Some(valid_for) = newest.key_expiration_time() {
        let secs = u64::from(valid_for.as_secs());
        if secs > 0 && u64::from(created.as_secs()) + secs < u64::from(now) {
            return Err("it has expired");
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests;
