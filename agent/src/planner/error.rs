//! Why a document cannot be planned on this machine.

use crate::config::DocError;

/// Why a document cannot be planned on this machine. Every variant names a JSON path.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The document itself is invalid.
    #[error("{0}")]
    Document(#[from] DocError),
    /// A disk could not be chosen.
    #[error("{path}: {message}")]
    Disk { path: String, message: String },
    /// Sizes do not fit.
    #[error("{path}: {message}")]
    Layout { path: String, message: String },
    /// An inventory file could not be read.
    #[error("reading the disk inventory: {0}; give the JSON `imprint disks --json` prints")]
    Inventory(String),
}
