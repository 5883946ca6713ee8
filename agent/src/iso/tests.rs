use super::*;
use std::process::Command;

/// Builds a real ISO with xorriso holding a blank area at /imprint/config.img.
fn make_iso(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("imprint")).unwrap();
    std::fs::create_dir_all(tree.join("boot")).unwrap();
    std::fs::write(tree.join("boot/vmlinuz"), vec![0x5a; 300_000]).unwrap();
    std::fs::write(
        tree.join("imprint/config.img"),
        blank_area(DEFAULT_AREA_LEN),
    )
    .unwrap();
    let iso = dir.join("test.iso");
    let st = Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-iso-level",
            "3",
            "-r",
            "-J",
            "-V",
            "T",
            "-o",
        ])
        .arg(&iso)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(st.success());
    iso
}

/// The area's bytes as xorriso (an independent reader) extracts the file.
fn extract_area(iso: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join("extracted.img");
    let _ = std::fs::remove_file(&out);
    let st = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/imprint/config.img"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read(out).unwrap()
}

#[test]
fn customize_writes_document_and_kargs_into_a_copy_and_show_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let iso = make_iso(dir.path());
    let before = std::fs::read(&iso).unwrap();
    let out = dir.path().join("host.iso");
    let doc = b"version: 1\nhost: { hostname: web-01 }\n";
    let kargs = vec!["ip=dhcp".to_string(), "imprint.debug=1".to_string()];
    let area = customize(&iso, Some(&out), Some(doc), &kargs).unwrap();
    assert_eq!(area.len, DEFAULT_AREA_LEN);
    assert_eq!(area.offset % 2048, 0);

    let shown = show(&out).unwrap();
    assert_eq!(
        shown.config.as_deref(),
        Some(std::str::from_utf8(doc).unwrap())
    );
    assert_eq!(shown.kargs, kargs);
    // The input is untouched, and outside the area the copy is byte-identical.
    assert_eq!(std::fs::read(&iso).unwrap(), before);
    let after = std::fs::read(&out).unwrap();
    let (a, b) = (
        area.offset as usize,
        area.offset as usize + area.len as usize,
    );
    assert_eq!(after[..a], before[..a]);
    assert_eq!(after[b..], before[b..]);
    // xorriso sees the document inside /imprint/config.img: we wrote that file's extent.
    let file = extract_area(&out, dir.path());
    assert_eq!(&file[HEADER_LEN..HEADER_LEN + doc.len()], doc);
}

#[test]
fn customize_in_place_replaces_and_clears() {
    let dir = tempfile::tempdir().unwrap();
    let iso = make_iso(dir.path());
    customize(&iso, None, Some(b"first"), &["a=1".into()]).unwrap();
    customize(&iso, None, Some(b"second"), &[]).unwrap();
    assert_eq!(
        show(&iso).unwrap(),
        Embedded {
            config: Some("second".into()),
            kargs: vec![],
            trust: vec![],
        }
    );
    customize(&iso, None, None, &[]).unwrap();
    assert_eq!(show(&iso).unwrap(), Embedded::default());
}

#[test]
fn a_document_larger_than_the_area_is_refused_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let iso = make_iso(dir.path());
    let out = dir.path().join("big.iso");
    let big = vec![b'x'; DEFAULT_AREA_LEN as usize];
    let err = customize(&iso, Some(&out), Some(&big), &[]).unwrap_err();
    assert!(matches!(err, IsoError::TooLarge { .. }), "{err}");
    assert!(!out.exists());
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("imprint-tmp")));
}

#[test]
fn an_area_outside_any_iso_directory_is_found_by_scanning_sectors() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("raw.img");
    let mut bytes = vec![0u8; 7 * 2048];
    // A magic at an unaligned offset must not count.
    bytes[100..123].copy_from_slice(MAGIC);
    bytes.extend(blank_area(64 * 1024));
    bytes.extend(vec![0u8; 4096]);
    std::fs::write(&img, bytes).unwrap();
    let area = customize(&img, None, Some(b"doc"), &[]).unwrap();
    assert_eq!(
        area,
        Area {
            offset: 7 * 2048,
            len: 64 * 1024
        }
    );
    assert_eq!(show(&img).unwrap().config.as_deref(), Some("doc"));
}

#[test]
fn a_torn_write_is_reported_as_damage() {
    let dir = tempfile::tempdir().unwrap();
    let iso = make_iso(dir.path());
    let area = customize(&iso, None, Some(b"hostname: a"), &[]).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&iso).unwrap();
    f.write_all_at(b"b", area.offset + HEADER_LEN as u64 + 10)
        .unwrap();
    let err = show(&iso).unwrap_err();
    assert!(matches!(err, IsoError::Damaged { .. }), "{err}");
}

#[test]
fn a_file_without_area_is_not_an_embedded_medium() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("plain");
    std::fs::write(&f, vec![0u8; 100_000]).unwrap();
    assert_eq!(find_embedded(&f).unwrap(), None);
    assert!(matches!(
        customize(&f, None, Some(b"x"), &[]),
        Err(IsoError::NoArea { .. })
    ));
}

#[test]
fn kargs_with_newlines_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let iso = make_iso(dir.path());
    let err = customize(&iso, None, None, &["a\nb".into()]).unwrap_err();
    assert!(matches!(err, IsoError::BadKarg { .. }));
}

#[test]
fn trust_keys_are_stored_after_the_arguments_and_checked_first() {
    let dir = tempfile::tempdir().unwrap();
    let iso = make_iso(dir.path());
    let pub_key = dir.path().join("ops.pub");
    let st = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&pub_key)
        .arg("-s")
        .arg(dir.path().join("ops.sec"))
        .output()
        .expect("minisign is installed (make deps)");
    assert!(st.status.success(), "{st:?}");
    let key = KeyFile {
        name: "ops.pub".into(),
        bytes: std::fs::read(&pub_key).unwrap(),
    };
    customize_with_trust(
        &iso,
        None,
        Some(b"doc"),
        &["a=1".into()],
        std::slice::from_ref(&key),
    )
    .unwrap();
    let e = show(&iso).unwrap();
    assert_eq!(
        (e.config.as_deref(), e.kargs.as_slice(), e.trust.as_slice()),
        (
            Some("doc"),
            ["a=1".to_string()].as_slice(),
            [key].as_slice()
        )
    );
    let keys = medium_keys(Path::new("/dev/sr0"), &e);
    assert_eq!(keys[0].0, "ops.pub in the boot medium /dev/sr0");
    // Not a key: refused before the ISO is opened for writing.
    let before = std::fs::read(&iso).unwrap();
    let bad = KeyFile {
        name: "notes.txt".into(),
        bytes: b"hello".to_vec(),
    };
    let err = customize_with_trust(&iso, None, None, &[], &[bad]).unwrap_err();
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert!(std::fs::read(&iso).unwrap() == before, "the ISO changed");
}
