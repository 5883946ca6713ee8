//! A registry token issuer for the Bearer flow (distribution's `auth.token`): no
//! Debian package provides one, so this small server stands in for Docker Hub's or
//! Harbor's. It answers `GET /token?service=…&scope=…` with an RS256 JWT signed by
//! `openssl dgst` (the certificate in the `x5c` header, the same one the registry
//! trusts), granting pull to anyone and every asked action to a listed user with the
//! right password; a wrong password gets 401. Tokens live `lifetime` seconds.

use crate::fixtures::sh;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SERVICE: &str = "test-registry";
const ISSUER: &str = "test-issuer";

/// What a registry needs to trust the issuer, and who pushes.
pub struct TokenConfig {
    realm: String,
    cert: PathBuf,
    push: Option<String>,
}

impl TokenConfig {
    /// The registry config's `auth:` section.
    pub(super) fn registry_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            self.cert.display()
        )
    }

    /// `user:password` for skopeo's pushes.
    pub(super) fn push_creds(&self) -> Option<String> {
        self.push.clone()
    }
}

/// One token request as received.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The query string.
    pub query: String,
    /// The Basic user, if credentials came.
    pub user: Option<String>,
    /// The status answered.
    pub status: u16,
}

/// A running issuer, stopped on drop.
pub struct TokenIssuer {
    dir: tempfile::TempDir,
    port: u16,
    users: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

struct Issue {
    key: PathBuf,
    x5c: String,
    users: Vec<(String, String)>,
    lifetime: u64,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenIssuer {
    /// An issuer with these users, tokens living `lifetime` seconds.
    pub fn start(users: &[(&str, &str)], lifetime: u64) -> TokenIssuer {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let (k, c) = (key.to_str().expect("utf-8"), cert.to_str().expect("utf-8"));
        sh(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                k,
                "-out",
                c,
                "-days",
                "2",
                "-subj",
                "/CN=imprint test token issuer",
            ],
        );
        let der = Command::new("openssl")
            .args(["x509", "-in", c, "-outform", "DER"])
            .output()
            .expect("openssl x509");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let users: Vec<(String, String)> = users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let issue = Issue {
            key,
            x5c: STANDARD.encode(der.stdout),
            users: users.clone(),
            lifetime,
            requests: requests.clone(),
        };
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        issue.answer(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenIssuer {
            dir,
            port,
            users,
            stop,
            requests,
        }
    }

    /// What a registry trusting this issuer needs (the first user pushes).
    pub fn config(&self) -> TokenConfig {
        TokenConfig {
            realm: format!("http://127.0.0.1:{}/token", self.port),
            cert: self.dir.path().join("cert.pem"),
            push: self.users.first().map(|(u, p)| format!("{u}:{p}")),
        }
    }

    /// Every token request so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Issue {
    fn answer(&self, mut s: TcpStream) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut basic = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                if name.eq_ignore_ascii_case("authorization") {
                    basic = value
                        .trim()
                        .strip_prefix("Basic ")
                        .and_then(|b| STANDARD.decode(b).ok());
                }
            }
        }
        let query = target
            .split_once('?')
            .map(|(_, q)| q.to_string())
            .unwrap_or_default();
        let pair = basic.map(|b| String::from_utf8_lossy(&b).into_owned());
        let user = pair
            .as_ref()
            .map(|p| p.split(':').next().unwrap_or("").to_string());
        let known = pair
            .as_ref()
            .is_some_and(|p| self.users.iter().any(|(u, pw)| *p == format!("{u}:{pw}")));
        let (status, body) = if pair.is_some() && !known {
            (401, r#"{"details":"wrong user or password"}"#.to_string())
        } else {
            (200, self.token(&query, known, user.as_deref()))
        };
        self.requests.lock().expect("lock").push(TokenRequest {
            query,
            user,
            status,
        });
        let reason = if status == 200 { "OK" } else { "Unauthorized" };
        let _ = write!(
            s,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    /// A JWT for the scopes asked (`repository:<name>:<actions>`).
    fn token(&self, query: &str, known: bool, user: Option<&str>) -> String {
        let mut access = Vec::new();
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            if k != "scope" {
                continue;
            }
            let scope = percent_decode(v);
            let mut parts = scope.splitn(3, ':');
            let (Some(kind), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|a| known || *a == "pull")
                .collect();
            access.push(json!({"type": kind, "name": name, "actions": granted}));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = json!({
            "iss": ISSUER, "sub": user.unwrap_or(""), "aud": SERVICE,
            "exp": now + self.lifetime, "nbf": now - 5, "iat": now,
            "jti": format!("{now}-{}", rand_suffix()), "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl dgst");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("sign input");
        let sig = child.wait_with_output().expect("openssl dgst").stdout;
        let jwt = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
        json!({"token": jwt, "access_token": jwt, "expires_in": self.lifetime}).to_string()
    }
}

fn rand_suffix() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let v = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?');
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
