//! The zstd frame cutter on any bytes: it never panics, hands on exactly the bytes it
//! consumed, and a frame it calls zeros is one the zstd library decodes to as many
//! zeros (checked against the library itself, so the shortcut never writes what a
//! decoder would not).
#![no_main]
use imprint::image::frames::{zero_frame, FrameWalker, Next, ZeroProbe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let mut walker = FrameWalker::new(&mut input);
    let mut probe = ZeroProbe::default();
    let mut handed = 0usize;
    loop {
        match walker.next_frame() {
            Ok(Next::Frame) => {}
            Ok(Next::End) | Err(_) => break,
        }
        let mut frame = Vec::new();
        let Ok(outline) = walker.frame(&mut |b| {
            frame.extend_from_slice(b);
            Ok(())
        }) else {
            break;
        };
        handed += frame.len();
        if let Some(len) = zero_frame(&outline, &frame, &mut probe) {
            // Bounded: frames of zeros the fuzzer makes are at most a few MiB per KiB.
            if len <= 64 << 20 {
                let plain = zstd::bulk::decompress(&frame, len as usize)
                    .expect("the library decodes a frame called zeros");
                assert_eq!(plain.len() as u64, len, "as many bytes as claimed");
                assert!(plain.iter().all(|&b| b == 0), "zeros only");
            }
        }
    }
    assert!(handed <= data.len(), "handed on more than the input");
});
