//! minisign public keys and signatures (Ed25519), verified without the minisign tool.
//!
//! A public key is `"Ed"` ‖ key id (8) ‖ Ed25519 key (32), base64 on the line after an
//! `untrusted comment:`. A signature file has four lines: an untrusted comment, base64 of
//! algorithm (2) ‖ key id (8) ‖ signature (64), `trusted comment: <text>`, and base64 of
//! the global signature over signature ‖ text. Algorithm `ED` signs BLAKE2b-512 of the
//! file (minisign's default), `Ed` the file itself (`minisign -l`); both are accepted:
//! the legacy form is as strong for the small files it is used on, and refusing it would
//! only make operators re-sign.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signature as EdSignature, VerifyingKey};

/// Why a minisign key or signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MinisignError {
    /// The text is not a minisign public key.
    #[error("not a minisign public key: {0}")]
    BadKey(&'static str),
    /// The text is not a minisign signature file.
    #[error("not a minisign signature: {0}")]
    BadSignature(&'static str),
    /// The signature names another key than the one tried.
    #[error("signed by minisign key {signer}, not by key {key}")]
    OtherKey {
        /// Key id the signature names.
        signer: String,
        /// Key id of the key tried.
        key: String,
    },
    /// The signature does not match the signed bytes.
    #[error("the minisign signature does not match the signed bytes (changed after signing?)")]
    Mismatch,
    /// The trusted comment was changed after signing.
    #[error("the minisign trusted comment does not match its signature (changed after signing)")]
    CommentMismatch,
}

/// A minisign public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key_id: [u8; 8],
    key: VerifyingKey,
}

/// Which bytes the Ed25519 signature covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    /// BLAKE2b-512 of the file (`ED`, the default).
    Prehashed,
    /// The file itself (`Ed`, legacy).
    Legacy,
}

/// A parsed minisign signature file.
#[derive(Clone, Debug)]
pub struct Signature {
    algorithm: Algorithm,
    key_id: [u8; 8],
    signature: EdSignature,
    trusted_comment: String,
    global: EdSignature,
}

impl PublicKey {
    /// Reads a key as `minisign -G` writes it (`untrusted comment:` line, then base64),
    /// or the base64 line alone (what `minisign -P` takes).
    pub fn parse(text: &str) -> Result<PublicKey, MinisignError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or(MinisignError::BadKey("no base64 line"))?;
        let raw = STANDARD
            .decode(line)
            .map_err(|_| MinisignError::BadKey("the key line is not base64"))?;
        if raw.len() != 42 {
            return Err(MinisignError::BadKey("the key is not 42 bytes"));
        }
        if &raw[..2] != b"Ed" {
            return Err(MinisignError::BadKey("the key is not an Ed25519 key"));
        }
        let key_id: [u8; 8] = raw[2..10].try_into().expect("8 bytes");
        let bytes: [u8; 32] = raw[10..].try_into().expect("32 bytes");
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| MinisignError::BadKey("not a valid Ed25519 point"))?;
        Ok(PublicKey { key_id, key })
    }

    /// The key id as minisign prints it (hex of the 8 bytes, most significant first).
    pub fn key_id(&self) -> String {
        key_id_hex(&self.key_id)
    }

    /// Checks `sig` over `data` and returns the trusted comment.
    pub fn verify(&self, sig: &Signature, data: &[u8]) -> Result<String, MinisignError> {
        let mut v = self.verifier(sig)?;
        v.update(data);
        v.finish()
    }

    /// A verifier fed the signed bytes piece by piece (constant memory for `ED`; the
    /// legacy form keeps the bytes, so it is for small files only).
    pub fn verifier<'a>(&'a self, sig: &'a Signature) -> Result<StreamVerifier<'a>, MinisignError> {
        if sig.key_id != self.key_id {
            return Err(MinisignError::OtherKey {
                signer: key_id_hex(&sig.key_id),
                key: self.key_id(),
            });
        }
        let state = match sig.algorithm {
            Algorithm::Prehashed => Fed::Hash(Blake2b512::new()),
            Algorithm::Legacy => Fed::Bytes(Vec::new()),
        };
        Ok(StreamVerifier {
            key: self,
            sig,
            state,
        })
    }
}

/// What a [`StreamVerifier`] has been fed so far.
enum Fed {
    Hash(Blake2b512),
    Bytes(Vec<u8>),
}

/// Verifies a signature over bytes fed in pieces; see [`PublicKey::verifier`].
pub struct StreamVerifier<'a> {
    key: &'a PublicKey,
    sig: &'a Signature,
    state: Fed,
}

impl StreamVerifier<'_> {
    /// Feeds the next signed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            Fed::Hash(h) => h.update(data),
            Fed::Bytes(b) => b.extend_from_slice(data),
        }
    }

    /// Checks the signature and the trusted comment; returns the comment.
    pub fn finish(self) -> Result<String, MinisignError> {
        let message = match self.state {
            Fed::Hash(h) => h.finalize().to_vec(),
            Fed::Bytes(b) => b,
        };
        self.key
            .key
            .verify_strict(&message, &self.sig.signature)
            .map_err(|_| MinisignError::Mismatch)?;
        let mut global = self.sig.signature.to_bytes().to_vec();
        global.extend_from_slice(self.sig.trusted_comment.as_bytes());
        self.key
            .key
            .verify_strict(&global, &self.sig.global)
            .map_err(|_| MinisignError::CommentMismatch)?;
        Ok(self.sig.trusted_comment.clone())
    }
}

impl Signature {
    /// Reads a `.minisig` file.
    pub fn parse(text: &str) -> Result<Signature, MinisignError> {
        let mut lines = text.lines();
        let mut next = |what: &'static str| {
            lines
                .next()
                .map(|l| l.trim_end_matches('\r'))
                .ok_or(MinisignError::BadSignature(what))
        };
        let untrusted = next("it is empty")?;
        if !untrusted.starts_with("untrusted comment:") {
            return Err(MinisignError::BadSignature(
                "the first line is not an untrusted comment",
            ));
        }
        let raw = STANDARD
            .decode(next("no signature line")?.trim())
            .map_err(|_| MinisignError::BadSignature("the signature line is not base64"))?;
        if raw.len() != 74 {
            return Err(MinisignError::BadSignature("the signature is not 74 bytes"));
        }
        let algorithm = match &raw[..2] {
            b"ED" => Algorithm::Prehashed,
            b"Ed" => Algorithm::Legacy,
            _ => return Err(MinisignError::BadSignature("unknown signature algorithm")),
        };
        let trusted_comment = next("no trusted comment")?
            .strip_prefix("trusted comment: ")
            .ok_or(MinisignError::BadSignature(
                "the third line is not a trusted comment",
            ))?
            .to_string();
        let global = STANDARD
            .decode(next("no global signature")?.trim())
            .map_err(|_| MinisignError::BadSignature("the global signature is not base64"))?;
        let global: [u8; 64] = global
            .try_into()
            .map_err(|_| MinisignError::BadSignature("the global signature is not 64 bytes"))?;
        Ok(Signature {
            algorithm,
            key_id: raw[2..10].try_into().expect("8 bytes"),
            signature: EdSignature::from_bytes(&raw[10..74].try_into().expect("64 bytes")),
            trusted_comment,
            global: EdSignature::from_bytes(&global),
        })
    }

    /// The key id the signature names, as minisign prints it.
    pub fn key_id(&self) -> String {
        key_id_hex(&self.key_id)
    }

    /// Whether it signs the file's BLAKE2b-512 (`ED`, minisign's default) rather than the
    /// file itself (legacy `Ed`), so it can be checked in constant memory.
    pub fn is_prehashed(&self) -> bool {
        self.algorithm == Algorithm::Prehashed
    }
}

/// minisign prints key ids as the 8 bytes read little-endian, in hex without leading zeros.
fn key_id_hex(id: &[u8; 8]) -> String {
    format!("{:X}", u64::from_le_bytes(*id))
}

#[cfg(test)]
pub(super) mod tests;
