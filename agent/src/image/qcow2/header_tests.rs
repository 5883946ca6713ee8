//! Headers and tables built byte by byte: what is read, and every refusal.

use super::*;
use crate::image::qcow2::map::{layout_of, Cluster};

use crate::image::qcow2::testfile::*;

fn refused(h: &[u8]) -> Qcow2Error {
    parse_header(h, 1 << 30).unwrap_err()
}

#[test]
fn a_v3_header_is_read() {
    let h = parse_header(&v3(1 << 30), 1 << 30).unwrap();
    assert_eq!(
        (h.version, h.cluster_size(), h.size, h.l1_size),
        (3, CS, 1 << 30, 2)
    );
    assert_eq!(
        (h.l1_offset, h.header_len, h.compression),
        (CS, 112, ClusterCompression::Deflate)
    );
}

#[test]
fn a_v2_header_is_read_with_its_72_bytes() {
    let mut b = v3(1 << 20);
    b[4..8].copy_from_slice(&2u32.to_be_bytes());
    b[72..].fill(0);
    let h = parse_header(&b[..72], 1 << 30).unwrap();
    assert_eq!((h.version, h.header_len), (2, 72));
}

#[test]
fn zstd_needs_the_compression_type_feature_bit() {
    let mut b = v3(1 << 20);
    b[104] = 1;
    assert_eq!(refused(&b), Qcow2Error::CompressionType(1));
    set64(&mut b, 72, 1 << 3);
    assert_eq!(
        parse_header(&b, 1 << 30).unwrap().compression,
        ClusterCompression::Zstd
    );
    b[104] = 2;
    assert_eq!(refused(&b), Qcow2Error::CompressionType(2));
}

#[test]
fn every_unsupported_feature_is_refused_by_name() {
    let base = v3(1 << 20);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = base.clone();
        f(&mut b);
        refused(&b)
    };
    assert_eq!(with(&|b| b[0] = b'X'), Qcow2Error::NotQcow2);
    assert_eq!(
        with(&|b| b[4..8].copy_from_slice(&4u32.to_be_bytes())),
        Qcow2Error::Version(4)
    );
    assert_eq!(with(&|b| set64(b, 72, 1 << 1)), Qcow2Error::MarkedCorrupt);
    assert_eq!(
        with(&|b| set64(b, 72, 1 << 2)),
        Qcow2Error::ExternalDataFile
    );
    assert_eq!(with(&|b| set64(b, 72, 1 << 4)), Qcow2Error::ExtendedL2);
    assert_eq!(
        with(&|b| set64(b, 72, 1 << 9)),
        Qcow2Error::UnknownFeatures(1 << 9)
    );
    assert_eq!(
        with(&|b| b[32..36].copy_from_slice(&2u32.to_be_bytes())),
        Qcow2Error::Encrypted(2)
    );
    assert_eq!(
        with(&|b| b[20..24].copy_from_slice(&8u32.to_be_bytes())),
        Qcow2Error::ClusterBits(8)
    );
    assert_eq!(
        with(&|b| b[20..24].copy_from_slice(&22u32.to_be_bytes())),
        Qcow2Error::ClusterBits(22)
    );
    assert_eq!(
        with(&|b| b[100..104].copy_from_slice(&50u32.to_be_bytes())),
        Qcow2Error::HeaderLength(50)
    );
    let backing = with(&|b| {
        set64(b, 8, 200);
        b[16..20].copy_from_slice(&9u32.to_be_bytes());
        b[200..209].copy_from_slice(b"base.img!");
    });
    assert_eq!(backing, Qcow2Error::BackingFile("base.img!".into()));
    assert!(
        backing.to_string().contains("backing file (\"base.img!\")"),
        "{backing}"
    );
    // The dirty bit only concerns refcounts, which a reader does not use.
    let mut dirty = base.clone();
    set64(&mut dirty, 72, 1);
    assert!(parse_header(&dirty, 1 << 30).is_ok());
}

#[test]
fn tables_out_of_place_are_refused() {
    let b = v3(1 << 30);
    assert!(matches!(
        parse_header(&b, CS + 8),
        Err(Qcow2Error::PastEnd {
            what: "L1 table",
            ..
        })
    ));
    let mut m = b.clone();
    set64(&mut m, 40, CS + 8);
    assert!(matches!(
        parse_header(&m, 1 << 30),
        Err(Qcow2Error::Misaligned { .. })
    ));
    let mut small = b.clone();
    small[36..40].copy_from_slice(&1u32.to_be_bytes());
    assert!(matches!(
        parse_header(&small, 1 << 30),
        Err(Qcow2Error::L1TooSmall {
            have: 1,
            need: 2,
            ..
        })
    ));
    // A disk so large its L1 table alone would not fit the memory bound.
    let mut huge = v3(1 << 50);
    huge[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        parse_header(&huge, u64::MAX),
        Err(Qcow2Error::TooBig {
            what: "L1 table",
            ..
        })
    ));
    assert_eq!(
        parse_header(&b[..80], 1 << 30),
        Err(Qcow2Error::Truncated(80))
    );
}

#[test]
fn l2_entries_map_data_compressed_zero_and_unallocated_clusters() {
    // Cluster 0: data at cluster 3; 1: zero flag; 2: unallocated; 3: compressed at byte
    // 4*CS+100 running 2 more sectors; 4: preallocated but zero-flagged.
    let comp_x = 62 - (CB - 8);
    let comp = (1 << 62) | (2 << comp_x) | (4 * CS + 100);
    let l2 = [
        (0, (3 * CS) | (1 << 63)),
        (1, 1),
        (3, comp),
        (4, (5 * CS) | 1),
    ];
    let f = file(5 * CS, &l2, 3);
    let l = layout_of(&f).unwrap();
    assert_eq!(
        l.clusters,
        vec![
            Cluster {
                host: 3 * CS,
                host_len: CS as u32,
                guest: 0,
                compressed: false
            },
            Cluster {
                host: 4 * CS + 100,
                host_len: 3 * 512 - 100,
                guest: 3,
                compressed: true
            },
        ]
    );
    assert_eq!(l.guest_data, vec![0, 3]);
    let what: Vec<_> = l.tables.iter().map(|t| (t.what, t.offset)).collect();
    assert_eq!(
        what,
        vec![("header", 0), ("L1 table", CS), ("L2 table", 2 * CS)]
    );
}

#[test]
fn damaged_tables_are_refused() {
    let bad = |l2: &[(usize, u64)]| layout_of(&file(4 * CS, l2, 1)).unwrap_err();
    assert!(matches!(
        bad(&[(0, (3 * CS) + 512)]),
        Qcow2Error::Misaligned {
            what: "data cluster",
            ..
        }
    ));
    assert!(matches!(
        bad(&[(0, 9 * CS)]),
        Qcow2Error::PastEnd {
            what: "data cluster",
            ..
        }
    ));
    assert!(matches!(
        bad(&[(0, (3 * CS) | (1 << 60))]),
        Qcow2Error::Reserved {
            what: "L2 entry",
            ..
        }
    ));
    assert!(matches!(
        bad(&[(0, (1 << 62) | (9 * CS))]),
        Qcow2Error::PastEnd {
            what: "compressed cluster",
            ..
        }
    ));
    let mut f = file(4 * CS, &[], 1);
    set64(&mut f, CS as usize, 40 * CS);
    assert!(matches!(
        layout_of(&f),
        Err(Qcow2Error::PastEnd {
            what: "L2 table",
            ..
        })
    ));
    set64(&mut f, CS as usize, (2 * CS) | 1);
    assert!(matches!(
        layout_of(&f),
        Err(Qcow2Error::Reserved {
            what: "L1 entry",
            ..
        })
    ));
}

#[test]
fn entries_past_the_disk_end_are_ignored() {
    // A 1.5-cluster disk: entry 1 covers its tail, entry 2 lies beyond it.
    let f = file(CS + CS / 2, &[(1, 3 * CS), (2, 9 * CS)], 1);
    let l = layout_of(&f).unwrap();
    assert_eq!(l.guest_data, vec![1]);
}

#[test]
fn mutated_headers_and_tables_are_refused_or_mapped_never_a_panic() {
    // A cheap, seeded stand-in for the fuzz target, run with every `cargo test`.
    let comp = (1 << 62) | (4 * CS + 8);
    let base = file(3 * CS + 777, &[(0, 3 * CS), (1, comp), (2, 1)], 2);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut f = base.clone();
        for _ in 0..1 + next() % 4 {
            // Mostly the header's first 112 bytes, the L1 entry and the used L2 entries.
            let at = match next() % 3 {
                0 => next() % 112,
                1 => CS + next() % 8,
                _ => 2 * CS + next() % 24,
            } as usize;
            f[at] ^= 1 << (next() % 8);
        }
        if let Ok(l) = layout_of(&f) {
            assert!(l
                .clusters
                .iter()
                .all(|c| c.host < l.file_len && c.guest < l.header.guest_clusters()));
        }
    }
}
