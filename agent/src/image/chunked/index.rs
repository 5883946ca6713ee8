//! casync blob indexes (`.caibx`): the chunk table of an image, read and checked.
//!
//! Layout (all integers u64 little endian): an INDEX record (size 48, type, feature
//! flags, min/avg/max chunk size), a TABLE header (size `u64::MAX`, type), one 40-byte
//! item per chunk (the chunk's *end* offset in the image, its 32-byte id), and a
//! 40-byte tail (two zero words, the offset back to the index record, the table's
//! size, a marker). A chunk id is the SHA-512/256 (flag bit 61) or SHA-256 digest of
//! the uncompressed chunk.

use sha2::{Digest as _, Sha256, Sha512_256};
use std::fmt;

const INDEX_TYPE: u64 = 0x9682_4d9c_7b12_9ff9;
const TABLE_TYPE: u64 = 0xe75b_9e11_2f17_417d;
const TAIL_MARKER: u64 = 0x4b4f_050e_5549_ecd1;
/// Flag bit 61: chunk ids are SHA-512/256 (else SHA-256).
const SHA512_256: u64 = 0x2000_0000_0000_0000;
/// Every feature bit casync defines; others mean a format this reader does not know.
const FLAGS_MAX: u64 = 0xf000_0001_ffff_ffff;
const HEAD: usize = 64;
const ITEM: usize = 40;
const TAIL: usize = 40;
/// casync's own limit on a chunk.
pub const CHUNK_LIMIT: u64 = 128 << 20;
/// Largest index accepted (~2.5 million chunks: 150 GiB of 64 KiB chunks).
pub const MAX_INDEX_BYTES: usize = 100 << 20;

/// How chunk ids are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ChunkDigest {
    Sha256,
    Sha512_256,
}

impl ChunkDigest {
    /// The id of `data` under this digest.
    pub fn id(self, data: &[u8]) -> ChunkId {
        ChunkId(match self {
            ChunkDigest::Sha256 => Sha256::digest(data).into(),
            ChunkDigest::Sha512_256 => Sha512_256::digest(data).into(),
        })
    }
}

/// A chunk's id: the digest of its uncompressed bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl ChunkId {
    /// The chunk's path in a store: `<first 4 hex digits>/<id>.cacnk`.
    pub fn store_path(&self) -> String {
        let hex = self.to_string();
        format!("{}/{hex}.cacnk", &hex[..4])
    }
}

/// One chunk of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub start: u64,
    pub size: u64,
    pub id: ChunkId,
}

impl Chunk {
    pub fn end(&self) -> u64 {
        self.start + self.size
    }
}

/// A checked blob index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub digest: ChunkDigest,
    pub min: u64,
    pub avg: u64,
    pub max: u64,
    pub chunks: Vec<Chunk>,
}

/// Why an index was refused: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usable casync blob index: {0}")]
pub struct IndexError(String);

fn word(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Whether `prefix` starts like a casync index (the INDEX record's size and type).
pub fn is_index(prefix: &[u8]) -> bool {
    prefix.len() >= 16 && word(prefix, 0) == 48 && word(prefix, 8) == INDEX_TYPE
}

impl Index {
    /// Reads and checks a whole `.caibx` file.
    pub fn parse(b: &[u8]) -> Result<Index, IndexError> {
        let bad = |s: String| Err(IndexError(s));
        if b.len() > MAX_INDEX_BYTES {
            return bad(format!(
                "{} bytes is more than the {} accepted",
                b.len(),
                MAX_INDEX_BYTES
            ));
        }
        if b.len() < HEAD + TAIL {
            return bad(format!(
                "{} bytes is too short for an index (at least {})",
                b.len(),
                HEAD + TAIL
            ));
        }
        if !is_index(b) {
            return bad("its first 16 bytes are not an INDEX record".into());
        }
        let flags = word(b, 16);
        if flags & !FLAGS_MAX != 0 {
            return bad(format!("unknown feature flags {flags:#018x}"));
        }
        let (min, avg, max) = (word(b, 24), word(b, 32), word(b, 40));
        if !(1 <= min && min <= avg && avg <= max && max <= CHUNK_LIMIT) {
            return bad(format!(
                "chunk sizes {min}:{avg}:{max} are not 1 <= min <= avg <= max <= 128 MiB"
            ));
        }
        if word(b, 48) != u64::MAX || word(b, 56) != TABLE_TYPE {
            return bad("the TABLE header after the INDEX record is missing".into());
        }
        if !(b.len() - HEAD - TAIL).is_multiple_of(ITEM) {
            return bad(format!(
                "{} bytes is not a whole number of 40-byte chunk entries plus head and tail \
                 (truncated?)",
                b.len()
            ));
        }
        let n = (b.len() - HEAD - TAIL) / ITEM;
        let tail = &b[b.len() - TAIL..];
        let table_size = (16 + ITEM * n + TAIL) as u64;
        if word(tail, 0) != 0
            || word(tail, 8) != 0
            || word(tail, 16) != 48
            || word(tail, 24) != table_size
            || word(tail, 32) != TAIL_MARKER
        {
            return bad("the table's tail is missing or damaged (truncated?)".into());
        }
        let mut chunks = Vec::with_capacity(n);
        let mut start = 0u64;
        for i in 0..n {
            let at = HEAD + i * ITEM;
            let end = word(b, at);
            if end <= start {
                return bad(format!(
                    "chunk {i} ends at byte {end}, not after its start {start}"
                ));
            }
            if end - start > max {
                return bad(format!(
                    "chunk {i} is {} bytes, more than the index's maximum {max}",
                    end - start
                ));
            }
            let id = ChunkId(b[at + 8..at + 40].try_into().expect("32 bytes"));
            chunks.push(Chunk {
                start,
                size: end - start,
                id,
            });
            start = end;
        }
        Ok(Index {
            digest: if flags & SHA512_256 != 0 {
                ChunkDigest::Sha512_256
            } else {
                ChunkDigest::Sha256
            },
            min,
            avg,
            max,
            chunks,
        })
    }

    /// The image's size.
    pub fn len(&self) -> u64 {
        self.chunks.last().map_or(0, Chunk::end)
    }

    /// Whether the image has no bytes.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index as casync writes one, for `sizes` chunks with ids `id(i)`.
    pub(crate) fn build(flags: u64, sizes: &[u64], id: impl Fn(usize) -> [u8; 32]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [
            48,
            INDEX_TYPE,
            flags,
            16384,
            65536,
            262144,
            u64::MAX,
            TABLE_TYPE,
        ] {
            b.extend(w.to_le_bytes());
        }
        let mut end = 0;
        for (i, s) in sizes.iter().enumerate() {
            end += s;
            b.extend(end.to_le_bytes());
            b.extend(id(i));
        }
        let table = (16 + 40 * sizes.len() + 40) as u64;
        for w in [0, 0, 48, table, TAIL_MARKER] {
            b.extend(w.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_what_casync_writes() {
        let b = build(0xb000_0000_0000_0000, &[262144, 100, 70000], |i| {
            [i as u8; 32]
        });
        let index = Index::parse(&b).unwrap();
        assert_eq!(index.digest, ChunkDigest::Sha512_256);
        assert_eq!(index.len(), 262144 + 100 + 70000);
        assert_eq!(index.chunks[1].start, 262144);
        assert_eq!(index.chunks[1].size, 100, "the last chunk may be under min");
        assert_eq!(index.chunks[2].id.0, [2; 32]);
        let sha256 = build(0x9000_0000_0000_0000, &[10], |_| [0; 32]);
        assert_eq!(Index::parse(&sha256).unwrap().digest, ChunkDigest::Sha256);
        let empty = Index::parse(&build(0, &[], |_| [0; 32])).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn refuses_damage_with_a_cause() {
        let good = build(0xb000_0000_0000_0000, &[1000, 2000], |i| [i as u8; 32]);
        let cut = &good[..good.len() - 7];
        assert!(Index::parse(cut).unwrap_err().0.contains("truncated"));
        let cut_item = &good[..good.len() - 40];
        assert!(Index::parse(cut_item).is_err(), "a whole item short");
        let mut big = good.clone();
        big[64..72].copy_from_slice(&300000u64.to_le_bytes());
        assert!(Index::parse(&big).unwrap_err().0.contains("maximum"));
        let mut back = good.clone();
        back[104..112].copy_from_slice(&500u64.to_le_bytes());
        assert!(Index::parse(&back)
            .unwrap_err()
            .0
            .contains("not after its start"));
        let mut flags = good.clone();
        flags[16..24].copy_from_slice(&0x0800_0000_0000_0000u64.to_le_bytes());
        assert!(Index::parse(&flags)
            .unwrap_err()
            .0
            .contains("feature flags"));
        assert!(Index::parse(b"not an index at all, just some text, long enough to pass the size check for sure!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!").is_err());
        let mut sizes = good;
        sizes[24..32].copy_from_slice(&0u64.to_le_bytes());
        assert!(Index::parse(&sizes).unwrap_err().0.contains("chunk sizes"));
    }

    #[test]
    fn store_paths_and_digests() {
        let id = ChunkDigest::Sha512_256.id(&[0u8; 262144]);
        assert_eq!(
            id.to_string(),
            "1c8109946feed9f9e9fe4b5144d90f05a50fb3275e848cb72f4b9546d8c533f2"
        );
        assert_eq!(
            id.store_path(),
            "1c81/1c8109946feed9f9e9fe4b5144d90f05a50fb3275e848cb72f4b9546d8c533f2.cacnk"
        );
        assert_eq!(
            ChunkDigest::Sha256.id(&[0u8; 262144]).to_string(),
            "8a39d2abd3999ab73c34db2476849cddf303ce389b35826850f9a700589b4a90"
        );
    }
}
