//! casync blob indexes on any bytes: the parser never panics, and what it accepts is
//! consistent (chunks back to back from byte 0, none empty or over the maximum, the
//! image's size the last chunk's end).
#![no_main]
use imprint::image::chunked::Index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = Index::parse(data) {
        let mut at = 0;
        for c in &index.chunks {
            assert_eq!(c.start, at, "chunks are back to back");
            assert!(c.size >= 1 && c.size <= index.max, "size within the index's bounds");
            at = c.end();
        }
        assert_eq!(index.len(), at);
        assert_eq!(data.len(), 104 + 40 * index.chunks.len());
    }
});
