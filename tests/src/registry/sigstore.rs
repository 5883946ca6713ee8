//! A lookaside signature store as containers/image writes it: `skopeo copy
//! --sign-by <fingerprint>` with a `registries.d` file whose `lookaside-staging` is a
//! directory here, then every file of that directory served by the test HTTP server.

use crate::server::Server;
use std::path::{Path, PathBuf};

/// A `registries.d` directory and the store it makes skopeo write signatures into.
pub struct Sigstore {
    dir: tempfile::TempDir,
}

impl Default for Sigstore {
    fn default() -> Self {
        Sigstore::new()
    }
}

impl Sigstore {
    /// An empty store, with `registries.d/default.yaml` naming it for every registry.
    pub fn new() -> Sigstore {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store).expect("mkdir store");
        let d = dir.path().join("registries.d");
        std::fs::create_dir_all(&d).expect("mkdir registries.d");
        std::fs::write(
            d.join("default.yaml"),
            format!(
                "default-docker:\n  lookaside-staging: file://{}\n",
                store.display()
            ),
        )
        .expect("write registries.d");
        Sigstore { dir }
    }

    /// The directory to give skopeo as `--registries.d`.
    pub fn registries_d(&self) -> PathBuf {
        self.dir.path().join("registries.d")
    }

    /// The store's files: `<repository>@sha256=<hex>/signature-<n>`.
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Signature `n` of `digest` (`sha256:<hex>`) in `repo`.
    pub fn signature(&self, repo: &str, digest: &str, n: u32) -> PathBuf {
        self.store()
            .join(format!("{repo}@{}", digest.replacen(':', "=", 1)))
            .join(format!("signature-{n}"))
    }

    /// Serves every file of the store under `prefix` (e.g. `/sigstore`) on `server`.
    pub fn serve(&self, server: &Server, prefix: &str) {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).expect("read store").flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.store(), &mut files);
        for f in files {
            let rel = f.strip_prefix(self.store()).expect("inside the store");
            let bytes = std::fs::read(&f).expect("read signature");
            server.serve_bytes(&format!("{prefix}/{}", rel.display()), bytes);
        }
    }
}
