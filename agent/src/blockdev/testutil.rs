//! Test fixtures shared by the block-device modules: sparse files on loop devices.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A loop device over a sparse temp file, detached (and the file removed) on drop.
pub struct Loop {
    pub dev: PathBuf,
    _dir: tempfile::TempDir,
}

impl Loop {
    /// A `size`-byte sparse file attached with `sector`-byte logical sectors.
    pub fn new(size: u64, sector: u64) -> Loop {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        Self::attach(dir, &img, sector)
    }

    /// Attaches an existing file inside `dir`.
    pub fn attach(dir: tempfile::TempDir, img: &Path, sector: u64) -> Loop {
        let out = crate::runner::run(
            "losetup",
            [
                "-f".as_ref(),
                "--show".as_ref(),
                "--sector-size".as_ref(),
                sector.to_string().as_ref(),
                img.as_os_str(),
            ],
            Duration::from_secs(30),
        )
        .unwrap();
        Loop {
            dev: PathBuf::from(out.stdout.trim()),
            _dir: dir,
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // Partitions added by BLKPG would keep the loop device busy.
        if let Ok(f) = std::fs::File::open(&self.dev) {
            for p in super::kernel_partitions(&self.dev).unwrap_or_default() {
                let _ = super::delete_partition(&f, p.number);
            }
        }
        let _ = crate::runner::run(
            "losetup",
            ["-d".as_ref(), self.dev.as_os_str()],
            Duration::from_secs(30),
        );
    }
}

/// Runs a checker tool and returns stdout+stderr, failing the test if it cannot start.
pub fn tool(prog: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(prog)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
