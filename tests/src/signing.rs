//! Signing keys for the suites that sign documents and images, made once per test
//! process with the real tools: two minisign key pairs (`ops`, `rogue`) and a gpg key
//! (`ops <ops@example.com>`, exported as `release.asc`) in its own GNUPGHOME.

use crate::fixtures::sh;
use crate::provision::path_str;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Signing keys made once per test process: two minisign key pairs (`ops` trusted,
/// `rogue` not) and a gpg key in its own GNUPGHOME.
pub struct Keys {
    dir: tempfile::TempDir,
    /// The gpg key's fingerprint (upper-case hex).
    pub gpg_fpr: String,
}

impl Keys {
    /// A file in the key directory: `<name>.pub`, `<name>.sec`, `release.asc`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs gpg in the keys' own home.
    pub fn gpg(&self, args: &[&str]) -> Vec<u8> {
        gpg_in(&self.path("gnupg"), args)
    }

    /// A detached signature over `data`: minisign with key `name`, or gpg (binary).
    pub fn sign(&self, name: &str, data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("doc");
        std::fs::write(&file, data).unwrap();
        if name == "gpg" {
            let sig = dir.path().join("doc.sig");
            self.gpg(&["--detach-sign", "-o", path_str(&sig), path_str(&file)]);
            return std::fs::read(sig).unwrap();
        }
        self.minisign(name, &file, false)
    }

    /// minisign's legacy signature (`-l`, over the file itself) over `data` by `name`.
    pub fn sign_legacy(&self, name: &str, data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("doc");
        std::fs::write(&file, data).unwrap();
        self.minisign(name, &file, true)
    }

    fn minisign(&self, name: &str, file: &std::path::Path, legacy: bool) -> Vec<u8> {
        let sec = self.path(&format!("{name}.sec"));
        let mut args = vec!["-S", "-s", path_str(&sec), "-m", path_str(file)];
        if legacy {
            args.push("-l");
        }
        sh("minisign", &args);
        std::fs::read(format!("{}.minisig", file.display())).unwrap()
    }

    /// The minisign key id of `name`, as imprint prints it.
    pub fn minisign_id(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.path(&format!("{name}.pub"))).unwrap();
        text.lines()
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_uppercase()
    }
}

/// The keys, made on first use.
pub fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for name in ["ops", "rogue"] {
            let p = |ext: &str| dir.path().join(format!("{name}.{ext}"));
            sh(
                "minisign",
                &[
                    "-G",
                    "-W",
                    "-p",
                    path_str(&p("pub")),
                    "-s",
                    path_str(&p("sec")),
                ],
            );
        }
        std::fs::create_dir(dir.path().join("gnupg")).unwrap();
        let mut k = Keys {
            dir,
            gpg_fpr: String::new(),
        };
        k.gpg(&[
            "--quick-gen-key",
            "ops <ops@example.com>",
            "ed25519",
            "sign",
            "never",
        ]);
        let cert = k.gpg(&["--armor", "--export"]);
        std::fs::write(k.path("release.asc"), cert).unwrap();
        let list = String::from_utf8(k.gpg(&["--with-colons", "--list-keys"])).unwrap();
        k.gpg_fpr = list
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string();
        k
    })
}

/// A second gpg key (`rogue <rogue@example.com>`) in a home of its own: a key no
/// document or trust root names.
pub struct Rogue {
    home: tempfile::TempDir,
    /// Its fingerprint.
    pub fpr: String,
}

impl Rogue {
    /// Its GnuPG home (for `GNUPGHOME`).
    pub fn home(&self) -> &std::path::Path {
        self.home.path()
    }
}

/// The rogue key, made on first use.
pub fn rogue() -> &'static Rogue {
    static R: OnceLock<Rogue> = OnceLock::new();
    R.get_or_init(|| {
        let home = tempfile::tempdir().unwrap();
        let gpg = |args: &[&str]| String::from_utf8_lossy(&gpg_in(home.path(), args)).into_owned();
        gpg(&[
            "--quick-gen-key",
            "rogue <rogue@example.com>",
            "ed25519",
            "sign",
            "never",
        ]);
        let fpr = gpg(&["--with-colons", "--list-keys"])
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string();
        Rogue { home, fpr }
    })
}

/// Runs gpg unattended (no passphrase, no pinentry) with `home` as its home; its stdout.
fn gpg_in(home: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .output()
        .expect("gpg is installed (make deps)");
    assert!(out.status.success(), "gpg {args:?}: {out:?}");
    out.stdout
}

/// Serves `doc` at `path` with its minisign signature by `ops`, and applies it to `disk`
/// with a trust root of exactly the minisign key `ops` (the document) and the gpg
/// certificate `release.asc` (the images).
pub fn apply_signed(
    server: &crate::server::Server,
    path: &str,
    doc: &str,
    disk: &crate::fixtures::LoopDev,
) -> crate::provision::Run {
    server.serve_bytes(path, doc.as_bytes().to_vec());
    server.serve_bytes(
        &format!("{path}.minisig"),
        keys().sign("ops", doc.as_bytes()),
    );
    let empty = tempfile::tempdir().unwrap();
    let ops = keys().path("ops.pub").display().to_string();
    let cert = keys().path("release.asc").display().to_string();
    crate::provision::imprint(&[
        "apply",
        "--yes",
        "--disks",
        disk.dev(),
        "--trust-dir",
        crate::provision::path_str(empty.path()),
        "--trust",
        &ops,
        "--trust",
        &cert,
        &server.url(path),
    ])
}
