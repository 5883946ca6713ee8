//! The reader of the ISO customization area (what `run` trusts on a boot medium):
//! any bytes, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let Ok(mut f) = tempfile::NamedTempFile::new() else { return };
    if f.write_all(data).is_err() {
        return;
    }
    let _ = imprint::iso::find_embedded(f.path());
});
