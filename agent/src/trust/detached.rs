//! A detached signature over a file too large to hold (an OS image), checked while the
//! file streams past. The signature is read and its key chosen from the trusted keys
//! before the first byte of the file is fetched, so an unreadable signature or one by an
//! untrusted key fails while every disk is still as it was; the file's bytes then go
//! through [`Checker::verify`] as a reader, in constant memory.

use super::{minisign, openpgp, TrustError, TrustRoot, TrustedKey};
use std::io::{self, Read};

/// A signature and the trusted key that names it, ready to check a stream.
#[derive(Debug)]
pub struct Checker {
    sig: Kind,
    /// The signer as operators see it (`minisign:<id>`, `openpgp:<fingerprint>`).
    signer: String,
}

#[derive(Debug)]
enum Kind {
    Minisign(Box<(minisign::Signature, minisign::PublicKey)>),
    OpenPgp(openpgp::Signature, Box<openpgp::Certificate>),
}

impl Checker {
    /// Reads `bytes` (a `.minisig` file, or an OpenPGP detached signature, armored or
    /// binary) and finds the key of `root` that made it.
    pub fn new(root: &TrustRoot, bytes: &[u8]) -> Result<Checker, TrustError> {
        let text = std::str::from_utf8(bytes).ok();
        if let Some(t) = text.filter(|t| t.trim_start().starts_with("untrusted comment:")) {
            let sig = minisign::Signature::parse(t)?;
            if !sig.is_prehashed() {
                return Err(TrustError::Minisign(minisign::MinisignError::BadSignature(
                    "it is a legacy signature (minisign -l), which signs the whole file at once; \
                     sign large files with minisign's default (prehashed)",
                )));
            }
            let key = root
                .minisign_keys()
                .find(|k| k.key_id() == sig.key_id())
                .ok_or_else(|| root.untrusted(format!("minisign:{}", sig.key_id())))?
                .clone();
            let signer = format!("minisign:{}", key.key_id());
            return Ok(Checker {
                sig: Kind::Minisign(Box::new((sig, key))),
                signer,
            });
        }
        let sig = openpgp::Signature::parse(bytes)?;
        let cert = root
            .openpgp_certificates()
            .find(|c| c.names_signer_of(&sig))
            .ok_or_else(|| root.untrusted(format!("openpgp:{}", sig.issuer())))?
            .clone();
        let signer = format!("openpgp:{}", cert.fingerprint());
        Ok(Checker {
            sig: Kind::OpenPgp(sig, Box::new(cert)),
            signer,
        })
    }

    /// The key that must have made the signature.
    pub fn signer(&self) -> &str {
        &self.signer
    }

    /// Reads `data` to its end and checks the signature over it, judging OpenPGP key
    /// expiry at `now` (unix seconds). Returns who signed, with minisign's trusted comment.
    pub fn verify<R: Read>(&self, mut data: R, now: u32) -> Result<String, TrustError> {
        match &self.sig {
            Kind::Minisign(pair) => {
                let (sig, key) = pair.as_ref();
                let mut v = key.verifier(sig)?;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match data.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => v.update(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(TrustError::Read(e.to_string())),
                    }
                }
                let comment = v.finish()?;
                Ok(format!("{} ({comment})", self.signer))
            }
            Kind::OpenPgp(sig, cert) => Ok(cert
                .verify_stream(sig, data, now)
                .map(|fpr| format!("openpgp:{fpr}"))?),
        }
    }
}

impl TrustRoot {
    fn minisign_keys(&self) -> impl Iterator<Item = &minisign::PublicKey> {
        self.keys.iter().filter_map(|k| match k {
            TrustedKey::Minisign(k) => Some(k),
            TrustedKey::OpenPgp(_) => None,
        })
    }

    fn openpgp_certificates(&self) -> impl Iterator<Item = &openpgp::Certificate> {
        self.keys.iter().filter_map(|k| match k {
            TrustedKey::OpenPgp(c) => Some(c.as_ref()),
            TrustedKey::Minisign(_) => None,
        })
    }

    fn untrusted(&self, signer: String) -> TrustError {
        TrustError::Untrusted {
            signer,
            trusted: self.fingerprints().join(", "),
        }
    }
}

#[cfg(test)]
mod tests;
