//! Digests as registries write them (`sha256:<hex>`), and hashing exact bytes.

use crate::plan::{Digest, DigestAlgorithm};
use sha2::Digest as _;

/// `sha256:<64 hex>` or `sha512:<128 hex>` (lower-case hex, as the OCI grammar has it).
pub fn parse_digest(s: &str) -> Result<Digest, String> {
    let (alg, hex) = s
        .split_once(':')
        .ok_or_else(|| format!("digest {s:?} is not <algorithm>:<hex>"))?;
    let (algorithm, len) = match alg {
        "sha256" => (DigestAlgorithm::Sha256, 64),
        "sha512" => (DigestAlgorithm::Sha512, 128),
        _ => return Err(format!("digest algorithm {alg:?} is not sha256 or sha512")),
    };
    let lower_hex = hex
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if hex.len() != len || !lower_hex {
        return Err(format!(
            "the {alg} digest {hex:?} is not {len} lower-case hex digits"
        ));
    }
    Ok(Digest {
        algorithm,
        hex: hex.to_string(),
    })
}

/// `sha256:<hex>`.
pub fn oci_string(d: &Digest) -> String {
    format!("{}:{}", name(d.algorithm), d.hex)
}

fn name(a: DigestAlgorithm) -> &'static str {
    match a {
        DigestAlgorithm::Sha256 => "sha256",
        DigestAlgorithm::Sha512 => "sha512",
    }
}

/// The digest of `bytes` with `algorithm`.
pub fn of(algorithm: DigestAlgorithm, bytes: &[u8]) -> Digest {
    let hex = match algorithm {
        DigestAlgorithm::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
        DigestAlgorithm::Sha512 => hex::encode(sha2::Sha512::digest(bytes)),
    };
    Digest { algorithm, hex }
}
