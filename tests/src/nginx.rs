//! nginx (Debian's `nginx-light`) on 127.0.0.1, serving files and folders the way a
//! fleet's image mirror or chunk store does: keep-alive connections, sendfile. For
//! measurements; the test server (`server`) is the one with faults.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx, stopped on drop.
pub struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Serves each `(url path, file or folder)`: a path ending in `/` is a folder.
    pub fn start(routes: &[(&str, &Path)]) -> Nginx {
        let dir = tempfile::tempdir().expect("a folder for nginx");
        let port = free_port();
        let conf = config(dir.path(), port, routes);
        let conf_path = dir.path().join("nginx.conf");
        std::fs::File::create(&conf_path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("writing nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting nginx (Debian package nginx-light; make deps installs it)");
        let n = Nginx {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on 127.0.0.1:{port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// One worker (the machine it measures on has two cores), no access log, every path
/// nginx writes inside `dir`.
fn config(dir: &Path, port: u16, routes: &[(&str, &Path)]) -> String {
    let abs = |p: &Path| -> PathBuf { std::fs::canonicalize(p).unwrap_or_else(|_| p.into()) };
    let mut locations = String::new();
    for (url, path) in routes {
        let target = abs(path);
        if url.ends_with('/') {
            locations.push_str(&format!(
                "    location {url} {{ alias {}/; }}\n",
                target.display()
            ));
        } else {
            locations.push_str(&format!(
                "    location = {url} {{ alias {}; }}\n",
                target.display()
            ));
        }
    }
    let d = dir.display();
    format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n\
         keepalive_requests 1000000;\n  keepalive_timeout 60s;\n  types {{ }}\n\
         default_type application/octet-stream;\n  client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port};\n{locations}  }}\n}}\n"
    )
}
