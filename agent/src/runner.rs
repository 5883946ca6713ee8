//! The one way external tools (mkfs, mdadm, lvm …) are run: argv, never a shell;
//! the exact command line logged; stderr captured into the error; a timeout.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, Stdio};
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
    let mut child = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    // Drain both pipes on threads so a chatty tool cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|source| RunError::Spawn {
            cmd: cmd.clone(),
            source,
        })? {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::Timeout {
                cmd,
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
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
    fn missing_program_is_named() {
        let e = run("no-such-tool-xyz", ["a"], Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("no-such-tool-xyz"));
    }
}
