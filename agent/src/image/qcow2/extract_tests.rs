//! The data pass on hand-built files fed through the real channel reader.

use super::*;
use crate::image::channel::{Msg, Served};
use crate::image::qcow2::map::layout_of;
use crate::image::qcow2::testfile::*;
use crate::plan::{Digest, DigestAlgorithm};
use std::io::Write;
use std::sync::mpsc::sync_channel;

/// Streams `file` through an extractor made from `layout`; the ops it sent, or its error.
fn extract(layout: &Layout, file: &[u8]) -> Result<Vec<(u64, Vec<u8>, bool)>, ImageError> {
    let piece = 48 << 10;
    let (tx, rx) = sync_channel(file.len() / piece + 2);
    let mut pool = Pool::new(piece, file.len() / piece + 1);
    let cancel = AtomicBool::new(false);
    for chunk in file.chunks(piece) {
        let mut b = pool.get(&cancel).unwrap();
        b.spare()[..chunk.len()].copy_from_slice(chunk);
        b.set_len(chunk.len());
        tx.send(Msg::Data(b)).unwrap();
    }
    let hex = hex::encode(Sha256::digest(file));
    let served = Served {
        url: "t".into(),
        bytes: file.len() as u64,
        algorithm: DigestAlgorithm::Sha256,
        actual_hex: hex.clone(),
        signature: None,
        resumes: 0,
        registry: None,
    };
    tx.send(Msg::End(served)).unwrap();
    let input = ChannelReader::new(
        rx,
        Some(Digest {
            algorithm: DigestAlgorithm::Sha256,
            hex,
        }),
    );
    let (op_tx, op_rx) = sync_channel(1024);
    Extractor::new(layout, input, "t", Pool::new(4 << 20, 8), op_tx).run(&cancel)?;
    Ok(op_rx
        .try_iter()
        .filter_map(|op| match op {
            Op::Data(at, b) => Some((at, b.to_vec(), true)),
            Op::Zero(at, len) => Some((at, vec![0; len as usize], false)),
            Op::End => None,
        })
        .collect())
}

/// A disk of 6 clusters: 0 data (0x11), 1 compressed (0x22…), 3 data (0x33), the rest zeros.
fn sample() -> (Vec<u8>, Vec<u8>) {
    let mut plain = vec![0x22u8; CS as usize];
    plain[..100].fill(7);
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&plain).unwrap();
    let z = z.finish().unwrap();
    let comp_at = 5 * CS + 300;
    let sectors = ((comp_at % 512 + z.len() as u64).div_ceil(512)) - 1;
    let comp = (1 << 62) | (sectors << (62 - (CB - 8))) | comp_at;
    let mut f = file(6 * CS, &[(0, 4 * CS), (1, comp), (3, 3 * CS)], 3);
    f[3 * CS as usize..4 * CS as usize].fill(0x33);
    f[4 * CS as usize..5 * CS as usize].fill(0x11);
    f[comp_at as usize..comp_at as usize + z.len()].copy_from_slice(&z);
    let mut disk = vec![0u8; 6 * CS as usize];
    disk[..CS as usize].fill(0x11);
    disk[CS as usize..2 * CS as usize].copy_from_slice(&plain);
    disk[3 * CS as usize..4 * CS as usize].fill(0x33);
    (f, disk)
}

#[test]
fn clusters_land_at_their_disk_offsets_and_the_gaps_are_zero_runs() {
    let (f, disk) = sample();
    let layout = layout_of(&f).unwrap();
    let ops = extract(&layout, &f).unwrap();
    let mut got = vec![0xEEu8; disk.len()];
    let mut covered = 0;
    for (at, bytes, _) in &ops {
        got[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
        covered += bytes.len();
    }
    assert_eq!(covered, disk.len(), "every disk byte written exactly once");
    assert!(got == disk, "the disk differs");
    assert!(ops
        .iter()
        .filter(|o| !o.2)
        .all(|o| o.1.iter().all(|&b| b == 0)));
}

#[test]
fn a_table_that_changed_between_the_passes_stops_the_write() {
    let (f, _) = sample();
    let layout = layout_of(&f).unwrap();
    let mut changed = f.clone();
    changed[2 * CS as usize + 5 * 8 + 7] ^= 1; // an unused L2 entry: the map would not notice
    let err = extract(&layout, &changed).unwrap_err();
    let ImageError::Qcow2 { cause, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        cause,
        &Qcow2Error::Changed {
            what: "L2 table",
            offset: 2 * CS
        }
    );
    assert!(err.to_string().contains("changed on the server"), "{err}");
}

#[test]
fn a_compressed_cluster_that_does_not_inflate_is_named() {
    let (mut f, _) = sample();
    let layout = layout_of(&f).unwrap();
    let at = layout.clusters.iter().find(|c| c.compressed).unwrap().host as usize;
    f[at..at + 40].fill(0xFF);
    // The digest is the served file's: only the cluster is wrong.
    let err = extract(&layout, &f).unwrap_err();
    assert!(
        matches!(
            &err,
            ImageError::Qcow2 {
                cause: Qcow2Error::BadCompressedCluster { .. },
                ..
            }
        ),
        "{err}"
    );
}
