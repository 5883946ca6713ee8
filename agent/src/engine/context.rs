//! How the engine runs: where reports go, how progress shows, what happens after a failure.

use super::progress::ProgressMode;
use crate::report::Reporter;
use crate::trust::TrustRoot;
use std::path::Path;

/// How the engine runs.
pub struct Context<'a> {
    /// Where step events, progress and the final report go.
    pub reporter: &'a Reporter,
    /// PEM bundle for https sources (`imprint.ca=`, `--ca`).
    pub ca_bundle: Option<&'a Path>,
    /// Bars, lines or nothing on the console.
    pub progress: ProgressMode,
    /// Leave the disks as they are after a failure (for debugging) instead of undoing.
    pub keep_on_failure: bool,
    /// The keys in force (empty: nothing is authenticated); they check an image's
    /// signature when the document lists no keys of its own.
    pub trust: TrustRoot,
    /// The document was authenticated by the trust root (signed, or part of the boot
    /// medium that carries the keys).
    pub document_signed: bool,
}
