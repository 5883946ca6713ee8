//! Authenticating a provisioning document before anything reads it: its detached
//! signature is found beside it (`<src>.minisig` first, then `<src>.sig`), checked over
//! the exact bytes fetched against the trust root, and its `expires` time is enforced.

use super::{minisign, openpgp, TrustError, TrustRoot};
use std::path::Path;
use std::time::Duration;

/// The signature suffixes tried beside a document, in order.
pub const SUFFIXES: [&str; 2] = [".minisig", ".sig"];

/// Where a document's detached signature is looked for.
#[derive(Clone, Copy, Debug)]
pub enum SignatureSource<'a> {
    /// Beside the document (an `http(s)://` URL or a file path): [`SUFFIXES`] in order.
    Beside(&'a str),
    /// A file named by `--signature`.
    File(&'a Path),
    /// Nowhere: the document came from stdin without `--signature`.
    Stdin,
    /// Nowhere: the document came from a place that cannot hold a signature (the why).
    Nowhere(&'a str),
}

/// Why a document was refused; each cause has its own message.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Neither signature file exists.
    #[error("document {doc} is not signed: neither {} nor {} exists, and a trust root is configured", tried[0], tried[1])]
    Missing {
        /// The document.
        doc: String,
        /// The two places tried, in order.
        tried: [String; 2],
    },
    /// The signature could not be fetched (other than "not found").
    #[error("document {doc}: fetching its signature {sig}: {why}")]
    Fetch {
        /// The document.
        doc: String,
        /// The signature URL or path.
        sig: String,
        /// What went wrong.
        why: String,
    },
    /// A key outside the trust root made the signature.
    #[error("document {doc}: its signature {sig} is {why}")]
    Untrusted {
        /// The document.
        doc: String,
        /// The signature URL or path.
        sig: String,
        /// Which key signed and which are trusted.
        why: String,
    },
    /// The signature does not match the bytes (the document was altered).
    #[error("document {doc}: its signature {sig} does not verify: {why} (the document was changed after it was signed, or the signature is for another document)")]
    Bad {
        /// The document.
        doc: String,
        /// The signature URL or path.
        sig: String,
        /// The verifier's words.
        why: String,
    },
    /// The signature file is not a minisign or OpenPGP signature.
    #[error("document {doc}: its signature {sig} cannot be read: {why}")]
    Unreadable {
        /// The document.
        doc: String,
        /// The signature URL or path.
        sig: String,
        /// The parser's words.
        why: String,
    },
    /// The signing key may not sign (expired, revoked, no signing capability, weak hash).
    #[error("document {doc}: its signature {sig} is refused: {why}")]
    Refused {
        /// The document.
        doc: String,
        /// The signature URL or path.
        sig: String,
        /// Why.
        why: String,
    },
    /// The document came from stdin and no `--signature` was given.
    #[error("the document comes from stdin and a trust root is configured: give its detached signature with --signature FILE")]
    Stdin,
    /// The document came from a place with no room for a signature.
    #[error("document {doc}: {why}, and a trust root is configured")]
    Nowhere {
        /// The document.
        doc: String,
        /// Why no signature can be found.
        why: String,
    },
    /// The document's `expires` time has passed.
    #[error("document {doc} expired at {expires} (the clock says {now})")]
    Expired {
        /// The document.
        doc: String,
        /// Its `expires`.
        expires: String,
        /// The clock's time.
        now: String,
    },
    /// The clock is before this build's date, so `expires` cannot be checked.
    #[error("document {doc} expires at {expires}, which cannot be checked: the clock says {now}, before this build ({floor}), so the clock is obviously wrong; set the hardware clock (RTC)")]
    ClockWrong {
        /// The document.
        doc: String,
        /// Its `expires`.
        expires: String,
        /// The clock's time.
        now: String,
        /// The build-date floor.
        floor: String,
    },
}

/// Checks `data` (the exact bytes fetched) against a signature found by `sig` and signed
/// by a key of `root`; returns the console line saying who signed it.
pub fn authenticate(
    root: &TrustRoot,
    data: &[u8],
    source: &str,
    sig: SignatureSource,
    ca: Option<&Path>,
    now: i64,
) -> Result<String, AuthError> {
    let (sig_name, bytes) = match sig {
        SignatureSource::Stdin => return Err(AuthError::Stdin),
        SignatureSource::Nowhere(why) => {
            return Err(AuthError::Nowhere {
                doc: source.into(),
                why: why.into(),
            })
        }
        SignatureSource::File(p) => {
            let name = p.display().to_string();
            let bytes = std::fs::read(p).map_err(|e| AuthError::Fetch {
                doc: source.into(),
                sig: name.clone(),
                why: e.to_string(),
            })?;
            (name, bytes)
        }
        SignatureSource::Beside(src) => find_beside(src, source, ca)?,
    };
    let minisign = sig_name.ends_with(".minisig");
    let signer =
        verify(root, data, &bytes, minisign, now).map_err(|e| classify(e, source, &sig_name))?;
    Ok(format!(
        "document {source}: signature {sig_name} by {signer} verified"
    ))
}

/// Fetches `<src>.minisig`, or when that does not exist `<src>.sig`.
fn find_beside(src: &str, source: &str, ca: Option<&Path>) -> Result<(String, Vec<u8>), AuthError> {
    let tried = SUFFIXES.map(|s| format!("{src}{s}"));
    for name in &tried {
        match fetch(name, ca) {
            Ok(Some(bytes)) => return Ok((name.clone(), bytes)),
            Ok(None) => continue,
            Err(why) => {
                return Err(AuthError::Fetch {
                    doc: source.into(),
                    sig: name.clone(),
                    why,
                })
            }
        }
    }
    Err(AuthError::Missing {
        doc: source.into(),
        tried,
    })
}

/// The bytes at an `http(s)://` URL or a path; `None` when it does not exist (404, ENOENT).
pub(crate) fn fetch(name: &str, ca: Option<&Path>) -> Result<Option<Vec<u8>>, String> {
    if !(name.starts_with("http://") || name.starts_with("https://")) {
        let path = name
            .strip_prefix("file://")
            .or_else(|| name.strip_prefix("file:"))
            .unwrap_or(name);
        return match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        };
    }
    let client = crate::http::client(&crate::http::ClientOptions {
        ca_bundle: ca,
        read_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let resp = client
        .get(name)
        .send()
        .map_err(|e| crate::http::describe(&e))?;
    match resp.status().as_u16() {
        404 => Ok(None),
        s if (200..300).contains(&s) => resp
            .bytes()
            .map(|b| Some(b.to_vec()))
            .map_err(|e| crate::http::describe(&e)),
        _ => Err(format!("HTTP {}", resp.status())),
    }
}

/// minisign for a `.minisig` file or one that reads as minisign (`untrusted comment:`),
/// else OpenPGP.
fn verify(
    root: &TrustRoot,
    data: &[u8],
    sig: &[u8],
    minisign: bool,
    now: i64,
) -> Result<String, TrustError> {
    match std::str::from_utf8(sig) {
        Ok(text) if minisign || text.trim_start().starts_with("untrusted comment:") => {
            root.verify_minisign(data, text).map(|(signer, _)| signer)
        }
        Err(_) if minisign => Err(TrustError::Minisign(minisign::MinisignError::BadSignature(
            "not text",
        ))),
        _ => root
            .verify_openpgp(data, sig, now.clamp(0, u32::MAX as i64) as u32)
            .map(|fpr| format!("openpgp:{fpr}")),
    }
}

fn classify(e: TrustError, source: &str, sig: &str) -> AuthError {
    let (doc, sig, why) = (source.to_string(), sig.to_string(), e.to_string());
    match e {
        TrustError::Untrusted { .. } => AuthError::Untrusted { doc, sig, why },
        TrustError::Minisign(minisign::MinisignError::BadSignature(_))
        | TrustError::OpenPgp(openpgp::OpenPgpError::BadSignature(_)) => {
            AuthError::Unreadable { doc, sig, why }
        }
        TrustError::Minisign(
            minisign::MinisignError::Mismatch | minisign::MinisignError::CommentMismatch,
        )
        | TrustError::OpenPgp(openpgp::OpenPgpError::Mismatch(_)) => {
            AuthError::Bad { doc, sig, why }
        }
        _ => AuthError::Refused { doc, sig, why },
    }
}

/// Enforces a document's `expires` (unix seconds) at `now`: refused once it has passed,
/// and refused when the clock is before [`crate::timestamp::BUILD_FLOOR`] (it cannot be
/// checked). A document without `expires` never expires.
pub fn check_expiry(source: &str, expires: Option<i64>, now: i64) -> Result<(), AuthError> {
    use crate::timestamp::{format, BUILD_FLOOR};
    let Some(exp) = expires else {
        return Ok(());
    };
    if now < BUILD_FLOOR {
        return Err(AuthError::ClockWrong {
            doc: source.into(),
            expires: format(exp),
            now: format(now),
            floor: format(BUILD_FLOOR),
        });
    }
    if now >= exp {
        return Err(AuthError::Expired {
            doc: source.into(),
            expires: format(exp),
            now: format(now),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
