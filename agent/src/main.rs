//! `imprint` command line. Exit codes are listed in `cli::exit` and `docs/cli.md`.
//! As PID 1 (the ramdisk's `/init`) it sets up the system and runs `run`.

mod cli;

/// musl's allocator serialises threads on one lock and maps and unmaps memory for
/// mid-sized blocks: fetching thousands of chunks on several threads spent a third
/// of its CPU there (`make bench`, chunked section). mimalloc, without transparent
/// huge pages (they inflate the resident set several times for nothing here).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
