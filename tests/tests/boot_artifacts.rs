//! Boot artifacts named by their content (`initramfs/publish.sh`, docs/boot.md): what
//! `make` published in `out/boot/` is what it says it is, and publishing again — a
//! rebuild, two at once, a damaged store — never changes a file already published.
//! (`qemu_provision` boots a host through the content-named iPXE script.)

use imprint_tests::fixtures::*;
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn publish_script() -> PathBuf {
    repo_root().join("initramfs/publish.sh")
}

fn publish(store: &Path, version: &str, files: &[&Path]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(publish_script())
        .arg(store)
        .arg(version)
        .arg("6.1.0-test");
    cmd.args(files);
    cmd.output().expect("running publish.sh")
}

fn manifest(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// Every file a manifest names holds the bytes its name says; returns (name → path).
fn check_store(store: &Path, m: &Value) -> Vec<(String, PathBuf)> {
    let mut named = Vec::new();
    for a in m["artifacts"].as_array().expect("artifacts") {
        let digest = a["sha256"].as_str().unwrap();
        let path = store.join(a["path"].as_str().unwrap());
        assert_eq!(path, store.join("sha256").join(digest), "{a}");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            sha256_hex(&bytes),
            digest,
            "{} holds other bytes",
            path.display()
        );
        assert_eq!(bytes.len() as u64, a["size"].as_u64().unwrap(), "{a}");
        named.push((a["name"].as_str().unwrap().to_string(), path));
    }
    let script = store.join(m["ipxe"]["name"].as_str().unwrap());
    let text = std::fs::read(&script).unwrap();
    assert_eq!(sha256_hex(&text), m["ipxe"]["sha256"].as_str().unwrap());
    named
}

/// All names in `dir` (recursively) with their inode, size and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, u64, i64)> {
    let mut out = Vec::new();
    for e in walk(dir) {
        let m = std::fs::metadata(&e).unwrap();
        if m.is_file() {
            out.push((
                e,
                m.ino(),
                m.size(),
                m.mtime_nsec() + m.mtime() * 1_000_000_000,
            ));
        }
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn what_make_published_is_named_by_its_content() {
    let out = repo_root().join("out");
    let store = out.join("boot");
    let m = manifest(&store.join("current.json"));
    let version = sh(imprint_bin().to_str().unwrap(), &["--version"]);
    assert_eq!(
        m["imprint_version"].as_str().unwrap(),
        version.trim().trim_start_matches("imprint "),
        "{m:#}"
    );
    let kver = m["kernel_version"].as_str().unwrap();
    let vmlinuz_info = sh("file", &["-b", out.join("vmlinuz").to_str().unwrap()]);
    assert!(vmlinuz_info.contains(kver), "{kver} vs {vmlinuz_info}");
    let named = check_store(&store, &m);
    let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["vmlinuz", "initramfs.img", "imprint.iso"], "{m:#}");
    // The newest plain-named files are the same bytes.
    for (name, path) in &named {
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(path).unwrap(),
            "out/{name} and {} differ",
            path.display()
        );
    }
    // The manifest is itself published under its digest, and current.* are copies.
    let current = std::fs::read(store.join("current.json")).unwrap();
    let digest = sha256_hex(&current);
    let own = store.join(format!(
        "imprint-{}-{}.json",
        m["imprint_version"].as_str().unwrap(),
        &digest[..12]
    ));
    assert_eq!(std::fs::read(&own).unwrap(), current, "{}", own.display());
    let script_name = m["ipxe"]["name"].as_str().unwrap();
    assert_eq!(
        std::fs::read(store.join("current.ipxe")).unwrap(),
        std::fs::read(store.join(script_name)).unwrap()
    );
    // The script loads exactly the manifest's kernel and initramfs, by digest.
    let script = std::fs::read_to_string(store.join(script_name)).unwrap();
    let loads: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("kernel ") || l.starts_with("initrd "))
        .collect();
    let digest_of = |n: &str| {
        named
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, p)| p.file_name().unwrap().to_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(loads.len(), 2, "{script}");
    assert!(
        loads[0].starts_with(&format!(
            "kernel ${{imprint_base}}sha256/{} ",
            digest_of("vmlinuz")
        )),
        "{script}"
    );
    assert!(
        loads[1].starts_with(&format!(
            "initrd --name initramfs.img ${{imprint_base}}sha256/{} ",
            digest_of("initramfs.img")
        )),
        "{script}"
    );
}

#[test]
fn a_rebuild_adds_files_and_changes_none() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = (dir.path().join("vmlinuz"), dir.path().join("initramfs.img"));
    std::fs::write(&kernel, b"kernel one").unwrap();
    std::fs::write(&initrd, b"initramfs one").unwrap();
    let store = dir.path().join("store");
    let first = publish(&store, "1.0.0", &[&kernel, &initrd]);
    assert!(first.status.success(), "{first:?}");
    let before = snapshot(&store);
    let old = manifest(&store.join("current.json"));

    // The same inputs again: nothing changes at all, not even the pointers' content.
    let again = publish(&store, "1.0.0", &[&kernel, &initrd]);
    assert!(again.status.success(), "{again:?}");
    let same: Vec<_> = snapshot(&store)
        .into_iter()
        .filter(|(p, ..)| !p.ends_with("current.json") && !p.ends_with("current.ipxe"))
        .collect();
    let before_fixed: Vec<_> = before
        .iter()
        .filter(|(p, ..)| !p.ends_with("current.json") && !p.ends_with("current.ipxe"))
        .cloned()
        .collect();
    assert_eq!(same, before_fixed);
    assert_eq!(manifest(&store.join("current.json")), old);

    // A new initramfs: new names appear, every old file keeps its inode, size and time.
    std::fs::write(&initrd, b"initramfs two").unwrap();
    let second = publish(&store, "1.0.1", &[&kernel, &initrd]);
    assert!(second.status.success(), "{second:?}");
    let after = snapshot(&store);
    for file in before_fixed {
        assert!(
            after.contains(&file),
            "{} changed or vanished",
            file.0.display()
        );
    }
    let new = manifest(&store.join("current.json"));
    assert_ne!(new, old);
    check_store(&store, &old);
    check_store(&store, &new);
    assert_eq!(new["artifacts"][0]["sha256"], old["artifacts"][0]["sha256"]);
    assert_ne!(new["artifacts"][1]["sha256"], old["artifacts"][1]["sha256"]);
    assert!(
        !walk(&store)
            .iter()
            .any(|p| p.to_string_lossy().contains(".publish.")),
        "no temporary file is left"
    );
}

#[test]
fn publishers_racing_each_other_leave_a_whole_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let kernel = dir.path().join("vmlinuz");
    std::fs::write(&kernel, vec![7u8; 4 << 20]).unwrap();
    let builds: Vec<PathBuf> = (0..4)
        .map(|i| {
            let d = dir.path().join(format!("build{i}"));
            std::fs::create_dir(&d).unwrap();
            // Two builds share each initramfs, so two publishers race for one name.
            std::fs::write(d.join("initramfs.img"), vec![i as u8 / 2; 8 << 20]).unwrap();
            d.join("initramfs.img")
        })
        .collect();
    let children: Vec<_> = builds
        .iter()
        .map(|initrd| {
            Command::new("bash")
                .arg(publish_script())
                .arg(&store)
                .arg("2.0.0")
                .arg("6.1.0-test")
                .arg(&kernel)
                .arg(initrd)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let manifests: Vec<PathBuf> = walk(&store)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    // Two distinct builds, each published once under its name, plus current.json.
    assert_eq!(manifests.len(), 3, "{manifests:?}");
    for m in &manifests {
        check_store(&store, &manifest(m));
    }
    assert_eq!(std::fs::read_dir(store.join("sha256")).unwrap().count(), 3);
}

#[test]
fn a_damaged_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = (dir.path().join("vmlinuz"), dir.path().join("initramfs.img"));
    std::fs::write(&kernel, b"kernel").unwrap();
    std::fs::write(&initrd, b"initramfs").unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(store.join("sha256")).unwrap();
    // A half-copied file under the initramfs's name.
    let damaged = store.join("sha256").join(sha256_hex(b"initramfs"));
    std::fs::write(&damaged, b"initr").unwrap();
    let run = publish(&store, "3.0.0", &[&kernel, &initrd]);
    assert!(!run.status.success(), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("exists with other content: the store is damaged"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&damaged).unwrap(), b"initr", "not replaced");
    assert!(
        !store.join("current.json").exists(),
        "nothing points at a damaged set"
    );
}
