//! Report protocol: step events, progress and the final report, POSTed as JSON
//! with `Authorization: Bearer <token>`.
//!
//! Step and progress events go through a bounded queue drained by one thread, so a
//! slow or dead report server never slows provisioning (progress is dropped first
//! when the queue is full). The final report is sent after the queue is flushed,
//! retried with backoff within a bounded time, and never blocks the finish action
//! forever. See `docs/report-protocol.md`.

use crate::plan::ReportPlan;
use crate::runner::log;
use crate::secret::Secret;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// State of a step in a `step` event.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Started,
    Succeeded,
    Failed,
}

/// Retry policy for POSTs.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// First backoff; doubled after each failure up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Total time one event may take, retries included.
    pub budget: Duration,
}

impl Retry {
    /// Step events: a few quick tries.
    pub const EVENT: Retry =
        Retry { first_delay: Duration::from_millis(250), max_delay: Duration::from_secs(4), budget: Duration::from_secs(15) };
    /// The final report: longer, still bounded so the finish action happens.
    pub const FINAL: Retry =
        Retry { first_delay: Duration::from_millis(500), max_delay: Duration::from_secs(10), budget: Duration::from_secs(90) };
}

/// Why a report could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report to {url} not delivered after {attempts} attempts in {secs} s: {last}")]
    Undelivered { url: String, attempts: u32, secs: u64, last: String },
    #[error("building the report client: {0}")]
    Client(#[from] crate::http::ClientError),
}

struct Target {
    url: String,
    token: Option<Secret>,
    client: reqwest::blocking::Client,
    /// Set once the final report was sent (or given up on): queued events are dropped,
    /// so a report server that never answers cannot hold the exit or the finish action.
    closed: std::sync::atomic::AtomicBool,
}

enum Msg {
    Event(Value),
    Flush(SyncSender<()>),
}

/// Sends reports for one host. Without a `report` section it only logs.
pub struct Reporter {
    host: String,
    target: Option<Arc<Target>>,
    tx: Option<SyncSender<Msg>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    seq: Mutex<u64>,
    retry_event: Retry,
    retry_final: Retry,
}

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2026-11-21T21:04:05.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

impl Reporter {
    /// A reporter for `host`; `plan` is the document's `report` section.
    pub fn new(host: &str, plan: Option<&ReportPlan>, ca_bundle: Option<&std::path::Path>) -> Result<Self, ReportError> {
        Self::with_retry(host, plan, ca_bundle, Retry::EVENT, Retry::FINAL)
    }

    /// As [`Reporter::new`] with explicit retry policies (tests use short ones).
    pub fn with_retry(
        host: &str,
        plan: Option<&ReportPlan>,
        ca_bundle: Option<&std::path::Path>,
        retry_event: Retry,
        retry_final: Retry,
    ) -> Result<Self, ReportError> {
        let mut r = Reporter {
            host: host.to_string(),
            target: None,
            tx: None,
            worker: Mutex::new(None),
            seq: Mutex::new(0),
            retry_event,
            retry_final,
        };
        if let Some(p) = plan {
            let client = crate::http::client(&crate::http::ClientOptions {
                ca_bundle,
                connect_timeout: Some(Duration::from_secs(5)),
                read_timeout: Some(Duration::from_secs(10)),
            })?;
            let target = Arc::new(Target { url: p.url.clone(), token: p.token.clone(), client, closed: Default::default() });
            let (tx, rx) = sync_channel::<Msg>(64);
            let t = Arc::clone(&target);
            let worker = std::thread::Builder::new()
                .name("report".into())
                .spawn(move || drain(t, rx, retry_event))
                .ok();
            r.target = Some(target);
            r.tx = Some(tx);
            *r.worker.lock().unwrap_or_else(|e| e.into_inner()) = worker;
        }
        Ok(r)
    }

    fn envelope(&self, kind: &str, mut body: Value) -> Value {
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        *seq += 1;
        let obj = body.as_object_mut().expect("report bodies are objects");
        obj.insert("kind".into(), json!(kind));
        obj.insert("host".into(), json!(self.host));
        obj.insert("time".into(), json!(timestamp(SystemTime::now())));
        obj.insert("seq".into(), json!(*seq));
        body
    }

    /// A step started, succeeded or failed.
    pub fn step(&self, step: &str, state: StepState, duration: Option<Duration>, error: Option<&str>, details: Option<Value>) {
        let mut body = json!({ "step": step, "state": state });
        if let Some(d) = duration {
            body["duration_ms"] = json!(d.as_millis() as u64);
        }
        if let Some(e) = error {
            body["error"] = json!(e);
        }
        if let Some(d) = details {
            body["details"] = d;
        }
        let ev = self.envelope("step", body);
        self.enqueue(ev, false);
    }

    /// Periodic progress of a long step (dropped, not queued, when the server lags).
    pub fn progress(&self, step: &str, fields: Value) {
        let mut body = json!({ "step": step });
        if let (Some(o), Value::Object(f)) = (body.as_object_mut(), fields) {
            o.extend(f);
        }
        let ev = self.envelope("progress", body);
        self.enqueue(ev, true);
    }

    fn enqueue(&self, ev: Value, droppable: bool) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Event(ev)) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Event(ev))) if !droppable => {
                // Step events matter: wait for room, bounded by the sender's retry budget.
                let _ = tx.send(Msg::Event(ev));
            }
            Err(_) => log::debug("report queue full; progress event dropped"),
        }
    }

    /// Sends the final report after all queued events; bounded by the final retry budget.
    /// `body` carries `result`, `steps` and the rest; the envelope is added here.
    pub fn finish(&self, body: Value) -> Result<(), ReportError> {
        let ev = self.envelope("final", body);
        let Some(target) = &self.target else { return Ok(()) };
        if let Some(tx) = &self.tx {
            let (done_tx, done_rx) = sync_channel(1);
            if tx.send(Msg::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(self.retry_event.budget + Duration::from_secs(5));
            }
        }
        let res = post(target, &ev, self.retry_final);
        target.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        res
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(t) = &self.target {
            t.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.tx.take();
        if let Some(w) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = w.join();
        }
    }
}

fn drain(target: Arc<Target>, rx: Receiver<Msg>, retry: Retry) {
    // Once the server has failed an event, later events get one try each until it
    // answers again, so a dead server cannot make the queue back up for minutes.
    let mut healthy = true;
    for msg in rx {
        match msg {
            Msg::Event(_) if target.closed.load(std::sync::atomic::Ordering::SeqCst) => {
                log::debug("report event dropped: the reporter is closed");
            }
            Msg::Event(ev) => {
                let policy = if healthy { retry } else { Retry { budget: Duration::ZERO, ..retry } };
                match post(&target, &ev, policy) {
                    Ok(()) => healthy = true,
                    Err(e) => {
                        if healthy {
                            log::warn(&e.to_string());
                        }
                        healthy = false;
                    }
                }
            }
            Msg::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn post(target: &Target, body: &Value, retry: Retry) -> Result<(), ReportError> {
    let start = Instant::now();
    let mut delay = retry.first_delay;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut req = target.client.post(&target.url).json(body);
        if let Some(tok) = &target.token {
            req = req.bearer_auth(tok.expose());
        }
        let last = match req.send() {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => format!("HTTP {}", resp.status()),
            // The error's text never contains headers, so the token cannot leak here.
            Err(e) => crate::http::describe(&e),
        };
        if start.elapsed() + delay > retry.budget {
            return Err(ReportError::Undelivered {
                url: target.url.clone(),
                attempts,
                secs: start.elapsed().as_secs(),
                last,
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(retry.max_delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_287_845_123);
        assert_eq!(timestamp(t), "2026-11-21T19:04:05.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn without_a_report_section_nothing_is_sent() {
        let r = Reporter::new("h", None, None).unwrap();
        r.step("wipe:a", StepState::Started, None, None, None);
        r.finish(json!({"result": "success"})).unwrap();
    }

    #[test]
    fn undeliverable_final_report_gives_up_within_budget() {
        // A port nothing listens on: connection refused on every attempt.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let plan = ReportPlan { url: format!("http://127.0.0.1:{port}/r"), token: Some(Secret::new("tok-xyz")), heartbeat_secs: 10 };
        let fast = Retry { first_delay: Duration::from_millis(10), max_delay: Duration::from_millis(40), budget: Duration::from_millis(300) };
        let r = Reporter::with_retry("h", Some(&plan), None, fast, fast).unwrap();
        let t0 = Instant::now();
        r.step("wipe:a", StepState::Started, None, None, None);
        let err = r.finish(json!({"result": "failure"})).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
        let msg = err.to_string();
        assert!(msg.contains("/r") && !msg.contains("tok-xyz"), "{msg}");
    }
}
