//! `preflight`: the plan's checks, made before the first step while every disk is
//! still as it was. Every check runs (one failure does not hide another); any failure
//! ends the run with nothing to undo.

use super::context::Context;
use super::error::StepError;
use crate::plan::{Check, ImagePlan, Plan, Step};
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

/// The write-image step of `plan` that `pick` chooses.
fn image_with(plan: &Plan, pick: impl Fn(&ImagePlan) -> bool) -> Result<&ImagePlan, &'static str> {
    plan.steps
        .iter()
        .find_map(|s| match s {
            Step::WriteImage(i) if pick(i) => Some(i),
            _ => None,
        })
        .ok_or("no write-image step needs it")
}

/// One check; what it found, or why it failed.
fn check(c: &Check, plan: &Plan, ctx: &Context) -> Result<String, String> {
    let binding = crate::binding::Context::default();
    match c {
        Check::Image { urls } => {
            let img = image_with(plan, |i| &i.urls == urls)?;
            let opts = crate::image::WriteOptions {
                ca_bundle: ctx.ca_bundle.map(Path::to_path_buf),
                credentials: img.auth.clone(),
                ..Default::default()
            };
            if super::image_steps::is_container(img) {
                let registry_signature = match &img.registry_signature {
                    Some(sig) => {
                        super::signature::registry_rule(img, sig, ctx)?;
                        Some(std::sync::Arc::new(super::signature::registry_policy(
                            sig, ctx,
                        )?))
                    }
                    None => None,
                };
                let opts = crate::image::WriteOptions {
                    registry_signature,
                    ..opts
                };
                return container(urls, &opts);
            }
            let (url, size) =
                crate::image::probe(urls, img.digest.as_ref(), &opts).map_err(|e| e.to_string())?;
            if !img.stores.is_empty() || crate::image::chunked::is_index_url(&url) {
                let opts = crate::image::WriteOptions {
                    stores: img.stores.clone(),
                    ..opts
                };
                if let Some(found) =
                    crate::image::chunked::check_stores(urls, img.digest.as_ref(), &opts)
                        .map_err(|e| e.to_string())?
                {
                    return Ok(found);
                }
            }
            Ok(match size {
                Some(size) => format!("{url} serves {} ({size} bytes)", Bytes(size).human()),
                None => format!("{url} answers (without saying the size)"),
            })
        }
        Check::Signature { url } => {
            let img = image_with(plan, |i| {
                i.signature.as_ref().is_some_and(|s| &s.url == url)
            })?;
            super::signature::digest_rule(img, ctx)?;
            let sig = img.signature.as_ref().ok_or("the image is not signed")?;
            super::signature::checker(sig, ctx).map(|c| format!("signed by {}", c.signer()))
        }
        Check::RegistrySignature { url, lookaside } => {
            let img = image_with(plan, |i| {
                i.urls.first() == Some(url)
                    && i.registry_signature
                        .as_ref()
                        .is_some_and(|s| &s.lookaside == lookaside)
            })?;
            registry_signature(img, ctx)
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
        Check::Erase { path, fallback, .. } => crate::storage::erase::decide(path, fallback)
            .map(|d| {
                format!(
                    "{:?}{} ({}: {})",
                    d.method,
                    if d.fallback {
                        ", a fallback the document allows"
                    } else {
                        ""
                    },
                    d.claimed.interface,
                    d.claimed.capabilities.join(", ")
                )
            })
            .map_err(|e| e.to_string()),
        Check::Efivars { efivars } => {
            crate::efi::check(std::path::Path::new(crate::efi::FIRMWARE), efivars)
                .map_err(|e| e.to_string())
        }
    }
}

/// A container image: manifest (pinned digest), config (digest, size) and a `HEAD` of
/// every layer blob; nothing is downloaded but the manifest and the config.
fn container(urls: &[String], opts: &crate::image::WriteOptions) -> Result<String, String> {
    let pull = crate::image::ContainerPull::new(urls, opts).map_err(|e| e.to_string())?;
    let image = pull.check().map_err(|e| e.to_string())?;
    Ok(format!(
        "{} is container image manifest {} (config {}), {} layers there ({}){}",
        image.reference,
        image.manifest,
        image.config,
        image.layers.len(),
        Bytes(image.download_bytes()).human(),
        image
            .signed_by
            .as_ref()
            .map(|s| format!(", signed by {s}"))
            .unwrap_or_default()
    ))
}

/// The registry image's manifest resolved and its lookaside signature verified.
fn registry_signature(img: &ImagePlan, ctx: &Context) -> Result<String, String> {
    let sig = img
        .registry_signature
        .as_ref()
        .ok_or("the image has no registry signature")?;
    super::signature::registry_rule(img, sig, ctx)?;
    let opts = crate::image::WriteOptions {
        ca_bundle: ctx.ca_bundle.map(Path::to_path_buf),
        credentials: img.auth.clone(),
        registry_signature: Some(std::sync::Arc::new(super::signature::registry_policy(
            sig, ctx,
        )?)),
        ..Default::default()
    };
    let resolved = crate::image::resolve_registry(&img.urls, img.digest.as_ref(), &opts)
        .map_err(|e| e.to_string())?
        .ok_or("no URL of the image is an oci:// reference")?;
    Ok(format!(
        "manifest {} of {} signed by {}; layer {}",
        resolved.top_digest(),
        resolved.reference,
        resolved.signed_by.as_deref().unwrap_or("(nobody)"),
        resolved.layer.digest
    ))
}
