//! The executor: runs the plan's steps in order, records an event per step,
//! and on failure undoes what it started so no half-written disk can boot.
//!
//! `run` in the ramdisk and `apply` at a rescue shell both end up here.
//!
//! Layout: `context` (how a run is configured), `session` (state and undo across
//! steps), `steps` (which function runs which step kind), `storage_steps`,
//! `image_steps` (disk, filesystem, rootfs), `host_steps` (configdrive, finalize),
//! `progress` and `error`. The step modules depend only on `context`, `session`,
//! `progress` and `error`, never on each other.

use crate::plan::{Plan, Step};
use crate::report::{timestamp, ChosenDisk, DisksAfter, FinalReport, StepEvent, StepState};
use crate::runner::log;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

mod context;
mod error;
mod host_steps;
mod image_steps;
mod preflight;
mod progress;
mod session;
mod signature;
mod steps;
mod storage_steps;

pub use context::Context;
pub use error::StepError;
pub use progress::ProgressMode;
pub use session::{Session, Undo};

pub use crate::report::{RunResult, StepRecord};

/// What a whole run did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub result: RunResult,
    pub steps: Vec<StepRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was undone after a failure, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undone: Vec<String>,
    /// The state the run left the disks in.
    pub disks_after: DisksAfter,
    /// What is left because its undo failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<String>,
    pub duration_ms: u64,
}

/// Runs the plan's checks, then every step of `plan`; never panics on a step failure,
/// always returns the outcome.
pub fn execute(plan: &Plan, ctx: &Context) -> Outcome {
    let t0 = Instant::now();
    let mut records = Vec::new();
    let mut session = Session::new();
    let mut failure = None;
    if !plan.checks.is_empty() {
        failure = record("preflight", ctx, &mut records, || preflight::run(plan, ctx));
    }
    let untouched = failure.is_some();
    for step in plan.steps.iter().take_while(|_| !untouched) {
        // Record the undo before running: a step that fails half-way has touched the disk.
        for d in touched_disks(step) {
            session.touched(d);
        }
        failure = record(&step.name(), ctx, &mut records, || {
            steps::run(step, plan, ctx, &mut session)
        });
        if failure.is_some() {
            break;
        }
    }
    let (undone, remaining, disks_after) = match (&failure, untouched) {
        (None, _) => {
            // Success: unmount, deactivate, close and stop cleanly before the reboot, so md
            // records where its resync stopped and every filesystem is flushed.
            session.unwind(false);
            (Vec::new(), Vec::new(), DisksAfter::Provisioned)
        }
        (Some(_), true) => (Vec::new(), Vec::new(), DisksAfter::Untouched),
        (Some(_), false) if ctx.keep_on_failure => (
            vec!["nothing: keep_on_failure was requested; disks left as they are".into()],
            Vec::new(),
            DisksAfter::Kept,
        ),
        (Some(_), false) => {
            let u = session.unwind(true);
            let after = if u.remaining.is_empty() {
                DisksAfter::CleanedUp
            } else {
                DisksAfter::NotCleanedUp
            };
            (u.done, u.remaining, after)
        }
    };
    let (failed_step, error) = failure.map_or((None, None), |(s, e)| (Some(s), Some(e)));
    Outcome {
        result: if failed_step.is_some() {
            RunResult::Failure
        } else {
            RunResult::Success
        },
        steps: records,
        failed_step,
        error,
        undone,
        disks_after,
        remaining,
        duration_ms: t0.elapsed().as_millis() as u64,
    }
}

/// Runs one step (or the checks) with its log lines, events and record; its name and
/// error when it failed.
fn record(
    name: &str,
    ctx: &Context,
    records: &mut Vec<StepRecord>,
    run: impl FnOnce() -> Result<crate::report::StepOutput, StepError>,
) -> Option<(String, String)> {
    log::info(&format!("step {name}: started"));
    ctx.reporter.step(StepEvent::started(name));
    let started = timestamp(SystemTime::now());
    let s0 = Instant::now();
    let res = run();
    let dur = s0.elapsed();
    match res {
        Ok(output) => {
            log::info(&format!("step {name}: succeeded in {}", secs(dur)));
            ctx.reporter
                .step(StepEvent::succeeded(name, dur, output.clone()));
            records.push(StepRecord {
                step: name.to_string(),
                state: StepState::Succeeded,
                started: Some(started),
                duration_ms: dur.as_millis() as u64,
                error: None,
                output: Some(output),
            });
            None
        }
        Err(e) => {
            let msg = e.to_string();
            log::info(&format!("step {name}: FAILED after {}: {msg}", secs(dur)));
            ctx.reporter.step(StepEvent::failed(name, Some(dur), &msg));
            records.push(StepRecord::failed(
                name,
                Some(started),
                dur.as_millis() as u64,
                &msg,
            ));
            Some((name.to_string(), msg))
        }
    }
}

fn touched_disks(step: &Step) -> Vec<PathBuf> {
    match step {
        Step::Wipe { path, .. } | Step::Partition { path, .. } => vec![path.clone()],
        // A filesystem or rootfs image goes into a volume of a disk already claimed.
        Step::WriteImage(i) if i.format == crate::plan::ImageFormat::Disk => {
            vec![i.target_path.clone()]
        }
        Step::AppendPartitions(a) => vec![a.path.clone()],
        Step::Configdrive(c) => vec![c.disk_path.clone()],
        // Everything else lives on partitions of disks a wipe step already claimed.
        _ => Vec::new(),
    }
}

/// The final report of a run (the reporter adds the envelope).
pub fn final_report(
    plan: &Plan,
    outcome: &Outcome,
    inventory: &[crate::disks::Disk],
) -> FinalReport {
    let chosen = plan
        .disks
        .iter()
        .map(|d| ChosenDisk {
            name: d.name.clone(),
            path: d.path.clone(),
            size_bytes: d.size_bytes,
            logical_sector: d.logical_sector,
            serial: d.serial.clone(),
            model: d.model.clone(),
            inventory: inventory.iter().find(|i| i.path == d.path).cloned(),
        })
        .collect();
    FinalReport {
        result: outcome.result,
        failed_step: outcome.failed_step.clone(),
        error: outcome.error.clone(),
        undone: outcome.undone.clone(),
        disks_after: outcome.disks_after,
        remaining: outcome.remaining.clone(),
        hostname: Some(plan.host.hostname.clone()),
        instance_id: Some(plan.host.instance_id.clone()),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        duration_ms: Some(outcome.duration_ms),
        steps: outcome.steps.clone(),
        disks: Some(chosen),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
