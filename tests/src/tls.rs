//! A real HTTPS file server on 127.0.0.1 for tests: certificates made by the
//! `openssl` CLI (a self-signed CA and a server certificate signed by it), served
//! by Python's `http.server` wrapped in `ssl`. Killed on drop.

use crate::fixtures::sh;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A CA and one server certificate, in a temp dir.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A new CA, and a server certificate for the given subjectAltNames (`IP:127.0.0.1`, `DNS:x`).
    pub fn new(server_names: &str) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = |f: &str| dir.path().join(f).to_str().expect("utf-8").to_string();
        sh(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=imprint test CA",
                "-keyout",
                &p("ca.key"),
                "-out",
                &p("ca.pem"),
            ],
        );
        sh(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=imprint test server",
                "-keyout",
                &p("server.key"),
                "-out",
                &p("server.csr"),
            ],
        );
        std::fs::write(
            dir.path().join("ext.cnf"),
            format!("subjectAltName={server_names}\nbasicConstraints=CA:FALSE\n"),
        )
        .expect("write ext.cnf");
        sh(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &p("server.csr"),
                "-CA",
                &p("ca.pem"),
                "-CAkey",
                &p("ca.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &p("ext.cnf"),
                "-out",
                &p("server.pem"),
            ],
        );
        Pki { dir }
    }

    /// The CA certificate (PEM) clients must be given.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM), for servers the tests start themselves.
    pub fn server_cert(&self) -> PathBuf {
        self.file("server.pem")
    }

    /// The server certificate's key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.file("server.key")
    }

    fn file(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
}

/// An HTTPS server serving the files of a directory.
pub struct HttpsServer {
    child: Child,
    port: u16,
}

const SCRIPT: &str = r#"
import http.server, ssl, sys, os
os.chdir(sys.argv[1])
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

impl HttpsServer {
    /// Serves `root` with `pki`'s server certificate on an ephemeral port.
    pub fn start(root: &Path, pki: &Pki) -> HttpsServer {
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", SCRIPT])
            .arg(root)
            .arg(pki.file("server.pem"))
            .arg(pki.file("server.key"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the python https server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the https server printed {line:?}, not a port"));
        HttpsServer { child, port }
    }

    /// `https://HOST:PORT/path` for a host name or address that resolves to 127.0.0.1.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!(
            "https://{host}:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
