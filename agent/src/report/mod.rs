//! Report protocol: step events, progress and the final report, POSTed as JSON
//! with `Authorization: Bearer <token>`.
//!
//! The events are types ([`event`]; what each step produced: [`output`]), so the
//! schema `imprint schema report` prints is the one the agent sends. Step and
//! progress events go through a bounded queue drained by one thread ([`send`]), so a
//! slow or dead report server never slows provisioning (progress is dropped first
//! when the queue is full). The final report is sent after the queue is flushed,
//! retried with backoff within a bounded time, and never blocks the finish action
//! forever. See `docs/report-protocol.md`.

pub mod event;
pub mod output;
mod send;

#[cfg(test)]
mod schema_tests;

pub use event::{
    Body, ChosenDisk, DisksAfter, Event, FinalReport, ProgressEvent, RunResult, StepEvent,
    StepRecord, StepState, PROTOCOL,
};
pub use output::StepOutput;
pub use send::{ReportError, Retry};

use crate::plan::ReportPlan;
use crate::runner::log;
use send::{drain, post, Msg, Target};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Sends reports for one run of one host. Without a `report` section it only logs.
pub struct Reporter {
    host: String,
    /// Drawn when the reporter is made: one run, one id.
    run_id: uuid::Uuid,
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

/// A run id drawn before any reporter existed (by the lookup, whose requests carry it),
/// which the next reporter made adopts, so the lookup and the reports are one run.
static PENDING_RUN_ID: Mutex<Option<uuid::Uuid>> = Mutex::new(None);

/// The run id for requests made before a reporter exists; the next reporter takes it.
pub fn pending_run_id() -> uuid::Uuid {
    *PENDING_RUN_ID
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(uuid::Uuid::new_v4)
}

impl Reporter {
    /// A reporter for `host`; `plan` is the document's `report` section.
    pub fn new(
        host: &str,
        plan: Option<&ReportPlan>,
        ca_bundle: Option<&std::path::Path>,
    ) -> Result<Self, ReportError> {
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
            run_id: PENDING_RUN_ID
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(uuid::Uuid::new_v4),
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
            let target = Arc::new(Target {
                url: p.url.clone(),
                token: p.token.clone(),
                built: p.built.clone(),
                failed: p.failed.clone(),
                client,
                closed: Default::default(),
            });
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

    /// The id every event of this run carries.
    pub fn run_id(&self) -> uuid::Uuid {
        self.run_id
    }

    /// Wraps `body` in the envelope: protocol, run id, host, time and the next `seq`.
    fn envelope(&self, body: Body) -> Event {
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        *seq += 1;
        Event {
            protocol: PROTOCOL,
            run_id: self.run_id,
            host: self.host.clone(),
            time: timestamp(SystemTime::now()),
            seq: *seq,
            body,
        }
    }

    /// A step started, succeeded or failed.
    pub fn step(&self, event: StepEvent) {
        let ev = self.envelope(Body::Step(event));
        self.enqueue(ev, false);
    }

    /// Periodic progress of a long step (dropped, not queued, when the server lags).
    pub fn progress(&self, event: ProgressEvent) {
        let ev = self.envelope(Body::Progress(event));
        self.enqueue(ev, true);
    }

    fn enqueue(&self, ev: Event, droppable: bool) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Event(Box::new(ev))) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Event(ev))) if !droppable => {
                // Step events matter: wait for room, bounded by the sender's retry budget.
                let _ = tx.send(Msg::Event(ev));
            }
            Err(_) => log::debug("report queue full; progress event dropped"),
        }
    }

    /// Sends the final report after all queued events; bounded by the final retry budget.
    pub fn finish(&self, report: FinalReport) -> Result<(), ReportError> {
        let ev = self.envelope(Body::Final(report));
        let Some(target) = &self.target else {
            return Ok(());
        };
        if let Some(tx) = &self.tx {
            let (done_tx, done_rx) = sync_channel(1);
            if tx.send(Msg::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(self.retry_event.budget + Duration::from_secs(5));
            }
        }
        let started = std::time::Instant::now();
        let res = post(target, &ev, self.retry_final);
        target
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.hook(
            target,
            &ev,
            self.retry_final.budget.saturating_sub(started.elapsed()),
        );
        res
    }

    /// The orchestrator's hook for how the run ended (`report.built`/`report.failed`),
    /// within what is left of the final report's budget; a failure is logged only.
    fn hook(&self, target: &Target, ev: &Event, budget: Duration) {
        let Body::Final(report) = &ev.body else {
            return;
        };
        let failure;
        let (url, body) = match report.result {
            RunResult::Success => (target.built.as_deref(), None),
            RunResult::Failure => {
                failure = format!(
                    "imprint run {} failed at step {}: {}\n",
                    self.run_id,
                    report.failed_step.as_deref().unwrap_or("unknown"),
                    report.error.as_deref().unwrap_or("unknown error")
                );
                (target.failed.as_deref(), Some(failure.as_str()))
            }
        };
        let Some(url) = url else { return };
        // At least one try, even when the final report used up the budget.
        let retry = Retry {
            budget,
            ..self.retry_final
        };
        if let Err(e) = send::notify(&target.client, url, body, retry) {
            log::warn(&e.to_string());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::time::Instant;

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
        r.step(StepEvent::started("wipe:a"));
        r.finish(FinalReport::early_failure("plan", "x", false))
            .unwrap();
    }

    #[test]
    fn undeliverable_final_report_gives_up_within_budget() {
        // A port nothing listens on: connection refused on every attempt.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let plan = ReportPlan {
            url: format!("http://127.0.0.1:{port}/r"),
            token: Some(Secret::new("tok-xyz")),
            heartbeat_secs: 10,
            built: None,
            failed: None,
        };
        let fast = Retry {
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            budget: Duration::from_millis(300),
        };
        let r = Reporter::with_retry("h", Some(&plan), None, fast, fast).unwrap();
        let t0 = Instant::now();
        r.step(StepEvent::started("wipe:a"));
        let err = r
            .finish(FinalReport::early_failure("plan", "x", false))
            .unwrap_err();
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t0.elapsed()
        );
        let msg = err.to_string();
        assert!(msg.contains("/r") && !msg.contains("tok-xyz"), "{msg}");
    }
}
