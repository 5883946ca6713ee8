//! Loop-device tests of the ioctl wrappers, node handling and aligned buffers.

use super::testutil::{tool, Loop};
use super::*;
use std::io::{Read, Seek, SeekFrom, Write};

#[test]
fn partition_node_names() {
    let n = |d: &str, i| partition_node(Path::new(d), i).display().to_string();
    assert_eq!(n("/dev/sda", 2), "/dev/sda2");
    assert_eq!(n("/dev/vdb", 1), "/dev/vdb1");
    assert_eq!(n("/dev/nvme0n1", 2), "/dev/nvme0n1p2");
    assert_eq!(n("/dev/loop3", 2), "/dev/loop3p2");
    assert_eq!(n("/dev/mmcblk0", 1), "/dev/mmcblk0p1");
}

#[test]
fn aligned_buf_is_aligned_zeroed_and_rounded() {
    let mut b = AlignedBuf::new(5000);
    assert_eq!(b.len(), 8192);
    assert_eq!(b.as_ptr() as usize % DIRECT_ALIGN, 0);
    assert!(b.iter().all(|&x| x == 0));
    b[8191] = 7;
    assert_eq!(b[8191], 7);
}

#[test]
fn sizes_and_sectors_of_loop_devices_and_files() {
    for sector in [512u64, 4096] {
        let lo = Loop::new(64 << 20, sector);
        let f = File::open(&lo.dev).unwrap();
        assert!(is_block_device(&lo.dev));
        assert_eq!(size_bytes(&f).unwrap(), 64 << 20);
        assert_eq!(logical_sector(&f).unwrap(), sector);
        assert_eq!(logical_sector_of(&lo.dev).unwrap(), sector);
        assert!(physical_sector(&f).unwrap() >= sector);
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    File::create(&p).unwrap().set_len(12345).unwrap();
    let f = File::open(&p).unwrap();
    assert_eq!(size_bytes(&f).unwrap(), 12345);
    assert_eq!(logical_sector(&f).unwrap(), 512);
    assert!(!is_block_device(&p));
}

#[test]
fn sync_partitions_creates_and_removes_nodes_with_right_sizes() {
    let lo = Loop::new(64 << 20, 512);
    sync_partitions(&lo.dev, &[(1, 1 << 20, 8 << 20), (2, 9 << 20, 4 << 20)]).unwrap();
    for (n, size) in [(1, 8u64 << 20), (2, 4 << 20)] {
        let node = partition_node(&lo.dev, n);
        wait_for_node(&node, Duration::from_secs(10)).unwrap();
        let (ok, out) = tool("blockdev", &["--getsize64", node.to_str().unwrap()]);
        assert!(ok, "{out}");
        assert_eq!(out.trim(), size.to_string());
    }
    // A second sync replaces the set: partition 2 goes away, 1 changes size.
    sync_partitions(&lo.dev, &[(1, 1 << 20, 2 << 20)]).unwrap();
    let parts = kernel_partitions(&lo.dev).unwrap();
    assert_eq!(
        parts,
        vec![KernelPartition {
            number: 1,
            start_bytes: 1 << 20,
            len_bytes: 2 << 20
        }]
    );
    let gone = partition_node(&lo.dev, 2);
    let e = wait_for_node(&gone, Duration::from_millis(300)).unwrap_err();
    assert!(e.to_string().contains("did not appear"), "{e}");
}

#[test]
fn sync_partitions_adds_beside_a_partition_in_use_and_leaves_it_alone() {
    let lo = Loop::new(64 << 20, 512);
    sync_partitions(&lo.dev, &[(1, 1 << 20, 8 << 20)]).unwrap();
    let first = partition_node(&lo.dev, 1);
    wait_for_node(&first, Duration::from_secs(10)).unwrap();
    // Held open, as an open LUKS volume holds its partition: the kernel cannot re-read
    // the table, and partition 1 must not be deleted and re-added.
    let held = std::fs::File::open(&first).unwrap();
    sync_partitions(&lo.dev, &[(1, 1 << 20, 8 << 20), (2, 9 << 20, 4 << 20)]).unwrap();
    wait_for_node(&partition_node(&lo.dev, 2), Duration::from_secs(10)).unwrap();
    assert_eq!(kernel_partitions(&lo.dev).unwrap().len(), 2);
    // Changing the partition in use is refused by the kernel, and said so.
    let e = sync_partitions(&lo.dev, &[(1, 1 << 20, 4 << 20)]).unwrap_err();
    assert!(e.to_string().contains("busy"), "{e}");
    drop(held);
}

#[test]
fn zero_out_discard_flush_and_direct_io() {
    let lo = Loop::new(16 << 20, 512);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lo.dev)
        .unwrap();
    f.write_all(&[0xAB; 1 << 20]).unwrap();
    flush(&f).unwrap();
    zero_out(&f, 4096, 8192).unwrap();
    let mut got = vec![0u8; 3 * 4096];
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_exact(&mut got).unwrap();
    assert!(got[..4096].iter().all(|&b| b == 0xAB));
    assert!(got[4096..].iter().all(|&b| b == 0));
    match discard(&f, 0, 1 << 20) {
        Ok(()) | Err(BlockError::Unsupported { .. }) => {}
        Err(e) => panic!("discard: {e}"),
    }
    let mut d = open_direct(&lo.dev, true).unwrap();
    assert!(d.direct, "a loop device accepts O_DIRECT");
    let mut buf = AlignedBuf::new(4096);
    buf.fill(0x5A);
    d.file.seek(SeekFrom::Start(8192)).unwrap();
    d.file.write_all(&buf).unwrap();
    let mut rd = AlignedBuf::new(4096);
    d.file.seek(SeekFrom::Start(8192)).unwrap();
    d.file.read_exact(&mut rd).unwrap();
    assert!(rd.iter().all(|&b| b == 0x5A));
}
