//! `imprint` command line. Exit codes are listed in `cli::exit` and `docs/cli.md`.

mod cli;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
