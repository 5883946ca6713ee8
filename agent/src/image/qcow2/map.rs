//! The cluster map, read from the L1 and L2 tables before the download: which
//! bytes of the file become which bytes of the disk, and the table bytes the
//! stream must show again unchanged.

use super::header::{parse_header, Header, Qcow2Error};
use sha2::{Digest as _, Sha256};

/// Most data clusters mapped (24 + 8 bytes of memory each: 32 MiB at most;
/// 64 GiB of data at the default 64 KiB clusters, 2 TiB at 2 MiB).
pub const MAX_DATA_CLUSTERS: usize = 1 << 20;
/// L2 tables closer than this are fetched with one request.
const L2_GAP: u64 = 64 << 10;
/// Largest single metadata request.
const L2_GROUP: u64 = 4 << 20;

/// Random access to the file for the metadata pass.
pub trait ReadAt {
    type Error;
    /// Exactly `len` bytes at `offset` (the caller keeps within the file).
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, Self::Error>;
}

impl ReadAt for &[u8] {
    type Error = Qcow2Error;
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, Qcow2Error> {
        let start = usize::try_from(offset).map_err(|_| Qcow2Error::Truncated(self.len()))?;
        self.get(start..start.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or(Qcow2Error::Truncated(self.len()))
    }
}

/// A failure of the metadata pass: reading the file, or what it holds.
#[derive(Debug)]
pub enum LayoutError<E> {
    Read(E),
    Refused(Qcow2Error),
}

impl<E> From<Qcow2Error> for LayoutError<E> {
    fn from(e: Qcow2Error) -> Self {
        LayoutError::Refused(e)
    }
}

/// One guest cluster whose bytes are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cluster {
    /// Where its bytes start in the file.
    pub host: u64,
    /// How many bytes of the file it takes (less than a cluster at the end of the file).
    pub host_len: u32,
    /// Index of the guest cluster it fills.
    pub guest: u64,
    /// Whether the bytes are compressed (else they are the cluster itself).
    pub compressed: bool,
}

/// A piece of metadata the writer relied on, checked again as the stream passes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// What it is, for errors: "header", "L1 table", "L2 table".
    pub what: &'static str,
    /// Where it starts in the file.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// sha256 of its bytes as the metadata pass read them.
    pub sha256: [u8; 32],
}

/// Everything the data pass needs, from the header and tables.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The vetted header.
    pub header: Header,
    /// Size of the qcow2 file.
    pub file_len: u64,
    /// Data clusters in file order (by host offset, then guest).
    pub clusters: Vec<Cluster>,
    /// Guest indices of the data clusters, ascending; every other cluster reads as zeros.
    pub guest_data: Vec<u64>,
    /// The header, L1 and L2 tables, by offset.
    pub tables: Vec<Table>,
}

fn table(what: &'static str, offset: u64, bytes: &[u8]) -> Table {
    Table {
        what,
        offset,
        len: bytes.len() as u64,
        sha256: Sha256::digest(bytes).into(),
    }
}

/// The layout of a whole file in memory (tests and fuzzing).
pub fn layout_of(file: &[u8]) -> Result<Layout, Qcow2Error> {
    let mut src = file;
    read_layout(&mut src, file.len() as u64, file).map_err(|e| match e {
        LayoutError::Read(e) | LayoutError::Refused(e) => e,
    })
}

/// Reads the header (from `head`, the file's first bytes), the L1 table and every
/// L2 table of a `file_len`-byte file through `src`, and maps its clusters.
pub fn read_layout<R: ReadAt>(
    src: &mut R,
    file_len: u64,
    head: &[u8],
) -> Result<Layout, LayoutError<R::Error>> {
    let header = parse_header(head, file_len)?;
    let mut tables = vec![table("header", 0, &head[..header.header_len as usize])];
    let need = header.l1_needed();
    let mut l2s: Vec<(u64, u64)> = Vec::new(); // (L2 offset, L1 index)
    if need > 0 {
        let l1 = src
            .read_at(header.l1_offset, (need * 8) as usize)
            .map_err(LayoutError::Read)?;
        tables.push(table("L1 table", header.l1_offset, &l1));
        for (i, e) in l1.chunks_exact(8).enumerate() {
            let e = u64::from_be_bytes(e.try_into().expect("8-byte chunk"));
            let at = header.l1_offset + i as u64 * 8;
            if e & 0x7F00_0000_0000_01FF != 0 {
                return Err(Qcow2Error::Reserved {
                    what: "L1 entry",
                    offset: at,
                    entry: e,
                }
                .into());
            }
            let off = e & 0x00FF_FFFF_FFFF_FE00;
            if off == 0 {
                continue;
            }
            check_cluster("L2 table", off, &header, file_len, true)?;
            l2s.push((off, i as u64));
        }
    }
    l2s.sort_unstable();
    let cs = header.cluster_size();
    let mut clusters = Vec::new();
    let mut i = 0;
    while i < l2s.len() {
        // One request for tables lying close together.
        let start = l2s[i].0;
        let mut j = i + 1;
        while j < l2s.len()
            && l2s[j].0 <= l2s[j - 1].0 + cs + L2_GAP
            && l2s[j].0 + cs - start <= L2_GROUP
        {
            j += 1;
        }
        let end = l2s[j - 1].0 + cs;
        let bytes = src
            .read_at(start, (end - start) as usize)
            .map_err(LayoutError::Read)?;
        for (k, &(off, l1_index)) in l2s[i..j].iter().enumerate() {
            let t = &bytes[(off - start) as usize..(off - start + cs) as usize];
            if k == 0 || l2s[i + k - 1].0 != off {
                tables.push(table("L2 table", off, t));
            }
            map_l2(&header, file_len, l1_index, off, t, &mut clusters)?;
        }
        i = j;
    }
    clusters.sort_unstable_by_key(|c| (c.host, c.guest));
    let mut guest_data: Vec<u64> = clusters.iter().map(|c| c.guest).collect();
    guest_data.sort_unstable();
    // Two L1 entries naming one L2 table would map a guest cluster twice: damaged.
    if guest_data.windows(2).any(|w| w[0] == w[1]) {
        let cause = "two L1 entries name the same L2 table".to_string();
        return Err(Qcow2Error::Damaged(cause).into());
    }
    tables.sort_by_key(|t| t.offset);
    Ok(Layout {
        header,
        file_len,
        clusters,
        guest_data,
        tables,
    })
}

/// Checks that a cluster-sized piece of metadata or data sits on a cluster inside the file.
fn check_cluster(
    what: &'static str,
    off: u64,
    h: &Header,
    file_len: u64,
    whole: bool,
) -> Result<(), Qcow2Error> {
    let cs = h.cluster_size();
    if !off.is_multiple_of(cs) {
        return Err(Qcow2Error::Misaligned {
            what,
            offset: off,
            align: cs,
        });
    }
    let end = if whole {
        off.saturating_add(cs)
    } else {
        off + 1
    };
    if end > file_len {
        return Err(Qcow2Error::PastEnd {
            what,
            offset: off,
            len: file_len,
        });
    }
    Ok(())
}

/// Adds the data clusters of one L2 table (for L1 entry `l1_index`) to `out`.
fn map_l2(
    h: &Header,
    file_len: u64,
    l1_index: u64,
    table_at: u64,
    table: &[u8],
    out: &mut Vec<Cluster>,
) -> Result<(), Qcow2Error> {
    let first = l1_index * h.l2_entries();
    let last = h.guest_clusters().min(first + h.l2_entries());
    for guest in first..last {
        let k = (guest - first) as usize;
        let e = u64::from_be_bytes(table[k * 8..k * 8 + 8].try_into().expect("8 bytes"));
        let at = table_at + k as u64 * 8;
        let Some(c) = cluster(h, file_len, e, at, guest)? else {
            continue;
        };
        if out.len() >= MAX_DATA_CLUSTERS {
            let bytes = (MAX_DATA_CLUSTERS as u64 + 1) * 32;
            return Err(Qcow2Error::TooBig {
                what: "cluster map",
                bytes,
                limit: MAX_DATA_CLUSTERS as u64 * 32,
            });
        }
        out.push(c);
    }
    Ok(())
}

/// The data cluster an L2 entry (at file offset `at`) describes; `None` if it reads as zeros.
fn cluster(
    h: &Header,
    file_len: u64,
    e: u64,
    at: u64,
    guest: u64,
) -> Result<Option<Cluster>, Qcow2Error> {
    let cs = h.cluster_size();
    if e & (1 << 62) != 0 {
        // Compressed: the low `x` bits are the byte offset, the rest up to bit 61
        // the count of further 512-byte sectors the compressed bytes run into.
        let x = 62 - (h.cluster_bits - 8);
        let off = e & ((1 << x) - 1);
        let sectors = ((e & ((1 << 62) - 1)) >> x) + 1;
        if off >= file_len {
            return Err(Qcow2Error::PastEnd {
                what: "compressed cluster",
                offset: off,
                len: file_len,
            });
        }
        // The last sector may run past the end of the file; the stream stops before.
        let end = ((off & !511) + sectors * 512).min(file_len);
        let host_len = u32::try_from(end - off).expect("at most two clusters");
        return Ok(Some(Cluster {
            host: off,
            host_len,
            guest,
            compressed: true,
        }));
    }
    if e & 0x3F00_0000_0000_01FE != 0 || (h.version < 3 && e & 1 != 0) {
        return Err(Qcow2Error::Reserved {
            what: "L2 entry",
            offset: at,
            entry: e,
        });
    }
    let off = e & 0x00FF_FFFF_FFFF_FE00;
    // Bit 0: reads as zeros (v3), whatever the offset; offset 0: unallocated, no backing file.
    if e & 1 != 0 || off == 0 {
        return Ok(None);
    }
    check_cluster("data cluster", off, h, file_len, false)?;
    let host_len = (file_len - off).min(cs) as u32;
    Ok(Some(Cluster {
        host: off,
        host_len,
        guest,
        compressed: false,
    }))
}
