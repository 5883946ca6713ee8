//! A real tang server (Debian's `tangd` behind socat) on 127.0.0.1 for tests, killed on
//! drop; and `clevis` run with a bounded wait, as the independent checker of bindings.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's tang package puts its programs.
const TANGD: &str = "/usr/libexec/tangd";
const TANGD_KEYGEN: &str = "/usr/libexec/tangd-keygen";

/// A running tang server with its own fresh keys.
pub struct TangServer {
    dir: tempfile::TempDir,
    port: u16,
    socat: Option<Child>,
}

/// A free port on 127.0.0.1 (the kernel's choice; released before returning).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits (bounded) until something accepts connections on 127.0.0.1:port.
pub fn wait_listening(port: u16, timeout: Duration) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < timeout,
            "nothing listens on 127.0.0.1:{port} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl TangServer {
    /// Generates keys and starts serving on a free port.
    pub fn start() -> TangServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        std::fs::create_dir(&db).expect("mkdir db");
        crate::fixtures::sh(TANGD_KEYGEN, &[db.to_str().expect("utf-8 path")]);
        let mut t = TangServer {
            dir,
            port: free_port(),
            socat: None,
        };
        t.resume();
        t
    }

    /// Starts serving again after [`TangServer::stop`], same keys, same port.
    pub fn resume(&mut self) {
        let db = self.db();
        let child = Command::new("socat")
            .arg(format!(
                "TCP-LISTEN:{},bind=127.0.0.1,reuseaddr,fork",
                self.port
            ))
            .arg(format!("EXEC:{TANGD} {}", db.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start socat (is socat installed?)");
        self.socat = Some(child);
        wait_listening(self.port, Duration::from_secs(10));
    }

    /// Stops serving (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.socat.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The key directory.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The S256 thumbprint of the signing (ES512) key, as `jose jwk thp` computes it.
    pub fn thumbprint(&self) -> String {
        self.key_thumbprint("ES512")
    }

    /// The S256 thumbprint of the key with this `alg` (ES512 or ECMR).
    pub fn key_thumbprint(&self, alg: &str) -> String {
        for entry in std::fs::read_dir(self.db()).expect("read db") {
            let path = entry.expect("db entry").path();
            let jwk: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).expect("read jwk")).expect("jwk json");
            if jwk["alg"] == alg {
                return crate::fixtures::sh(
                    "jose",
                    &["jwk", "thp", "-i", path.to_str().expect("utf-8")],
                )
                .trim()
                .to_string();
            }
        }
        panic!("no {alg} key in {}", self.db().display());
    }

    /// The advertisement exactly as the server sends it.
    pub fn adv(&self) -> Vec<u8> {
        let out = crate::fixtures::sh(
            "curl",
            &["-sfg", "--max-time", "10", &format!("{}/adv", self.url())],
        );
        out.into_bytes()
    }
}

impl Drop for TangServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `clevis ARGS` with `input` on stdin and `env` added, waiting at most 60 s.
/// Returns stdout, or stderr as the error.
pub fn clevis(args: &[&str], input: &[u8], env: &[(&str, &str)]) -> Result<Vec<u8>, String> {
    run_with_input("clevis", args, input, env, Path::new("."))
}

/// Runs a program with stdin, extra environment and a 60 s bound; stdout or stderr.
pub fn run_with_input(
    prog: &str,
    args: &[&str],
    input: &[u8],
    env: &[(&str, &str)],
    cwd: &Path,
) -> Result<Vec<u8>, String> {
    let mut child = Command::new(prog)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let start = Instant::now();
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{prog} {args:?} did not finish in 60 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = writer.join();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{prog} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
