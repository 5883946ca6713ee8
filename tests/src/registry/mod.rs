//! A real registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on
//! 127.0.0.1 with a config file in a temp dir (filesystem storage), optionally behind
//! htpasswd Basic auth, token auth ([`token::TokenIssuer`]) or as a pull-through cache
//! of another; artifacts pushed with `skopeo` from OCI layouts the tests write
//! ([`layout`]); and a relay that cuts a connection mid-blob ([`relay::Relay`]).

pub mod layout;
pub mod relay;
pub mod sigstore;
pub mod token;

use crate::fixtures::{sh, sh_any};
use crate::tang::{free_port, wait_listening};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Debian's distribution binary.
const REGISTRY: &str = "/usr/bin/docker-registry";

/// How a registry authenticates.
pub enum Access {
    /// Anyone may pull and push.
    Open,
    /// htpasswd (bcrypt) with one user: Basic on every request.
    Basic { user: String, password: String },
    /// Bearer tokens from an issuer (which holds the users).
    Token(token::TokenConfig),
    /// A pull-through cache of the registry at this URL (no push).
    Proxy { remote: String },
}

/// A running registry, killed (and its storage removed) on drop.
pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// Credentials skopeo pushes with, when the registry needs them.
    creds: Option<String>,
}

impl Registry {
    /// A registry with `access`, listening on a free port.
    pub fn start(access: Access) -> Registry {
        Registry::start_on(free_port(), access)
    }

    /// A registry with `access` on `port`.
    pub fn start_on(port: u16, access: Access) -> Registry {
        Registry::start_with(port, access, None)
    }

    /// A registry with `access` serving https with `pki`'s server certificate, on a
    /// free port of 127.0.0.1 (a QEMU guest reaches it as 10.0.2.2, which is not
    /// loopback, so imprint speaks https to it).
    pub fn start_tls(access: Access, pki: &crate::tls::Pki) -> Registry {
        Registry::start_with(free_port(), access, Some(pki))
    }

    fn start_with(port: u16, access: Access, tls: Option<&crate::tls::Pki>) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("storage");
        std::fs::create_dir(&root).expect("mkdir storage");
        let (auth, creds) = match &access {
            Access::Open | Access::Proxy { .. } => (String::new(), None),
            Access::Basic { user, password } => {
                let file = dir.path().join("htpasswd");
                let out = sh("htpasswd", &["-Bbn", user, password]);
                std::fs::write(&file, out).expect("write htpasswd");
                let auth = format!(
                    "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                    file.display()
                );
                (auth, Some(format!("{user}:{password}")))
            }
            Access::Token(t) => (t.registry_config(), t.push_creds()),
        };
        let proxy = match &access {
            Access::Proxy { remote } => format!("proxy:\n  remoteurl: {remote}\n"),
            _ => String::new(),
        };
        let tls_config = tls
            .map(|p| {
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    p.server_cert().display(),
                    p.server_key().display()
                )
            })
            .unwrap_or_default();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_config}{auth}{proxy}",
            root.display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("write config");
        let mut r = Registry {
            dir,
            port,
            child: None,
            creds,
        };
        r.resume();
        r
    }

    /// Starts the registry again after [`Registry::stop`]: same storage, same port.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("registry.log")).expect("log");
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (is the docker-registry package installed?)");
        self.child = Some(child);
        wait_listening(self.port, Duration::from_secs(20));
    }

    /// Stops serving (connections are then refused).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// `oci://127.0.0.1:<port>/<rest>`.
    pub fn oci(&self, rest: &str) -> String {
        format!("oci://{}/{rest}", self.host())
    }

    /// What the registry logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes the OCI layout at `dir` (its tag `tag`) to `repo:tag` with skopeo (every
    /// platform of an index with `all`).
    pub fn push_layout(&self, dir: &Path, tag: &str, repo: &str, all: bool) {
        self.push_layout_as(dir, tag, repo, all, None)
    }

    /// As [`Registry::push_layout`], converted to manifest `format` if given (`v2s2`:
    /// Docker schema 2, whose layer and config media types are Docker's).
    pub fn push_layout_as(
        &self,
        dir: &Path,
        tag: &str,
        repo: &str,
        all: bool,
        format: Option<&str>,
    ) {
        let src = format!("oci:{}:{tag}", dir.display());
        let dst = format!("docker://{}/{repo}:{tag}", self.host());
        let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
        if all {
            args.push("--all");
        }
        if let Some(f) = format {
            args.extend(["--format", f]);
        }
        let creds;
        if let Some(c) = &self.creds {
            creds = format!("--dest-creds={c}");
            args.push(&creds);
        }
        args.extend([src.as_str(), dst.as_str()]);
        let out = sh_any("skopeo", &args);
        assert!(
            out.status.success(),
            "skopeo {args:?} failed: {}\n{}\nregistry log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Pushes the OCI layout at `dir` (its tag `tag`) to `repo:tag` and signs it with
    /// `skopeo copy --sign-by <fpr>`, the key in `gnupghome`, into `store` (every
    /// platform of an index, and the index signed, with `all`).
    #[allow(clippy::too_many_arguments)]
    pub fn push_signed(
        &self,
        dir: &Path,
        tag: &str,
        repo: &str,
        store: &sigstore::Sigstore,
        gnupghome: &Path,
        fpr: &str,
        all: bool,
    ) {
        let src = format!("oci:{}:{tag}", dir.display());
        let dst = format!("docker://{}/{repo}:{tag}", self.host());
        let out = Command::new("skopeo")
            .env("GNUPGHOME", gnupghome)
            .arg("--registries.d")
            .arg(store.registries_d())
            .args([
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--sign-by",
                fpr,
            ])
            .args(all.then_some("--all"))
            .args([src.as_str(), dst.as_str()])
            .output()
            .expect("skopeo is installed");
        assert!(
            out.status.success(),
            "skopeo copy --sign-by failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Where the registry keeps blob `digest` (`sha256:<hex>`) on disk (filesystem driver).
    pub fn blob_path(&self, digest: &str) -> std::path::PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The digest the registry serves `repo:tag`'s manifest under (skopeo reads it raw).
    pub fn manifest_digest(&self, repo: &str, tag: &str) -> String {
        let src = format!("docker://{}/{repo}:{tag}", self.host());
        let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
        let creds;
        if let Some(c) = &self.creds {
            creds = format!("--creds={c}");
            args.push(&creds);
        }
        args.push(&src);
        let out = sh_any("skopeo", &args);
        assert!(
            out.status.success(),
            "skopeo inspect: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("sha256:{}", crate::fixtures::sha256_hex(&out.stdout))
    }

    /// Deletes blob `digest` from `repo` (the registry then answers 404 for it).
    pub fn delete_blob(&self, repo: &str, digest: &str) {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.url());
        let out = sh(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "DELETE",
                &url,
            ],
        );
        assert_eq!(out.trim(), "202", "DELETE {url}");
    }

    /// Pushes `data` as a single-file artifact `repo:tag` (ORAS layout, titled `title`);
    /// returns the manifest's digest.
    pub fn push_file(&self, repo: &str, tag: &str, title: &str, data: &[u8]) -> String {
        let l = layout::Layout::new();
        let m = l.artifact(title, data);
        l.tag(&m, tag);
        self.push_layout(l.path(), tag, repo, false);
        m.digest
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
