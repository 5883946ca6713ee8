//! What imprint trusts: public keys baked into the boot medium, and the detached
//! signatures they verify: minisign (Ed25519) keys and OpenPGP certificates.

pub mod detached;
pub mod document;
pub mod minisign;
pub mod openpgp;
pub mod root;

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
    /// The OpenPGP signature could not be read or did not verify.
    #[error(transparent)]
    OpenPgp(#[from] openpgp::OpenPgpError),
    /// The signed bytes could not be read to their end.
    #[error("reading the signed bytes: {0}")]
    Read(String),
}

/// One trusted public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedKey {
    /// A minisign Ed25519 key.
    Minisign(minisign::PublicKey),
    /// An OpenPGP certificate (primary key and subkeys).
    OpenPgp(Box<openpgp::Certificate>),
}

impl TrustedKey {
    /// How the key is shown to operators: its kind and id.
    pub fn fingerprint(&self) -> String {
        match self {
            TrustedKey::Minisign(k) => format!("minisign:{}", k.key_id()),
            TrustedKey::OpenPgp(c) => format!("openpgp:{}", c.fingerprint()),
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

    /// Whether any key is an OpenPGP certificate (what registry signatures need).
    pub fn has_openpgp(&self) -> bool {
        self.keys
            .iter()
            .any(|k| matches!(k, TrustedKey::OpenPgp(_)))
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
            .filter_map(|k| match k {
                TrustedKey::Minisign(k) => Some(k),
                TrustedKey::OpenPgp(_) => None,
            })
            .find(|k| k.key_id() == sig.key_id())
            .ok_or_else(|| TrustError::Untrusted {
                signer: format!("minisign:{}", sig.key_id()),
                trusted: self.fingerprints().join(", "),
            })?;
        let comment = key.verify(&sig, data)?;
        Ok((format!("minisign:{}", key.key_id()), comment))
    }

    /// Opens an OpenPGP signed message (a registry image's "simple signing" signature)
    /// with one of the trusted OpenPGP certificates, judging key expiry at `now`.
    pub fn open_signed_message(
        &self,
        bytes: &[u8],
        now: u32,
    ) -> Result<openpgp::message::Opened, openpgp::message::MessageError> {
        let certs: Vec<&openpgp::Certificate> = self
            .keys
            .iter()
            .filter_map(|k| match k {
                TrustedKey::OpenPgp(c) => Some(c.as_ref()),
                TrustedKey::Minisign(_) => None,
            })
            .collect();
        openpgp::message::open(bytes, &certs, now)
    }

    /// Verifies an OpenPGP detached signature (binary or armored) over `data` by a trusted
    /// certificate, judging key expiry at `now` (unix seconds); returns the signing key's
    /// fingerprint.
    pub fn verify_openpgp(
        &self,
        data: &[u8],
        signature: &[u8],
        now: u32,
    ) -> Result<String, TrustError> {
        let sig = openpgp::Signature::parse(signature)?;
        let mut signer = None;
        for cert in self.keys.iter().filter_map(|k| match k {
            TrustedKey::OpenPgp(c) => Some(c),
            TrustedKey::Minisign(_) => None,
        }) {
            match cert.verify(&sig, data, now) {
                Err(openpgp::OpenPgpError::OtherKey { signer: s, .. }) => signer = Some(s),
                other => return Ok(other?),
            }
        }
        Err(TrustError::Untrusted {
            signer: format!("openpgp:{}", signer.unwrap_or_else(|| "(unknown)".into())),
            trusted: self.fingerprints().join(", "),
        })
    }
}
