//! Whiteouts of container image layers (OCI image-spec `layer.md`), applied while a
//! layer is extracted over the layers below it.
//!
//! - `dir/.wh.<name>` removes `dir/<name>` of the lower layers; the marker itself is
//!   never laid down, and a bare `.wh.` is refused.
//! - `dir/.wh..wh..opq` hides every lower child of `dir`, as if applied before this
//!   layer's entries in `dir` wherever it stands in the tar.
//!
//! Both apply to lower layers only. The layer records the paths it created, so a
//! marker met after some of them removes only what lower layers left: a whiteout of a
//! path this layer created is ignored, and an opaque marker keeps this layer's entries
//! (descending into the directories it re-declared to hide their lower contents).
//! Markers resolve inside the root like every entry (no `..`, never through a
//! symlink). A mount point of the layout (`/var` on its own filesystem) is emptied,
//! never removed.

use super::write;
use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The opaque marker's name.
pub const OPAQUE: &[u8] = b".wh..wh..opq";
/// The prefix of a whiteout's name.
pub const PREFIX: &[u8] = b".wh.";

/// What a layer entry's path is, whiteout-wise.
#[derive(Debug, PartialEq, Eq)]
pub enum Marker {
    /// An ordinary entry.
    Entry,
    /// `dir/.wh.<name>`: the archive path `dir/<name>` is removed.
    Whiteout(Vec<u8>),
    /// `dir/.wh..wh..opq`: the archive path `dir` (empty for the root) is made opaque.
    Opaque(Vec<u8>),
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Whether the archive path `path` is a whiteout, an opaque marker, or an entry.
pub fn marker(path: &[u8]) -> io::Result<Marker> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let (dir, base) = match trimmed.iter().rposition(|b| *b == b'/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&trimmed[..0], trimmed),
    };
    if base == OPAQUE {
        return Ok(Marker::Opaque(dir.to_vec()));
    }
    let Some(name) = base.strip_prefix(PREFIX) else {
        return Ok(Marker::Entry);
    };
    if name.is_empty() || name == b"." || name == b".." {
        return Err(invalid(format!(
            "whiteout {:?} names no file: refused",
            String::from_utf8_lossy(path)
        )));
    }
    let mut target = dir.to_vec();
    if !target.is_empty() {
        target.push(b'/');
    }
    target.extend_from_slice(name);
    Ok(Marker::Whiteout(target))
}

/// One layer being applied: what it created, and the markers it applied.
pub struct Layer {
    root: PathBuf,
    created: HashSet<PathBuf>,
    /// Every directory above a created path: hiding one keeps this layer's entries.
    holds_created: HashSet<PathBuf>,
    /// Whiteouts applied (also those with nothing below to remove; not those of a
    /// path this layer created, which are ignored).
    pub whiteouts: u64,
    /// Opaque markers applied.
    pub opaque: u64,
}

impl Layer {
    /// A layer applied under `root`.
    pub fn new(root: &Path) -> Layer {
        Layer {
            root: root.to_path_buf(),
            created: HashSet::new(),
            holds_created: HashSet::new(),
            whiteouts: 0,
            opaque: 0,
        }
    }

    /// Records that this layer laid `path` down.
    pub fn created(&mut self, path: &Path) {
        let mut p = path.parent();
        while let Some(dir) = p.filter(|d| d.starts_with(&self.root)) {
            if !self.holds_created.insert(dir.to_path_buf()) {
                break;
            }
            p = dir.parent();
        }
        self.created.insert(path.to_path_buf());
    }

    /// Whether this layer laid `path` down.
    pub fn has_created(&self, path: &Path) -> bool {
        self.created.contains(path)
    }

    /// Applies marker `m` (not [`Marker::Entry`]).
    pub fn apply(&mut self, m: &Marker) -> io::Result<()> {
        match m {
            Marker::Entry => Ok(()),
            Marker::Whiteout(target) => {
                let Some(path) = write::resolve(&self.root, target)? else {
                    return Err(invalid("a whiteout names the root: refused".into()));
                };
                if self.created.contains(&path) {
                    return Ok(());
                }
                self.whiteouts += 1;
                if !self.parents_exist(&path)? {
                    return Ok(());
                }
                self.hide(&path)
            }
            Marker::Opaque(dir) => {
                self.opaque += 1;
                let path = write::resolve(&self.root, dir)?.unwrap_or_else(|| self.root.clone());
                if !self.parents_exist(&path)? {
                    return Ok(());
                }
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => self.hide_children(&path),
                    Ok(m) if m.file_type().is_symlink() => Err(through_symlink(&path)),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Whether every directory above `path` (below the root) is there; a symlink
    /// among them is refused, as for any entry.
    fn parents_exist(&self, path: &Path) -> io::Result<bool> {
        let Some(parent) = path.parent() else {
            return Ok(true);
        };
        let Ok(rel) = parent.strip_prefix(&self.root) else {
            return Err(invalid(format!("{} is outside the root", path.display())));
        };
        let mut cur = self.root.clone();
        for c in rel.components() {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => return Err(through_symlink(&cur)),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(context(&cur, "inspecting", e)),
            }
        }
        Ok(true)
    }

    /// Removes what lower layers left at `path`, keeping what this layer created.
    fn hide(&self, path: &Path) -> io::Result<()> {
        let m = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(context(path, "inspecting", e)),
        };
        let keeps = self.created.contains(path) || self.holds_created.contains(path);
        if keeps && m.is_dir() {
            // Re-declared, or holding this layer's entries: only its lower children go.
            return self.hide_children(path);
        }
        if keeps {
            return Ok(());
        }
        remove_tree(path).map(|_| ())
    }

    fn hide_children(&self, dir: &Path) -> io::Result<()> {
        for child in std::fs::read_dir(dir).map_err(|e| context(dir, "listing", e))? {
            let child = child.map_err(|e| context(dir, "listing", e))?;
            self.hide(&child.path())?;
        }
        Ok(())
    }
}

/// Removes `path` and everything below it, never following a symlink; a mount point
/// (a filesystem of the layout) is emptied and kept, and so are the directories above
/// one. Whether `path` is gone.
pub fn remove_tree(path: &Path) -> io::Result<bool> {
    let m = std::fs::symlink_metadata(path).map_err(|e| context(path, "inspecting", e))?;
    if !m.is_dir() {
        std::fs::remove_file(path).map_err(|e| context(path, "removing", e))?;
        return Ok(true);
    }
    let mut emptied = true;
    for child in std::fs::read_dir(path).map_err(|e| context(path, "listing", e))? {
        let child = child.map_err(|e| context(path, "listing", e))?;
        emptied &= remove_tree(&child.path())?;
    }
    if !emptied || is_mount_point(path, &m)? {
        return Ok(false);
    }
    std::fs::remove_dir(path).map_err(|e| context(path, "removing", e))?;
    Ok(true)
}

/// Whether directory `path` (with metadata `m`) is on another filesystem than its parent.
fn is_mount_point(path: &Path, m: &std::fs::Metadata) -> io::Result<bool> {
    let Some(parent) = path.parent() else {
        return Ok(true);
    };
    let p = std::fs::symlink_metadata(parent).map_err(|e| context(parent, "inspecting", e))?;
    Ok(p.dev() != m.dev())
}

fn through_symlink(path: &Path) -> io::Error {
    invalid(format!(
        "{} is a symlink: refusing to apply a whiteout through it",
        path.display()
    ))
}

fn context(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
#[path = "whiteout_tests.rs"]
mod tests;
