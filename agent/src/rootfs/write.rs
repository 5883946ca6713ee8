//! Laying one tar entry down under the root: safe paths, owners, modes, links,
//! device nodes, sparse files, xattrs and ACLs, times.

use super::acl;
use super::tar::{Entry, Kind};
use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};
use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Counts for the report.
#[derive(
    Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    pub devices: u64,
    pub sparse_files: u64,
    pub xattrs: u64,
    pub acls: u64,
    /// File bytes written (sparse files: their data only).
    pub bytes: u64,
}

/// Work left for after the last entry: directory times (adding entries changes them)
/// and ACLs given only as text (names resolve against the extracted /etc).
#[derive(Default)]
pub struct Deferred {
    pub dir_times: Vec<(PathBuf, (i64, u32))>,
    pub text_acls: Vec<(PathBuf, &'static str, String)>,
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what} {}: {e}", path.display()))
}

/// The archive path `p` under `root`; `None` for the root itself. Refuses `..`.
pub fn resolve(root: &Path, p: &[u8]) -> io::Result<Option<PathBuf>> {
    let rel = Path::new(OsStr::from_bytes(p));
    let mut out = root.to_path_buf();
    let mut any = false;
    for c in rel.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => {
                out.push(n);
                any = true;
            }
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "archive path {:?} leaves the root: refused",
                        String::from_utf8_lossy(p)
                    ),
                ))
            }
        }
    }
    Ok(any.then_some(out))
}

/// Makes sure every parent of `path` below `root` is a real directory (never a symlink,
/// which could point outside the root), creating missing ones.
fn safe_parents(root: &Path, path: &Path) -> io::Result<()> {
    let parent = path.parent().unwrap_or(root);
    let rel = parent
        .strip_prefix(root)
        .map_err(|_| err(path, "placing", "outside the root"))?;
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is a symlink: refusing to extract through it",
                        cur.display()
                    ),
                ))
            }
            Ok(_) => return Err(err(&cur, "extracting below", "not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).map_err(|e| err(&cur, "creating", e))?;
            }
            Err(e) => return Err(err(&cur, "inspecting", e)),
        }
    }
    Ok(())
}

/// Removes what sits at `path` unless it is a directory and the entry is one too.
fn clear(path: &Path, kind: Kind) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && kind == Kind::Dir => Ok(()),
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir(path).map_err(|e| err(path, "replacing directory", e))
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| err(path, "replacing", e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(path, "inspecting", e)),
    }
}

/// Writes the entry whose data `data` yields; owners, mode and xattrs applied.
pub fn entry(
    root: &Path,
    e: &Entry,
    data: &mut impl Read,
    n: &mut Counts,
    later: &mut Deferred,
) -> io::Result<()> {
    let kind = e.kind.unwrap_or(Kind::File);
    let path = match resolve(root, &e.path)? {
        Some(p) => {
            safe_parents(root, &p)?;
            clear(&p, kind)?;
            p
        }
        None if kind == Kind::Dir => root.to_path_buf(),
        None => {
            return Err(err(
                root,
                "extracting",
                "a non-directory entry names the root",
            ))
        }
    };
    match kind {
        Kind::File => {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&path)
                .map_err(|x| err(&path, "creating", x))?;
            n.bytes += match &e.sparse {
                Some((map, real)) => {
                    n.sparse_files += 1;
                    sparse(&mut f, &path, map, *real, data)?
                }
                None => io::copy(data, &mut f).map_err(|x| err(&path, "writing", x))?,
            };
            n.files += 1;
        }
        Kind::Dir => {
            if !path.is_dir() {
                std::fs::create_dir(&path).map_err(|x| err(&path, "creating", x))?;
            }
            later.dir_times.push((path.clone(), e.mtime));
            n.dirs += 1;
        }
        Kind::Symlink => {
            std::os::unix::fs::symlink(OsStr::from_bytes(&e.link), &path)
                .map_err(|x| err(&path, "creating symlink", x))?;
            n.symlinks += 1;
        }
        Kind::HardLink => {
            let target = resolve(root, &e.link)?
                .ok_or_else(|| err(&path, "linking", "a hard link to the root"))?;
            safe_parents(root, &target)?;
            match std::fs::hard_link(&target, &path) {
                Ok(()) => {}
                // Across mount points of the layout: a copy is the best there is.
                Err(x) if x.raw_os_error() == Some(libc::EXDEV) => copy_across(&target, &path)?,
                Err(x) => return Err(err(&path, "hard-linking", x)),
            }
            n.hard_links += 1;
            return Ok(()); // the inode already has its metadata
        }
        Kind::Char | Kind::Block | Kind::Fifo => {
            let flag = match kind {
                Kind::Char => SFlag::S_IFCHR,
                Kind::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            mknod(
                &path,
                flag,
                Mode::from_bits_truncate(0o600),
                makedev(e.dev_major, e.dev_minor),
            )
            .map_err(|x| err(&path, "making device node", x))?;
            n.devices += 1;
        }
    }
    metadata(&path, e, kind, n, later)
}

/// A hard link across mount points, as a copy of what `target` itself is: never read
/// through a symlink (it may point outside the root) nor from a FIFO or device (a read
/// could block forever or never end). Owner and mode are copied; the entry has no others.
fn copy_across(target: &Path, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::symlink_metadata(target).map_err(|x| err(target, "inspecting", x))?;
    let t = m.file_type();
    if t.is_symlink() {
        let to = std::fs::read_link(target).map_err(|x| err(target, "reading symlink", x))?;
        return std::os::unix::fs::symlink(to, path)
            .map_err(|x| err(path, "creating symlink (cross-device hard link)", x));
    }
    if t.is_file() {
        let mut src = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(target)
            .map_err(|x| err(target, "opening", x))?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(path)
            .map_err(|x| err(path, "creating", x))?;
        io::copy(&mut src, &mut dst)
            .map_err(|x| err(path, "copying (cross-device hard link)", x))?;
    } else if t.is_fifo() || t.is_char_device() || t.is_block_device() {
        let kind = SFlag::from_bits_truncate(m.mode() & libc::S_IFMT);
        mknod(path, kind, Mode::from_bits_truncate(0o600), m.rdev())
            .map_err(|x| err(path, "making node (cross-device hard link)", x))?;
    } else {
        return Err(err(
            path,
            "hard-linking across mount points to",
            target.display(),
        ));
    }
    fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(Uid::from_raw(m.uid())),
        Some(Gid::from_raw(m.gid())),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|x| err(path, "setting the owner of", x))?;
    std::fs::set_permissions(path, m.permissions()).map_err(|x| err(path, "setting the mode of", x))
}

fn sparse(
    f: &mut File,
    path: &Path,
    map: &[(u64, u64)],
    real: u64,
    data: &mut impl Read,
) -> io::Result<u64> {
    let mut written = 0;
    for &(off, len) in map {
        f.seek(SeekFrom::Start(off))
            .map_err(|x| err(path, "seeking in", x))?;
        let got = io::copy(&mut data.take(len), f).map_err(|x| err(path, "writing", x))?;
        if got != len {
            return Err(err(
                path,
                "writing",
                "the archive ends inside a sparse chunk",
            ));
        }
        written += len;
    }
    f.set_len(real).map_err(|x| err(path, "sizing", x))?;
    f.flush()?;
    Ok(written)
}

fn metadata(
    path: &Path,
    e: &Entry,
    kind: Kind,
    n: &mut Counts,
    later: &mut Deferred,
) -> io::Result<()> {
    // Owner first: chown clears set-id bits and file capabilities.
    fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(Uid::from_raw(e.uid as u32)),
        Some(Gid::from_raw(e.gid as u32)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|x| err(path, "setting the owner of", x))?;
    if kind != Kind::Symlink {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(e.mode))
            .map_err(|x| err(path, "setting the mode of", x))?;
    }
    for (name, value) in &e.xattrs {
        lsetxattr(path, name, value)?;
        n.xattrs += 1;
    }
    let has = |x: &str| e.xattrs.iter().any(|(k, _)| k == x.as_bytes());
    for (text, xname) in [(&e.acl_access, acl::ACCESS), (&e.acl_default, acl::DEFAULT)] {
        if let Some(t) = text {
            n.acls += 1;
            if !has(xname) {
                later.text_acls.push((path.to_path_buf(), xname, t.clone()));
            }
        }
    }
    if kind != Kind::Dir {
        set_times(path, e.mtime)?;
    }
    Ok(())
}

/// Sets atime and mtime of `path` (not following symlinks).
pub fn set_times(path: &Path, (s, ns): (i64, u32)) -> io::Result<()> {
    let t = TimeSpec::new(s, ns as i64);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|x| err(path, "setting the times of", x))
}

/// Sets an extended attribute on `path` itself (not a symlink's target).
pub fn lsetxattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(|x| err(path, "naming", x))?;
    let k = CString::new(name).map_err(|x| err(path, "naming an xattr of", x))?;
    // SAFETY: both strings are NUL-terminated and live across the call; value is a valid
    // slice whose length is passed alongside; lsetxattr does not keep the pointers.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(err(
            path,
            &format!("setting xattr {} on", String::from_utf8_lossy(name)),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}
