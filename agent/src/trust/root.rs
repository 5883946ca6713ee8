//! Loading the trust root: key files from `/etc/imprint/trust.d/` (baked into the
//! ramdisk or added as an extra initramfs), keys written into the boot ISO's
//! customization area, and `--trust` files. All sources are merged.

use super::{minisign, openpgp, TrustRoot, TrustedKey};
use std::path::{Path, PathBuf};

/// Where key files are read from unless `--trust-dir` says otherwise.
pub const DEFAULT_DIR: &str = "/etc/imprint/trust.d";
/// File name endings read from a trust directory; other files there are ignored.
pub const KEY_EXTENSIONS: &[&str] = &["pub", "asc", "pgp", "gpg"];

/// Why a key could not be loaded; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file or directory could not be read.
    #[error("reading the trust key {path}: {source}")]
    Read {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds neither a minisign public key nor an OpenPGP certificate.
    #[error(
        "the trust key {path} is neither a minisign public key nor an OpenPGP certificate: {why}"
    )]
    Invalid {
        /// Where the key came from.
        path: String,
        /// What the parsers said.
        why: String,
    },
}

/// A trusted key and where it came from.
#[derive(Clone, Debug)]
pub struct Anchor {
    /// The key.
    pub key: TrustedKey,
    /// Its origin for messages: a file path, or the boot medium's area.
    pub origin: String,
}

/// Reads one key: a minisign public key (the two lines `minisign -G` writes) or an
/// OpenPGP certificate, armored or binary. `origin` names it in errors.
pub fn parse_key(bytes: &[u8], origin: &str) -> Result<TrustedKey, KeyError> {
    let invalid = |why: String| KeyError::Invalid {
        path: origin.to_string(),
        why,
    };
    let text = std::str::from_utf8(bytes).ok();
    let armored = text.is_some_and(|t| t.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    match text {
        Some(t) if !armored => minisign::PublicKey::parse(t)
            .map(TrustedKey::Minisign)
            .or_else(|m| {
                openpgp::Certificate::parse(bytes)
                    .map(|c| TrustedKey::OpenPgp(Box::new(c)))
                    .map_err(|_| invalid(m.to_string()))
            }),
        _ => openpgp::Certificate::parse(bytes)
            .map(|c| TrustedKey::OpenPgp(Box::new(c)))
            .map_err(|e| invalid(e.to_string())),
    }
}

/// Reads the key file at `path`.
pub fn load_file(path: &Path) -> Result<Anchor, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let origin = path.display().to_string();
    Ok(Anchor {
        key: parse_key(&bytes, &origin)?,
        origin,
    })
}

/// Reads every key file (by [`KEY_EXTENSIONS`]) in `dir`, in name order; a missing
/// directory holds no keys.
pub fn load_dir(dir: &Path) -> Result<Vec<Anchor>, KeyError> {
    let read_err = |source| KeyError::Read {
        path: dir.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    files.retain(|p| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| KEY_EXTENSIONS.contains(&e))
    });
    files.sort();
    files.iter().map(|p| load_file(p)).collect()
}

/// The merged trust root and where each key came from.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    anchors: Vec<Anchor>,
}

impl Loaded {
    /// Merges `anchors`; a key given twice is kept once (its first origin).
    pub fn new(anchors: Vec<Anchor>) -> Loaded {
        let mut kept: Vec<Anchor> = Vec::new();
        for a in anchors {
            if !kept.iter().any(|k| k.key == a.key) {
                kept.push(a);
            }
        }
        Loaded { anchors: kept }
    }

    /// The keys, for verifying.
    pub fn root(&self) -> TrustRoot {
        TrustRoot::new(self.anchors.iter().map(|a| a.key.clone()).collect())
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The console lines saying which keys are in force.
    pub fn describe(&self) -> Vec<String> {
        if self.anchors.is_empty() {
            return vec!["trust: none — the document will not be authenticated".into()];
        }
        self.anchors
            .iter()
            .map(|a| format!("trust: {} (from {})", a.key.fingerprint(), a.origin))
            .collect()
    }
}

/// What a run trusts: the directory (default [`DEFAULT_DIR`]), keys from the boot
/// medium's area (`(origin, bytes)`), and key files given on the command line.
pub fn load(
    dir: &Path,
    medium: &[(String, Vec<u8>)],
    files: &[PathBuf],
) -> Result<Loaded, KeyError> {
    let mut anchors = load_dir(dir)?;
    for (origin, bytes) in medium {
        anchors.push(Anchor {
            key: parse_key(bytes, origin)?,
            origin: origin.clone(),
        });
    }
    for f in files {
        anchors.push(load_file(f)?);
    }
    Ok(Loaded::new(anchors))
}

#[cfg(test)]
mod tests;
