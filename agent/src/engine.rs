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
use crate::report::{timestamp, StepState};
use crate::runner::log;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

mod context;
mod error;
mod host_steps;
mod image_steps;
mod progress;
mod session;
mod steps;
mod storage_steps;

pub use context::Context;
pub use error::StepError;
pub use progress::ProgressMode;
pub use session::{Session, Undo};

/// The record of one step, as the final report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: String,
    pub state: StepState,
    pub started: String,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the step produced (digests, UUIDs, partitions), for the final report.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub output: Value,
}

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
    pub duration_ms: u64,
}

/// Success or failure of a run.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Success,
    Failure,
}

/// Runs every step of `plan`; never panics on a step failure, always returns the outcome.
pub fn execute(plan: &Plan, ctx: &Context) -> Outcome {
    let t0 = Instant::now();
    let mut records = Vec::new();
    let mut session = Session::new();
    let mut failure = None;
    for step in &plan.steps {
        let name = step.name();
        log::info(&format!("step {name}: started"));
        ctx.reporter
            .step(&name, StepState::Started, None, None, None);
        let started = timestamp(SystemTime::now());
        let s0 = Instant::now();
        // Record the undo before running: a step that fails half-way has touched the disk.
        for d in touched_disks(step) {
            session.touched(d);
        }
        let res = steps::run(step, plan, ctx, &mut session);
        let dur = s0.elapsed();
        match res {
            Ok(output) => {
                log::info(&format!("step {name}: succeeded in {}", secs(dur)));
                ctx.reporter.step(
                    &name,
                    StepState::Succeeded,
                    Some(dur),
                    None,
                    Some(output.clone()),
                );
                records.push(StepRecord {
                    step: name,
                    state: StepState::Succeeded,
                    started,
                    duration_ms: dur.as_millis() as u64,
                    error: None,
                    output,
                });
            }
            Err(e) => {
                let msg = e.to_string();
                log::info(&format!("step {name}: FAILED after {}: {msg}", secs(dur)));
                ctx.reporter
                    .step(&name, StepState::Failed, Some(dur), Some(&msg), None);
                records.push(StepRecord {
                    step: name.clone(),
                    state: StepState::Failed,
                    started,
                    duration_ms: dur.as_millis() as u64,
                    error: Some(msg.clone()),
                    output: Value::Null,
                });
                failure = Some((name, msg));
                break;
            }
        }
    }
    let mut undone = Vec::new();
    if failure.is_some() {
        if ctx.keep_on_failure {
            undone.push("nothing: keep_on_failure was requested; disks left as they are".into());
        } else {
            undone = session.unwind(true);
        }
    } else {
        // Success: unmount, deactivate, close and stop cleanly before the reboot, so md
        // records where its resync stopped and every filesystem is flushed.
        session.unwind(false);
    }
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
        duration_ms: t0.elapsed().as_millis() as u64,
    }
}

fn touched_disks(step: &Step) -> Vec<PathBuf> {
    match step {
        Step::Wipe { path, .. } | Step::Partition { path, .. } => vec![path.clone()],
        Step::WriteImage(i) => vec![i.target_path.clone()],
        Step::AppendPartitions(a) => vec![a.path.clone()],
        Step::Configdrive(c) => vec![c.disk_path.clone()],
        // Everything else lives on partitions of disks a wipe step already claimed.
        _ => Vec::new(),
    }
}

/// The body of the final report (the reporter adds kind, host, time).
pub fn final_report(plan: &Plan, outcome: &Outcome, inventory: &[crate::disks::Disk]) -> Value {
    let chosen: Vec<Value> = plan
        .disks
        .iter()
        .map(|d| {
            let inv = inventory.iter().find(|i| i.path == d.path);
            json!({ "name": d.name, "path": d.path, "size_bytes": d.size_bytes, "logical_sector": d.logical_sector,
                    "serial": d.serial, "model": d.model, "inventory": inv })
        })
        .collect();
    json!({
        "result": outcome.result,
        "failed_step": outcome.failed_step,
        "error": outcome.error,
        "undone": outcome.undone,
        "instance_id": plan.host.instance_id,
        "hostname": plan.host.hostname,
        "agent_version": env!("CARGO_PKG_VERSION"),
        "duration_ms": outcome.duration_ms,
        "steps": outcome.steps,
        "disks": chosen,
    })
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
