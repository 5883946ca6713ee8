//! One extraction under a root — of a tarball, or of a container image's layers in
//! turn with their whiteouts — and what it reports or fails with.

use super::write::{self, Counts};
use super::{acl, tar, whiteout};
use crate::image::ImageError;
use serde::Serialize;
use std::io::{self, Read};
use std::path::Path;

/// Why a root filesystem could not be laid down.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{layer}: {cause}")]
    Layer { layer: String, cause: String },
    #[error("extracting the root filesystem into {root} (entry {entry:?}, archive byte {offset}): {cause}")]
    Extract {
        root: String,
        entry: String,
        offset: u64,
        cause: String,
    },
}

/// What an extraction did.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Extracted {
    pub entries: u64,
    pub counts: Counts,
    /// Bytes of the (decompressed) archive read.
    pub archive_bytes: u64,
}

/// One extraction under a root, of one archive or of a container image's layers in
/// turn; what must wait for the last entry of all (ACLs named by text, directory
/// times) is done by [`Extraction::finish`].
pub(crate) struct Extraction<'a> {
    pub(crate) root: &'a Path,
    counts: Counts,
    later: write::Deferred,
    /// Entries read so far, of every archive.
    pub(crate) entries: u64,
    /// Tar bytes read so far, of every archive.
    pub(crate) archive_bytes: u64,
}

impl<'a> Extraction<'a> {
    pub(crate) fn new(root: &'a Path) -> Extraction<'a> {
        Extraction {
            root,
            counts: Counts::default(),
            later: write::Deferred::default(),
            entries: 0,
            archive_bytes: 0,
        }
    }

    fn fail(&self, entry: &str, offset: u64, e: io::Error) -> RootfsError {
        // The verifying reader reports a digest mismatch or download failure as an ImageError.
        match e.get_ref().and_then(|i| i.downcast_ref::<ImageError>()) {
            Some(ie) => RootfsError::Image(ie.clone()),
            None => RootfsError::Extract {
                root: self.root.display().to_string(),
                entry: entry.into(),
                offset,
                cause: e.to_string(),
            },
        }
    }

    /// Extracts the tar stream `r` (a container image's layer with `layer`: its
    /// whiteouts applied, its entries recorded); reads `r` to its end. The archive's bytes.
    pub(crate) fn archive<R: Read>(
        &mut self,
        r: R,
        mut layer: Option<&mut whiteout::Layer>,
        progress: &mut impl FnMut(u64),
    ) -> Result<u64, RootfsError> {
        let mut ar = tar::Archive::new(r);
        loop {
            let e = match ar.next_entry() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(x) => return Err(self.fail("", ar.position, x)),
            };
            let name = String::from_utf8_lossy(&e.path).into_owned();
            let done = match layer.as_deref_mut() {
                Some(l) => {
                    layered_entry(self.root, &e, &mut ar, l, &mut self.counts, &mut self.later)
                }
                None => write::entry(self.root, &e, &mut ar, &mut self.counts, &mut self.later),
            };
            done.map_err(|x| self.fail(&name, ar.position, x))?;
            self.entries += 1;
            if self.entries.is_multiple_of(256) {
                progress(ar.position);
            }
        }
        let archive_bytes = ar.position;
        let mut rest = ar.into_inner();
        io::copy(&mut rest, &mut io::sink())
            .map_err(|x| self.fail("(end of archive)", archive_bytes, x))?;
        progress(archive_bytes);
        self.archive_bytes += archive_bytes;
        Ok(archive_bytes)
    }

    /// ACLs given as text (names resolve against the extracted /etc), then directory
    /// times; the entries and counts.
    pub(crate) fn finish(mut self) -> Result<(u64, Counts), RootfsError> {
        let end = |x: &Self, p: &Path, e: io::Error| x.fail(&p.display().to_string(), 0, e);
        let names = acl::Names::of_root(self.root);
        for (path, xname, text) in &self.later.text_acls {
            let v =
                acl::to_xattr(text, &names).map_err(|c| end(&self, path, io::Error::other(c)))?;
            write::lsetxattr(path, xname.as_bytes(), &v).map_err(|x| end(&self, path, x))?;
        }
        // Deepest first, so setting a parent's time is not undone by its children.
        let mut times = std::mem::take(&mut self.later.dir_times);
        times.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, t) in &times {
            // A later layer may have removed it (a whiteout).
            match write::set_times(p, *t) {
                Err(_) if std::fs::symlink_metadata(p).is_err() => {}
                other => other.map_err(|x| end(&self, p, x))?,
            }
        }
        Ok((self.entries, self.counts))
    }
}

/// A container layer's entry: a marker applied, or the entry laid down over the
/// lower layers (a directory it replaces by a non-directory removed with its contents).
fn layered_entry(
    root: &Path,
    e: &tar::Entry,
    data: &mut impl Read,
    layer: &mut whiteout::Layer,
    counts: &mut Counts,
    later: &mut write::Deferred,
) -> io::Result<()> {
    let m = whiteout::marker(&e.path)?;
    if m != whiteout::Marker::Entry {
        return layer.apply(&m);
    }
    let path = write::resolve(root, &e.path)?;
    if let Some(p) = &path {
        let is_dir = e.kind == Some(tar::Kind::Dir);
        let lower_dir = std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
        if !is_dir && lower_dir && !layer.has_created(p) {
            // A mount point in the tree is kept: the entry then fails to replace it.
            whiteout::remove_tree(p)?;
        }
    }
    write::entry(root, e, data, counts, later)?;
    if let Some(p) = path {
        layer.created(&p);
    }
    Ok(())
}
