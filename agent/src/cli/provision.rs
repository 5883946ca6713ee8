//! `run`, `apply`, `plan` and the single-step commands: one engine, one flow.

use super::authenticate::{self, TrustArgs};
use super::document::{self, DiskScope};
use super::exit::{self, Exit};
use super::safety;
use imprint::disks::Disk;
use imprint::engine::{self, Context, ProgressMode, RunResult};
use imprint::plan::{Finish, Plan};
use imprint::planner::{self, PlanOptions};
use imprint::report::{FinalReport, Reporter, StepEvent};
use imprint::runner::log;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Document source; default: `imprint.config=` from the kernel command line,
    /// then a document embedded in the boot ISO, then a medium labelled IMPRINT.
    /// `IMPRINT_CONFIG` in the environment does the same (a container action's way).
    #[arg(long, env = "IMPRINT_CONFIG")]
    config: Option<String>,
    #[command(flatten)]
    lookup: super::lookup::LookupArgs,
    /// PEM CA bundle for https (default: `imprint.ca=` from the kernel command line).
    /// PEM CA bundle to trust for https document and image URLs (instead of the built-in roots).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Do not carry out the document's finish action (for testing `run` by hand).
    #[arg(long)]
    no_finish: bool,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    report: ReportTimeout,
    #[command(flatten)]
    scope: DiskScope,
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// Path, URL or `-`.
    document: String,
    /// Do not ask before destroying data.
    #[arg(long, short)]
    yes: bool,
    /// Allow disks with mounted filesystems or active holders (md, dm, LVM).
    #[arg(long)]
    force: bool,
    /// After a failure, leave the disks as they are (for debugging) instead of undoing.
    #[arg(long)]
    keep_on_failure: bool,
    /// PEM CA bundle to trust for https document and image URLs (instead of the built-in roots).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    #[command(flatten)]
    trust: TrustArgs,
    /// The document's detached signature (minisign or OpenPGP), instead of looking
    /// beside the document (`<document>.minisig`, then `<document>.sig`); needed for `-`.
    #[arg(long, value_name = "FILE")]
    signature: Option<PathBuf>,
    #[command(flatten)]
    report: ReportTimeout,
    #[command(flatten)]
    scope: DiskScope,
}

/// How long reports may be retried (`imprint.report_timeout=` in ramdisk mode).
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct ReportTimeout {
    /// Seconds the final report (and each step event) may spend on retries before imprint
    /// gives up on the report server and carries on (default: 15 per event, 90 for the final report).
    #[arg(
        long = "report-timeout",
        env = "IMPRINT_REPORT_TIMEOUT",
        value_name = "SECS"
    )]
    pub secs: Option<u64>,
}

impl ReportTimeout {
    /// `imprint.report_timeout=SECS` from the kernel command line.
    fn from_cmdline(c: &imprint::boot::Cmdline) -> Result<ReportTimeout, String> {
        match c.get("imprint.report_timeout") {
            None => Ok(ReportTimeout::default()),
            Some(v) => v
                .parse()
                .map(|s| ReportTimeout { secs: Some(s) })
                .map_err(|_| format!("imprint.report_timeout={v}: expected a number of seconds")),
        }
    }

    /// A reporter whose retry budgets are capped by this timeout.
    fn reporter(
        self,
        host: &str,
        report: Option<&imprint::plan::ReportPlan>,
        ca: Option<&Path>,
    ) -> Result<Reporter, imprint::report::ReportError> {
        use imprint::report::Retry;
        let cap = |r: Retry| match self.secs {
            Some(s) => Retry {
                budget: r.budget.min(std::time::Duration::from_secs(s)),
                ..r
            },
            None => r,
        };
        Reporter::with_retry(host, report, ca, cap(Retry::EVENT), cap(Retry::FINAL))
    }
}

#[derive(clap::Args)]
pub struct PlanArgs {
    /// Path, URL or `-`.
    document: String,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// Plan against an inventory (`imprint disks --json` of another host) instead of this machine's.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// PEM CA bundle to trust for https document and image URLs (instead of the built-in roots).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    #[command(flatten)]
    scope: DiskScope,
}

#[derive(clap::Args)]
pub struct WriteImageArgs {
    /// Image URL (http, https, file).
    #[arg(long)]
    url: String,
    /// Further URLs serving the same bytes, tried in turn.
    #[arg(long = "mirror")]
    mirrors: Vec<String>,
    /// A chunk store for a casync index URL (repeatable; http(s)://, file:///, medium:/;
    /// default: `default.castr` beside the index).
    #[arg(long = "store", value_name = "URL")]
    stores: Vec<String>,
    /// Print what the run did (its steps and their outputs, as the final report has
    /// them) as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Expected sha256 of the file as served.
    #[arg(long, conflicts_with = "sha512", required_unless_present = "sha512")]
    sha256: Option<String>,
    /// Expected sha512 of the file as served.
    #[arg(long)]
    sha512: Option<String>,
    /// Device or file to write.
    #[arg(long)]
    target: PathBuf,
    /// Grow the last partition to the end of the device.
    #[arg(long)]
    grow: bool,
    /// Do not ask before overwriting the target.
    #[arg(long, short)]
    yes: bool,
    /// After writing, read the image back and compare digests (`readback`).
    #[arg(long, value_parser = ["readback"])]
    verify: Option<String>,
    /// PEM CA bundle to trust for https document and image URLs (instead of the built-in roots).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
}

/// `allow_placeholders`: `plan` may show product.md-style `<…>` placeholders; `apply`/`run` refuse them.
pub(super) fn plan_options(allow_placeholders: bool) -> PlanOptions {
    let machine_id = ["/sys/class/dmi/id/product_uuid", "/etc/machine-id"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty() && s.chars().any(|c| c != '0' && c != '-'));
    PlanOptions {
        machine_id,
        allow_placeholders,
        insecure: false,
        arch: None,
    }
}

fn make_plan(
    doc: &imprint::config::Document,
    inventory: &[Disk],
    source: &str,
    dry_run: bool,
    insecure: bool,
    arch: Option<imprint::arch::Arch>,
) -> Result<Plan, Exit> {
    let opts = PlanOptions {
        insecure,
        arch,
        ..plan_options(dry_run)
    };
    planner::build(doc, inventory, &opts)
        .map_err(|e| Exit::new(exit::PLAN_FAILED, format!("{source}: {e}")))
}

pub fn plan(a: PlanArgs) -> Result<(), Exit> {
    let (text, source) = document::read(&a.document, a.ca.as_deref())?;
    let doc = document::parse(&text, &source)?;
    // Another host's inventory plans for its architecture (`cpu.architecture`).
    let (inventory, arch) = match &a.inventory {
        Some(p) => {
            let s = std::fs::read_to_string(p).map_err(|e| {
                Exit::new(exit::PLAN_FAILED, format!("reading {}: {e}", p.display()))
            })?;
            let disks = planner::load_inventory(&s)
                .map_err(|e| Exit::new(exit::PLAN_FAILED, format!("{}: {e}", p.display())))?;
            (disks, planner::inventory_arch(&s))
        }
        None => (document::inventory(&a.scope)?, None),
    };
    let plan = make_plan(&doc, &inventory, &source, true, false, arch)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).map_err(anyhow::Error::from)?
        );
    } else {
        print!("{}", plan.render_text());
    }
    Ok(())
}

/// Disks in the plan that are in use (mounted, held by md/dm/LVM, the boot medium): refused without --force.
fn in_use(plan: &Plan, inventory: &[Disk]) -> Vec<String> {
    plan.disks
        .iter()
        .filter_map(|d| inventory.iter().find(|i| i.path == d.path))
        .flat_map(safety::busy_reasons)
        .collect()
}

/// The console progress a command shows: none with `--quiet`.
fn progress_mode(default: ProgressMode) -> ProgressMode {
    if log::quiet() {
        ProgressMode::Quiet
    } else {
        default
    }
}

pub fn apply(a: ApplyArgs) -> Result<(), Exit> {
    let (text, source) = document::read(&a.document, a.ca.as_deref())?;
    let signature = match (&a.signature, a.document.as_str()) {
        (Some(f), _) => imprint::trust::document::SignatureSource::File(f),
        (None, "-") => imprint::trust::document::SignatureSource::Stdin,
        (None, d) => imprint::trust::document::SignatureSource::Beside(d),
    };
    let auth = authenticate::authenticate(
        &text,
        &source,
        &authenticate::Check {
            trust: &a.trust,
            medium: &[],
            signature: Some(signature),
            ca: a.ca.as_deref(),
            report: a.report,
        },
    )?;
    let (plan, inventory) = plan_or_report(
        &text,
        &source,
        &a.scope,
        a.ca.as_deref(),
        a.report,
        a.trust.insecure,
    )?;
    // The plan is what the operator agrees to; `--quiet --yes` asks nothing and shows nothing.
    if !(a.yes && log::quiet()) {
        eprint!("{}", plan.render_text());
    }
    safety::refuse_busy(&in_use(&plan, &inventory), a.force)?;
    if !a.yes {
        safety::confirm("All data on the disks listed above will be destroyed.")?;
    }
    let progress = progress_mode(ProgressMode::detect());
    let outcome = provision(
        &plan,
        &inventory,
        a.ca.as_deref(),
        a.keep_on_failure,
        progress,
        a.report,
        auth,
    )?;
    match outcome.result {
        RunResult::Success => Ok(()),
        RunResult::Failure => Err(Exit::new(exit::PROVISION_FAILED, failed_message(&outcome))),
    }
}

/// Runs the engine, sends the final report, prints the summary.
fn provision(
    plan: &Plan,
    inventory: &[Disk],
    ca: Option<&Path>,
    keep_on_failure: bool,
    progress: ProgressMode,
    report_timeout: ReportTimeout,
    auth: authenticate::Authenticated,
) -> Result<engine::Outcome, Exit> {
    let reporter = report_timeout
        .reporter(&plan.host.hostname, plan.report.as_ref(), ca)
        .map_err(|e| Exit::new(exit::INTERNAL, e.to_string()))?;
    let ctx = Context {
        reporter: &reporter,
        ca_bundle: ca,
        progress,
        keep_on_failure,
        trust: auth.root,
        document_signed: auth.signed,
    };
    let outcome = engine::execute(plan, &ctx);
    let body = engine::final_report(plan, &outcome, inventory);
    if let Err(e) = reporter.finish(body) {
        log::warn(&e.to_string());
    }
    match outcome.result {
        RunResult::Success => log::info(&format!(
            "provisioning succeeded in {:.1} s",
            outcome.duration_ms as f64 / 1000.0
        )),
        RunResult::Failure => {
            log::info(&format!(
                "provisioning FAILED at step {}: {}",
                outcome.failed_step.as_deref().unwrap_or("?"),
                outcome.error.as_deref().unwrap_or("?")
            ));
            for u in &outcome.undone {
                log::info(&format!("undone: {u}"));
            }
            for r in &outcome.remaining {
                log::info(&format!("LEFT BEHIND: {r}"));
            }
        }
    }
    Ok(outcome)
}

/// The console's last line of a failed run: what state the disks are in, truthfully.
fn failed_message(outcome: &engine::Outcome) -> String {
    let after = outcome.disks_after.describe();
    if outcome.remaining.is_empty() {
        format!("provisioning failed; {after} (see the lines above and the final report)")
    } else {
        format!(
            "provisioning failed; {after}: left behind: {} (see the lines above and the final report)",
            outcome.remaining.join("; ")
        )
    }
}

/// `imprint run` by hand: the ramdisk's flow with the command line's overrides. Each
/// failure keeps its own exit code (no document 8, invalid 3, unplannable 4, boot
/// medium 7, a failed step or finish action 5).
pub fn run(a: RunArgs) -> Result<(), Exit> {
    let c = run_cmdline(&a);
    let do_finish = !a.no_finish;
    // run_ramdisk hands back a message; the code travels beside it.
    let code = std::cell::Cell::new(exit::PROVISION_FAILED);
    let apply = |text: &str, source: &str| {
        apply_document(text, source, &c, &a.trust, do_finish).map_err(|e| {
            code.set(e.code);
            e.message
        })
    };
    imprint::boot::run_ramdisk(&c, &apply).map_err(|e| match e {
        imprint::boot::BootError::Apply(msg) => Exit::new(code.get(), msg),
        imprint::boot::BootError::Discover(_) => Exit::new(exit::NO_DOCUMENT, e.to_string()),
        imprint::boot::BootError::Retired(msg) => super::lookup::retired(&msg, do_finish),
        other => Exit::new(exit::INTERNAL, other.to_string()),
    })
}

/// The kernel command line with `run`'s options laid over it.
fn run_cmdline(a: &RunArgs) -> imprint::boot::Cmdline {
    let mut c = imprint::boot::Cmdline::read().unwrap_or_default();
    // Booted from the ISO, its area may hold trust keys (PID 1 reads them in early boot).
    if c.iso {
        if let Some((dev, e)) = imprint::iso::find_boot_medium() {
            c.medium_keys = imprint::iso::medium_keys(&dev, &e);
        }
    }
    a.lookup.apply_to(&mut c);
    if a.config.is_some() {
        c.config = a.config.clone();
    }
    if let Some(ca) = &a.ca {
        c.ca = Some(ca.display().to_string());
    }
    if !a.scope.only.is_empty() {
        c.disks = Some(
            a.scope
                .only
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if let Some(secs) = a.report.secs {
        c.args
            .push(("imprint.report_timeout".into(), Some(secs.to_string())));
    }
    c
}

/// `run`'s engine, as PID 1 calls it: parse, plan, provision, report, finish.
pub fn ramdisk_apply(text: &str, source: &str, c: &imprint::boot::Cmdline) -> Result<(), String> {
    apply_document(text, source, c, &TrustArgs::default(), true).map_err(|e| e.message)
}

/// Where `run` finds the signature of the document [`imprint::boot::run_ramdisk`] found:
/// beside `imprint.config=`; none is needed for a document in the boot medium's own
/// area (the medium that carries the trust root); a labelled filesystem has none.
fn run_signature<'a>(
    c: &'a imprint::boot::Cmdline,
    source: &'a str,
) -> Option<imprint::trust::document::SignatureSource<'a>> {
    use imprint::trust::document::SignatureSource;
    match &c.config {
        Some(url) => Some(SignatureSource::Beside(url)),
        None if c.lookup.is_some() => Some(super::lookup::signature(source)),
        None if source.starts_with(imprint::boot::discover::MEDIUM_SOURCE) => None,
        None => Some(SignatureSource::Nowhere(
            "a document on a filesystem labelled IMPRINT is not signature-checked; \
             serve it by imprint.config= beside its .minisig or .sig, or embed it with \
             `imprint iso customize --config`",
        )),
    }
}

fn apply_document(
    text: &str,
    source: &str,
    c: &imprint::boot::Cmdline,
    trust: &TrustArgs,
    do_finish: bool,
) -> Result<(), Exit> {
    let ca = c.ca.as_deref().map(Path::new);
    let timeout = ReportTimeout::from_cmdline(c).map_err(|e| Exit::new(exit::USAGE, e))?;
    let auth = authenticate::authenticate(
        text,
        source,
        &authenticate::Check {
            trust,
            medium: &c.medium_keys,
            signature: run_signature(c, source),
            ca,
            report: timeout,
        },
    )?;
    let scope = DiskScope {
        only: c
            .disks
            .as_deref()
            .map(|d| d.split(',').map(PathBuf::from).collect())
            .unwrap_or_default(),
    };
    let (plan, inventory) = plan_or_report(text, source, &scope, ca, timeout, trust.insecure)?;
    // Unattended: the boot medium named by imprint.disks= is refused (discovery already
    // skips it). Holders are left to the engine: a rerun must clean up what a cut run left.
    if let Some(d) = plan.disks.iter().find(|d| {
        inventory
            .iter()
            .any(|i| i.path == d.path && document::is_boot_medium(i))
    }) {
        return Err(Exit::new(
            exit::REFUSED,
            format!(
                "refusing to touch {}: it is the imprint boot medium",
                d.path.display()
            ),
        ));
    }
    log::info(&format!(
        "document {source}: host {}, {} steps",
        plan.host.hostname,
        plan.steps.len()
    ));
    // A serial console is a terminal too, but bars would garble its log: plain lines.
    let result = provision(
        &plan,
        &inventory,
        ca,
        false,
        progress_mode(ProgressMode::Lines),
        timeout,
        auth,
    )?;
    if result.result == RunResult::Failure {
        return Err(Exit::new(exit::PROVISION_FAILED, failed_message(&result)));
    }
    if do_finish {
        // reboot, poweroff and a successful kexec do not return.
        imprint::finish::finish(plan.finish, Some(&plan)).map_err(|e| {
            Exit::new(
                exit::PROVISION_FAILED,
                format!("finish action {:?} failed: {e}", plan.finish),
            )
        })?;
    }
    Ok(())
}

/// Parses and plans; a failure is also reported when the document names a report URL.
fn plan_or_report(
    text: &str,
    source: &str,
    scope: &DiskScope,
    ca: Option<&Path>,
    t: ReportTimeout,
    insecure: bool,
) -> Result<(Plan, Vec<Disk>), Exit> {
    let doc = document::parse(text, source)
        .inspect_err(|e| report_early_failure(text, "validate", &e.message, ca, t, true))?;
    authenticate::check_expiry(&doc, text, source, ca, t)?;
    let inventory = document::inventory(scope)
        .inspect_err(|e| report_early_failure(text, "inventory", &e.message, ca, t, true))?;
    let plan = make_plan(&doc, &inventory, source, false, insecure, None)
        .inspect_err(|e| report_early_failure(text, "plan", &e.message, ca, t, true))?;
    for step in &plan.steps {
        if let imprint::plan::Step::WriteImage(i) = step {
            if i.pin == imprint::plan::ImagePin::Insecure {
                log::warn(&format!(
                    "INSECURE: {} is a tag that neither a digest nor a signature pins; --insecure takes whatever manifest it names now (the report records it)",
                    i.urls[0]
                ));
            }
        }
    }
    Ok((plan, inventory))
}

/// A failure before a plan exists still gets a failure report when the document
/// names a report URL, read leniently from the raw text. Without `host_from_document`
/// (a document not accepted as authentic) nothing else of the document is used: the
/// report carries this machine's host name.
pub(super) fn report_early_failure(
    text: &str,
    step: &str,
    error: &str,
    ca: Option<&Path>,
    t: ReportTimeout,
    host_from_document: bool,
) {
    let Ok(v) = serde_norway::from_str::<serde_norway::Value>(text) else {
        return;
    };
    let Some(url) = v
        .get("report")
        .and_then(|r| r.get("url"))
        .and_then(|u| u.as_str())
    else {
        return;
    };
    let token = v
        .get("report")
        .and_then(|r| r.get("token"))
        .and_then(|t| t.as_str())
        .map(imprint::secret::Secret::new);
    let own_host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = v
        .get("host")
        .and_then(|h| h.get("hostname"))
        .and_then(|h| h.as_str())
        .filter(|_| host_from_document)
        .unwrap_or_else(|| match own_host.trim() {
            "" => "unknown",
            h => h,
        });
    let rp = imprint::plan::ReportPlan {
        url: url.to_string(),
        token,
        heartbeat_secs: 10,
        built: None,
        failed: None,
    };
    let Ok(r) = t.reporter(host, Some(&rp), ca) else {
        return;
    };
    r.step(StepEvent::failed(step, None, error));
    if let Err(e) = r.finish(FinalReport::early_failure(step, error, true)) {
        log::warn(&e.to_string());
    }
}

pub fn write_image(a: WriteImageArgs) -> Result<(), Exit> {
    use imprint::plan::{Digest, DigestAlgorithm, ImageFormat, ImagePlan};
    let digest = match (&a.sha256, &a.sha512) {
        (Some(h), _) => Digest {
            algorithm: DigestAlgorithm::Sha256,
            hex: h.to_lowercase(),
        },
        (None, Some(h)) => Digest {
            algorithm: DigestAlgorithm::Sha512,
            hex: h.to_lowercase(),
        },
        (None, None) => return Err(Exit::new(exit::USAGE, "give --sha256 or --sha512")),
    };
    let mut urls = vec![a.url.clone()];
    urls.extend(a.mirrors.iter().cloned());
    let img = ImagePlan {
        urls,
        digest: Some(digest),
        signature: None,
        registry_signature: None,
        pin: imprint::plan::ImagePin::Digest,
        format: ImageFormat::Disk,
        target_disk: a.target.display().to_string(),
        target_path: a.target.clone(),
        grow: a.grow,
        verify: a
            .verify
            .as_ref()
            .map(|_| imprint::plan::VerifyMode::Readback),
        auth: None,
        stores: a.stores.clone(),
    };
    if !a.yes {
        safety::confirm(&format!(
            "{} will be overwritten with {}.",
            a.target.display(),
            a.url
        ))?;
    }
    let plan = Plan {
        host: imprint::plan::HostPlan {
            hostname: "localhost".into(),
            instance_id: String::new(),
        },
        disks: Vec::new(),
        checks: Vec::new(),
        steps: vec![imprint::plan::Step::WriteImage(img)],
        report: None,
        finish: Finish::None,
        kernel_args: Vec::new(),
    };
    let progress = progress_mode(ProgressMode::detect());
    let outcome = provision(
        &plan,
        &[],
        a.ca.as_deref(),
        false,
        progress,
        ReportTimeout::default(),
        authenticate::Authenticated::default(),
    )?;
    if a.json {
        let text = serde_json::to_string_pretty(&outcome)
            .map_err(|e| Exit::new(exit::INTERNAL, e.to_string()))?;
        println!("{text}");
    }
    match outcome.result {
        RunResult::Success => Ok(()),
        RunResult::Failure => Err(Exit::new(exit::PROVISION_FAILED, "")),
    }
}
