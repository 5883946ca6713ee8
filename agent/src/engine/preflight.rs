//! `preflight`: the plan's checks, made before the first step while every disk is
//! still as it was. Every check runs (one failure does not hide another); any failure
//! ends the run with nothing to undo.

use super::context::Context;
use super::error::StepError;
use crate::plan::{Check, Plan, Step};
use crate::report::output::{CheckPassed, Checked};
use crate::report::StepOutput;
use crate::units::Bytes;
use std::path::Path;

/// Makes every check of `plan`; the findings, or every failure.
pub fn run(plan: &Plan, ctx: &Context) -> Result<StepOutput, StepError> {
    let mut passed = Vec::new();
    let mut failures = Vec::new();
    for c in &plan.checks {
        match check(c, plan, ctx) {
            Ok(found) => {
                crate::runner::log::info(&format!("preflight: {}: {found}", c.describe()));
                passed.push(CheckPassed {
                    check: c.describe(),
                    found,
                });
            }
            Err(e) => failures.push(format!("check \"{}\" failed: {e}", c.describe())),
        }
    }
    if failures.is_empty() {
        Ok(StepOutput::Preflight(Checked { checks: passed }))
    } else {
        Err(StepError::Preflight { failures })
    }
}

/// One check; what it found, or why it failed.
fn check(c: &Check, plan: &Plan, ctx: &Context) -> Result<String, String> {
    let binding = crate::binding::Context::default();
    match c {
        Check::Image { urls } => {
            let digest = plan
                .steps
                .iter()
                .find_map(|s| match s {
                    Step::WriteImage(i) if &i.urls == urls => Some(i.digest.clone()),
                    _ => None,
                })
                .ok_or("no write-image step uses these URLs")?;
            let opts = crate::image::WriteOptions {
                ca_bundle: ctx.ca_bundle.map(Path::to_path_buf),
                ..Default::default()
            };
            let (url, size) =
                crate::image::probe(urls, &digest, &opts).map_err(|e| e.to_string())?;
            Ok(match size {
                Some(size) => format!("{url} serves {} ({size} bytes)", Bytes(size).human()),
                None => format!("{url} answers (without saying the size)"),
            })
        }
        Check::Tang { url, thumbprint } => {
            crate::binding::check_tang(&binding, url, thumbprint.as_deref())
                .map(|thp| format!("signing key {thp}"))
                .map_err(|e| e.to_string())
        }
        Check::Tpm { bank } => crate::binding::check_tpm(&binding, *bank)
            .map(|()| format!("PCR 0 of bank {bank} read"))
            .map_err(|e| e.to_string()),
        Check::Configdrive { disk, .. } => {
            let cd = plan
                .steps
                .iter()
                .find_map(|s| match s {
                    Step::Configdrive(cd) if &cd.disk == disk && !cd.copy => Some(cd),
                    _ => None,
                })
                .ok_or("no configdrive step on this disk")?;
            crate::configdrive::check_fits(cd)
                .map(|bytes| format!("{bytes} bytes of files fit"))
                .map_err(|e| e.to_string())
        }
    }
}
