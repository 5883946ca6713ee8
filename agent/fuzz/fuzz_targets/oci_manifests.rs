//! Registry answers on any bytes: a manifest or index (under each media type a registry
//! may state) and an image config never panic the parsers, the platform and layer
//! choices, or the pairing of a container image's layers with its diff_ids.
#![no_main]
use imprint::oci::manifest::{self, Fetched};
use imprint::oci::{container, select};
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 5] = [
    None,
    Some(manifest::OCI_MANIFEST),
    Some(manifest::OCI_INDEX),
    Some(manifest::DOCKER_MANIFEST),
    Some(manifest::DOCKER_LIST),
];

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the Content-Type, bytes 1..3 where the manifest ends and the config begins.
    let Some((&kind, rest)) = data.split_first() else { return };
    let Some((len, rest)) = rest.split_first_chunk::<2>() else { return };
    let cut = (u16::from_le_bytes(*len) as usize).min(rest.len());
    let (bytes, config) = rest.split_at(cut);
    let content_type = TYPES[kind as usize % TYPES.len()];
    let _ = container::layer_codec(&String::from_utf8_lossy(config));
    match manifest::parse(bytes, content_type) {
        Ok(Fetched::Manifest(m)) => {
            let _ = select::disk_layer(&m);
            if let Ok(layers) = container::layers(&m, config) {
                assert_eq!(layers.len(), m.layers.len(), "one diff_id per layer");
            }
        }
        Ok(Fetched::Index(ix)) => {
            let _ = select::platform_child(&ix);
        }
        Err(_) => {}
    }
});
