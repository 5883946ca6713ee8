//! Container layers on any bytes: two layer tars applied in order with their whiteouts
//! and opaque markers never panic, and never create, change or remove anything outside
//! the root (a whiteout through `..` or a symlink would remove `fence/outside/keep`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Every whiteout name parses to a marker or a refusal.
    let _ = imprint::rootfs::whiteout::marker(data);

    // The first two bytes say where the first layer ends.
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return };
    let cut = (u16::from_le_bytes(*len) as usize).min(rest.len());
    let (lower, upper) = rest.split_at(cut);

    let shm = std::path::Path::new("/dev/shm");
    let fence = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
    let Ok(fence) = fence else { return };
    let root = fence.path().join("root");
    let outside = fence.path().join("outside");
    if std::fs::create_dir(&root).is_err()
        || std::fs::create_dir(&outside).is_err()
        || std::fs::write(outside.join("keep"), b"keep").is_err()
    {
        return;
    }
    let _ = imprint::rootfs::apply_layers([lower, upper], &root);
    let mut beside: Vec<_> = std::fs::read_dir(fence.path())
        .expect("listing the fence")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    beside.sort();
    assert_eq!(beside, ["outside", "root"], "layers escaped the root");
    let kept: Vec<_> = std::fs::read_dir(&outside)
        .expect("listing outside")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(kept, ["keep"], "something outside the root changed");
    assert_eq!(std::fs::read(outside.join("keep")).expect("keep"), b"keep");
    let meta = std::fs::symlink_metadata(&root).expect("the root is still there");
    assert!(meta.is_dir(), "the root was replaced by a non-directory");
});
