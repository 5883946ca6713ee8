//! Reading documents from a path, a URL or stdin; parsing; the disk inventory.

use super::exit::{self, Exit};
use imprint::config::{DocError, Document};
use imprint::disks::Disk;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Options shared by commands that choose disks.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DiskScope {
    /// Consider only these devices when matching disk hints (comma-separated).
    #[arg(long = "disks", env = "IMPRINT_DISKS", value_delimiter = ',')]
    pub only: Vec<PathBuf>,
}

/// Reads `src` (path, `-`, `http(s)://`, `file://`); returns the text and a name for messages.
pub fn read(src: &str, ca: Option<&Path>) -> Result<(String, String), Exit> {
    let fail = |msg: String| Exit::new(exit::NO_DOCUMENT, msg);
    if src == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| fail(format!("reading the document from stdin: {e}")))?;
        return Ok((s, "stdin".into()));
    }
    if let Some(path) = src.strip_prefix("file://") {
        return read(path, ca).map(|(t, _)| (t, src.to_string()));
    }
    if src.starts_with("http://") || src.starts_with("https://") {
        let client = imprint::http::client(&imprint::http::ClientOptions {
            ca_bundle: ca,
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        })
        .map_err(|e| fail(e.to_string()))?;
        let resp = client.get(src).send().map_err(|e| {
            fail(format!(
                "fetching the document {src}: {}",
                imprint::http::describe(&e)
            ))
        })?;
        if !resp.status().is_success() {
            return Err(fail(format!(
                "fetching the document {src}: HTTP {}",
                resp.status()
            )));
        }
        // The bytes as served, not re-decoded by a charset: the signature covers them.
        let bytes = resp.bytes().map_err(|e| {
            fail(format!(
                "reading the document {src}: {}",
                imprint::http::describe(&e)
            ))
        })?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|e| fail(format!("reading the document {src}: not UTF-8 text: {e}")))?;
        return Ok((text, src.to_string()));
    }
    let text = std::fs::read_to_string(src)
        .map_err(|e| fail(format!("reading the document {src}: {e}")))?;
    Ok((text, src.to_string()))
}

/// Parses and validates (structure, then what spans fields); errors name the JSON path.
/// Every validation error is listed, one per line, so one pass fixes them all.
pub fn parse(text: &str, source: &str) -> Result<Document, Exit> {
    check(text).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("{source}: {e}")).collect();
        Exit::new(exit::INVALID_DOCUMENT, lines.join("\n"))
    })
}

/// The document, or every error in it: the first structural one, else all validation errors.
pub fn check(text: &str) -> Result<Document, Vec<DocError>> {
    let doc = imprint::config::parse(text).map_err(|e| vec![e])?;
    let errors = imprint::config::validate_all(&doc);
    if errors.is_empty() {
        Ok(doc)
    } else {
        Err(errors)
    }
}

/// The disks this run may consider: all, or only those named by `--disks`.
/// The boot medium (a disk carrying an imprint ISO) is never a candidate when the
/// disks are discovered; named explicitly, it stays, and `apply`/`run` refuse it.
pub fn inventory(scope: &DiskScope) -> Result<Vec<Disk>, Exit> {
    let res = if scope.only.is_empty() {
        imprint::disks::inventory().map(|all| {
            all.into_iter()
                .filter(|d| {
                    let medium = is_boot_medium(d);
                    if medium {
                        imprint::runner::log::info(&format!(
                            "{} is an imprint boot medium: not a candidate disk",
                            d.path.display()
                        ));
                    }
                    !medium
                })
                .collect()
        })
    } else {
        imprint::disks::inventory_paths(&scope.only)
    };
    res.map_err(|e| {
        Exit::new(
            exit::PLAN_FAILED,
            format!("reading the disk inventory: {e}"),
        )
    })
}

/// Whether the disk carries an imprint ISO (the medium this system may have booted from).
/// Only ISO 9660 media are searched for the area: the search reads up to gigabytes.
pub fn is_boot_medium(d: &Disk) -> bool {
    let iso = d.signatures.iter().any(|s| s.kind == "iso9660") || has_iso9660_magic(&d.path);
    iso && matches!(imprint::iso::find_embedded(&d.path), Ok(Some(_)))
}

/// `CD001` at the primary volume descriptor (sector 16 of 2048 bytes).
fn has_iso9660_magic(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let mut sig = [0u8; 5];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut sig, 16 * 2048 + 1))
        .is_ok()
        && &sig == b"CD001"
}
