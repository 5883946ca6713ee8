//! The written bytes' hash list for a qcow2 image, whose clusters arrive in file
//! order rather than disk order: each 1 MiB block of the disk is hashed once all
//! its data clusters came by (zeros where the image has none), and the block
//! digests are combined in disk order at the end, as for a raw image.

use crate::image::sink::ZERO_BLOCK;
use crate::image::verify::{block_digest, BlockDigest};
use std::collections::{HashMap, HashSet};

/// Blocks being assembled at once (1 MiB each); beyond, the oldest is hashed from the target.
pub(super) const MAX_OPEN: usize = 8;
const MIB: u64 = ZERO_BLOCK as u64;

struct Open {
    buf: Vec<u8>,
    got: u64,
    want: u64,
    /// Order of opening, to give up on the oldest first.
    seq: u64,
}

/// Block digests keyed by disk offset.
pub(super) struct GuestDigest<'a> {
    size: u64,
    cluster_size: u64,
    /// Guest indices of the data clusters, ascending.
    guest_data: &'a [u64],
    open: HashMap<u64, Open>,
    seq: u64,
    done: Vec<(u64, [u8; 32])>,
    /// Blocks too scattered in the file to assemble in memory: hashed from the target afterwards.
    evicted: HashSet<u64>,
}

impl<'a> GuestDigest<'a> {
    /// A digest for a `size`-byte disk whose data clusters (of `cluster_size`) are `guest_data`.
    pub(super) fn new(size: u64, cluster_size: u64, guest_data: &'a [u64]) -> Self {
        GuestDigest {
            size,
            cluster_size,
            guest_data,
            open: HashMap::new(),
            seq: 0,
            done: Vec::new(),
            evicted: HashSet::new(),
        }
    }

    fn block_len(&self, block: u64) -> u64 {
        (self.size - block * MIB).min(MIB)
    }

    /// Bytes of data clusters inside `block`.
    fn data_in(&self, block: u64) -> u64 {
        let (lo, hi) = (block * MIB, (block * MIB + self.block_len(block)));
        let cs = self.cluster_size;
        let first = self.guest_data.partition_point(|&g| (g + 1) * cs <= lo);
        let last = self.guest_data.partition_point(|&g| g * cs < hi);
        self.guest_data[first..last]
            .iter()
            .map(|&g| (g * cs + cs).min(hi) - (g * cs).max(lo))
            .sum()
    }

    /// Takes the bytes written at disk offset `at`.
    pub(super) fn add(&mut self, mut at: u64, mut data: &[u8]) {
        while !data.is_empty() {
            let block = at / MIB;
            let within = at % MIB;
            let len = self.block_len(block);
            let n = ((len - within) as usize).min(data.len());
            let (piece, rest) = data.split_at(n);
            if within == 0 && n as u64 == len {
                self.done.push((block, block_digest(piece)));
            } else if !self.evicted.contains(&block) {
                self.add_piece(block, within, piece);
            }
            at += n as u64;
            data = rest;
        }
    }

    fn add_piece(&mut self, block: u64, within: u64, piece: &[u8]) {
        if !self.open.contains_key(&block) {
            if self.open.len() >= MAX_OPEN {
                self.evict();
            }
            self.seq += 1;
            let open = Open {
                buf: vec![0; self.block_len(block) as usize],
                got: 0,
                want: self.data_in(block),
                seq: self.seq,
            };
            self.open.insert(block, open);
        }
        let o = self.open.get_mut(&block).expect("opened above");
        o.buf[within as usize..within as usize + piece.len()].copy_from_slice(piece);
        o.got += piece.len() as u64;
        if o.got >= o.want {
            let o = self.open.remove(&block).expect("present");
            self.done.push((block, block_digest(&o.buf)));
        }
    }

    /// Gives up assembling the oldest block but the first (which the sink holds in memory anyway).
    fn evict(&mut self) {
        let oldest = self
            .open
            .iter()
            .filter(|(&b, _)| b != 0)
            .min_by_key(|(_, o)| o.seq)
            .map(|(&b, _)| b);
        if let Some(b) = oldest {
            self.open.remove(&b);
            self.evicted.insert(b);
        }
    }

    /// Blocks to hash from the target after the write (sorted).
    pub(super) fn evicted(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.evicted.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// The hash list (hex) and, with `keep_blocks`, the per-block prefixes; `from_target`
    /// gives the digests of the evicted blocks. `Err` names a block still incomplete.
    pub(super) fn finish(
        mut self,
        keep_blocks: bool,
        from_target: &HashMap<u64, [u8; 32]>,
    ) -> Result<(String, Option<Vec<u64>>), u64> {
        if let Some(&b) = self.open.keys().min() {
            return Err(b);
        }
        self.done.sort_unstable_by_key(|d| d.0);
        let mut list = BlockDigest::new(keep_blocks);
        let mut done = self.done.iter().peekable();
        for block in 0..self.size.div_ceil(MIB) {
            let len = self.block_len(block) as usize;
            if let Some((_, d)) = done.next_if(|d| d.0 == block) {
                list.push_digest(*d);
            } else if let Some(d) = from_target.get(&block) {
                list.push_digest(*d);
            } else if len == ZERO_BLOCK {
                list.push_zero();
            } else {
                list.push_digest(block_digest(&vec![0u8; len]));
            }
        }
        Ok(list.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash list of `disk` computed the raw way, block by block in order.
    fn raw_list(disk: &[u8]) -> String {
        let mut d = BlockDigest::new(false);
        for b in disk.chunks(ZERO_BLOCK) {
            d.push(b, false);
        }
        d.finish().0
    }

    #[test]
    fn clusters_in_any_order_give_the_raw_hash_list_including_zero_blocks() {
        let cs = 64 << 10;
        let size = 3 * MIB + 4096 * 3;
        let guest_data = vec![1u64, 2, 17, 40, 48];
        let mut disk = vec![0u8; size as usize];
        for &g in &guest_data {
            let s = (g * cs) as usize;
            let e = (s + cs as usize).min(size as usize);
            disk[s..e]
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (g as u8) ^ (i as u8) | 1);
        }
        let mut gd = GuestDigest::new(size, cs, &guest_data);
        for &g in guest_data.iter().rev() {
            let s = (g * cs) as usize;
            let e = (s + cs as usize).min(size as usize);
            gd.add(g * cs, &disk[s..e]);
        }
        assert!(gd.evicted().is_empty());
        let (hex, _) = gd.finish(true, &HashMap::new()).unwrap();
        assert_eq!(hex, raw_list(&disk));
    }

    #[test]
    fn too_many_scattered_blocks_are_left_to_the_target_not_held() {
        let cs = 4096;
        let blocks = MAX_OPEN as u64 + 4;
        let size = blocks * MIB;
        // Two clusters per block; the first of every block arrives, then the second.
        let guest_data: Vec<u64> = (0..blocks).flat_map(|b| [b * 256, b * 256 + 1]).collect();
        let mut gd = GuestDigest::new(size, cs, &guest_data);
        for b in 0..blocks {
            gd.add(b * MIB, &[1u8; 4096]);
        }
        assert!(gd.open.len() <= MAX_OPEN);
        assert_eq!(gd.evicted().len() as u64, blocks - MAX_OPEN as u64);
        assert!(
            !gd.evicted().contains(&0),
            "the held-back first block is never evicted"
        );
    }
}
