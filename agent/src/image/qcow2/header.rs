//! The qcow2 header (versions 2 and 3): the fields the writer needs, and a
//! refusal naming every feature it does not write.

/// The first four bytes of every qcow2 file.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// Smallest cluster size qcow2 allows, as a power of two (512 B).
pub const MIN_CLUSTER_BITS: u32 = 9;
/// Largest cluster size qcow2 allows, as a power of two (2 MiB).
pub const MAX_CLUSTER_BITS: u32 = 21;
/// Size of a version 2 header (version 3 states its own, at least 104).
const V2_HEADER_LEN: usize = 72;
const V3_MIN_HEADER_LEN: usize = 104;

/// Incompatible feature bits (header byte 72, version 3).
const DIRTY: u64 = 1 << 0;
const CORRUPT: u64 = 1 << 1;
const EXTERNAL_DATA: u64 = 1 << 2;
const COMPRESSION_TYPE: u64 = 1 << 3;
const EXTENDED_L2: u64 = 1 << 4;
const KNOWN: u64 = DIRTY | CORRUPT | EXTERNAL_DATA | COMPRESSION_TYPE | EXTENDED_L2;

/// How the image's compressed clusters are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterCompression {
    /// Raw deflate (no zlib header), qcow2's original and default.
    Deflate,
    /// zstd frames (`compression_type` 1).
    Zstd,
}

/// What the writer needs from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// The guest disk's size in bytes.
    pub size: u64,
    /// Entries in the L1 table.
    pub l1_size: u32,
    /// Where the L1 table starts in the file.
    pub l1_offset: u64,
    /// How compressed clusters are compressed.
    pub compression: ClusterCompression,
    /// Bytes of the header proper; checked again when the stream passes them.
    pub header_len: u64,
}

impl Header {
    /// Bytes per cluster.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Entries per L2 table (one table is one cluster of 8-byte entries).
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }

    /// Clusters of the guest disk (the last may be partly past its end).
    pub fn guest_clusters(&self) -> u64 {
        self.size.div_ceil(self.cluster_size())
    }

    /// L1 entries the guest disk needs.
    pub fn l1_needed(&self) -> u64 {
        self.guest_clusters().div_ceil(self.l2_entries())
    }
}

/// Why a qcow2 file is not written: each names the feature or the damage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Qcow2Error {
    #[error("it does not start with the qcow2 magic QFI\\xfb")]
    NotQcow2,
    #[error("its header is cut short ({0} bytes)")]
    Truncated(usize),
    #[error("it is qcow2 version {0}; only versions 2 and 3 are known")]
    Version(u32),
    #[error("its version 3 header states a length of {0} bytes, outside 104..=cluster size")]
    HeaderLength(u64),
    #[error("it is marked corrupt (incompatible feature bit 1): repair it with `qemu-img check -r all` first")]
    MarkedCorrupt,
    #[error("it keeps its data in an external data file (incompatible feature bit 2), which a single download cannot carry")]
    ExternalDataFile,
    #[error("it uses extended L2 entries (subclusters, incompatible feature bit 4), which this agent does not read: convert it with `qemu-img convert -O qcow2` without `-o extended_l2=on`")]
    ExtendedL2,
    #[error("it sets incompatible feature bits {0:#x} that this agent does not know")]
    UnknownFeatures(u64),
    #[error("it is encrypted (crypt_method {0}): the agent has no key for it; decrypt it with `qemu-img convert` first")]
    Encrypted(u32),
    #[error("it has a backing file ({0:?}): its unallocated clusters live in another image; flatten it with `qemu-img convert -O qcow2` (or `qemu-img rebase -b ''`) first")]
    BackingFile(String),
    #[error("its cluster_bits is {0}, outside the 9..=21 (512 B to 2 MiB) qcow2 allows")]
    ClusterBits(u32),
    #[error("its compression_type is {0}; only 0 (deflate) and 1 (zstd) are known")]
    CompressionType(u8),
    #[error("its {what} at byte {offset} is not aligned to its {align}-byte clusters")]
    Misaligned {
        what: &'static str,
        offset: u64,
        align: u64,
    },
    #[error("its {what} at byte {offset} lies past the end of the {len}-byte file")]
    PastEnd {
        what: &'static str,
        offset: u64,
        len: u64,
    },
    #[error("its L1 table has {have} entries but the {size}-byte disk needs {need}")]
    L1TooSmall { have: u32, need: u64, size: u64 },
    #[error("its {what} would take {bytes} bytes of memory, more than the {limit}-byte limit: convert it with larger clusters (`qemu-img convert -O qcow2 -o cluster_size=2M`) or to raw")]
    TooBig {
        what: &'static str,
        bytes: u64,
        limit: u64,
    },
    #[error("its {what} at byte {offset} sets reserved bits ({entry:#018x}): the file is damaged")]
    Reserved {
        what: &'static str,
        offset: u64,
        entry: u64,
    },
    #[error("its compressed cluster at byte {offset} {cause}")]
    BadCompressedCluster { offset: u64, cause: String },
    #[error("it is damaged: {0}")]
    Damaged(String),
    #[error("its {what} at byte {offset} differs from the one the tables were mapped from: the file changed on the server; start the write again")]
    Changed { what: &'static str, offset: u64 },
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

/// Whether `prefix` starts like a qcow2 file.
pub fn is_qcow2(prefix: &[u8]) -> bool {
    prefix.starts_with(&MAGIC)
}

/// Parses and vets the header at the start of `buf` (the first bytes of a
/// `file_len`-byte file; the backing file's name is read from them when present).
pub fn parse_header(buf: &[u8], file_len: u64) -> Result<Header, Qcow2Error> {
    if !is_qcow2(buf) {
        return Err(Qcow2Error::NotQcow2);
    }
    if buf.len() < V2_HEADER_LEN {
        return Err(Qcow2Error::Truncated(buf.len()));
    }
    let version = be32(buf, 4);
    if version != 2 && version != 3 {
        return Err(Qcow2Error::Version(version));
    }
    let cluster_bits = be32(buf, 20);
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
        return Err(Qcow2Error::ClusterBits(cluster_bits));
    }
    let cluster_size = 1u64 << cluster_bits;
    let (mut header_len, mut incompatible, mut compression_type) = (V2_HEADER_LEN as u64, 0, 0);
    if version == 3 {
        if buf.len() < V3_MIN_HEADER_LEN {
            return Err(Qcow2Error::Truncated(buf.len()));
        }
        incompatible = be64(buf, 72);
        header_len = u64::from(be32(buf, 100));
        if header_len < V3_MIN_HEADER_LEN as u64 || header_len > cluster_size {
            return Err(Qcow2Error::HeaderLength(header_len));
        }
        if buf.len() < header_len as usize {
            return Err(Qcow2Error::Truncated(buf.len()));
        }
        if header_len > 104 {
            compression_type = buf[104];
        }
    }
    if incompatible & CORRUPT != 0 {
        return Err(Qcow2Error::MarkedCorrupt);
    }
    if incompatible & EXTERNAL_DATA != 0 {
        return Err(Qcow2Error::ExternalDataFile);
    }
    if incompatible & EXTENDED_L2 != 0 {
        return Err(Qcow2Error::ExtendedL2);
    }
    if incompatible & !KNOWN != 0 {
        return Err(Qcow2Error::UnknownFeatures(incompatible & !KNOWN));
    }
    let crypt = be32(buf, 32);
    if crypt != 0 {
        return Err(Qcow2Error::Encrypted(crypt));
    }
    let backing_offset = be64(buf, 8);
    if backing_offset != 0 {
        return Err(Qcow2Error::BackingFile(backing_name(
            buf,
            backing_offset,
            be32(buf, 16),
        )));
    }
    // Without the feature bit the field must be deflate, whatever it says.
    let compression = match (incompatible & COMPRESSION_TYPE != 0, compression_type) {
        (_, 0) => ClusterCompression::Deflate,
        (true, 1) => ClusterCompression::Zstd,
        (_, t) => return Err(Qcow2Error::CompressionType(t)),
    };
    let header = Header {
        version,
        cluster_bits,
        size: be64(buf, 24),
        l1_size: be32(buf, 36),
        l1_offset: be64(buf, 40),
        compression,
        header_len,
    };
    check_l1_placement(&header, file_len)?;
    Ok(header)
}

/// Largest L1 table read (1 Mi entries: 512 TiB at 64 KiB clusters).
pub const MAX_L1_BYTES: u64 = 8 << 20;

fn check_l1_placement(h: &Header, file_len: u64) -> Result<(), Qcow2Error> {
    let need = h.l1_needed();
    if u64::from(h.l1_size) < need {
        return Err(Qcow2Error::L1TooSmall {
            have: h.l1_size,
            need,
            size: h.size,
        });
    }
    if need * 8 > MAX_L1_BYTES {
        return Err(Qcow2Error::TooBig {
            what: "L1 table",
            bytes: need * 8,
            limit: MAX_L1_BYTES,
        });
    }
    if need == 0 {
        return Ok(());
    }
    if !h.l1_offset.is_multiple_of(h.cluster_size()) {
        return Err(Qcow2Error::Misaligned {
            what: "L1 table",
            offset: h.l1_offset,
            align: h.cluster_size(),
        });
    }
    if h.l1_offset
        .checked_add(need * 8)
        .is_none_or(|end| end > file_len)
    {
        return Err(Qcow2Error::PastEnd {
            what: "L1 table",
            offset: h.l1_offset,
            len: file_len,
        });
    }
    Ok(())
}

/// The backing file's name, if `buf` holds it (else where it would be).
fn backing_name(buf: &[u8], offset: u64, len: u32) -> String {
    let end = offset.saturating_add(u64::from(len.min(1023)));
    match buf.get(offset as usize..end as usize) {
        Some(name) if offset < buf.len() as u64 => String::from_utf8_lossy(name).into_owned(),
        _ => format!("named at byte {offset}"),
    }
}

#[cfg(test)]
#[path = "header_tests.rs"]
mod tests;
