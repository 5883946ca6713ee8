//! The qcow2 metadata pass (header, L1 and L2 tables) on any bytes as the whole
//! file: a layout or a refusal, never a panic, and never memory beyond the bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Most inputs should get past the magic to reach the tables.
    let mut file = data.to_vec();
    if file.len() >= 4 && data[0] & 1 == 0 {
        file[..4].copy_from_slice(&imprint::image::qcow2::MAGIC);
    }
    if let Ok(layout) = imprint::image::qcow2::layout_of(&file) {
        let h = &layout.header;
        for c in &layout.clusters {
            assert!(
                c.guest < h.guest_clusters(),
                "a cluster past the disk's end"
            );
            assert!(c.host < layout.file_len, "a cluster past the file's end");
        }
        assert!(layout.guest_data.windows(2).all(|w| w[0] < w[1]));
    }
});
