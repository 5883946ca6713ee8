//! `imprint` command line.

fn main() {
    println!("imprint {}", env!("CARGO_PKG_VERSION"));
}
