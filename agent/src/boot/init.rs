//! What PID 1 sets up before anything else: the API filesystems, the environment,
//! the kernel's console verbosity and the clock.

use crate::runner::log;
use nix::mount::{mount, MsFlags};
use std::path::Path;

/// Why early setup failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("mounting {fstype} on {target}: {source}")]
    Mount {
        fstype: &'static str,
        target: &'static str,
        source: nix::Error,
    },
}

/// Mounts proc, sysfs, devtmpfs (+ devpts), and tmpfs on /run and /tmp. Already-mounted
/// targets are left alone, so this is safe to call twice.
pub fn mount_api_filesystems() -> Result<(), InitError> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let table: [(
        &'static str,
        &'static str,
        MsFlags,
        Option<&'static str>,
        bool,
    ); 6] = [
        ("proc", "/proc", nodev, None, true),
        ("sysfs", "/sys", nodev, None, true),
        (
            "devtmpfs",
            "/dev",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
            true,
        ),
        (
            "devpts",
            "/dev/pts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("gid=5,mode=620,ptmxmode=000"),
            false,
        ),
        (
            "tmpfs",
            "/run",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
            true,
        ),
        (
            "tmpfs",
            "/tmp",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
            false,
        ),
    ];
    for (fstype, target, flags, data, required) in table {
        if !Path::new(target).exists() {
            let _ = std::fs::create_dir_all(target);
        }
        if is_mounted(target) {
            continue;
        }
        match mount(Some(fstype), target, Some(fstype), flags, data) {
            Ok(()) => {}
            Err(source) if required => {
                return Err(InitError::Mount {
                    fstype,
                    target,
                    source,
                })
            }
            Err(e) => log::debug(&format!("mounting {fstype} on {target}: {e}")),
        }
    }
    Ok(())
}

/// Where the firmware's variables appear when the kernel was booted by UEFI.
const EFIVARS: &str = "/sys/firmware/efi/efivars";

/// Mounts efivarfs when the machine booted in UEFI mode, loading its module first
/// (Debian builds it as one): the boot-entries step writes `Boot####` and `BootOrder`
/// there and the inventory reads `SecureBoot`. Booted by BIOS: nothing to do. A
/// failure is logged; the step that needs the variables says what is missing.
pub fn mount_efivarfs() {
    if !Path::new(EFIVARS).is_dir() || is_mounted(EFIVARS) {
        return;
    }
    super::modules::load(&["efivarfs".to_string()]);
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mount(
        Some("efivarfs"),
        EFIVARS,
        Some("efivarfs"),
        flags,
        None::<&str>,
    ) {
        Ok(()) => log::debug(&format!("mounted efivarfs on {EFIVARS}")),
        Err(e) => log::warn(&format!(
            "mounting efivarfs on {EFIVARS}: {e}; UEFI boot entries cannot be written"
        )),
    }
}

fn is_mounted(target: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(target))
        })
        .unwrap_or(false)
}

/// The environment the kernel does not give PID 1 (it passes only HOME and TERM).
pub fn set_environment() {
    // Single-threaded at this point: nothing else reads the environment concurrently.
    std::env::set_var("PATH", "/sbin:/bin:/usr/sbin:/usr/bin");
    std::env::set_var("HOME", "/root");
    if std::env::var_os("TERM").is_none() {
        std::env::set_var("TERM", "linux");
    }
}

/// Keeps kernel chatter (module loading, link state) off the console unless debugging.
pub fn set_console_verbosity(debug: bool) {
    let level = if debug { "7 4 1 7" } else { "3 4 1 7" };
    if let Err(e) = std::fs::write("/proc/sys/kernel/printk", level) {
        log::debug(&format!("setting the console log level: {e}"));
    }
}

/// Sets the system clock from `/dev/rtc0` (TLS certificate checks need a sane date).
/// The kernel usually did this already (`CONFIG_RTC_HCTOSYS`); this covers modular RTCs.
pub fn set_clock_from_rtc() -> Result<i64, std::io::Error> {
    let t = rtc::read_time(Path::new("/dev/rtc0"))?;
    let secs = days_from_civil(
        i64::from(t.tm_year) + 1900,
        t.tm_mon as u32 + 1,
        t.tm_mday as u32,
    ) * 86400
        + i64::from(t.tm_hour) * 3600
        + i64::from(t.tm_min) * 60
        + i64::from(t.tm_sec);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Only move the clock when it is clearly off: the kernel's copy is finer-grained.
    if (now - secs).abs() > 2 {
        rtc::set_realtime(secs)?;
    }
    Ok(secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The RTC ioctl and the clock setter, behind safe functions.
mod rtc {
    use std::os::fd::AsRawFd;
    use std::path::Path;

    /// `struct rtc_time` from `<linux/rtc.h>`.
    #[repr(C)]
    #[derive(Default, Debug)]
    pub struct RtcTime {
        pub tm_sec: i32,
        pub tm_min: i32,
        pub tm_hour: i32,
        pub tm_mday: i32,
        pub tm_mon: i32,
        pub tm_year: i32,
        pub tm_wday: i32,
        pub tm_yday: i32,
        pub tm_isdst: i32,
    }

    nix::ioctl_read!(rtc_rd_time, b'p', 0x09, RtcTime);

    /// Reads the hardware clock (UTC, as Linux keeps it).
    pub fn read_time(dev: &Path) -> std::io::Result<RtcTime> {
        let f = std::fs::File::open(dev)?;
        let mut t = RtcTime::default();
        // SAFETY: the fd is open for the call's duration and `t` is a valid, writable
        // `struct rtc_time` of the size the ioctl number encodes.
        unsafe { rtc_rd_time(f.as_raw_fd(), &mut t) }.map_err(std::io::Error::from)?;
        Ok(t)
    }

    /// Sets CLOCK_REALTIME to `secs` since the epoch.
    pub fn set_realtime(secs: i64) -> std::io::Result<()> {
        let ts = libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec living across the call.
        let r = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_convert_to_unix_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(days_from_civil(2024, 2, 29), 19782);
        // Cross-check against the system's own conversion of today.
        let out = std::process::Command::new("date")
            .args(["-u", "+%Y %m %d %s"])
            .output()
            .unwrap();
        let s = String::from_utf8(out.stdout).unwrap();
        let f: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!(
            days_from_civil(f[0], f[1] as u32, f[2] as u32),
            f[3] / 86400
        );
    }
}
