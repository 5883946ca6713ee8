//! Progress for long steps: indicatif bars on a terminal, plain lines otherwise,
//! and `progress` report events at the heartbeat interval.

use crate::report::{ProgressEvent, Reporter};
use crate::runner::log;
use crate::units::Bytes;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How progress is shown on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// indicatif bars (a terminal).
    Bars,
    /// A log line every few seconds (serial console, pipes).
    Lines,
    /// Nothing on the console (reports still go out).
    Quiet,
}

impl ProgressMode {
    /// Bars when stderr is a terminal, lines otherwise.
    pub fn detect() -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressMode::Bars
        } else {
            ProgressMode::Lines
        }
    }
}

/// One long-running step's progress sink.
pub struct Tracker<'a> {
    step: String,
    reporter: &'a Reporter,
    mode: ProgressMode,
    bar: Option<indicatif::ProgressBar>,
    every: Duration,
    state: Mutex<(Instant, Instant)>,
}

impl<'a> Tracker<'a> {
    /// A tracker for `step`; `heartbeat` is how often report events go out.
    pub fn new(
        step: &str,
        reporter: &'a Reporter,
        mode: ProgressMode,
        heartbeat: Duration,
        total: Option<u64>,
    ) -> Self {
        let bar = (mode == ProgressMode::Bars).then(|| {
            let b = indicatif::ProgressBar::new(total.unwrap_or(0));
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b.set_message(step.to_string());
            // Log lines while the bar is up are printed above it, never through it.
            let console = b.clone();
            log::set_console(Some(Box::new(move |line| {
                console.suspend(|| eprintln!("{line}"))
            })));
            b
        });
        let now = Instant::now();
        Tracker {
            step: step.into(),
            reporter,
            mode,
            bar,
            every: heartbeat,
            state: Mutex::new((now, now)),
        }
    }

    /// Records that `done` of `total` bytes are through; `written` is what reached the disk.
    pub fn update(&self, done: u64, total: Option<u64>, written: u64, rate: f64) {
        if let Some(b) = &self.bar {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(done);
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if self.mode == ProgressMode::Lines && now.duration_since(st.0) >= Duration::from_secs(5) {
            st.0 = now;
            let of = total
                .map(|t| format!(" of {}", Bytes(t).human()))
                .unwrap_or_default();
            log::info(&format!(
                "{}: {}{of} downloaded, {} written, {}/s",
                self.step,
                Bytes(done).human(),
                Bytes(written).human(),
                Bytes(rate as u64).human()
            ));
        }
        if now.duration_since(st.1) >= self.every {
            st.1 = now;
            self.reporter.progress(ProgressEvent {
                step: self.step.clone(),
                bytes_downloaded: done,
                bytes_total: total,
                bytes_written: written,
                rate_bytes_per_sec: rate as u64,
            });
        }
    }

    /// Ends the bar; log lines go straight to the console again.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            log::set_console(None);
        }
    }
}

impl Drop for Tracker<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}
