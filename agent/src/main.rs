//! `imprint` command line. Exit codes are listed in `cli::exit` and `docs/cli.md`.
//! As PID 1 (the ramdisk's `/init`) it sets up the system and runs `run`.

mod cli;

fn main() {
    #[cfg(feature = "bench-unverified")]
    eprintln!("imprint: THIS BUILD DOES NOT VERIFY IMAGES (feature bench-unverified): for measurement only");
    if imprint::boot::is_pid1() {
        // Never returns: failures end on the console and in a report, never in a panic.
        imprint::boot::pid1_main(|c| {
            imprint::boot::run_ramdisk(c, &|text, source| cli::ramdisk_apply(text, source, c))
        });
    }
    std::process::exit(cli::main());
}
