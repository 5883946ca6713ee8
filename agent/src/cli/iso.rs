//! `imprint iso customize|show`: the reserved customization area of imprint.iso.
//! A document is validated like `imprint validate` before it is embedded, so a bad one
//! never reaches a boot medium, and the ISO stays untouched.

use super::document;
use super::exit::{self, Exit};
use imprint::iso::IsoError;
use std::path::{Path, PathBuf};

/// `imprint iso …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum IsoCommand {
    /// Write a provisioning document and extra kernel arguments into imprint.iso's reserved area.
    Customize {
        /// The provisioning document to embed (YAML or JSON); it is validated first.
        #[arg(long)]
        config: Option<PathBuf>,
        /// An extra kernel argument for the agent (repeatable), e.g. --karg ip=dhcp.
        #[arg(long = "karg")]
        kargs: Vec<String>,
        /// A trust key file to store (repeatable): a minisign public key or an OpenPGP
        /// certificate; the agent then accepts only documents signed by a trusted key.
        #[arg(long = "trust", value_name = "KEYFILE")]
        trust: Vec<PathBuf>,
        /// Where to write the customized copy; without it the ISO is changed in place.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The ISO (or a device holding it).
        iso: PathBuf,
    },
    /// Print what an ISO carries in its reserved area.
    Show {
        /// The ISO (or a device holding it).
        iso: PathBuf,
    },
}

/// Runs an `imprint iso` subcommand.
pub fn run(cmd: &IsoCommand) -> Result<(), Exit> {
    match cmd {
        IsoCommand::Customize {
            config,
            kargs,
            trust,
            output,
            iso,
        } => customize(iso, output.as_deref(), config.as_deref(), kargs, trust),
        IsoCommand::Show { iso } => show(iso),
    }
}

fn customize(
    iso: &Path,
    output: Option<&Path>,
    config: Option<&Path>,
    kargs: &[String],
    trust: &[PathBuf],
) -> Result<(), Exit> {
    let keys = trust
        .iter()
        .map(|p| key_file(p))
        .collect::<Result<Vec<_>, Exit>>()?;
    let doc = match config {
        Some(p) => {
            let (text, source) = document::read(&p.display().to_string(), None)?;
            document::parse(&text, &source)?;
            Some(text)
        }
        None => None,
    };
    let doc_len = doc.as_ref().map_or(0, String::len);
    let area = imprint::iso::customize_with_trust(
        iso,
        output,
        doc.as_deref().map(str::as_bytes),
        kargs,
        &keys,
    )
    .map_err(iso_exit)?;
    let karg_bytes: usize = kargs.iter().map(|a| a.len() + 1).sum();
    let key_bytes: usize = keys.iter().map(|k| 8 + k.name.len() + k.bytes.len()).sum();
    println!(
        "{}: wrote {doc_len} document bytes, {} kernel argument(s) and {} trust key(s) at offset {} ({} bytes free)",
        output.unwrap_or(iso).display(),
        kargs.len(),
        keys.len(),
        area.offset,
        area.capacity() - doc_len - karg_bytes - key_bytes
    );
    Ok(())
}

/// Reads a `--trust` key file and checks it is a key before the ISO is touched.
fn key_file(p: &Path) -> Result<imprint::iso::KeyFile, Exit> {
    let anchor =
        imprint::trust::root::load_file(p).map_err(|e| Exit::new(exit::USAGE, e.to_string()))?;
    let bytes = std::fs::read(p)
        .map_err(|e| Exit::new(exit::USAGE, format!("reading {}: {e}", p.display())))?;
    let name = p.file_name().map_or_else(
        || anchor.origin.clone(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(imprint::iso::KeyFile { name, bytes })
}

fn show(iso: &Path) -> Result<(), Exit> {
    let e = imprint::iso::show(iso).map_err(iso_exit)?;
    let kargs = if e.kargs.is_empty() {
        "(none)".to_string()
    } else {
        e.kargs.join(" ")
    };
    println!("kernel arguments: {kargs}");
    if e.trust.is_empty() {
        println!("trust keys: (none)");
    }
    for k in &e.trust {
        match imprint::trust::root::parse_key(&k.bytes, &k.name) {
            Ok(key) => println!("trust key: {} ({})", key.fingerprint(), k.name),
            Err(err) => println!("trust key: {} (unusable: {err})", k.name),
        }
    }
    match e.config {
        Some(doc) => print!("document ({} bytes):\n{doc}", doc.len()),
        None => println!("document: (none)"),
    }
    Ok(())
}

/// An unusable kernel argument is a usage error; everything else concerns the ISO itself.
fn iso_exit(e: IsoError) -> Exit {
    let code = match e {
        IsoError::BadKarg { .. } | IsoError::BadKey(_) => exit::USAGE,
        IsoError::NotText(_) => exit::INVALID_DOCUMENT,
        _ => exit::ISO_UNUSABLE,
    };
    Exit::new(code, e.to_string())
}
