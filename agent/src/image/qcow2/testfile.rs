//! qcow2 files built byte by byte for the unit tests.

use super::header::MAGIC;

/// Cluster bits and size of the built files (64 KiB).
pub const CB: u32 = 16;
pub const CS: u64 = 1 << CB;

/// A v3 header for a `size`-byte disk, L1 (one entry per 512 MiB) at cluster 1.
pub fn v3(size: u64) -> Vec<u8> {
    let mut h = vec![0u8; CS as usize];
    h[..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    h[20..24].copy_from_slice(&CB.to_be_bytes());
    h[24..32].copy_from_slice(&size.to_be_bytes());
    let l1 = size.div_ceil(CS * (CS / 8)) as u32;
    h[36..40].copy_from_slice(&l1.to_be_bytes());
    h[40..48].copy_from_slice(&CS.to_be_bytes());
    h[96..100].copy_from_slice(&4u32.to_be_bytes());
    h[100..104].copy_from_slice(&112u32.to_be_bytes());
    h
}

/// Writes `v` big-endian at `at`.
pub fn set64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// A whole file: header, L1 at cluster 1, one L2 table at cluster 2, then `data` clusters.
pub fn file(size: u64, l2: &[(usize, u64)], data_clusters: usize) -> Vec<u8> {
    let mut f = v3(size);
    f.resize((3 + data_clusters) * CS as usize, 0);
    set64(&mut f, CS as usize, (2 * CS) | (1 << 63));
    for &(i, e) in l2 {
        set64(&mut f, 2 * CS as usize + i * 8, e);
    }
    f
}
