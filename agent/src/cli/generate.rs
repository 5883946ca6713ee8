//! `imprint generate-docs DIR` (hidden): man pages and shell completions generated from
//! the same clap definitions that parse the command line, so they never drift.
//! `make agent` runs it into `out/`: `out/man/imprint*.1`, `out/completions/imprint.bash`,
//! `_imprint` (zsh) and `imprint.fish`.

use super::exit::{self, Exit};
use clap_complete::Shell;
use std::path::Path;

/// Writes `DIR/man/*.1` (one page per visible command and subcommand) and `DIR/completions/`.
pub fn generate(cmd: clap::Command, dir: &Path) -> Result<(), Exit> {
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        Exit::new(exit::INTERNAL, format!("{what} {}: {e}", p.display()))
    };
    let man = dir.join("man");
    std::fs::create_dir_all(&man).map_err(|e| fail("creating", &man, e))?;
    clap_mangen::generate_to(cmd.clone(), &man)
        .map_err(|e| fail("writing man pages into", &man, e))?;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions).map_err(|e| fail("creating", &completions, e))?;
    let mut cmd = cmd;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd, "imprint", &completions)
            .map_err(|e| fail("writing completions into", &completions, e))?;
        imprint::runner::log::info(&format!("wrote {}", path.display()));
    }
    Ok(())
}
