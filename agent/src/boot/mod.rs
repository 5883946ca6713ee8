//! The ramdisk's early boot: the agent runs as PID 1 (`/init`), sets up the system,
//! finds its document and hands it to the engine — and never exits, since PID 1
//! exiting panics the kernel.
//!
//! Order: [`init`] (mounts, environment, clock) → [`modules`] (by modalias) → the boot
//! medium's customization area ([`crate::iso`], whose kernel arguments are merged into
//! the [`Cmdline`]) → [`net`] → [`discover`] (or [`lookup`]) → the engine
//! ([`run_ramdisk`]'s `apply`).

pub mod cmdline;
pub mod discover;
pub mod init;
pub mod ip_arg;
pub mod lookup;
pub mod modules;
pub mod net;
pub mod net6;
pub mod resolv;

pub use cmdline::Cmdline;
use cmdline::FailureAction;

use crate::runner::log;
use std::sync::OnceLock;
use std::time::Duration;

/// The first line the agent prints on the console; tests wait for it.
pub const BANNER: &str = concat!(
    "imprint ",
    env!("CARGO_PKG_VERSION"),
    ": provisioning agent starting"
);

/// Why the ramdisk run failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Cmdline(#[from] cmdline::CmdlineError),
    #[error("early boot: {0}")]
    Init(#[from] init::InitError),
    #[error(transparent)]
    Discover(#[from] discover::DiscoverError),
    #[error("{0}")]
    Apply(String),
    /// The lookup server answered 410: the machine is to power off.
    #[error("{0}")]
    Retired(String),
}

/// True when this process is the ramdisk's init.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// The command line in effect, for the panic hook and the end of the run.
static CMDLINE: OnceLock<Cmdline> = OnceLock::new();

/// Early setup as PID 1; returns the command line merged with the boot medium's arguments.
pub fn early_setup() -> Result<Cmdline, BootError> {
    init::set_environment();
    init::mount_api_filesystems()?;
    let mut c = Cmdline::read()?;
    log::set_verbose(c.debug);
    init::set_console_verbosity(c.debug);
    log::info(BANNER);
    let loaded = modules::load_for_hardware(4);
    log::debug(&format!("{} modules requested", loaded.len()));
    init::mount_efivarfs();
    match init::set_clock_from_rtc() {
        Ok(_) => {}
        Err(e) => log::debug(&format!("reading the hardware clock: {e}")),
    }
    // The boot medium may carry kernel arguments that change the network setup.
    if c.config.is_none() || c.iso {
        let wait = if c.iso {
            discover::MEDIUM_WAIT
        } else {
            Duration::ZERO
        };
        if let Some((dev, e)) = discover::wait_for_boot_medium(wait) {
            log::info(&format!(
                "boot medium {}: {} embedded kernel argument(s), {} trust key(s), {}",
                dev.display(),
                e.kargs.len(),
                e.trust.len(),
                if e.config.is_some() {
                    "a document"
                } else {
                    "no document"
                }
            ));
            c = c.merge(&e.kargs)?;
            c.medium_keys = crate::iso::medium_keys(&dev, &e);
            log::set_verbose(c.debug);
            if let Some(doc) = e.config {
                c.embedded = Some((
                    format!("{} {}", discover::MEDIUM_SOURCE, dev.display()),
                    doc,
                ));
            }
        }
    }
    if let Err(e) = net::bring_up(&c) {
        // Not fatal here: an embedded document may need no network. Fetches say why they fail.
        log::warn(&format!("network: {e}"));
    }
    Ok(c)
}

/// PID 1's whole life: early setup, `run`, then the end (see [`fail`] and [`finished`]).
pub fn pid1_main<F>(run: F) -> !
where
    F: FnOnce(&Cmdline) -> Result<(), BootError>,
{
    std::panic::set_hook(Box::new(|info| {
        eprintln!("imprint: internal error: {info}");
        fail(&current_cmdline(), "the agent crashed (see the line above)");
    }));
    let c = match early_setup() {
        Ok(c) => c,
        Err(e) => fail(&current_cmdline(), &e.to_string()),
    };
    let _ = CMDLINE.set(c.clone());
    match run(&c) {
        Ok(()) => finished(&c),
        Err(BootError::Retired(msg)) => retired(&msg),
        Err(e) => fail(&c, &e.to_string()),
    }
}

/// The end of a run whose lookup server retired the machine: power off through the
/// finish path, whatever `imprint.on_failure=` says (a retired machine stays off).
pub fn retired(msg: &str) -> ! {
    log::info(&format!("{msg}; powering off"));
    if let Err(e) = crate::finish::finish(crate::plan::Finish::Poweroff, None) {
        eprintln!("imprint: {e}");
    }
    power(FailureAction::PowerOff)
}

fn current_cmdline() -> Cmdline {
    CMDLINE
        .get()
        .cloned()
        .or_else(|| Cmdline::read().ok())
        .unwrap_or_default()
}

/// `imprint run`: finds the document and hands it to `apply(text, source)`. Reports a
/// failure to `imprint.report=` when no document could be found.
pub fn run_ramdisk(
    cmdline: &Cmdline,
    apply: &dyn Fn(&str, &str) -> Result<(), String>,
) -> Result<(), BootError> {
    log::info("looking for the provisioning document");
    let (source, text) = match discover::find_document(cmdline) {
        Ok(found) => found,
        Err(discover::DiscoverError::Lookup(e @ lookup::LookupError::Retired { .. })) => {
            return Err(BootError::Retired(e.to_string()))
        }
        Err(e) => {
            if let Some(url) = &cmdline.report {
                early_report(url, &e.to_string());
            }
            return Err(e.into());
        }
    };
    log::info(&format!(
        "found the provisioning document ({} bytes): {source}",
        text.len()
    ));
    // ENGINE CALL SITE: `apply` parses and plans the document, runs the engine, sends the
    // final report and performs the finish action (main.rs passes the engine in).
    apply(&text, &source).map_err(BootError::Apply)
}

/// Posts a final failure report (no document, so no token and no host name yet),
/// through the same reporter and retry policy as every other report.
fn early_report(url: &str, error: &str) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let plan = crate::plan::ReportPlan {
        url: url.to_string(),
        token: None,
        heartbeat_secs: 10,
        built: None,
        failed: None,
    };
    let Ok(r) = crate::report::Reporter::new(host.trim(), Some(&plan), None) else {
        return;
    };
    match r.finish(crate::report::FinalReport::early_failure(
        "discover", error, false,
    )) {
        Ok(()) => log::info(&format!("failure reported to {url}")),
        Err(e) => log::warn(&e.to_string()),
    }
}

/// The end of a failed run: the error stays on the console; with `imprint.debug=1` a
/// shell is kept there, otherwise the machine powers off or reboots after the delay.
pub fn fail(c: &Cmdline, msg: &str) -> ! {
    eprintln!("\nimprint: FAILED: {msg}\n");
    if c.debug {
        shell_forever("imprint.debug=1: a shell is open on the console; `imprint run` tries again");
    }
    let what = match c.on_failure {
        FailureAction::Halt => idle_forever("halted (imprint.on_failure=halt); the error is above"),
        FailureAction::PowerOff => "powering off",
        FailureAction::Reboot => "rebooting",
    };
    eprintln!(
        "imprint: {what} in {} s (imprint.on_failure=, imprint.failure_delay=; imprint.debug=1 keeps a shell)",
        c.failure_delay.as_secs()
    );
    std::thread::sleep(c.failure_delay);
    power(c.on_failure)
}

/// The end of a successful run whose finish action left the machine running.
pub fn finished(c: &Cmdline) -> ! {
    log::info("finished");
    if c.debug {
        shell_forever("imprint.debug=1: a shell is open on the console");
    }
    idle_forever("nothing more to do; the machine can be switched off")
}

fn power(action: FailureAction) -> ! {
    use nix::sys::reboot::{reboot, RebootMode};
    nix::unistd::sync();
    let mode = if action == FailureAction::Reboot {
        RebootMode::RB_AUTOBOOT
    } else {
        RebootMode::RB_POWER_OFF
    };
    let Err(e) = reboot(mode);
    eprintln!("imprint: {mode:?} failed: {e}");
    idle_forever("halted")
}

fn idle_forever(msg: &str) -> ! {
    eprintln!("imprint: {msg}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn shell_forever(msg: &str) -> ! {
    loop {
        eprintln!("imprint: {msg}");
        // cttyhack opens the console's real tty so the shell gets job control.
        match std::process::Command::new("/bin/setsid")
            .args(["/bin/cttyhack", "/bin/sh"])
            .status()
        {
            Ok(_) => {}
            Err(e) => eprintln!("imprint: starting /bin/sh: {e}"),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_timestamps_agree_with_date() {
        let out = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%M"])
            .output()
            .unwrap();
        let want = String::from_utf8(out.stdout).unwrap();
        let now = crate::report::timestamp(std::time::SystemTime::now());
        assert!(now.starts_with(want.trim()), "{now} vs {want}");
    }

    #[test]
    fn a_missing_document_is_reported_to_imprint_report() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&req).contains("\"steps\"") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .unwrap();
            String::from_utf8(req).unwrap()
        });
        let c = Cmdline::parse(&format!(
            "imprint.config=file:/nonexistent/x.yaml imprint.report=http://{addr}/r"
        ))
        .unwrap();
        let err = run_ramdisk(&c, &|_, _| Ok(())).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/x.yaml"), "{err}");
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /r "), "{req}");
        assert!(
            req.contains("\"result\":\"failure\"") && req.contains("\"kind\":\"final\""),
            "{req}"
        );
    }
}
