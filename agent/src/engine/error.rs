//! What a step's failure says: the module that failed, or the device I/O around it.

use std::path::PathBuf;

/// A step's failure, wrapping the module that failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Wipe(#[from] crate::storage::wipe::WipeError),
    #[error(transparent)]
    Erase(#[from] crate::storage::erase::EraseError),
    #[error(transparent)]
    Partition(#[from] crate::storage::partition::PartitionError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Configdrive(#[from] crate::configdrive::ConfigdriveError),
    #[error(transparent)]
    Raid(#[from] crate::storage::raid::RaidError),
    #[error(transparent)]
    Luks(#[from] crate::storage::luks::LuksError),
    #[error(transparent)]
    Lvm(#[from] crate::storage::lvm::LvmError),
    #[error(transparent)]
    Fs(#[from] crate::storage::fs::FsError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Finalize(#[from] crate::finalize::FinalizeError),
    #[error(transparent)]
    Efi(#[from] crate::efi::EfiError),
    #[error(transparent)]
    Teardown(#[from] crate::storage::teardown::TeardownError),
    #[error(transparent)]
    Block(#[from] crate::blockdev::BlockError),
    /// Checks before the first step failed; no disk was touched.
    #[error(
        "{} before any disk was touched: {}",
        if failures.len() == 1 { "a check failed".to_string() } else { format!("{} checks failed", failures.len()) },
        failures.join("; ")
    )]
    Preflight { failures: Vec<String> },
    /// A file or device operation of the engine itself failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done (`opening`, `reading`, `creating`).
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// libblkid could not probe what a step wrote.
    /// The image's signature could not be fetched, read or matched to a key.
    #[error("{0}")]
    Signature(String),
    #[error("probing {}: {message}", path.display())]
    Probe { path: PathBuf, message: String },
    /// A filesystem image held no filesystem imprint can grow.
    #[error("the image written to {} holds no ext4, xfs or vfat filesystem", .0.display())]
    NoFilesystem(PathBuf),
    /// A 512-byte-sector image on a disk with larger logical sectors.
    #[error(
        "the image's partition table is laid out for 512-byte sectors, but {} has {sector}-byte logical sectors; \
         no firmware will find it. Use an image built for {sector}-byte-sector (4Kn) disks",
        path.display()
    )]
    SectorSize { path: PathBuf, sector: u64 },
}

impl StepError {
    /// An I/O failure while doing `what` to `path`.
    pub fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StepError {
        let path = path.into();
        move |source| StepError::Io { what, path, source }
    }
}
