//! One connection: parse the request, log it, answer it with the path's faults applied.

use super::{lock, Content, Fault, Post, RequestRecord, Resource, State, MAX_CONNECTIONS};
use super::{MAX_HEADER_BYTES, MAX_POST_BYTES, PIECE};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(super) fn accept_loop(listener: TcpListener, state: Arc<State>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                workers.retain(|h| !h.is_finished());
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    drop(stream);
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (state, stop, counter) = (state.clone(), stop.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("test-http-conn".into())
                    .spawn(move || {
                        let _ = handle_connection(stream, &state, &stop);
                        counter.fetch_sub(1, Ordering::SeqCst);
                    });
                match spawned {
                    Ok(h) => workers.push(h),
                    Err(_) => {
                        active.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    // Workers check `stop` between pieces and have socket timeouts: joining is bounded.
    for h in workers {
        let _ = h.join();
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn handle_connection(stream: TcpStream, state: &State, stop: &AtomicBool) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let req = match read_request(&mut reader)? {
        Some(r) => r,
        None => return Ok(()),
    };
    lock(&state.requests).push(RequestRecord {
        method: req.method.clone(),
        path: req.path.clone(),
        range: req.header("range").map(str::to_string),
        if_range: req.header("if-range").map(str::to_string),
    });
    let route = req.path.split('?').next().unwrap_or("").to_string();
    let mut out = stream;

    // Status faults apply to any method and consume one of their `times`; no fault
    // touches imprint's check that the image answers (a read of byte 0 alone, made
    // before any disk is touched), so the faults act on the download they are set for.
    let probe = is_probe(&req);
    if let Some((status, retry_after)) =
        (!probe).then(|| take_status_fault(state, &route)).flatten()
    {
        let extra = retry_after
            .map(|s| format!("Retry-After: {s}\r\n"))
            .unwrap_or_default();
        return respond_simple(&mut out, status, &extra, b"injected fault\n");
    }

    match req.method.as_str() {
        "POST" | "PUT" => {
            let lose = take_lost_answer(state, &route);
            let post = Post {
                path: req.path.clone(),
                headers: req.headers,
                body: req.body,
            };
            let computed = state.responder_answer(&route, &post);
            state.record_post(post);
            if lose {
                return Ok(());
            }
            match computed.or_else(|| state.next_post_answer(&route)) {
                Some(a) => {
                    let extra: String = a
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}\r\n"))
                        .collect();
                    respond_simple(&mut out, a.status, &extra, &a.body)
                }
                None => respond_simple(&mut out, 200, "", b"ok\n"),
            }
        }
        "GET" | "HEAD" => {
            let res = lock(&state.resources).get(&route).cloned();
            match res {
                Some(res) => serve(&mut out, state, stop, &route, &req, &res),
                None => respond_simple(&mut out, 404, "", b"not found\n"),
            }
        }
        _ => respond_simple(
            &mut out,
            405,
            "Allow: GET, HEAD, POST\r\n",
            b"method not allowed\n",
        ),
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take(MAX_HEADER_BYTES as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEADER_BYTES {
            return Ok(None);
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > MAX_POST_BYTES {
            return Ok(None);
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        req.body = body;
    } else if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        req.body = read_chunked(reader)?;
    }
    Ok(Some(req))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunked body");
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        if body.len() + size > MAX_POST_BYTES {
            return Err(bad());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = String::new();
        reader.read_line(&mut crlf)?;
        if size == 0 {
            return Ok(body);
        }
    }
}

/// imprint's preflight read of the first byte alone.
fn is_probe(req: &Request) -> bool {
    req.header("range") == Some("bytes=0-0")
}

fn take_status_fault(state: &State, route: &str) -> Option<(u16, Option<u64>)> {
    let mut faults = lock(&state.faults);
    let list = faults.get_mut(route)?;
    for f in list.iter_mut() {
        if let Fault::Status {
            status,
            retry_after,
            times,
        } = f
        {
            if *times > 0 {
                *times -= 1;
                return Some((*status, *retry_after));
            }
        }
    }
    None
}

/// Whether this POST's answer is to be lost (a `LoseAnswer` fault with times left).
fn take_lost_answer(state: &State, route: &str) -> bool {
    let mut faults = lock(&state.faults);
    let Some(list) = faults.get_mut(route) else {
        return false;
    };
    for f in list.iter_mut() {
        if let Fault::LoseAnswer { times } = f {
            if *times > 0 {
                *times -= 1;
                return true;
            }
        }
    }
    false
}

fn respond_simple(
    out: &mut TcpStream,
    status: u16,
    extra: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// Which faults shape this one response body.
#[derive(Default)]
struct BodyFaults {
    ignore_range: bool,
    drop_after: Option<u64>,
    stall: Option<(u64, u64)>,
    truncate: Option<u64>,
    flip: Vec<u64>,
    lie_length: i64,
    wrong_content_range: i64,
    wrong_range_bytes: i64,
}

fn body_faults(state: &State, route: &str) -> BodyFaults {
    let mut faults = lock(&state.faults);
    let mut bf = BodyFaults::default();
    let Some(list) = faults.get_mut(route) else {
        return bf;
    };
    let mut keep = Vec::with_capacity(list.len());
    for f in list.drain(..) {
        match f {
            Fault::DropAfter(n) => bf.drop_after = Some(n),
            Fault::DropEvery(n) => {
                bf.drop_after = Some(n);
                keep.push(f);
            }
            Fault::Stall { after, secs } => bf.stall = Some((after, secs)),
            Fault::IgnoreRange => {
                bf.ignore_range = true;
                keep.push(f);
            }
            Fault::Truncate(n) => {
                bf.truncate = Some(n);
                keep.push(f);
            }
            Fault::FlipBit(o) => {
                bf.flip.push(o);
                keep.push(f);
            }
            Fault::LieLength(d) => {
                bf.lie_length = d;
                keep.push(f);
            }
            Fault::WrongContentRange(d) => {
                bf.wrong_content_range = d;
                keep.push(f);
            }
            Fault::WrongRangeBytes(d) => {
                bf.wrong_range_bytes = d;
                keep.push(f);
            }
            other => keep.push(other),
        }
    }
    *list = keep;
    bf
}

fn serve(
    out: &mut TcpStream,
    state: &State,
    stop: &AtomicBool,
    route: &str,
    req: &Request,
    res: &Resource,
) -> std::io::Result<()> {
    let len = match &res.content {
        Content::File(p) => std::fs::metadata(p)?.len(),
        Content::Bytes(b) => b.len() as u64,
    };
    let faults = if req.method == "GET" && !is_probe(req) {
        body_faults(state, route)
    } else {
        BodyFaults::default()
    };
    let if_range_ok = match req.header("if-range") {
        None => true,
        Some(v) => v == res.etag || v == res.last_modified,
    };
    let range = req
        .header("range")
        .filter(|_| if_range_ok && !faults.ignore_range)
        .and_then(|r| parse_range(r, len));
    if let Some(Err(())) = range {
        let extra = format!("Content-Range: bytes */{len}\r\n");
        return respond_simple(out, 416, &extra, b"range not satisfiable\n");
    }
    let (status, start, end) = match range {
        Some(Ok((s, e))) => (206, s, e),
        _ => (200, 0, len),
    };
    // A mishandled range: the body comes from elsewhere in the file than the header says.
    let (body_start, body_end) = if status == 206 {
        let shift = |o: u64| o.saturating_add_signed(faults.wrong_range_bytes).min(len);
        (shift(start), shift(end))
    } else {
        (start, end)
    };
    let content_length = (body_end - body_start).saturating_add_signed(faults.lie_length);
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
         ETag: {}\r\nLast-Modified: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        reason(status),
        content_length,
        res.etag,
        res.last_modified
    );
    if status == 206 {
        let (s, e) = (
            start.saturating_add_signed(faults.wrong_content_range),
            end.saturating_add_signed(faults.wrong_content_range),
        );
        head.push_str(&format!(
            "Content-Range: bytes {s}-{}/{len}\r\n",
            e.saturating_sub(1)
        ));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if req.method == "HEAD" {
        return out.flush();
    }
    send_body(out, stop, res, body_start, body_end, &faults)
}

/// Parses `bytes=N-` or `bytes=N-M` into a half-open range; `Err` when unsatisfiable.
fn parse_range(header: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => len,
        m => m.parse::<u64>().ok()?.saturating_add(1).min(len),
    };
    if start >= len || end <= start {
        return Some(Err(()));
    }
    Some(Ok((start, end)))
}

fn send_body(
    out: &mut TcpStream,
    stop: &AtomicBool,
    res: &Resource,
    start: u64,
    end: u64,
    faults: &BodyFaults,
) -> std::io::Result<()> {
    let mut file = match &res.content {
        Content::File(p) => {
            let mut f = std::fs::File::open(p)?;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start))?;
            Some(f)
        }
        Content::Bytes(_) => None,
    };
    // Truncation is an absolute file offset; drops and stalls count body bytes sent.
    let stop_at = faults.truncate.map_or(end, |t| t.clamp(start, end));
    let mut pos = start;
    let mut sent: u64 = 0;
    let mut stalled = false;
    let mut buf = vec![0u8; PIECE];
    while pos < stop_at {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut n = (stop_at - pos).min(PIECE as u64);
        // Cut pieces at fault boundaries so drops and stalls happen at the exact byte.
        for limit in [
            faults.drop_after,
            faults.stall.filter(|_| !stalled).map(|s| s.0),
        ]
        .into_iter()
        .flatten()
        {
            if limit > sent {
                n = n.min(limit - sent);
            }
        }
        if faults.drop_after == Some(sent) {
            return out.shutdown(std::net::Shutdown::Both);
        }
        if let Some((after, secs)) = faults.stall {
            if !stalled && after == sent {
                stalled = true;
                out.flush()?;
                let until = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        }
        let piece = &mut buf[..n as usize];
        match (&mut file, &res.content) {
            (Some(f), _) => f.read_exact(piece)?,
            (None, Content::Bytes(b)) => {
                piece.copy_from_slice(&b[pos as usize..(pos + n) as usize])
            }
            (None, Content::File(_)) => unreachable!("files are opened above"),
        }
        for &o in &faults.flip {
            if o >= pos && o < pos + n {
                piece[(o - pos) as usize] ^= 1;
            }
        }
        out.write_all(piece)?;
        pos += n;
        sent += n;
    }
    if faults.drop_after == Some(sent) || stop_at < end {
        return out.shutdown(std::net::Shutdown::Both);
    }
    out.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Formats a time as an HTTP date: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!(
        "{weekday}, {day:02} {mon} {year} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}
