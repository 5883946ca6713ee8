//! `apply` and `run` accept a document only once it is authentic: the trust root in
//! force is printed, the document's detached signature is checked over the exact bytes
//! read (before parsing), and its `expires` time is enforced (after parsing, before
//! planning). A refusal is reported without anything the document holds beyond where
//! to report.

use super::exit::{self, Exit};
use super::provision::{report_early_failure, ReportTimeout};
use imprint::runner::log;
use imprint::trust::document::{self as doc_auth, SignatureSource};
use imprint::trust::root::{self, Loaded};
use std::path::{Path, PathBuf};

/// The step name refusals are reported under.
const STEP: &str = "authenticate";

/// Where trusted keys come from, beyond the boot medium.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TrustArgs {
    /// A trusted key file (repeatable): a minisign public key (`.pub`) or an OpenPGP
    /// certificate (`.asc`, `.pgp`, `.gpg`). With any key in force the document must be signed.
    #[arg(long = "trust", value_name = "KEYFILE")]
    pub keys: Vec<PathBuf>,
    /// Directory of trusted key files, instead of /etc/imprint/trust.d.
    #[arg(long = "trust-dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Accept an `oci://` image named by a tag that neither a digest nor a registry
    /// signature pins (by hand only: never from the document or the kernel command
    /// line); the console warns and the report says `insecure: true`.
    #[arg(long)]
    pub insecure: bool,
}

impl TrustArgs {
    /// The trust root: the directory, the boot medium's keys, `--trust` files.
    pub fn load(&self, medium: &[(String, Vec<u8>)]) -> Result<Loaded, root::KeyError> {
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(root::DEFAULT_DIR));
        root::load(&dir, medium, &self.keys)
    }
}

/// Prints the keys in force for `imprint disks`; an unusable key is a warning there.
pub fn print_trust_root() {
    match TrustArgs::default().load(&[]) {
        Ok(loaded) => loaded.describe().iter().for_each(|l| println!("{l}")),
        Err(e) => log::warn(&e.to_string()),
    }
}

/// What a run needs to authenticate its document.
pub struct Check<'a> {
    /// Where the keys come from.
    pub trust: &'a TrustArgs,
    /// Keys from the boot medium's customization area.
    pub medium: &'a [(String, Vec<u8>)],
    /// Where the signature is found; `None` for a document in the boot medium's own
    /// customization area, which is accepted as part of the medium carrying the keys.
    pub signature: Option<SignatureSource<'a>>,
    /// PEM bundle for https signature URLs.
    pub ca: Option<&'a Path>,
    /// Retry budget of the failure report.
    pub report: ReportTimeout,
}

/// What authentication established: the keys in force, and whether they vouched for
/// the document.
#[derive(Default)]
pub struct Authenticated {
    /// The trust root (empty: nothing is authenticated).
    pub root: imprint::trust::TrustRoot,
    /// The document carried a valid signature, or came with the medium holding the keys.
    pub signed: bool,
}

/// Loads and prints the trust root, then checks the document's signature when a key is
/// in force; a refusal is reported (step `authenticate`) and exits with
/// [`exit::UNAUTHENTICATED`].
pub fn authenticate(text: &str, source: &str, c: &Check) -> Result<Authenticated, Exit> {
    let refuse = |msg: String| {
        report_early_failure(text, STEP, &msg, c.ca, c.report, false);
        Exit::new(exit::UNAUTHENTICATED, msg)
    };
    let loaded = c.trust.load(c.medium).map_err(|e| refuse(e.to_string()))?;
    for line in loaded.describe() {
        log::info(&line);
    }
    let root = loaded.root();
    if loaded.is_empty() {
        log::info(&format!(
            "document {source} is not authenticated (no trust root)"
        ));
        return Ok(Authenticated {
            root,
            signed: false,
        });
    }
    let Some(signature) = c.signature else {
        log::info(&format!(
            "document {source} is part of the boot medium that carries the trust root: accepted without a signature"
        ));
        return Ok(Authenticated { root, signed: true });
    };
    let now = imprint::timestamp::now();
    let line = doc_auth::authenticate(&root, text.as_bytes(), source, signature, c.ca, now)
        .map_err(|e| refuse(e.to_string()))?;
    log::info(&line);
    Ok(Authenticated { root, signed: true })
}

/// Refuses an expired document, or one whose `expires` cannot be checked by this clock.
pub fn check_expiry(
    doc: &imprint::config::Document,
    text: &str,
    source: &str,
    ca: Option<&Path>,
    report: ReportTimeout,
) -> Result<(), Exit> {
    let expires = doc.expires.as_ref().map(|t| t.unix_seconds());
    doc_auth::check_expiry(source, expires, imprint::timestamp::now()).map_err(|e| {
        let msg = e.to_string();
        report_early_failure(text, STEP, &msg, ca, report, false);
        Exit::new(exit::UNAUTHENTICATED, msg)
    })
}
