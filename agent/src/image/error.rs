//! Why an image could not be written: one error type for every stage and writer.

use super::codec::Compression;
use super::qcow2::header::Qcow2Error;
use crate::plan::ImageFormat;
use crate::units::Bytes;
use std::path::PathBuf;
use std::time::Duration;

/// Why an image could not be written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    #[error("fetching {url}: {cause}")]
    Fetch { url: String, cause: String },
    /// What the source serves is not vouched for (a registry signature refused).
    #[error("{url}: {cause}")]
    Untrusted { url: String, cause: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("no source of the image worked: {}", attempts.join("; "))]
    AllSourcesFailed { attempts: Vec<String> },
    #[error(
        "{algorithm} of {url} is {actual} but {expected} is expected (the document's digest, or the \
         layer digest its pinned or signed manifest names): the download is corrupt, the blob was \
         changed, or the digest is wrong (nothing bootable was written)"
    )]
    DigestMismatch {
        algorithm: String,
        expected: String,
        actual: String,
        url: String,
    },
    #[error(
        "the signature by {signer} does not verify over {url} as served: {cause} \
         (the download is corrupt, the image was changed after signing, or the signature is for another file; nothing bootable was written)"
    )]
    SignatureMismatch {
        signer: String,
        url: String,
        cause: String,
    },
    #[error("decompressing the {compression} image: {cause}")]
    Decode {
        compression: Compression,
        cause: String,
    },
    #[error("image is larger than {} ({}): it needs at least {} bytes", path.display(), Bytes(*capacity).human(), needed)]
    TooLarge {
        path: PathBuf,
        capacity: u64,
        needed: u64,
    },
    #[error("target {}: {cause}", path.display())]
    Target { path: PathBuf, cause: String },
    #[error("writing {} at byte {offset}: {cause}", path.display())]
    Write {
        path: PathBuf,
        offset: u64,
        cause: String,
    },
    #[error("no data from {url} for {after:?} at byte {offset}: the connection stalled")]
    Stalled {
        url: String,
        after: Duration,
        offset: u64,
    },
    #[error("the image has no URL")]
    NoSource,
    #[error("image format {0:?} is not a whole-disk image; it is written by its own step")]
    Format(ImageFormat),
    #[error("reading {} back to verify it: {cause}", path.display())]
    Readback { path: PathBuf, cause: String },
    #[error(
        "read-back of {} differs from what was written, first in the MiB at byte {offset} \
         (and {more} more MiBs): the device lost or changed writes (hash list written {written}, \
         read {read}); check the disk's health and cabling, then write again",
        path.display()
    )]
    ReadbackMismatch {
        path: PathBuf,
        offset: u64,
        more: u64,
        written: String,
        read: String,
    },
    #[error(
        "the image is qcow2 inside a {compression}-compressed file, which cannot be read at random \
         offsets as qcow2 needs: serve the .qcow2 file itself, uncompressed (its clusters may be \
         compressed: `qemu-img convert -c -O qcow2`), or convert it to raw and compress that; \
         nothing was written"
    )]
    Qcow2Compressed { compression: Compression },
    #[error("{url} is a qcow2 image this agent does not write: {cause}")]
    Qcow2 { url: String, cause: Qcow2Error },
    #[error("{url}: {cause}")]
    Index { url: String, cause: String },
    #[error(
        "chunk {id} (image bytes {start}..{}) could not be had from any chunk store: {cause} \
         (nothing bootable was written)", start + size
    )]
    Chunk {
        id: String,
        start: u64,
        size: u64,
        cause: String,
    },
    #[error("chunk stores: {cause}")]
    Stores { cause: String },
    /// A stage stopped because another one failed; never the reported cause.
    #[error("stopped because another stage of the image pipeline failed")]
    Cancelled,
}
