//! The sender: one thread drains the bounded queue of step and progress events, and
//! every POST (the final report's too) is retried with backoff within a budget.

use super::event::Event;
use crate::runner::log;
use crate::secret::Secret;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    pub const EVENT: Retry = Retry {
        first_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(4),
        budget: Duration::from_secs(15),
    };
    /// The final report: longer, still bounded so the finish action happens.
    pub const FINAL: Retry = Retry {
        first_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(10),
        budget: Duration::from_secs(90),
    };
}

/// Why a report could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report to {url} not delivered after {attempts} attempts in {secs} s: {last}")]
    Undelivered {
        url: String,
        attempts: u32,
        secs: u64,
        last: String,
    },
    #[error("building the report client: {0}")]
    Client(#[from] crate::http::ClientError),
}

/// Where events go, and how.
pub(super) struct Target {
    pub(super) url: String,
    pub(super) token: Option<Secret>,
    /// Asked (`GET`) after a successful run's final report.
    pub(super) built: Option<String>,
    /// Sent the failure (`POST`) after a failed run's final report.
    pub(super) failed: Option<String>,
    pub(super) client: reqwest::blocking::Client,
    /// Set once the final report was sent (or given up on): queued events are dropped,
    /// so a report server that never answers cannot hold the exit or the finish action.
    pub(super) closed: AtomicBool,
}

/// What the sender thread is handed.
pub(super) enum Msg {
    Event(Box<Event>),
    Flush(SyncSender<()>),
}

/// The sender thread: posts queued events in order until the queue is closed.
pub(super) fn drain(target: Arc<Target>, rx: Receiver<Msg>, retry: Retry) {
    // Once the server has failed an event, later events get one try each until it
    // answers again, so a dead server cannot make the queue back up for minutes.
    let mut healthy = true;
    for msg in rx {
        match msg {
            Msg::Event(_) if target.closed.load(Ordering::SeqCst) => {
                log::debug("report event dropped: the reporter is closed");
            }
            Msg::Event(ev) => {
                let policy = if healthy {
                    retry
                } else {
                    Retry {
                        budget: Duration::ZERO,
                        ..retry
                    }
                };
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

/// Posts one event, retrying within `retry`'s budget.
pub(super) fn post(target: &Target, body: &Event, retry: Retry) -> Result<(), ReportError> {
    let start = Instant::now();
    let mut delay = retry.first_delay;
    let mut attempts = 0;
    loop {
        attempts += 1;
        // The envelope in headers too, so a receiver can route or dedupe (run id +
        // seq) before parsing: a retry carries the same values and the same body.
        let mut req = target
            .client
            .post(&target.url)
            .header("X-Imprint-Protocol", body.protocol.to_string())
            .header("X-Imprint-Run-Id", body.run_id.to_string())
            .header("X-Imprint-Seq", body.seq.to_string())
            .json(body);
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

/// After the final report: asks the orchestrator's hook `url` (`GET`, or `POST` of
/// `body` as text), retrying within `retry`'s budget. The report token is not sent (the
/// hook is another service; Foreman's carries its own token in the query), and the
/// query never appears in a message.
pub(super) fn notify(
    client: &reqwest::blocking::Client,
    url: &str,
    body: Option<&str>,
    retry: Retry,
) -> Result<(), ReportError> {
    let start = Instant::now();
    let mut delay = retry.first_delay;
    let mut attempts = 0;
    let shown = crate::plan::redact_query(url);
    loop {
        attempts += 1;
        let req = match body {
            Some(text) => client
                .post(url)
                .header("Content-Type", "text/plain; charset=utf-8")
                .body(text.to_string()),
            None => client.get(url),
        };
        let last = match req.send() {
            Ok(resp) if resp.status().is_success() => {
                log::info(&format!("report: {shown} answered {}", resp.status()));
                return Ok(());
            }
            Ok(resp) => format!("HTTP {}", resp.status()),
            // reqwest's error text names the URL; say it without the query.
            Err(e) => crate::http::describe(&e.without_url()),
        };
        if start.elapsed() + delay > retry.budget {
            return Err(ReportError::Undelivered {
                url: shown,
                attempts,
                secs: start.elapsed().as_secs(),
                last,
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(retry.max_delay);
    }
}
