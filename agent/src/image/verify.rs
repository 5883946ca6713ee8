//! Digests of the bytes as served (what operators `sha256sum`) and of the bytes written.
//!
//! The written bytes get a hash list rather than one digest over the whole image:
//! BLAKE3 over the BLAKE3 of each 1 MiB block. Zero blocks (most of a disk image)
//! then cost nothing, since their digest is a constant; data blocks cost one BLAKE3
//! pass; and a read-back can say which MiB differs. The list is imprint's own
//! (no operator computes it from a published file), so its algorithm is chosen for
//! speed: BLAKE3 hashes a 1 MiB block with AVX-512 or AVX2 across its 1 KiB chunks,
//! about 4 times as fast as sha256 with SHA-NI, and it is taken twice for a
//! read-back (while writing and while reading back).

use super::sink::ZERO_BLOCK;
use crate::plan::DigestAlgorithm;
use sha2::{Digest as _, Sha256, Sha512};
use std::sync::OnceLock;

/// A running sha256 or sha512.
pub(crate) enum Hasher {
    Sha256(Sha256),
    Sha512(Box<Sha512>),
}

impl Hasher {
    /// A fresh hasher for `algorithm`.
    pub(crate) fn new(algorithm: DigestAlgorithm) -> Hasher {
        match algorithm {
            DigestAlgorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            DigestAlgorithm::Sha512 => Hasher::Sha512(Box::default()),
        }
    }

    /// Feeds bytes.
    pub(crate) fn update(&mut self, data: &[u8]) {
        // Measurement builds hash nothing (feature `bench-unverified`, agent/Cargo.toml).
        if cfg!(feature = "bench-unverified") {
            return;
        }
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// Lower-case hex of the digest.
    pub(crate) fn finish_hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// The hash list of the written bytes (see the module doc).
pub(crate) struct BlockDigest {
    outer: blake3::Hasher,
    /// The first 8 bytes of each block's digest, kept only for a read-back.
    blocks: Option<Vec<u64>>,
}

/// The first 8 bytes of a block digest, as kept per block.
fn prefix(d: &[u8; 32]) -> u64 {
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The kept prefix of an all-zero block's digest.
pub(crate) fn zero_block_prefix() -> u64 {
    prefix(zero_block_digest())
}

/// The digest of one block of the hash list (BLAKE3 of its bytes).
pub(crate) fn block_digest(block: &[u8]) -> [u8; 32] {
    blake3::hash(block).into()
}

/// The digest of one all-zero block, computed once.
fn zero_block_digest() -> &'static [u8; 32] {
    static Z: OnceLock<[u8; 32]> = OnceLock::new();
    Z.get_or_init(|| block_digest(&vec![0u8; ZERO_BLOCK]))
}

impl BlockDigest {
    /// An empty list; `keep_blocks` keeps 8 bytes per MiB so a read-back can locate a difference.
    pub(crate) fn new(keep_blocks: bool) -> BlockDigest {
        BlockDigest {
            outer: blake3::Hasher::new(),
            blocks: keep_blocks.then(Vec::new),
        }
    }

    /// Adds the next block: [`ZERO_BLOCK`] bytes, or fewer for the last; `zero` if known all-zero.
    pub(crate) fn push(&mut self, block: &[u8], zero: bool) {
        let d: [u8; 32] = if zero && block.len() == ZERO_BLOCK {
            *zero_block_digest()
        } else {
            block_digest(block)
        };
        self.add(d);
    }

    /// Adds an all-zero block of [`ZERO_BLOCK`] bytes without looking at it.
    pub(crate) fn push_zero(&mut self) {
        self.add(*zero_block_digest());
    }

    /// Adds the next block by its [`block_digest`], computed elsewhere.
    pub(crate) fn push_digest(&mut self, d: [u8; 32]) {
        self.add(d);
    }

    fn add(&mut self, d: [u8; 32]) {
        self.outer.update(&d);
        if let Some(b) = self.blocks.as_mut() {
            b.push(prefix(&d));
        }
    }

    /// The list's digest (hex) and, if kept, the per-block prefixes.
    pub(crate) fn finish(self) -> (String, Option<Vec<u64>>) {
        (self.outer.finalize().to_hex().to_string(), self.blocks)
    }
}

/// The name operators know the algorithm by (`sha256`).
pub(crate) fn algorithm_name(a: DigestAlgorithm) -> &'static str {
    match a {
        DigestAlgorithm::Sha256 => "sha256",
        DigestAlgorithm::Sha512 => "sha512",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let mut h = Hasher::new(DigestAlgorithm::Sha256);
        h.update(b"abc");
        assert_eq!(
            h.finish_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = Hasher::new(DigestAlgorithm::Sha512);
        h.update(b"abc");
        assert!(h.finish_hex().starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn block_digest_is_blake3_of_block_blake3s_and_zero_blocks_need_no_hashing() {
        let mut data = vec![0u8; 2 * ZERO_BLOCK + 100];
        data[ZERO_BLOCK + 7] = 1;
        let mut outer = blake3::Hasher::new();
        for c in data.chunks(ZERO_BLOCK) {
            outer.update(blake3::hash(c).as_bytes());
        }
        let mut d = BlockDigest::new(true);
        d.push(&data[..ZERO_BLOCK], true);
        d.push(&data[ZERO_BLOCK..2 * ZERO_BLOCK], false);
        d.push(&data[2 * ZERO_BLOCK..], false);
        let (hex, blocks) = d.finish();
        assert_eq!(hex, outer.finalize().to_hex().as_str());
        assert_eq!(blocks.unwrap().len(), 3);
    }
}
