//! Extraction against archives GNU tar makes from a tree Python builds, checked with
//! stat and xattr reads; hostile archives Python's tarfile makes.

use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::process::Command;

fn sh(script: &str, dir: &Path) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tree with every kind of entry and metadata; returns its path.
fn fixture(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    let py = r##"
import os, sys
r = sys.argv[1]
os.makedirs(r + "/usr/bin"); os.makedirs(r + "/var/log/journal")
open(r + "/usr/bin/tool", "w").write("#!/bin/sh\necho hi\n")
os.chown(r + "/usr/bin/tool", 1234, 5678); os.chmod(r + "/usr/bin/tool", 0o4755)
os.link(r + "/usr/bin/tool", r + "/usr/bin/tool-alias")
os.symlink("../usr/bin/tool", r + "/var/tool-link")
os.mknod(r + "/null", 0o20666, os.makedev(1, 3))
os.mkfifo(r + "/fifo", 0o640)
with open(r + "/sparse.img", "wb") as f:
    f.truncate(64 << 20); f.seek(5 << 20); f.write(b"middle"); f.seek((64 << 20) - 3); f.write(b"end")
os.setxattr(r + "/usr/bin/tool", "user.imprint", b"\x00\x01binary")
os.setxattr(r + "/usr/bin/tool", "security.selinux", b"system_u:object_r:bin_t:s0\x00")
acl = bytes([2,0,0,0, 1,0,7,0,255,255,255,255, 4,0,5,0,255,255,255,255, 8,0,5,0,4,0,0,0, 0x10,0,5,0,255,255,255,255, 0x20,0,5,0,255,255,255,255])
os.setxattr(r + "/var/log/journal", "system.posix_acl_access", acl)
os.utime(r + "/usr/bin", (1600000000, 1600000000))
"##;
    let out = Command::new("python3")
        .args(["-c", py])
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    src
}

fn check(root: &Path, x: &Extracted) {
    let tool = std::fs::symlink_metadata(root.join("usr/bin/tool")).unwrap();
    assert_eq!(
        (tool.uid(), tool.gid(), tool.mode() & 0o7777),
        (1234, 5678, 0o4755),
        "owner and set-uid mode"
    );
    let alias = std::fs::symlink_metadata(root.join("usr/bin/tool-alias")).unwrap();
    assert_eq!(alias.ino(), tool.ino(), "hard link shares the inode");
    assert_eq!(
        std::fs::read_link(root.join("var/tool-link")).unwrap(),
        Path::new("../usr/bin/tool")
    );
    let null = std::fs::symlink_metadata(root.join("null")).unwrap();
    assert!(null.file_type().is_char_device() && null.rdev() == nix::sys::stat::makedev(1, 3));
    assert!(std::fs::symlink_metadata(root.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let sp = std::fs::symlink_metadata(root.join("sparse.img")).unwrap();
    assert_eq!(sp.len(), 64 << 20);
    assert!(
        sp.blocks() * 512 < 1 << 20,
        "sparse file stays sparse ({} blocks)",
        sp.blocks()
    );
    let data = std::fs::read(root.join("sparse.img")).unwrap();
    assert_eq!(&data[5 << 20..(5 << 20) + 6], b"middle");
    assert_eq!(&data[data.len() - 3..], b"end");
    let py = r#"
import os, sys
r = sys.argv[1]
print(os.getxattr(r + "/usr/bin/tool", "user.imprint").hex())
print(os.getxattr(r + "/usr/bin/tool", "security.selinux"))
print(os.getxattr(r + "/var/log/journal", "system.posix_acl_access").hex())
print(os.stat(r + "/usr/bin").st_mtime)
"#;
    let out = Command::new("python3")
        .args(["-c", py])
        .arg(root)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "000162696e617279", "user xattr with binary value");
    assert_eq!(
        lines[1], "b'system_u:object_r:bin_t:s0\\x00'",
        "SELinux label"
    );
    assert_eq!(
        lines[2],
        "0200000001000700ffffffff04000500ffffffff0800050004000000100005".to_string()
            + "00ffffffff20000500ffffffff",
        "POSIX ACL"
    );
    assert_eq!(
        lines[3], "1600000000.0",
        "directory time survives its children"
    );
    assert!(
        x.counts.sparse_files == 1 && x.counts.hard_links == 1 && x.counts.devices == 2,
        "{x:?}"
    );
}

#[test]
fn gnu_tar_archives_extract_with_every_kind_of_metadata() {
    for (format, sparse) in [
        ("posix", "--sparse-version=1.0"),
        ("posix", "--sparse-version=0.1"),
        ("gnu", ""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let src = fixture(dir.path());
        sh(
            &format!("tar --format={format} -S {sparse} --numeric-owner --xattrs --xattrs-include='*' --acls -C src -cf a.tar ."),
            dir.path(),
        );
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let x = extract(
            std::fs::File::open(dir.path().join("a.tar")).unwrap(),
            &root,
            |_| {},
        )
        .unwrap();
        check(&root, &x);
        drop(src);
    }
}

#[test]
fn text_only_acls_resolve_names_in_the_extracted_etc() {
    let dir = tempfile::tempdir().unwrap();
    let py = r#"
import tarfile, io, sys
t = tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT)
def add(name, data=b"", kind=tarfile.REGTYPE, pax=None):
    i = tarfile.TarInfo(name); i.type = kind; i.size = len(data); i.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if pax: i.pax_headers = pax
    t.addfile(i, io.BytesIO(data) if data else None)
add("./etc", kind=tarfile.DIRTYPE)
add("./etc/group", b"root:x:0:\nadm:x:4:\n")
add("./srv", kind=tarfile.DIRTYPE, pax={"SCHILY.acl.access": "user::rwx,group::r-x,group:adm:rwx,mask::rwx,other::---"})
t.close()
"#;
    let tarp = dir.path().join("a.tar");
    assert!(Command::new("python3")
        .args(["-c", py])
        .arg(&tarp)
        .status()
        .unwrap()
        .success());
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    extract(std::fs::File::open(&tarp).unwrap(), &root, |_| {}).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import os,sys; print(os.getxattr(sys.argv[1], 'system.posix_acl_access').hex())",
        ])
        .arg(root.join("srv"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0800070004000000"),
        "group adm (gid 4) rwx"
    );
}

fn hostile(entries: &str) -> (tempfile::TempDir, Result<Extracted, RootfsError>) {
    let dir = tempfile::tempdir().unwrap();
    let py = format!(
        r#"
import tarfile, io, sys
t = tarfile.open(sys.argv[1], "w")
def add(name, data=b"", kind=tarfile.REGTYPE, link=""):
    i = tarfile.TarInfo(name); i.type = kind; i.size = len(data); i.linkname = link
    t.addfile(i, io.BytesIO(data) if data else None)
{entries}
t.close()
"#
    );
    let tarp = dir.path().join("a.tar");
    assert!(Command::new("python3")
        .args(["-c", &py])
        .arg(&tarp)
        .status()
        .unwrap()
        .success());
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let r = extract(std::fs::File::open(&tarp).unwrap(), &root, |_| {});
    (dir, r)
}

#[test]
fn entries_escaping_the_root_are_refused() {
    let (dir, r) = hostile(r#"add("../outside", b"x")"#);
    assert!(r.unwrap_err().to_string().contains("leaves the root"));
    assert!(!dir.path().join("outside").exists());

    let (dir, r) = hostile(&format!(
        r#"add("./link", kind=tarfile.SYMTYPE, link="{}")
add("./link/planted", b"x")"#,
        "/tmp"
    ));
    assert!(
        r.unwrap_err().to_string().contains("symlink"),
        "extracting through a symlink is refused"
    );
    assert!(!Path::new("/tmp/planted").exists());
    drop(dir);

    let (_dir, r) = hostile(r#"add("./h", kind=tarfile.LNKTYPE, link="../../etc/passwd")"#);
    assert!(
        r.unwrap_err().to_string().contains("leaves the root"),
        "hard link targets stay inside"
    );
}

#[test]
fn a_truncated_archive_fails() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.tar");
    sh("mkdir s && head -c 100000 /dev/urandom > s/f && tar -C s -cf t.tar . && truncate -s 20000 t.tar", dir.path());
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let e = extract(std::fs::File::open(&f).unwrap(), &root, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ends inside") || e.contains("failed to fill"),
        "{e}"
    );
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn hard_links_across_mount_points_copy_the_entry_never_what_it_points_at() {
    let dir = tempfile::tempdir().unwrap();
    let py = r#"
import tarfile, io, sys
t = tarfile.open(sys.argv[1], "w")
def add(name, data=b"", kind=tarfile.REGTYPE, link=""):
    i = tarfile.TarInfo(name); i.type = kind; i.size = len(data); i.linkname = link; i.mode = 0o640
    t.addfile(i, io.BytesIO(data) if data else None)
add("./boot/outside", kind=tarfile.SYMTYPE, link="/etc/hostname")
add("./copied-link", kind=tarfile.LNKTYPE, link="./boot/outside")
add("./boot/fifo", kind=tarfile.FIFOTYPE)
add("./copied-fifo", kind=tarfile.LNKTYPE, link="./boot/fifo")
add("./boot/file", b"data")
add("./copied-file", kind=tarfile.LNKTYPE, link="./boot/file")
t.close()
"#;
    let tarp = dir.path().join("a.tar");
    assert!(Command::new("python3")
        .args(["-c", py])
        .arg(&tarp)
        .status()
        .unwrap()
        .success());
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("boot")).unwrap();
    // /boot on its own file system, as in a layout: hard links into it fail with EXDEV.
    sh(
        &format!(
            "mount -t tmpfs imprint-test {}",
            root.join("boot").display()
        ),
        dir.path(),
    );
    let _m = Mount(root.join("boot"));
    let (tx, rx) = std::sync::mpsc::channel();
    let (tarp2, root2) = (tarp.clone(), root.clone());
    std::thread::spawn(move || {
        let _ = tx
            .send(extract(std::fs::File::open(&tarp2).unwrap(), &root2, |_| {}).map(|x| x.entries));
    });
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("extraction hung (reading a FIFO?)");
    assert_eq!(r.unwrap(), 6);
    let link = std::fs::symlink_metadata(root.join("copied-link")).unwrap();
    assert!(
        link.file_type().is_symlink(),
        "the symlink was followed out of the root"
    );
    assert_eq!(
        std::fs::read_link(root.join("copied-link")).unwrap(),
        Path::new("/etc/hostname")
    );
    let fifo = std::fs::symlink_metadata(root.join("copied-fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    let file = std::fs::symlink_metadata(root.join("copied-file")).unwrap();
    assert!(
        file.is_file() && file.mode() & 0o7777 == 0o640,
        "{:o}",
        file.mode()
    );
    assert_eq!(std::fs::read(root.join("copied-file")).unwrap(), b"data");
}
