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

impl Loop {
    /// A 32 MiB loop device whose kernel still lists partition 1 from 1 MiB to 61 MiB:
    /// it was added (BLKPG) on 64 MiB, then the backing file shrank and the loop device
    /// was resized, as a stale partition outlives a replaced or shrunk LUN.
    pub fn with_stale_partition() -> Loop {
        let lo = Loop::new(64 << 20, 512);
        let f = std::fs::File::open(&lo.dev).unwrap();
        super::add_partition(&f, 1, 1 << 20, 60 << 20).unwrap();
        drop(f);
        let name = lo.dev.file_name().unwrap().to_string_lossy().into_owned();
        let backing =
            std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(backing.trim())
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let (ok, out) = tool("losetup", &["-c", lo.dev.to_str().unwrap()]);
        assert!(ok, "losetup -c: {out}");
        assert_eq!(
            super::kernel_partitions(&lo.dev).unwrap().len(),
            1,
            "the stale partition is still listed"
        );
        lo
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
