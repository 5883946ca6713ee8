//! The GPT reader on a disk file whose first 64 KiB are the input (the rest zeros,
//! so the backup header is looked for too): any bytes, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let Ok(mut f) = tempfile::NamedTempFile::new() else { return };
    let head = &data[..data.len().min(64 << 10)];
    if f.write_all(head).is_err() || f.as_file().set_len(1 << 20).is_err() {
        return;
    }
    let _ = imprint::storage::partition::read_table(f.path());
});
