//! The one way external tools (mkfs, mdadm, lvm …) are run: argv, never a shell;
//! the exact command line logged; stderr captured into the error; a timeout.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An external command that failed, with what it said.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start `{cmd}`: {source} (is it installed in this system's PATH?)")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("`{cmd}` did not finish within {secs} s and was killed")]
    Timeout { cmd: String, secs: u64 },
}

/// Output of a command that succeeded.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args…` with a timeout; returns its output or a [`RunError`].
pub fn run<I, S>(program: &str, args: I, timeout: Duration) -> Result<Output, RunError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let cmd = std::iter::once(program.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    log::debug(&format!("running: {cmd}"));
    // Its own process group: a timeout kills the command with every child it started
    // (a chroot's shell and its background jobs), not the first process alone.
    let mut child = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| RunError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    // Drain both pipes on threads so a chatty tool cannot block on a full pipe.
    let out = drain(child.stdout.take().expect("piped"));
    let err = drain(child.stderr.take().expect("piped"));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|source| RunError::Spawn {
            cmd: cmd.clone(),
            source,
        })? {
            break st;
        }
        if start.elapsed() > timeout {
            kill_group(&child);
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::Timeout {
                cmd,
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // What the command left running in its group would outlive it unseen.
    kill_group(&child);
    let grace = Instant::now() + Duration::from_secs(2);
    let stdout = collect(out, grace);
    let stderr = collect(err, grace);
    if status.success() {
        Ok(Output { stdout, stderr })
    } else {
        Err(RunError::Failed {
            cmd,
            status: status.to_string(),
            stderr: stderr.trim().to_string(),
        })
    }
}

/// Reads `pipe` to its end on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// What a drained pipe held. A process that left the command's group (a daemon) may
/// hold the pipe open for ever: its output is not waited for after `until`.
fn collect(rx: mpsc::Receiver<String>, until: Instant) -> String {
    rx.recv_timeout(until.saturating_duration_since(Instant::now()))
        .unwrap_or_else(|_| {
            "(output incomplete: a process the command started still holds it open)".into()
        })
}

/// Kills every process left in the child's process group.
fn kill_group(child: &std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // ESRCH: nothing is left in the group.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Minimal logging to stderr, so the ramdisk console and a rescue shell see the same lines.
pub mod log {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::RwLock;

    static VERBOSE: AtomicBool = AtomicBool::new(false);
    static QUIET: AtomicBool = AtomicBool::new(false);

    /// Where console lines go instead of straight to stderr (a progress bar that must
    /// be cleared before a line is printed and redrawn after it).
    pub type Console = Box<dyn Fn(&str) + Send + Sync>;
    static CONSOLE: RwLock<Option<Console>> = RwLock::new(None);

    /// Turns debug lines on or off.
    pub fn set_verbose(v: bool) {
        VERBOSE.store(v, Ordering::Relaxed);
    }
    /// Turns operator lines off (`--quiet`); warnings and errors still show.
    pub fn set_quiet(q: bool) {
        QUIET.store(q, Ordering::Relaxed);
    }
    /// Whether `--quiet` is in effect.
    pub fn quiet() -> bool {
        QUIET.load(Ordering::Relaxed)
    }
    /// Routes every console line through `console` until it is set back to `None`.
    pub fn set_console(console: Option<Console>) {
        *CONSOLE.write().unwrap_or_else(|e| e.into_inner()) = console;
    }
    fn emit(line: &str) {
        match &*CONSOLE.read().unwrap_or_else(|e| e.into_inner()) {
            Some(console) => console(line),
            None => eprintln!("{line}"),
        }
    }
    /// A line for operators.
    pub fn info(msg: &str) {
        if !quiet() {
            emit(&format!("imprint: {msg}"));
        }
    }
    /// A warning that does not stop the run.
    pub fn warn(msg: &str) {
        emit(&format!("imprint: warning: {msg}"));
    }
    /// Details shown with `--verbose`.
    pub fn debug(msg: &str) {
        if VERBOSE.load(Ordering::Relaxed) {
            emit(&format!("imprint: debug: {msg}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stderr_of_a_failing_command() {
        let e = run(
            "sh",
            ["-c", "echo boom >&2; exit 3"],
            Duration::from_secs(5),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("boom") && msg.contains("exit status: 3"),
            "{msg}"
        );
    }

    #[test]
    fn kills_a_command_that_overruns() {
        let e = run("sleep", ["5"], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, RunError::Timeout { .. }), "{e}");
    }

    #[test]
    fn a_timeout_kills_the_children_the_command_started_too() {
        let marker = format!("{}", 7000 + std::process::id() % 1000);
        let e = run(
            "sh",
            ["-c", &format!("sleep {marker} & sleep {marker}")],
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(e, RunError::Timeout { .. }), "{e}");
        std::thread::sleep(Duration::from_millis(200));
        let left = std::process::Command::new("pgrep")
            .args(["-f", &format!("^sleep {marker}$")])
            .output()
            .unwrap();
        assert!(
            left.stdout.is_empty(),
            "the background child survived: {}",
            String::from_utf8_lossy(&left.stdout)
        );
    }

    #[test]
    fn a_daemon_holding_the_output_open_does_not_hang_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("daemon.pid");
        let p = pidfile.display();
        // The daemon writes its pid only once it has left the command's session (setsid
        // runs first), so the command cannot end while the daemon is still in its group.
        let script = format!(
            "setsid sh -c 'echo $$ > {p}; exec sleep 5' & \
             for i in $(seq 100); do [ -s {p} ] && break; sleep 0.05; done; echo started"
        );
        let t0 = Instant::now();
        let out = run("sh", ["-c", &script], Duration::from_secs(10)).unwrap();
        let took = t0.elapsed();
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
        assert!(took < Duration::from_secs(4), "{took:?}");
        assert!(out.stdout.contains("output incomplete"), "{}", out.stdout);
    }

    #[test]
    fn missing_program_is_named() {
        let e = run("no-such-tool-xyz", ["a"], Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("no-such-tool-xyz"));
    }
}
