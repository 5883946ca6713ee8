//! Lookup (`imprint.lookup=URL`): with no `imprint.config=`, the agent POSTs this
//! machine's inventory to the URL and the server answers with its document once it
//! knows the machine (see "Lookup" in `docs/report-protocol.md`).
//!
//! The decisions ([`next_step`]) are separate from the waiting and the HTTP
//! ([`Lookup::run`] takes both as parameters), so tests drive them with a fake clock.

use crate::runner::log;
use std::path::Path;
use std::time::Duration;

/// The protocol version sent in `X-Imprint-Protocol`.
pub const PROTOCOL: &str = "1";
/// The wait when a 202 or 404 names no (usable) `Retry-After`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The bounds a server's `Retry-After` is clamped to.
pub const MIN_WAIT: Duration = Duration::from_secs(5);
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Backoff after connection errors and 5xx: the first wait, doubled up to the cap.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Default of `imprint.lookup_timeout=`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// At most this much of the server's body is quoted in an error.
const BODY_QUOTE: usize = 200;

/// Why the lookup ended without a document.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("lookup at {url}: the server retired this machine (HTTP 410 Gone)")]
    Retired { url: String },
    #[error("lookup at {url} was refused with HTTP {status}: {body:?}; check imprint.lookup= and the server's log (not asking again)")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("lookup at {url} got no document in {secs} s (last answer: {last}); imprint.lookup_timeout= allows longer")]
    TimedOut {
        url: String,
        secs: u64,
        last: String,
    },
    #[error("lookup at {url}: the document the server sent is not UTF-8 text: {why}")]
    NotText { url: String, why: String },
    #[error("lookup at {url}: the URL is not http:// or https://")]
    Scheme { url: String },
    #[error("lookup at {url}: building the HTTP client: {source}")]
    Client {
        url: String,
        source: crate::http::ClientError,
    },
}

/// One answer of the server, as the decisions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the document, and the URL the server says it lives at (`Content-Location`).
    Document {
        body: Vec<u8>,
        location: Option<String>,
    },
    /// Any other HTTP status, with `Retry-After` and the start of the body.
    Status {
        status: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// No HTTP answer (refused, reset, timed out).
    Unreachable(String),
}

/// What to do after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The document is here.
    Done,
    /// Ask again after `delay`; `why` is the console's reason.
    Wait { delay: Duration, why: String },
    /// The machine is retired (410).
    Retire,
    /// Give up with this status and body.
    Refuse { status: u16, body: String },
}

/// The tunables of one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The floor of a server's `Retry-After` ([`MIN_WAIT`]; tests lower it).
    pub min_wait: Duration,
    /// The whole lookup's bound (`imprint.lookup_timeout=`).
    pub timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_wait: MIN_WAIT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The `Retry-After` of a 202/404 in its seconds form, clamped to
/// [`Policy::min_wait`, [`MAX_WAIT`]]; [`DEFAULT_WAIT`] when absent or a date.
pub fn retry_after(value: Option<&str>, p: &Policy) -> Duration {
    let secs = value.and_then(|v| v.trim().parse::<u64>().ok());
    secs.map_or(DEFAULT_WAIT, Duration::from_secs)
        .clamp(p.min_wait.min(MAX_WAIT), MAX_WAIT)
}

/// The `n`th backoff (0-based) after errors: 1 s doubling, capped at [`BACKOFF_MAX`].
pub fn backoff(n: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX)
}

/// `base` plus `fraction` (in [0, 1)) of a quarter of it: 0–25 % more, so hundreds
/// of machines told the same wait do not come back in step.
pub fn with_jitter(base: Duration, fraction: f64) -> Duration {
    base + base.mul_f64(0.25 * fraction.clamp(0.0, 1.0))
}

/// What `answer` means; `errors` counts the connection errors and 5xx in a row so far
/// (it picks the backoff), `fraction` is a random number in [0, 1).
pub fn next_step(answer: &Answer, errors: u32, fraction: f64, p: &Policy) -> Step {
    match answer {
        Answer::Document { .. } => Step::Done,
        Answer::Status {
            status: s @ (202 | 404),
            retry_after: ra,
            ..
        } => Step::Wait {
            delay: with_jitter(retry_after(ra.as_deref(), p), fraction),
            why: format!("the server has no document for this machine yet ({s})"),
        },
        Answer::Status { status: 410, .. } => Step::Retire,
        Answer::Status { status, .. } if *status >= 500 => Step::Wait {
            delay: with_jitter(backoff(errors), fraction),
            why: format!("the server answered HTTP {status}"),
        },
        Answer::Status { status, body, .. } => Step::Refuse {
            status: *status,
            body: body.clone(),
        },
        Answer::Unreachable(why) => Step::Wait {
            delay: with_jitter(backoff(errors), fraction),
            why: format!("no answer ({why})"),
        },
    }
}

/// What the lookup loop needs from the world: time, sleep and randomness.
pub trait Clock {
    /// Time since the lookup started.
    fn elapsed(&self) -> Duration;
    fn sleep(&mut self, d: Duration);
    /// A random number in [0, 1).
    fn fraction(&mut self) -> f64;
}

/// The real clock, with jitter from the operating system's random source.
pub struct RealClock(std::time::Instant);

impl RealClock {
    pub fn start() -> RealClock {
        RealClock(std::time::Instant::now())
    }
}

impl Clock for RealClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
    fn fraction(&mut self) -> f64 {
        let mut b = [0u8; 4];
        // Without randomness, no jitter: still correct, only less spread.
        match getrandom::fill(&mut b) {
            Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
            Err(_) => 0.0,
        }
    }
}

/// A document a lookup got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub text: String,
    /// `Content-Location`, resolved against the lookup URL.
    pub location: Option<String>,
}

/// One lookup: the URL and the policy.
pub struct Lookup<'a> {
    pub url: &'a str,
    pub policy: Policy,
}

impl Lookup<'_> {
    /// Asks until a document comes, the machine is retired or refused, or the policy's
    /// timeout passes; `ask` makes one request.
    pub fn run(
        &self,
        ask: &mut dyn FnMut() -> Answer,
        clock: &mut dyn Clock,
    ) -> Result<Found, LookupError> {
        let url = self.url.to_string();
        let mut errors = 0u32;
        loop {
            let answer = ask();
            let fraction = clock.fraction();
            let (delay, why) = match next_step(&answer, errors, fraction, &self.policy) {
                Step::Done => return self.found(answer),
                Step::Retire => return Err(LookupError::Retired { url }),
                Step::Refuse { status, body } => {
                    return Err(LookupError::Refused { url, status, body })
                }
                Step::Wait { delay, why } => (delay, why),
            };
            let is_error = matches!(&answer, Answer::Unreachable(_))
                || matches!(&answer, Answer::Status { status, .. } if *status >= 500);
            errors = if is_error {
                errors.saturating_add(1)
            } else {
                0
            };
            let left = self.policy.timeout.saturating_sub(clock.elapsed());
            if left.is_zero() {
                return Err(LookupError::TimedOut {
                    url,
                    secs: clock.elapsed().as_secs(),
                    last: why,
                });
            }
            // The last wait is cut to the bound: one more question at the deadline.
            let delay = delay.min(left);
            log::info(&format!(
                "lookup: {why}; asking {url} again in {} s",
                delay.as_secs_f64().round()
            ));
            clock.sleep(delay);
        }
    }

    fn found(&self, answer: Answer) -> Result<Found, LookupError> {
        let Answer::Document { body, location } = answer else {
            return Err(LookupError::NotText {
                url: self.url.to_string(),
                why: "the answer held no document".into(),
            });
        };
        let text = String::from_utf8(body).map_err(|e| LookupError::NotText {
            url: self.url.to_string(),
            why: e.to_string(),
        })?;
        let location = location.and_then(|l| {
            reqwest::Url::parse(self.url)
                .and_then(|base| base.join(&l))
                .ok()
                .map(String::from)
        });
        Ok(Found { text, location })
    }
}

/// Makes one POST of `body` to `url` with `client`.
/// `seq` numbers the lookup's requests (1, 2, …); `run_id` is the run's, which its
/// reports carry too.
pub fn ask(
    client: &reqwest::blocking::Client,
    url: &str,
    body: &[u8],
    run_id: &str,
    seq: u64,
) -> Answer {
    let resp = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Imprint-Protocol", PROTOCOL)
        .header("X-Imprint-Run-Id", run_id)
        .header("X-Imprint-Seq", seq.to_string())
        .body(body.to_vec())
        .send();
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return Answer::Unreachable(crate::http::describe(&e)),
    };
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (retry_after, location) = (header("retry-after"), header("content-location"));
    match resp.bytes() {
        Ok(bytes) if status == 200 => Answer::Document {
            body: bytes.to_vec(),
            location,
        },
        Ok(bytes) => Answer::Status {
            status,
            retry_after,
            body: String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_QUOTE)]).into_owned(),
        },
        Err(e) => Answer::Unreachable(crate::http::describe(&e)),
    }
}

/// POSTs `inventory` to `url` until the server answers with a document (see [`Lookup::run`]).
pub fn lookup(
    url: &str,
    inventory: &[u8],
    ca: Option<&Path>,
    policy: Policy,
) -> Result<Found, LookupError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(LookupError::Scheme { url: url.into() });
    }
    let client = crate::http::client(&crate::http::ClientOptions {
        ca_bundle: ca,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(30)),
    })
    .map_err(|source| LookupError::Client {
        url: url.into(),
        source,
    })?;
    let run_id = crate::report::pending_run_id().to_string();
    let mut seq = 0u64;
    log::info(&format!(
        "lookup: asking {url} for this machine's document (run {run_id}, at most {} s)",
        policy.timeout.as_secs()
    ));
    Lookup { url, policy }.run(
        &mut || {
            seq += 1;
            ask(&client, url, inventory, &run_id, seq)
        },
        &mut RealClock::start(),
    )
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
