//! The report events as types: the envelope every POST carries, and the `step`,
//! `progress` and `final` bodies `docs/report-protocol.md` documents.
//! `imprint schema report` prints the JSON Schema of [`Event`].

use super::output::StepOutput;
use crate::disks::Disk;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Version of the event shapes below; a receiver refuses a version it does not know.
pub const PROTOCOL: u32 = 1;

/// One report POST: the envelope and one of the three bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Protocol version ([`PROTOCOL`]).
    pub protocol: u32,
    /// A UUID drawn when the run starts, the same in every event of that run.
    #[schemars(with = "String", extend("format" = "uuid"))]
    pub run_id: uuid::Uuid,
    /// `host.hostname` from the document (`unknown` if it could not be read).
    pub host: String,
    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-21T21:04:05.123Z`.
    #[schemars(extend("format" = "date-time"))]
    pub time: String,
    /// 1, 2, 3 … per run, in the order the events were made.
    #[schemars(range(min = 1))]
    pub seq: u64,
    /// What this event is (`kind`) and what it says.
    #[serde(flatten)]
    pub body: Body,
}

/// The three kinds of event, told apart by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Body {
    /// A step started, succeeded or failed.
    Step(StepEvent),
    /// Bytes through a long step so far.
    Progress(ProgressEvent),
    /// The whole run, sent once at its end.
    Final(FinalReport),
}

/// State of a step.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Started,
    Succeeded,
    Failed,
}

/// Success or failure of a run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Success,
    Failure,
}

/// The state a run left the disks in.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisksAfter {
    /// Provisioned as planned.
    Provisioned,
    /// The run failed before anything was written: every disk is exactly as it was.
    Untouched,
    /// The run failed; everything it started was undone and the disks it touched wiped.
    CleanedUp,
    /// The run failed and not everything could be undone: `remaining` lists what is left.
    NotCleanedUp,
    /// The run failed and the disks were left as the failure found them (keep_on_failure).
    Kept,
}

impl DisksAfter {
    /// The words for the console's last line about the disks.
    pub fn describe(self) -> &'static str {
        match self {
            DisksAfter::Provisioned => "the disks are provisioned",
            DisksAfter::Untouched => "no disk was touched",
            DisksAfter::CleanedUp => "the disks were cleaned up",
            DisksAfter::NotCleanedUp => "the disks were NOT fully cleaned up",
            DisksAfter::Kept => "the disks were left as they are (keep_on_failure)",
        }
    }
}

/// A `step` event: one when a step starts and one when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepEvent {
    /// The step's name, e.g. `wipe:root`, `write-image`; `validate`, `inventory` or `plan`
    /// for a failure before a plan exists.
    pub step: String,
    pub state: StepState,
    /// On `succeeded` and `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// On `failed`: the cause, as a sentence naming the device or URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On `succeeded`: what the step produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StepOutput>,
}

impl StepEvent {
    /// `step` started.
    pub fn started(step: &str) -> Self {
        StepEvent {
            step: step.into(),
            state: StepState::Started,
            duration_ms: None,
            error: None,
            details: None,
        }
    }

    /// `step` succeeded after `duration`, producing `output`.
    pub fn succeeded(step: &str, duration: std::time::Duration, output: StepOutput) -> Self {
        StepEvent {
            step: step.into(),
            state: StepState::Succeeded,
            duration_ms: Some(duration.as_millis() as u64),
            error: None,
            details: Some(output),
        }
    }

    /// `step` failed with `error` (after `duration`, when it ran at all).
    pub fn failed(step: &str, duration: Option<std::time::Duration>, error: &str) -> Self {
        StepEvent {
            step: step.into(),
            state: StepState::Failed,
            duration_ms: duration.map(|d| d.as_millis() as u64),
            error: Some(error.into()),
            details: None,
        }
    }
}

/// A `progress` event of a long step (`write-image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressEvent {
    pub step: String,
    /// Bytes received from the image URL so far (as served, compressed).
    pub bytes_downloaded: u64,
    /// `Content-Length` when known.
    pub bytes_total: Option<u64>,
    /// Decompressed bytes laid down on the target.
    pub bytes_written: u64,
    /// Recent download rate.
    pub rate_bytes_per_sec: u64,
}

/// The `final` report: sent once, before the finish action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinalReport {
    pub result: RunResult,
    /// The step that failed (`null` on success).
    pub failed_step: Option<String>,
    /// The cause (`null` on success).
    pub error: Option<String>,
    /// What was undone after a failure, in order.
    #[serde(default)]
    pub undone: Vec<String>,
    /// The state the run left the disks in.
    pub disks_after: DisksAfter,
    /// What is left because its undo failed (arrays, mappings, mounts, disks not wiped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<String>,
    /// The host identity used for the configdrive (absent before a plan exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// imprint's version.
    pub agent_version: String,
    /// The whole run (absent before a plan exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Every step run, in order.
    pub steps: Vec<StepRecord>,
    /// The chosen disks (absent before a plan exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<ChosenDisk>>,
}

impl FinalReport {
    /// The report of a run that failed at `step` before a plan existed: nothing ran,
    /// nothing was undone.
    pub fn early_failure(step: &str, error: &str, record: bool) -> Self {
        let steps = if record {
            vec![StepRecord::failed(step, None, 0, error)]
        } else {
            Vec::new()
        };
        FinalReport {
            result: RunResult::Failure,
            failed_step: Some(step.into()),
            error: Some(error.into()),
            undone: Vec::new(),
            disks_after: DisksAfter::Untouched,
            remaining: Vec::new(),
            hostname: None,
            instance_id: None,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            duration_ms: None,
            steps,
            disks: None,
        }
    }
}

/// The record of one step, as the final report lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    pub step: String,
    pub state: StepState,
    /// When it started (RFC 3339); absent for a failure before a plan exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub started: Option<String>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the step produced (digests, UUIDs, partitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<StepOutput>,
}

impl StepRecord {
    /// A step that failed with `error` after `duration_ms`.
    pub fn failed(step: &str, started: Option<String>, duration_ms: u64, error: &str) -> Self {
        StepRecord {
            step: step.into(),
            state: StepState::Failed,
            started,
            duration_ms,
            error: Some(error.into()),
            output: None,
        }
    }
}

/// A disk the document's hints chose, with what the inventory found on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChosenDisk {
    /// The document's name for it.
    pub name: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub logical_sector: u64,
    pub serial: Option<String>,
    pub model: Option<String>,
    /// The full inventory entry: partitions and signatures found before wiping,
    /// holders, mounts.
    pub inventory: Option<Disk>,
}
