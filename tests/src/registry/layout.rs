//! OCI image layouts written by the tests (blobs, manifests, indexes, `index.json`),
//! for `skopeo copy oci:<dir>:<tag> docker://…` to push.

use serde_json::{json, Value};
use std::cell::RefCell;
use std::path::Path;

/// Layer type `oras push` gives a file by default.
pub const ORAS_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Config type of ORAS v1.0-style artifacts (PyPI `oras`): an empty JSON object.
pub const UNKNOWN_CONFIG: &str = "application/vnd.unknown.config.v1+json";

/// Config type of OCI container images.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Layer types of container images.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A descriptor of something written into the layout.
#[derive(Clone, Debug)]
pub struct Written {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

impl Written {
    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// An OCI layout in a temp dir.
pub struct Layout {
    dir: tempfile::TempDir,
    refs: RefCell<Vec<Value>>,
}

impl Default for Layout {
    fn default() -> Self {
        Layout::new()
    }
}

impl Layout {
    /// An empty layout.
    pub fn new() -> Layout {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).expect("mkdir blobs");
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("oci-layout");
        let l = Layout {
            dir,
            refs: RefCell::new(Vec::new()),
        };
        l.write_index();
        l
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Stores `bytes` as a blob of `media_type`.
    pub fn blob(&self, bytes: &[u8], media_type: &str) -> Written {
        let hex = crate::fixtures::sha256_hex(bytes);
        std::fs::write(self.dir.path().join("blobs/sha256").join(&hex), bytes).expect("blob");
        Written {
            digest: format!("sha256:{hex}"),
            size: bytes.len() as u64,
            media_type: media_type.to_string(),
        }
    }

    /// A manifest of `layers` (each with an optional title) and an ORAS v1.0 config.
    pub fn manifest(&self, layers: &[(Option<&str>, &[u8])]) -> Written {
        let config = self.blob(b"{}", UNKNOWN_CONFIG);
        let layers: Vec<Value> = layers
            .iter()
            .map(|(title, data)| {
                let mut d = self.blob(data, ORAS_LAYER).descriptor();
                if let Some(t) = title {
                    d["annotations"] = json!({"org.opencontainers.image.title": t});
                }
                d
            })
            .collect();
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(),
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&m).expect("json");
        self.blob(&bytes, "application/vnd.oci.image.manifest.v1+json")
    }

    /// A linux/amd64 container image: `layers` (blob bytes, media type, diff_id as
    /// `sha256:<hex>` of the uncompressed tar) under an OCI image config.
    pub fn container(&self, layers: &[(Vec<u8>, &str, String)]) -> Written {
        let diff_ids: Vec<&str> = layers.iter().map(|(_, _, d)| d.as_str()).collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = self.blob(&serde_json::to_vec(&config).expect("json"), OCI_CONFIG);
        let layers: Vec<Value> = layers
            .iter()
            .map(|(data, media_type, _)| self.blob(data, media_type).descriptor())
            .collect();
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(),
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&m).expect("json");
        self.blob(&bytes, "application/vnd.oci.image.manifest.v1+json")
    }

    /// A single-file artifact as `oras push` makes it: one titled layer.
    pub fn artifact(&self, title: &str, data: &[u8]) -> Written {
        self.manifest(&[(Some(title), data)])
    }

    /// An index of `children`, each with its `os/arch` platform.
    pub fn index(&self, children: &[(&Written, &str, &str)]) -> Written {
        let manifests: Vec<Value> = children
            .iter()
            .map(|(w, os, arch)| {
                let mut d = w.descriptor();
                d["platform"] = json!({"os": os, "architecture": arch});
                d
            })
            .collect();
        let ix = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&ix).expect("json");
        self.blob(&bytes, "application/vnd.oci.image.index.v1+json")
    }

    /// Names `w` `tag` in `index.json`.
    pub fn tag(&self, w: &Written, tag: &str) {
        let mut d = w.descriptor();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.refs.borrow_mut().push(d);
        self.write_index();
    }

    fn write_index(&self) {
        let ix = json!({"schemaVersion": 2, "manifests": *self.refs.borrow()});
        std::fs::write(
            self.dir.path().join("index.json"),
            serde_json::to_vec(&ix).expect("json"),
        )
        .expect("index.json");
    }
}
