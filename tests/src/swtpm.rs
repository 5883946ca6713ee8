//! A software TPM 2.0 (swtpm) on 127.0.0.1 for tests, killed on drop. Its data port
//! speaks raw TPM commands; tpm2-tools (and so clevis) reach it through
//! `TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=P`, whose control channel is port P+1.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running swtpm with its own state directory.
pub struct Swtpm {
    state: PathBuf,
    _own: Option<tempfile::TempDir>,
    port: u16,
    child: Option<Child>,
}

/// Two consecutive free ports P, P+1 on 127.0.0.1 (the swtpm TCTI needs P+1 for control).
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let p = crate::tang::free_port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free ports on 127.0.0.1");
}

impl Swtpm {
    /// Starts a fresh TPM (new endorsement/owner seeds), already started up (TPM2_Startup).
    pub fn start() -> Swtpm {
        let state = tempfile::tempdir().expect("tempdir");
        let mut s = Swtpm {
            state: state.path().to_path_buf(),
            _own: Some(state),
            port: free_port_pair(),
            child: None,
        };
        s.spawn();
        s
    }

    /// The TPM whose state a VM left in `dir` (`Vm::builder().tpm(dir)`), on TCP: the
    /// same seeds, so the same endorsement key.
    pub fn on_state(dir: &Path) -> Swtpm {
        let mut s = Swtpm {
            state: dir.to_path_buf(),
            _own: None,
            port: free_port_pair(),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let dir = self.state.display().to_string();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate", &format!("dir={dir}")])
            .args([
                "--server",
                &format!("type=tcp,port={},bindaddr=127.0.0.1", self.port),
            ])
            .args([
                "--ctrl",
                &format!("type=tcp,port={},bindaddr=127.0.0.1", self.port + 1),
            ])
            .args(["--flags", "not-need-init,startup-clear"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start swtpm (is swtpm installed?)");
        self.child = Some(child);
        crate::tang::wait_listening(self.port, Duration::from_secs(10));
    }

    /// The data channel address (raw TPM command stream).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The tpm2-tools TCTI string, for `TPM2TOOLS_TCTI`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The state directory (persists the TPM's seeds and NV).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// Runs a tpm2-tools program against this TPM; stdout, panics on failure.
    pub fn tool(&self, prog: &str, args: &[&str]) -> String {
        let tcti = self.tcti();
        let out = crate::tang::run_with_input(
            prog,
            args,
            b"",
            &[("TPM2TOOLS_TCTI", &tcti)],
            &PathBuf::from("."),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Extends PCR `pcr` of the sha256 bank with a fixed digest (changes its value).
    pub fn extend_pcr(&self, pcr: u8) {
        let digest = "aa".repeat(32);
        self.tool(
            "tpm2_pcrextend",
            &[&format!("{pcr}:sha256={digest},sha1={}", "bb".repeat(20))],
        );
    }

    /// SHA-256 of the endorsement key as `tpm2_createek -G rsa -f der` writes it (the
    /// TCG default RSA EK), lowercase hex.
    pub fn ek_sha256(&self) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let (der, ctx) = (dir.path().join("ek.der"), dir.path().join("ek.ctx"));
        self.tool(
            "tpm2_createek",
            &[
                "-G",
                "rsa",
                "-c",
                crate::provision::path_str(&ctx),
                "-u",
                crate::provision::path_str(&der),
                "-f",
                "der",
            ],
        );
        crate::fixtures::sha256_hex(&std::fs::read(&der).expect("ek.der"))
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
