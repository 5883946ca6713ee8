//! `format: rootfs`: a tar archive (zstd, xz, gzip or plain), streamed and verified
//! inline like a disk image, extracted across the mounted layout.
//!
//! Owners are numeric; modes, hard links, symlinks, device nodes, sparse files, xattrs
//! (SELinux labels and file capabilities included) and POSIX ACLs are kept. No entry may
//! leave the root: `..` is refused and nothing is extracted through a symlink. The
//! digest is known only at the end of the stream: a mismatch fails the step after the
//! extraction, and the engine then wipes the disks.

mod acl;
mod extraction;
mod layers;
pub mod tar;
pub mod whiteout;
mod write;

use crate::image::WriteOptions;
use crate::plan::ImagePlan;
use std::io::{self, Read};
use std::path::Path;

pub(crate) use extraction::Extraction;
pub use extraction::{Extracted, RootfsError};
pub use layers::{apply_layers, extract_container, ContainerDeployed, LayerApplied};
pub use write::Counts;

/// Extracts the tar stream `r` under `root`; `progress` gets the archive bytes read so far.
/// Reads `r` to its end after the archive's end marker (so a verifying reader checks).
pub fn extract<R: Read>(
    r: R,
    root: &Path,
    mut progress: impl FnMut(u64),
) -> Result<Extracted, RootfsError> {
    let mut x = Extraction::new(root);
    let archive_bytes = x.archive(r, None, &mut progress)?;
    let (entries, counts) = x.finish()?;
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
    let stream = crate::image::open_verified_stream(&img.urls, img.digest.as_ref(), opts)?;
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
