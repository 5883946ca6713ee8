//! The provisioning document parser and validator: any text, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(doc) = imprint::config::parse(text) {
            let _ = imprint::config::validate_all(&doc);
        }
    }
});
