//! One timed run of one contender onto a fresh loop device.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A loop device over a fresh sparse file; detached and removed on drop.
pub struct Loop {
    pub dev: PathBuf,
    backing: PathBuf,
}

impl Loop {
    /// A new loop device of `size` bytes backed by a sparse file in `dir`.
    pub fn new(dir: &Path, size: u64) -> Loop {
        std::fs::create_dir_all(dir).expect("creating the bench run directory");
        let backing = dir.join(format!("disk-{}.img", std::process::id()));
        let f = std::fs::File::create(&backing).expect("creating the loop backing file");
        f.set_len(size).expect("sizing the loop backing file");
        drop(f);
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&backing)
            .output()
            .expect("running losetup (the bench needs root)");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Loop { dev, backing }
    }

    /// `write_zeroes_max_bytes` of the device's queue (0: no write-zeroes offload).
    pub fn write_zeroes_max(&self) -> u64 {
        let name = self.dev.file_name().and_then(|n| n.to_str()).unwrap_or("");
        std::fs::read_to_string(format!("/sys/block/{name}/queue/write_zeroes_max_bytes"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        let _ = std::fs::remove_file(&self.backing);
    }
}

/// The measured result of one run.
#[derive(Debug, Clone)]
pub struct Sample {
    pub secs: f64,
    /// Peak RSS of the process (for a shell pipeline: of its largest member), KiB.
    pub max_rss_kib: u64,
    /// CPU time in user and kernel mode (for a shell pipeline: of all its members), s.
    pub user_secs: f64,
    pub sys_secs: f64,
    pub ok: bool,
    pub stderr: String,
}

impl Sample {
    /// User plus kernel CPU time, s.
    pub fn cpu_secs(&self) -> f64 {
        self.user_secs + self.sys_secs
    }
}

/// Runs `cmd`, timing it and reading the peak RSS and CPU time from `wait4`'s
/// rusage, which covers the child and the descendants it waited for. (Linux
/// carries the parent's RSS at fork into the child's `ru_maxrss`: the bench keeps
/// its own memory small so the figure is the child's.)
pub fn timed(mut cmd: Command) -> Sample {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = cmd.spawn().expect("spawning a bench contender");
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our unreaped child; status and usage are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    let ok = r == pid && std::process::ExitStatus::from_raw(status).success();
    // The child is reaped: std must not wait for it again.
    std::mem::forget(child);
    Sample {
        secs,
        max_rss_kib: usage.ru_maxrss as u64,
        user_secs: secs_of(usage.ru_utime),
        sys_secs: secs_of(usage.ru_stime),
        ok,
        stderr: reader.join().unwrap_or_default(),
    }
}

fn secs_of(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// `bash -c` with pipefail, for the shell-pipeline baseline.
pub fn shell(script: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-o", "pipefail", "-c", script]);
    c
}

/// Whether the device's first `len` bytes equal the file's (`cmp`).
pub fn same_content(dev: &Path, raw: &Path, len: u64) -> bool {
    Command::new("cmp")
        .args(["-s", "-n", &len.to_string()])
        .arg(dev)
        .arg(raw)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
