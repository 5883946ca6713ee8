//! `format: rootfs`: a tar archive (zstd, xz, gzip or plain), streamed and verified
//! inline like a disk image, extracted across the mounted layout.
//!
//! Owners are numeric; modes, hard links, symlinks, device nodes, sparse files, xattrs
//! (SELinux labels and file capabilities included) and POSIX ACLs are kept. No entry may
//! leave the root: `..` is refused and nothing is extracted through a symlink. The
//! digest is known only at the end of the stream: a mismatch fails the step after the
//! extraction, and the engine then wipes the disks.

mod acl;
pub mod tar;
mod write;

use crate::image::{ImageError, WriteOptions};
use crate::plan::ImagePlan;
use serde::Serialize;
use std::io::{self, Read};
use std::path::Path;

pub use write::Counts;

/// Why a root filesystem could not be laid down.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Image(#[from] ImageError),
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

/// Extracts the tar stream `r` under `root`; `progress` gets the archive bytes read so far.
/// Reads `r` to its end after the archive's end marker (so a verifying reader checks).
pub fn extract<R: Read>(
    r: R,
    root: &Path,
    mut progress: impl FnMut(u64),
) -> Result<Extracted, RootfsError> {
    let mut ar = tar::Archive::new(r);
    let mut counts = Counts::default();
    let mut later = write::Deferred::default();
    let mut entries = 0u64;
    let fail = |entry: &str, offset: u64, e: io::Error| {
        // The verifying reader reports a digest mismatch or download failure as an ImageError.
        match e.get_ref().and_then(|i| i.downcast_ref::<ImageError>()) {
            Some(ie) => RootfsError::Image(ie.clone()),
            None => RootfsError::Extract {
                root: root.display().to_string(),
                entry: entry.into(),
                offset,
                cause: e.to_string(),
            },
        }
    };
    loop {
        let e = match ar.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(x) => return Err(fail("", ar.position, x)),
        };
        let name = String::from_utf8_lossy(&e.path).into_owned();
        write::entry(root, &e, &mut ar, &mut counts, &mut later)
            .map_err(|x| fail(&name, ar.position, x))?;
        entries += 1;
        if entries.is_multiple_of(256) {
            progress(ar.position);
        }
    }
    let archive_bytes = ar.position;
    let mut rest = ar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|x| fail("(end of archive)", archive_bytes, x))?;
    let names = acl::Names::of_root(root);
    for (path, xname, text) in &later.text_acls {
        let v = acl::to_xattr(text, &names).map_err(|c| {
            fail(
                &path.display().to_string(),
                archive_bytes,
                io::Error::other(c),
            )
        })?;
        write::lsetxattr(path, xname.as_bytes(), &v)
            .map_err(|x| fail(&path.display().to_string(), archive_bytes, x))?;
    }
    // Deepest first, so setting a parent's time is not undone by its children.
    later
        .dir_times
        .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (p, t) in &later.dir_times {
        write::set_times(p, *t).map_err(|x| fail(&p.display().to_string(), archive_bytes, x))?;
    }
    progress(archive_bytes);
    Ok(Extracted {
        entries,
        counts,
        archive_bytes,
    })
}

/// Streams `img` (verified inline) and extracts it under `root`.
pub fn extract_image(
    img: &ImagePlan,
    root: &Path,
    opts: &WriteOptions,
    progress: impl Fn(u64, u64),
) -> Result<(Extracted, crate::image::Compression, u64), RootfsError> {
    let stream = crate::image::open_verified_stream(&img.urls, &img.digest, opts)?;
    let compression = stream.compression();
    let counter = Counting {
        inner: stream,
        downloaded: 0,
    };
    let shared = std::cell::Cell::new(0u64);
    let mut counter = counter;
    let res = {
        let reader = ReadWith {
            r: &mut counter,
            on_read: |d| shared.set(d),
        };
        extract(reader, root, |b| progress(shared.get(), b))?
    };
    Ok((res, compression, counter.downloaded))
}

struct Counting {
    inner: crate::image::VerifiedStream,
    downloaded: u64,
}

impl Read for Counting {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(b)?;
        self.downloaded = self.inner.bytes_downloaded();
        Ok(n)
    }
}

struct ReadWith<'a, F: Fn(u64)> {
    r: &'a mut Counting,
    on_read: F,
}

impl<F: Fn(u64)> Read for ReadWith<'_, F> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(b)?;
        (self.on_read)(self.r.downloaded);
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
