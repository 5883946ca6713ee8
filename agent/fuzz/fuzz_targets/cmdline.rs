//! The kernel command line parser (`imprint.*`, `ip=`, `vlan=`): any text, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = imprint::boot::Cmdline::parse(text);
    }
});
