//! The rootfs tar reader on any bytes: parsing every header (ustar, GNU long names and
//! sparse maps, PAX records) never panics, and an extraction into a fresh directory fails
//! or succeeds without creating anything outside it.
#![no_main]
use imprint::rootfs::tar::Archive;
use libfuzzer_sys::fuzz_target;
use std::io;

fuzz_target!(|data: &[u8]| {
    // The parsing layer on its own: every entry's headers, its data drained.
    let mut ar = Archive::new(data);
    while let Ok(Some(_entry)) = ar.next_entry() {
        if io::copy(&mut ar, &mut io::sink()).is_err() {
            break;
        }
    }
    assert!(ar.position <= data.len() as u64, "read past the end of the input");

    // Extraction: `root` inside `fence`; an entry escaping through `..` or a symlink would
    // land beside `root` (relative escapes) and show up in `fence`.
    // In memory where there is a tmpfs: the file system calls dominate each run.
    let shm = std::path::Path::new("/dev/shm");
    let fence = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
    let Ok(fence) = fence else { return };
    let root = fence.path().join("root");
    if std::fs::create_dir(&root).is_err() {
        return;
    }
    let _ = imprint::rootfs::extract(data, &root, |_| {});
    let beside: Vec<_> = std::fs::read_dir(fence.path())
        .expect("listing the fence")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n != "root")
        .collect();
    assert!(beside.is_empty(), "extraction escaped the root: {beside:?}");
    let meta = std::fs::symlink_metadata(&root).expect("the root is still there");
    assert!(meta.is_dir(), "the root was replaced by a non-directory");
});
