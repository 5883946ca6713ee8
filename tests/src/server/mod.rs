//! A small real HTTP/1.1 server on 127.0.0.1 (or `[::1]`) for tests: serves files and byte
//! buffers with Range/If-Range/ETag/Last-Modified, records every request and
//! POST, and injects faults (drops, stalls, bad statuses, bit flips) per path.
//!
//! Every POST to a `/report…` path is checked against the report schema of the binary
//! under test ([`ReportSchema::of_binary`]); an event that does not match fails the
//! test when it reads the POSTs or drops the server, so every suite checks every event.
//!
//! One thread per connection (bounded), `Connection: close` on every response,
//! and everything stops when the [`Server`] is dropped.

use crate::report_schema::{ReportSchema, REPORT_PREFIX};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod conn;
use conn::accept_loop;
pub use conn::http_date;

/// At most this many connections are served at once; more are closed unanswered.
const MAX_CONNECTIONS: usize = 64;
/// Request headers larger than this are refused.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// POST bodies larger than this are refused.
const MAX_POST_BYTES: usize = 64 << 20;
/// Body bytes written per `write` call (faults act at this granularity or finer).
const PIECE: usize = 64 * 1024;

/// A fault injected into the responses for one URL path. Faults never act on a read
/// of byte 0 alone (`Range: bytes=0-0`, imprint's check before touching a disk that the
/// image answers): they are meant for the download after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No fault (clears the faults of a path).
    None,
    /// Close the connection after N body bytes of the next response only.
    DropAfter(u64),
    /// Close the connection after N body bytes of every response.
    DropEvery(u64),
    /// Answer `status` (with `Retry-After: secs` if given) to the next `times` requests, then normally.
    Status {
        status: u16,
        retry_after: Option<u64>,
        times: u32,
    },
    /// Take the next `times` POSTs (recorded, as a receiver that processed them) and
    /// close the connection without answering: the acknowledgement is lost.
    LoseAnswer { times: u32 },
    /// After N body bytes of the next response, send nothing for `secs` seconds, then continue.
    Stall { after: u64, secs: u64 },
    /// Answer every request with the whole body and 200, whatever `Range` says.
    IgnoreRange,
    /// The content ends at this file offset on every response, though Content-Length says more.
    Truncate(u64),
    /// Flip the lowest bit of the byte at this file offset in every response.
    FlipBit(u64),
    /// Content-Length is off by this many bytes on every response (the body is unchanged).
    LieLength(i64),
    /// A 206's Content-Range start is off by this many bytes (the bytes sent are the asked ones).
    WrongContentRange(i64),
    /// A 206 sends the bytes from this many bytes away from the range its Content-Range states.
    WrongRangeBytes(i64),
}

/// A scripted answer to a POST (see [`Server::script_posts`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Extra header lines, e.g. `("Retry-After", "1")`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// An answer with `status`, no extra header and a short text body.
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: format!("scripted {status}\n").into_bytes(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Answer {
        self.body = body.into();
        self
    }
}

/// One recorded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// The path as requested, query included.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `If-Range` header, if any.
    pub if_range: Option<String>,
}

/// One recorded POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Post {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (panics in the test if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("POST body is JSON")
    }
}

#[derive(Clone)]
enum Content {
    File(PathBuf),
    Bytes(Arc<Vec<u8>>),
}

#[derive(Clone)]
struct Resource {
    content: Content,
    etag: String,
    last_modified: String,
}

/// Computes the answer to one POST.
type Responder = Arc<dyn Fn(&Post) -> Answer + Send + Sync>;

#[derive(Default)]
struct State {
    resources: Mutex<HashMap<String, Resource>>,
    faults: Mutex<HashMap<String, Vec<Fault>>>,
    /// Scripted answers to POSTs per path, in order; the last one repeats.
    post_scripts: Mutex<HashMap<String, Vec<Answer>>>,
    /// Answers computed from each POST per path (before any script).
    post_responders: Mutex<HashMap<String, Responder>>,
    requests: Mutex<Vec<RequestRecord>>,
    posts: Mutex<Vec<Post>>,
    posts_changed: Condvar,
    generation: AtomicUsize,
    /// The schema report POSTs are checked against (the binary's unless a test set one).
    report_schema: OnceLock<&'static ReportSchema>,
    /// Why report POSTs did not match it, one message each.
    invalid_reports: Mutex<Vec<String>>,
}

impl State {
    /// Records a POST, first checking a report body against the report schema.
    fn record_post(&self, post: Post) {
        if post.path.starts_with(REPORT_PREFIX) {
            let schema = self.report_schema.get_or_init(ReportSchema::of_binary);
            if let Err(e) = schema.check_body(&post.body) {
                eprintln!("test server: POST {}: {e}", post.path);
                lock(&self.invalid_reports).push(format!("POST {}: {e}", post.path));
            }
        }
        lock(&self.posts).push(post);
        self.posts_changed.notify_all();
    }

    /// The answer a responder computes for `post` on `route`, if one is set.
    fn responder_answer(&self, route: &str, post: &Post) -> Option<Answer> {
        let f = lock(&self.post_responders).get(route).cloned()?;
        Some(f(post))
    }

    /// The next scripted answer to a POST on `route`, if a script is set.
    fn next_post_answer(&self, route: &str) -> Option<Answer> {
        let mut scripts = lock(&self.post_scripts);
        let list = scripts.get_mut(route)?;
        match list.len() {
            0 => None,
            1 => list.first().cloned(),
            _ => Some(list.remove(0)),
        }
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not hide the log).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The test HTTP server. Stops (and joins its threads) when dropped.
pub struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub fn start() -> Server {
        Server::start_on(0)
    }

    /// Starts on the given port of 127.0.0.1 (0 = ephemeral).
    pub fn start_on(port: u16) -> Server {
        Server::start_on_with(port, |_| {})
    }

    /// Starts on the given port once `setup` has registered what it serves, so that no
    /// request can arrive before (a server coming back on a known port).
    pub fn start_on_with(port: u16, setup: impl FnOnce(&Server)) -> Server {
        Server::start_at(SocketAddr::from(([127, 0, 0, 1], port)), setup)
    }

    /// Starts on an ephemeral port of `[::1]`: what QEMU's IPv6 slirp forwards the
    /// guest's connections to the host's address in its prefix to.
    pub fn start_ipv6() -> Server {
        Server::start_at(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)), |_| {})
    }

    fn start_at(at: SocketAddr, setup: impl FnOnce(&Server)) -> Server {
        let listener = TcpListener::bind(at).unwrap_or_else(|e| panic!("bind {at}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = Server {
            addr,
            state,
            stop,
            accept: None,
        };
        setup(&server);
        let (state, stop) = (server.state.clone(), server.stop.clone());
        server.accept = Some(
            std::thread::Builder::new()
                .name("test-http-accept".into())
                .spawn(move || accept_loop(listener, state, stop))
                .expect("spawn accept thread"),
        );
        server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/path` (`http://[::1]:PORT/path` from [`Server::start_ipv6`];
    /// a leading `/` is added if missing).
    pub fn url(&self, path: &str) -> String {
        let sep = if path.starts_with('/') { "" } else { "/" };
        format!("http://{}{sep}{path}", self.addr)
    }

    /// Serves a file from disk at `url_path` (read on every request, so it may be large).
    pub fn serve_file(&self, url_path: &str, fs_path: impl Into<PathBuf>) {
        let fs_path = fs_path.into();
        let meta = std::fs::metadata(&fs_path).expect("served file exists");
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        let secs = mtime
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let etag = format!(
            "\"{:x}-{:x}-{:x}\"",
            meta.len(),
            secs,
            self.next_generation()
        );
        self.insert(
            url_path,
            Resource {
                content: Content::File(fs_path),
                etag,
                last_modified: http_date(mtime),
            },
        );
    }

    /// Serves a byte buffer at `url_path`.
    pub fn serve_bytes(&self, url_path: &str, bytes: Vec<u8>) {
        let etag = format!("\"b{:x}-{:x}\"", bytes.len(), self.next_generation());
        let res = Resource {
            content: Content::Bytes(Arc::new(bytes)),
            etag,
            last_modified: http_date(SystemTime::now()),
        };
        self.insert(url_path, res);
    }

    /// Replaces the faults of `url_path` with this one (`Fault::None` clears them).
    pub fn set_fault(&self, url_path: &str, fault: Fault) {
        let mut faults = lock(&self.state.faults);
        let list = faults.entry(normalize(url_path)).or_default();
        list.clear();
        if fault != Fault::None {
            list.push(fault);
        }
    }

    /// Adds a fault to those of `url_path` (e.g. `IgnoreRange` and `DropAfter` together).
    pub fn add_fault(&self, url_path: &str, fault: Fault) {
        if fault != Fault::None {
            lock(&self.state.faults)
                .entry(normalize(url_path))
                .or_default()
                .push(fault);
        }
    }

    /// Answers POSTs on `url_path` with `answers` in order, the last one repeating (the
    /// POSTs are recorded as any other). Replaces an earlier script.
    pub fn script_posts(&self, url_path: &str, answers: Vec<Answer>) {
        let route = if url_path.starts_with('/') {
            url_path.to_string()
        } else {
            format!("/{url_path}")
        };
        lock(&self.state.post_scripts).insert(route, answers);
    }

    /// Answers POSTs on `url_path` with what `f` makes of each (a lookup server that
    /// picks a document by the inventory posted). Takes precedence over a script.
    pub fn respond_posts(
        &self,
        url_path: &str,
        f: impl Fn(&Post) -> Answer + Send + Sync + 'static,
    ) {
        lock(&self.state.post_responders).insert(url_path.to_string(), Arc::new(f));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state.requests).clone()
    }

    /// Every POST received so far, in order.
    pub fn posts(&self) -> Vec<Post> {
        self.assert_reports_valid();
        lock(&self.state.posts).clone()
    }

    /// Checks report POSTs against `schema` instead of the binary's (before any arrives).
    pub fn set_report_schema(&self, schema: &'static ReportSchema) {
        assert!(
            self.state.report_schema.set(schema).is_ok(),
            "a report schema is already in use"
        );
    }

    /// Panics with every report POST so far that did not match the report schema.
    pub fn assert_reports_valid(&self) {
        let invalid = lock(&self.state.invalid_reports);
        assert!(
            invalid.is_empty(),
            "{} invalid report event(s):\n{}",
            invalid.len(),
            invalid.join("\n")
        );
    }

    /// Waits until `pred` holds for the POSTs received so far, or `timeout` passes; returns them.
    pub fn wait_posts(&self, pred: impl Fn(&[Post]) -> bool, timeout: Duration) -> Vec<Post> {
        let deadline = Instant::now() + timeout;
        let mut posts = lock(&self.state.posts);
        loop {
            let now = Instant::now();
            if pred(&posts) || now >= deadline {
                let posts = posts.clone();
                self.assert_reports_valid();
                return posts;
            }
            posts = match self.state.posts_changed.wait_timeout(posts, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    fn next_generation(&self) -> usize {
        self.state.generation.fetch_add(1, Ordering::Relaxed)
    }

    fn insert(&self, url_path: &str, res: Resource) {
        lock(&self.state.resources).insert(normalize(url_path), res);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        // A test that never read its reports still fails on an invalid one.
        if !std::thread::panicking() {
            self.assert_reports_valid();
        }
    }
}

fn normalize(url_path: &str) -> String {
    if url_path.starts_with('/') {
        url_path.to_string()
    } else {
        format!("/{url_path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn raw(server: &Server, request: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let split = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end")
            + 4;
        (
            String::from_utf8_lossy(&all[..split]).into_owned(),
            all[split..].to_vec(),
        )
    }

    #[test]
    fn http_date_matches_rfc_example() {
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }

    #[test]
    fn range_and_if_range_are_honoured() {
        let s = Server::start();
        s.serve_bytes("/a", (0..100u8).collect());
        let (head, body) = raw(&s, "GET /a HTTP/1.1\r\nRange: bytes=10-\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        assert!(head.contains("Content-Range: bytes 10-99/100"), "{head}");
        assert_eq!(body, (10..100u8).collect::<Vec<_>>());
        let (_, body) = raw(&s, "GET /a HTTP/1.1\r\nRange: bytes=10-19\r\n\r\n");
        assert_eq!(body, (10..20u8).collect::<Vec<_>>());
        // A stale validator in If-Range yields the whole body.
        let (head, body) = raw(
            &s,
            "GET /a HTTP/1.1\r\nRange: bytes=10-\r\nIf-Range: \"old\"\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body.len(), 100);
        let (head, body) = raw(&s, "HEAD /a HTTP/1.1\r\n\r\n");
        assert!(
            head.contains("Content-Length: 100") && head.contains("ETag: "),
            "{head}"
        );
        assert!(body.is_empty());
        let log = s.requests();
        assert_eq!(log.len(), 4);
        assert_eq!(log[0].range.as_deref(), Some("bytes=10-"));
    }

    #[test]
    fn faults_shape_the_body() {
        let s = Server::start();
        s.serve_bytes("/f", vec![0u8; 1000]);
        s.set_fault("/f", Fault::DropAfter(100));
        assert_eq!(raw(&s, "GET /f HTTP/1.1\r\n\r\n").1.len(), 100);
        assert_eq!(
            raw(&s, "GET /f HTTP/1.1\r\n\r\n").1.len(),
            1000,
            "DropAfter acts once"
        );
        s.set_fault("/f", Fault::FlipBit(5));
        assert_eq!(raw(&s, "GET /f HTTP/1.1\r\n\r\n").1[5], 1);
        s.set_fault(
            "/f",
            Fault::Status {
                status: 503,
                retry_after: Some(1),
                times: 1,
            },
        );
        let (head, _) = raw(&s, "GET /f HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 503") && head.contains("Retry-After: 1"),
            "{head}"
        );
        assert!(raw(&s, "GET /f HTTP/1.1\r\n\r\n")
            .0
            .starts_with("HTTP/1.1 200"));
        s.set_fault("/f", Fault::Truncate(300));
        assert_eq!(
            raw(&s, "GET /f HTTP/1.1\r\nRange: bytes=200-\r\n\r\n")
                .1
                .len(),
            100
        );
    }

    #[test]
    fn lying_headers_and_mishandled_ranges() {
        let s = Server::start();
        s.serve_bytes("/g", (0..100u8).collect());
        s.set_fault("/g", Fault::LieLength(7));
        let (head, body) = raw(&s, "GET /g HTTP/1.1\r\n\r\n");
        assert!(head.contains("Content-Length: 107"), "{head}");
        assert_eq!(body.len(), 100);
        s.set_fault("/g", Fault::WrongContentRange(-5));
        let (head, body) = raw(&s, "GET /g HTTP/1.1\r\nRange: bytes=10-\r\n\r\n");
        assert!(head.contains("Content-Range: bytes 5-94/100"), "{head}");
        assert_eq!(body, (10..100u8).collect::<Vec<_>>());
        s.set_fault("/g", Fault::WrongRangeBytes(-4));
        let (head, body) = raw(&s, "GET /g HTTP/1.1\r\nRange: bytes=10-\r\n\r\n");
        assert!(head.contains("Content-Range: bytes 10-99/100"), "{head}");
        assert_eq!(body, (6..96u8).collect::<Vec<_>>());
    }

    #[test]
    fn posts_are_recorded_and_awaited() {
        let s = Server::start();
        let (head, _) = raw(&s, "POST /hook/x HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
        assert!(head.starts_with("HTTP/1.1 200"));
        let posts = s.wait_posts(|p| !p.is_empty(), Duration::from_secs(5));
        assert_eq!(posts[0].path, "/hook/x");
        assert_eq!(posts[0].header("Authorization"), Some("Bearer t"));
        assert_eq!(posts[0].json()["a"], 1);
    }

    fn strict_schema() -> &'static ReportSchema {
        let schema = serde_json::json!({
            "type": "object", "required": ["kind"],
            "properties": {"kind": {"enum": ["step", "final"]}}
        });
        Box::leak(Box::new(ReportSchema::new(&schema)))
    }

    #[test]
    fn report_posts_are_checked_against_the_schema() {
        let s = Server::start();
        s.set_report_schema(strict_schema());
        let ok = "{\"kind\":\"step\"}";
        raw(
            &s,
            &format!(
                "POST /report/h HTTP/1.1\r\nContent-Length: {}\r\n\r\n{ok}",
                ok.len()
            ),
        );
        s.assert_reports_valid();
        let bad = "{\"kind\":\"nope\"}";
        raw(
            &s,
            &format!(
                "POST /report/h HTTP/1.1\r\nContent-Length: {}\r\n\r\n{bad}",
                bad.len()
            ),
        );
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.posts())).unwrap_err();
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains("1 invalid report event") && msg.contains("nope"),
            "{msg}"
        );
        // Dropping the server would panic again: the invalid event stays recorded.
        lock(&s.state.invalid_reports).clear();
    }
}
