//! Layers applied over a temp dir with the real extractor: whiteouts, opaque markers
//! wherever they stand, what a layer created kept from its own markers, escapes
//! refused, and a mount point emptied but kept.

use super::*;
use crate::rootfs::Extraction;
use std::os::unix::fs::MetadataExt;

/// One tar member: path, type flag (`0` file, `1` hard link, `2` symlink, `5` dir),
/// file contents or link target.
type Member<'a> = (&'a str, u8, &'a str);

/// A ustar archive of `members` (mode 0644 files, 0755 dirs, root-owned).
fn tar(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, data) in members {
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        let mode = if *kind == b'5' {
            "0000755\0"
        } else {
            "0000644\0"
        };
        h[100..108].copy_from_slice(mode.as_bytes());
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        let size = if *kind == b'0' { data.len() } else { 0 };
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"14000000000\0");
        h[156] = *kind;
        if matches!(kind, b'1' | b'2') {
            h[157..157 + data.len()].copy_from_slice(data.as_bytes());
        }
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        if size > 0 {
            out.extend_from_slice(data.as_bytes());
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Applies `layers` in order under `root`; each layer's (whiteouts, opaque) counts.
fn apply(root: &Path, layers: &[&[Member]]) -> io::Result<Vec<(u64, u64)>> {
    let mut x = Extraction::new(root);
    let mut counts = Vec::new();
    for members in layers {
        let mut l = Layer::new(root);
        x.archive(&tar(members)[..], Some(&mut l), &mut |_| {})
            .map_err(|e| io::Error::other(e.to_string()))?;
        counts.push((l.whiteouts, l.opaque));
    }
    x.finish().map_err(|e| io::Error::other(e.to_string()))?;
    Ok(counts)
}

/// Every path under `root`, sorted, directories with a trailing `/`.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

const BASE: &[Member] = &[
    ("etc/", b'5', ""),
    ("etc/a.conf", b'0', "a"),
    ("etc/b.conf", b'0', "b"),
    ("opt/", b'5', ""),
    ("opt/x/", b'5', ""),
    ("opt/x/old", b'0', "old"),
    ("opt/x/sub/", b'5', ""),
    ("opt/x/sub/deep", b'0', "deep"),
    ("bin/", b'5', ""),
    ("bin/tool", b'0', "v1"),
];

#[test]
fn markers_are_told_from_entries() {
    assert_eq!(marker(b"etc/a.conf").unwrap(), Marker::Entry);
    assert_eq!(
        marker(b"./etc/.wh.a.conf").unwrap(),
        Marker::Whiteout(b"./etc/a.conf".to_vec())
    );
    assert_eq!(
        marker(b".wh.top").unwrap(),
        Marker::Whiteout(b"top".to_vec())
    );
    assert_eq!(
        marker(b"opt/x/.wh..wh..opq").unwrap(),
        Marker::Opaque(b"opt/x".to_vec())
    );
    assert_eq!(marker(b".wh..wh..opq").unwrap(), Marker::Opaque(Vec::new()));
    for bad in [&b"etc/.wh."[..], b".wh.", b"a/.wh..", b"a/.wh..."] {
        assert!(
            marker(bad).is_err(),
            "{:?} is refused",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn the_opaque_marker_applies_before_the_layers_entries_wherever_it_stands() {
    let after: &[Member] = &[("opt/x/new", b'0', "new"), ("opt/x/.wh..wh..opq", b'0', "")];
    let before: &[Member] = &[("opt/x/.wh..wh..opq", b'0', ""), ("opt/x/new", b'0', "new")];
    for upper in [after, before] {
        let dir = tempfile::tempdir().unwrap();
        let counts = apply(dir.path(), &[BASE, upper]).unwrap();
        assert_eq!(counts[1], (0, 1));
        let t = tree(&dir.path().join("opt"));
        assert_eq!(t, ["x/", "x/new"], "lower children of opt/x hidden");
    }
    // A directory the layer re-declares stays, its lower contents do not.
    let redeclared: &[Member] = &[
        ("opt/x/sub/", b'5', ""),
        ("opt/x/sub/kept", b'0', "k"),
        ("opt/x/.wh..wh..opq", b'0', ""),
    ];
    let dir = tempfile::tempdir().unwrap();
    apply(dir.path(), &[BASE, redeclared]).unwrap();
    assert_eq!(
        tree(&dir.path().join("opt")),
        ["x/", "x/sub/", "x/sub/kept"]
    );
}

#[test]
fn whiteouts_remove_lower_paths_and_ignore_the_layers_own() {
    let upper: &[Member] = &[
        ("etc/.wh.a.conf", b'0', ""),
        ("etc/c.conf", b'0', "c"),
        ("etc/.wh.c.conf", b'0', ""),
        ("opt/.wh.x", b'0', ""),
        ("etc/.wh.never-there", b'0', ""),
        ("gone/.wh.parent-missing", b'0', ""),
        ("bin/tool", b'0', "v2"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let counts = apply(dir.path(), &[BASE, upper]).unwrap();
    assert_eq!(
        counts[1],
        (4, 0),
        "the layer's own c.conf is not whited out"
    );
    let root = dir.path();
    assert_eq!(
        tree(root),
        [
            "bin/",
            "bin/tool",
            "etc/",
            "etc/b.conf",
            "etc/c.conf",
            "opt/"
        ]
    );
    assert_eq!(std::fs::read(root.join("bin/tool")).unwrap(), b"v2");
    assert!(!root.join("gone").exists(), "a whiteout creates nothing");
}

#[test]
fn a_whiteout_of_a_directory_keeps_what_the_layer_put_inside_it() {
    let upper: &[Member] = &[("opt/x/fresh", b'0', "f"), ("opt/.wh.x", b'0', "")];
    let dir = tempfile::tempdir().unwrap();
    apply(dir.path(), &[BASE, upper]).unwrap();
    assert_eq!(tree(&dir.path().join("opt")), ["x/", "x/fresh"]);
}

#[test]
fn lower_files_are_replaced_linked_and_directories_keep_their_contents() {
    let upper: &[Member] = &[
        ("opt/x/sub", b'0', "a file where a tree was"),
        ("etc/", b'5', ""),
        ("etc/link-to-lower", b'1', "etc/b.conf"),
        ("bin/tool", b'2', "../etc/b.conf"),
    ];
    let dir = tempfile::tempdir().unwrap();
    apply(dir.path(), &[BASE, upper]).unwrap();
    let root = dir.path();
    assert_eq!(
        std::fs::read(root.join("opt/x/sub")).unwrap(),
        b"a file where a tree was"
    );
    assert!(
        root.join("etc/a.conf").exists(),
        "dir over dir keeps contents"
    );
    let b = std::fs::metadata(root.join("etc/b.conf")).unwrap();
    let l = std::fs::metadata(root.join("etc/link-to-lower")).unwrap();
    assert_eq!(b.ino(), l.ino(), "hard link to a lower layer's file");
    assert_eq!(
        std::fs::read_link(root.join("bin/tool")).unwrap(),
        Path::new("../etc/b.conf")
    );
}

#[test]
fn markers_never_leave_the_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), "keep").unwrap();
    let link = outside.path().display().to_string();
    let with_link: &[Member] = &[("escape", b'2', &link)];
    let cases: [(&[Member], &str); 4] = [
        (&[("../.wh.victim", b'0', "")], "leaves the root"),
        (&[("escape/.wh.victim", b'0', "")], "symlink"),
        (&[("escape/.wh..wh..opq", b'0', "")], "symlink"),
        (&[("etc/.wh.", b'0', "")], "names no file"),
    ];
    for (layer, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let err = apply(dir.path(), &[BASE, with_link, layer]).unwrap_err();
        assert!(err.to_string().contains(why), "{why}: {err}");
        assert_eq!(
            std::fs::read(outside.path().join("victim")).unwrap(),
            b"keep"
        );
    }
}

#[test]
fn a_mount_point_is_emptied_never_removed() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("var/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&cache)
        .status()
        .unwrap();
    assert!(ok.success());
    let _guard = Unmount(cache.clone());
    let lower: &[Member] = &[
        ("var/lib/", b'5', ""),
        ("var/lib/state", b'0', "s"),
        ("var/cache/c", b'0', "c"),
    ];
    // The mount point itself hidden: emptied, kept.
    apply(dir.path(), &[lower, &[("var/.wh.cache", b'0', "")]]).unwrap();
    assert_eq!(
        tree(dir.path()),
        ["var/", "var/cache/", "var/lib/", "var/lib/state"]
    );
    // A directory above one hidden: the mount point emptied, it and its parents kept.
    apply(dir.path(), &[lower, &[(".wh.var", b'0', "")]]).unwrap();
    assert_eq!(tree(dir.path()), ["var/", "var/cache/"]);
}
