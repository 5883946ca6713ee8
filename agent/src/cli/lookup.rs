//! `run`'s lookup options (`--lookup URL`, like `imprint.lookup=`), where a looked-up
//! document's signature is found, and what `run` does when the machine is retired.

use super::exit::{self, Exit};
use imprint::boot::Cmdline;
use imprint::runner::log;
use imprint::trust::document::SignatureSource;
use std::time::Duration;

/// Options of `run` for the lookup.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LookupArgs {
    /// Without --config: POST this machine's inventory to URL and apply the document it
    /// answers with (as `imprint.lookup=URL`).
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    lookup: Option<String>,
    /// How long the lookup keeps asking, in seconds (as `imprint.lookup_timeout=`; default 3600).
    #[arg(long, value_name = "SECS")]
    lookup_timeout: Option<u64>,
    /// For tests only: the floor of the server's Retry-After in seconds, instead of 5.
    #[arg(
        long,
        value_name = "SECS",
        env = "IMPRINT_LOOKUP_MIN_WAIT",
        hide = true
    )]
    lookup_min_wait: Option<u64>,
}

impl LookupArgs {
    /// Lays the options over the kernel command line's; `--lookup` replaces a kernel
    /// `imprint.config=` (the command line given by hand wins).
    pub fn apply_to(&self, c: &mut Cmdline) {
        if let Some(url) = &self.lookup {
            c.lookup = Some(url.clone());
            c.config = None;
        }
        if let Some(s) = self.lookup_timeout {
            c.lookup_timeout = Duration::from_secs(s);
        }
        if let Some(s) = self.lookup_min_wait {
            c.lookup_min_wait = Duration::from_secs(s);
        }
    }
}

/// Where the signature of a looked-up document is: beside the URL the server named in
/// `Content-Location`, exactly as beside `imprint.config=`; without one, nowhere.
pub fn signature<'a>(source: &'a str) -> SignatureSource<'a> {
    if source.starts_with("http://") || source.starts_with("https://") {
        SignatureSource::Beside(source)
    } else {
        SignatureSource::Nowhere(
            "the lookup answer named no Content-Location, so there is no place for its \
             signature; the server must send Content-Location: the document's URL, with \
             its .minisig or .sig beside it",
        )
    }
}

/// The lookup server retired this machine: power off (the finish path), or with
/// `--no-finish` only say so and end the command successfully (nothing is to be done).
pub fn retired(msg: &str, do_finish: bool) -> Exit {
    if do_finish {
        imprint::boot::retired(msg)
    }
    log::info(&format!("{msg}; not powering off (--no-finish)"));
    Exit::new(exit::OK, "")
}
