//! Where everything goes on a write-once FAT12/FAT16 filesystem: geometry,
//! boot sector, allocation table, and directory bodies.
//!
//! We write the filesystem ourselves rather than through the `fatfs` crate:
//! its 0.3 release stores `.` and `..` with long-name entries, which Linux's
//! fsck rejects. Files are written once, so every file and directory gets one
//! contiguous run of clusters.

use super::fatdir::{Child, DirWriter, DosTime, Tree, ENTRY};

/// Copies of the allocation table.
pub(super) const FATS: u32 = 2;
const RESERVED_SECTORS: u32 = 1;
const ROOT_ENTRIES: u32 = 512;
const MEDIA: u8 = 0xF8;
const MAX_CLUSTER_BYTES: u32 = 32 * 1024;
/// Cluster counts this close to a FAT type's limits are avoided: some readers
/// disagree by a few clusters about where FAT12 ends and FAT16 begins.
const MARGIN: u32 = 16;

/// The FAT variants we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FatType {
    Fat12,
    Fat16,
}

impl FatType {
    /// `FAT12` or `FAT16`, as blkid reports it.
    pub fn name(self) -> &'static str {
        match self {
            FatType::Fat12 => "FAT12",
            FatType::Fat16 => "FAT16",
        }
    }
    fn bits(self) -> u64 {
        match self {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
        }
    }
    fn end_of_chain(self) -> u32 {
        match self {
            FatType::Fat12 => 0xFFF,
            FatType::Fat16 => 0xFFFF,
        }
    }
}

/// Sizes and offsets of one filesystem.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    pub fat_type: FatType,
    pub sector: u32,
    pub total_sectors: u32,
    pub sectors_per_cluster: u32,
    pub fat_sectors: u32,
    pub clusters: u32,
}

impl Geometry {
    /// FAT16 with the smallest cluster that works, FAT12 when the region is too small for FAT16;
    /// `None` when it is too large for FAT16's 32 KiB clusters (about 2 GiB).
    pub fn choose(size: u64, sector: u16) -> Option<Geometry> {
        let sector = u32::from(sector);
        let total = u32::try_from(size / u64::from(sector)).ok()?;
        let spcs = || {
            (0..8)
                .map(|s| 1u32 << s)
                .filter(|spc| spc * sector <= MAX_CLUSTER_BYTES)
        };
        let fat16 = spcs()
            .filter_map(|spc| Self::try_layout(FatType::Fat16, total, sector, spc))
            .find(|g| g.clusters <= 65_524 - MARGIN);
        match fat16 {
            Some(g) if g.clusters >= 4_085 + MARGIN => Some(g),
            Some(_) => spcs()
                .filter_map(|spc| Self::try_layout(FatType::Fat12, total, sector, spc))
                .find(|g| g.clusters <= 4_084 - MARGIN && g.clusters > 0),
            None => None,
        }
    }

    fn try_layout(fat_type: FatType, total: u32, sector: u32, spc: u32) -> Option<Geometry> {
        let root_sectors = (ROOT_ENTRIES * ENTRY as u32).div_ceil(sector);
        let meta = RESERVED_SECTORS + root_sectors;
        let most_clusters = u64::from(total.checked_sub(meta)? / spc);
        let fat_bytes = ((most_clusters + 2) * fat_type.bits()).div_ceil(8);
        let fat_sectors = u32::try_from(fat_bytes.div_ceil(u64::from(sector))).ok()?;
        let data = total.checked_sub(meta + FATS * fat_sectors)?;
        let g = Geometry {
            fat_type,
            sector,
            total_sectors: total,
            sectors_per_cluster: spc,
            fat_sectors,
            clusters: data / spc,
        };
        (u16::try_from(fat_sectors).is_ok()).then_some(g)
    }

    /// Bytes in one cluster.
    pub fn cluster_bytes(&self) -> u64 {
        u64::from(self.sectors_per_cluster * self.sector)
    }
    /// Byte offset of the first allocation table.
    pub fn fat_start(&self) -> u64 {
        u64::from(RESERVED_SECTORS * self.sector)
    }
    /// Bytes in one allocation table.
    pub fn fat_bytes(&self) -> u64 {
        u64::from(self.fat_sectors) * u64::from(self.sector)
    }
    /// Byte offset of the fixed-size root directory.
    pub fn root_start(&self) -> u64 {
        self.fat_start() + u64::from(FATS) * self.fat_bytes()
    }
    fn root_bytes(&self) -> u64 {
        u64::from((ROOT_ENTRIES * ENTRY as u32).div_ceil(self.sector) * self.sector)
    }
    /// Byte offset of data cluster `n` (clusters are numbered from 2).
    pub fn cluster_start(&self, n: u32) -> u64 {
        self.root_start() + self.root_bytes() + u64::from(n - 2) * self.cluster_bytes()
    }

    /// The boot sector (one logical sector) with the BIOS parameter block.
    pub fn boot_sector(&self, label: &[u8; 11], volume_id: u32) -> Vec<u8> {
        let mut b = vec![0u8; self.sector as usize];
        b[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]); // jump over the BPB to the stub at 0x3E
        b[3..11].copy_from_slice(b"MSWIN4.1");
        b[11..13].copy_from_slice(&(self.sector as u16).to_le_bytes());
        b[13] = self.sectors_per_cluster as u8;
        b[14..16].copy_from_slice(&(RESERVED_SECTORS as u16).to_le_bytes());
        b[16] = FATS as u8;
        b[17..19].copy_from_slice(&(ROOT_ENTRIES as u16).to_le_bytes());
        match u16::try_from(self.total_sectors) {
            Ok(small) => b[19..21].copy_from_slice(&small.to_le_bytes()),
            Err(_) => b[32..36].copy_from_slice(&self.total_sectors.to_le_bytes()),
        }
        b[21] = MEDIA;
        b[22..24].copy_from_slice(&(self.fat_sectors as u16).to_le_bytes());
        b[24..26].copy_from_slice(&32u16.to_le_bytes()); // sectors per track (CHS, unused)
        b[26..28].copy_from_slice(&64u16.to_le_bytes()); // heads (CHS, unused)
        b[36] = 0x80;
        b[38] = 0x29; // extended boot signature: id, label and type follow
        b[39..43].copy_from_slice(&volume_id.to_le_bytes());
        b[43..54].copy_from_slice(label);
        b[54..62].copy_from_slice(format!("{:<8}", self.fat_type.name()).as_bytes());
        b[62..65].copy_from_slice(&[0xF4, 0xEB, 0xFD]); // not bootable: hlt; jmp back to hlt
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }
}

/// Everything to write besides file contents.
pub(super) struct Image {
    /// One allocation table (written [`FATS`] times).
    pub fat: Vec<u8>,
    /// The root directory region.
    pub root: Vec<u8>,
    /// Subdirectory bodies by first cluster.
    pub dirs: Vec<(u32, Vec<u8>)>,
    /// Non-empty files: (index into the file list, first cluster).
    pub files: Vec<(usize, u32)>,
}

impl Image {
    /// Allocates clusters for every directory and file and builds the metadata.
    pub fn lay_out(
        g: &Geometry,
        label: &[u8; 11],
        tree: &[(String, Vec<u8>)],
        time: DosTime,
    ) -> Result<Image, String> {
        let dirs = Tree::new(tree.iter().map(|(p, _)| p.as_str()))?;
        if dirs.entries(0) > ROOT_ENTRIES as usize {
            return Err(format!(
                "the root directory holds at most {ROOT_ENTRIES} entries"
            ));
        }
        let mut fat = Fat::new(g);
        let dir_clusters: Vec<u32> = (0..dirs.dirs.len())
            .map(|d| {
                if d == 0 {
                    Ok(0)
                } else {
                    fat.alloc((dirs.entries(d) * ENTRY) as u64)
                }
            })
            .collect::<Result<_, _>>()?;
        let mut files = Vec::new();
        let mut file_clusters = Vec::new();
        for (i, (path, content)) in tree.iter().enumerate() {
            if u32::try_from(content.len()).is_err() {
                return Err(format!("{path} is larger than FAT's 4 GiB file limit"));
            }
            let c = fat.alloc(content.len() as u64)?;
            file_clusters.push(c);
            if c != 0 {
                files.push((i, c));
            }
        }
        let mut root = Vec::new();
        let mut bodies = Vec::new();
        for (d, node) in dirs.dirs.iter().enumerate() {
            let mut w = DirWriter::new(time);
            if d == 0 {
                w.label(label);
            } else {
                w.dots(dir_clusters[d], dir_clusters[node.parent]);
            }
            for (name, child) in &node.children {
                match *child {
                    Child::Dir(c) => w.named(name, true, dir_clusters[c], 0),
                    Child::File(i) => {
                        w.named(name, false, file_clusters[i], tree[i].1.len() as u32)
                    }
                }
            }
            let mut bytes = w.bytes;
            if d == 0 {
                bytes.resize(g.root_bytes() as usize, 0);
                root = bytes;
            } else {
                bytes.resize(
                    bytes.len().div_ceil(g.cluster_bytes() as usize) * g.cluster_bytes() as usize,
                    0,
                );
                bodies.push((dir_clusters[d], bytes));
            }
        }
        Ok(Image {
            fat: fat.bytes,
            root,
            dirs: bodies,
            files,
        })
    }
}

/// The allocation table being built; clusters are handed out in order.
struct Fat {
    bytes: Vec<u8>,
    fat_type: FatType,
    cluster_bytes: u64,
    next: u32,
    end: u32,
}

impl Fat {
    fn new(g: &Geometry) -> Fat {
        let mut fat = Fat {
            bytes: vec![0; g.fat_bytes() as usize],
            fat_type: g.fat_type,
            cluster_bytes: g.cluster_bytes(),
            next: 2,
            end: g.clusters + 2,
        };
        let eoc = g.fat_type.end_of_chain();
        fat.set(0, (eoc & !0xFF) | u32::from(MEDIA));
        fat.set(1, eoc);
        fat
    }

    /// A contiguous chain for `bytes` of data; cluster 0 (none) for an empty file.
    fn alloc(&mut self, bytes: u64) -> Result<u32, String> {
        if bytes == 0 {
            return Ok(0);
        }
        let n = u32::try_from(bytes.div_ceil(self.cluster_bytes)).unwrap_or(u32::MAX);
        let first = self.next;
        if self.end.saturating_sub(first) < n {
            let size = u64::from(self.end - 2) * self.cluster_bytes;
            return Err(format!(
                "the files do not fit in the {size} bytes of data space; give configdrive a larger size"
            ));
        }
        for c in first..first + n - 1 {
            self.set(c, c + 1);
        }
        self.set(first + n - 1, self.fat_type.end_of_chain());
        self.next = first + n;
        Ok(first)
    }

    fn set(&mut self, n: u32, v: u32) {
        let n = n as usize;
        match self.fat_type {
            FatType::Fat16 => {
                self.bytes[2 * n..2 * n + 2].copy_from_slice(&(v as u16).to_le_bytes())
            }
            FatType::Fat12 => {
                let at = n * 3 / 2;
                if n.is_multiple_of(2) {
                    self.bytes[at] = v as u8;
                    self.bytes[at + 1] = (self.bytes[at + 1] & 0xF0) | ((v >> 8) as u8 & 0x0F);
                } else {
                    self.bytes[at] = (self.bytes[at] & 0x0F) | ((v as u8 & 0x0F) << 4);
                    self.bytes[at + 1] = (v >> 4) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn geometry_picks_fat12_small_fat16_mid_and_refuses_huge() {
        assert_eq!(
            Geometry::choose(MIB, 512).map(|g| g.fat_type),
            Some(FatType::Fat12)
        );
        assert_eq!(
            Geometry::choose(16 * MIB, 512).map(|g| g.fat_type),
            Some(FatType::Fat16)
        );
        let g = Geometry::choose(64 * MIB, 512).expect("64 MiB");
        assert_eq!((g.fat_type, g.cluster_bytes()), (FatType::Fat16, 1024));
        assert_eq!(
            Geometry::choose(2000 * MIB, 512).map(|g| g.fat_type),
            Some(FatType::Fat16)
        );
        assert!(Geometry::choose(3 * 1024 * MIB, 512).is_none());
        let g4k = Geometry::choose(64 * MIB, 4096).expect("4Kn");
        assert_eq!((g4k.sector, g4k.fat_type), (4096, FatType::Fat16));
    }

    #[test]
    fn geometry_fits_inside_the_region_for_many_sizes() {
        for kib in (1024..=300 * 1024).step_by(4093) {
            let size = kib as u64 * 1024;
            let g = Geometry::choose(size, 512).expect("geometry");
            assert!(g.cluster_start(g.clusters + 2) <= size, "{size}: {g:?}");
            let limit = if g.fat_type == FatType::Fat12 {
                4084
            } else {
                65_524
            };
            assert!(
                g.clusters <= limit && (g.fat_type == FatType::Fat12 || g.clusters >= 4085),
                "{g:?}"
            );
        }
    }

    #[test]
    fn fat12_entries_pack_into_a_byte_and_a_half() {
        let g = Geometry::choose(MIB, 512).expect("geometry");
        let mut fat = Fat::new(&g);
        fat.set(2, 0xABC);
        fat.set(3, 0x123);
        assert_eq!(&fat.bytes[3..6], &[0xBC, 0x3A, 0x12]);
        assert_eq!(&fat.bytes[0..3], &[0xF8, 0xFF, 0xFF]);
    }
}
