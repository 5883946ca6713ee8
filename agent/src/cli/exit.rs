//! Exit codes: stable, documented in docs/cli.md.

/// Success.
pub const OK: i32 = 0;
/// An unexpected internal error.
pub const INTERNAL: i32 = 1;
/// Bad command-line usage (clap's own code).
pub const USAGE: i32 = 2;
/// The document is malformed or contradictory.
pub const INVALID_DOCUMENT: i32 = 3;
/// The document is valid but cannot be planned on this machine (disks, sizes).
pub const PLAN_FAILED: i32 = 4;
/// A step failed while provisioning; what was started was undone.
pub const PROVISION_FAILED: i32 = 5;
/// The operator answered no.
pub const ABORTED: i32 = 6;
/// Refused for safety (mounted or in-use disk, boot disk) without `--force`.
pub const REFUSED: i32 = 7;
/// The document could not be fetched or read (or, for `run`, found).
pub const NO_DOCUMENT: i32 = 8;
/// `iso`: the ISO cannot be used (unreadable, not an imprint ISO, damaged area, too small).
pub const ISO_UNUSABLE: i32 = 9;
/// The document was not accepted as authentic: a trust key could not be loaded, its
/// signature is missing, unreadable, bad or by an untrusted key, or it has expired.
pub const UNAUTHENTICATED: i32 = 10;

/// An error that ends the command with a specific exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

impl Exit {
    /// An exit with `code` and a message for stderr.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Exit {
            code,
            message: message.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Exit {
    fn from(e: E) -> Self {
        Exit {
            code: INTERNAL,
            message: format!("{:#}", e.into()),
        }
    }
}
