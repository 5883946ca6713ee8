//! What imprint trusts: public keys baked into the boot medium, and the detached
//! signatures they verify. minisign (Ed25519) keys today; OpenPGP certificates slot in
//! as a second [`TrustedKey`] kind.

pub mod minisign;

/// Why a signature was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// No key of the trust root made the signature.
    #[error("signed by key {signer}, which is not in the trust root (trusted: {trusted})")]
    Untrusted {
        /// The key id the signature names.
        signer: String,
        /// The trusted keys' ids, comma-separated.
        trusted: String,
    },
    /// The signature or a key could not be read, or did not verify.
    #[error(transparent)]
    Minisign(#[from] minisign::MinisignError),
}

/// One trusted public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedKey {
    /// A minisign Ed25519 key.
    Minisign(minisign::PublicKey),
}

impl TrustedKey {
    /// How the key is shown to operators: its kind and id.
    pub fn fingerprint(&self) -> String {
        match self {
            TrustedKey::Minisign(k) => format!("minisign:{}", k.key_id()),
        }
    }
}

/// The keys in force; empty means nothing is authenticated.
#[derive(Clone, Debug, Default)]
pub struct TrustRoot {
    keys: Vec<TrustedKey>,
}

impl TrustRoot {
    /// A root holding `keys`.
    pub fn new(keys: Vec<TrustedKey>) -> TrustRoot {
        TrustRoot { keys }
    }

    /// Whether any key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys' fingerprints, as printed by `imprint disks` and `run`.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(TrustedKey::fingerprint).collect()
    }

    /// Verifies a minisign signature (the text of a `.minisig` file) over `data` by a
    /// trusted key; returns the signer's fingerprint and the trusted comment.
    pub fn verify_minisign(
        &self,
        data: &[u8],
        signature: &str,
    ) -> Result<(String, String), TrustError> {
        let sig = minisign::Signature::parse(signature)?;
        let key = self
            .keys
            .iter()
            .map(|TrustedKey::Minisign(k)| k)
            .find(|k| k.key_id() == sig.key_id())
            .ok_or_else(|| TrustError::Untrusted {
                signer: format!("minisign:{}", sig.key_id()),
                trusted: self.fingerprints().join(", "),
            })?;
        let comment = key.verify(&sig, data)?;
        Ok((format!("minisign:{}", key.key_id()), comment))
    }
}
