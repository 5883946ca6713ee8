//! `imprint` command line.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "imprint",
    version,
    about = "Image-based bare-metal provisioning agent"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Ramdisk mode: find the document (kernel command line, boot ISO, IMPRINT medium) and apply it.
    Run,
    /// Read or write the reserved customization area of imprint.iso.
    Iso {
        #[command(subcommand)]
        cmd: imprint::iso::IsoCommand,
    },
}

/// The engine's entry for `run` (boot::run_ramdisk's call site); the lead plugs the engine in here.
fn apply_document(_text: &str, source: &str) -> Result<(), String> {
    Err(format!(
        "found the document at {source}, but this build has no engine wired in yet"
    ))
}

fn main() -> anyhow::Result<()> {
    // The ramdisk's /init: never returns.
    if imprint::boot::is_pid1() {
        imprint::boot::pid1_main(|c| imprint::boot::run_ramdisk(c, &apply_document));
    }
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Run) => {
            let c = imprint::boot::Cmdline::read()?;
            imprint::boot::run_ramdisk(&c, &apply_document)?;
        }
        Some(Cmd::Iso { cmd }) => imprint::iso::run_command(&cmd)?,
        None => println!("imprint {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
