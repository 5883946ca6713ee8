//! The seed customer's document (product.md's second document) for the QEMU storage
//! suites, with the variations they need: pins or a recovery passphrase, mirrored or
//! on one disk, with or without the root image. And the agent run that provisions it.

use crate::fixtures::{gpt_partitions, repo_root, sh, sh_any};
use crate::qemu::{Boot, Disk, Firmware, Vm};
use crate::server::Server;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The marker the user-data's `runcmd` prints, on the first boot only (cloud-init runs
/// `runcmd` once per instance).
pub const MARKER: &str = "imprint-42-ok";
/// The end of the layout the user-data's `bootcmd` prints on every boot.
pub const BOOTED: &str = "LAYOUT-END";

/// Serials of the two virtual disks the documents match.
pub const SERIAL_A: &str = "SN-A-0001";
pub const SERIAL_B: &str = "SN-B-0002";
pub const SERIAL_C: &str = "SN-C-0003";
pub const SERIAL_D: &str = "SN-D-0004";

/// The STIG-style logical volumes of the seed document: `(mount, size, options)`.
pub const VOLUMES: &[(&str, &str, &[&str])] = &[
    ("/", "4GiB", &[]),
    ("/home", "512MiB", &["nodev", "nosuid"]),
    ("/tmp", "512MiB", &["nodev", "nosuid", "noexec"]),
    ("/var", "2GiB", &["nodev"]),
    ("/var/log", "512MiB", &["nodev", "nosuid", "noexec"]),
    ("/var/log/audit", "512MiB", &["nodev", "nosuid", "noexec"]),
    ("/var/tmp", "512MiB", &["nodev", "nosuid", "noexec"]),
];

/// A tang server as the document names it.
pub struct Tang {
    pub url: String,
    pub thumbprint: String,
}

/// The seed document, built up from its parts.
pub struct SeedDoc {
    pub hostname: String,
    /// `http://10.0.2.2:PORT`: where the guest finds the test server.
    pub base: String,
    /// Both disks mirrored (`true`) or everything on disk `a`.
    pub mirror: bool,
    /// Four disks, root on RAID10 (`layout.raid`; takes precedence over `mirror`).
    pub raid10: bool,
    pub passphrase: Option<String>,
    pub tang: Vec<Tang>,
    pub tpm2: bool,
    pub threshold: Option<u32>,
    /// sha512 of `/images/debian-12-rootfs.tar.zst`; `None`: no image (storage only).
    pub rootfs_sha512: Option<String>,
    /// The root filesystem from a registry instead: an `oci://` reference pinned by its
    /// manifest digest (takes precedence over `rootfs_sha512`).
    pub rootfs_oci: Option<String>,
    pub report_token: String,
    /// How the agent boots for this document: extra kernel arguments…
    pub kargs: String,
    /// …and another initramfs than `out/initramfs.img` (e.g. with a site CA appended)…
    pub initrd: Option<std::path::PathBuf>,
    /// …and, under UEFI, OVMF's variables in this file rather than in memory.
    pub uefi_vars: Option<std::path::PathBuf>,
    /// `boot.kernel_args` of the deployed system.
    pub deployed_kargs: Vec<String>,
}

impl SeedDoc {
    pub fn new(base: &str, hostname: &str) -> SeedDoc {
        SeedDoc {
            hostname: hostname.into(),
            base: base.into(),
            mirror: true,
            raid10: false,
            passphrase: None,
            tang: Vec::new(),
            tpm2: false,
            threshold: None,
            rootfs_sha512: None,
            rootfs_oci: None,
            report_token: format!("{hostname}-token"),
            kargs: String::new(),
            initrd: None,
            uefi_vars: None,
            deployed_kargs: Vec::new(),
        }
    }

    /// Where the agent posts its reports for this host.
    pub fn report_path(&self) -> String {
        format!("/report/{}", self.hostname)
    }

    pub fn render(&self) -> String {
        let mut d = format!(
            "version: 1\nhost: {{ hostname: {} }}\ndisks:\n",
            self.hostname
        );
        d += &format!("  - {{ name: a, match: {{ serial: \"{SERIAL_A}\" }} }}\n");
        if self.mirror || self.raid10 {
            d += &format!("  - {{ name: b, match: {{ serial: \"{SERIAL_B}\" }} }}\n");
        }
        if self.raid10 {
            d += &format!("  - {{ name: c, match: {{ serial: \"{SERIAL_C}\" }} }}\n");
            d += &format!("  - {{ name: d, match: {{ serial: \"{SERIAL_D}\" }} }}\n");
        }
        d += "storage:\n  layout:\n";
        d += if self.raid10 {
            "    raid: { level: 10, disks: [a, b, c, d] }\n"
        } else if self.mirror {
            "    mirror: [a, b]\n"
        } else {
            "    disk: a\n"
        };
        d += "    luks:\n";
        if !self.tang.is_empty() {
            let pins: Vec<String> = self
                .tang
                .iter()
                .map(|t| format!("{{ url: \"{}\", thumbprint: \"{}\" }}", t.url, t.thumbprint))
                .collect();
            d += &format!("      tang: [{}]\n", pins.join(", "));
        }
        if self.tpm2 {
            d += "      tpm2: { pcrs: [] }\n";
        }
        if let Some(t) = self.threshold {
            d += &format!("      threshold: {t}\n");
        }
        if let Some(p) = &self.passphrase {
            d += &format!("      recovery_passphrase: \"{p}\"\n");
        }
        d += "    lvm:\n";
        for (mount, size, opts) in VOLUMES {
            let opts = if opts.is_empty() {
                String::new()
            } else {
                format!(", options: [{}]", opts.join(", "))
            };
            d += &format!("      - {{ mount: {mount}, size: {size}, type: xfs{opts} }}\n");
        }
        d += "      - { swap: true, size: 256MiB }\n";
        if let Some(reference) = &self.rootfs_oci {
            d += &format!("image:\n  url: \"{reference}\"\n  format: rootfs\n");
        } else if let Some(sha) = &self.rootfs_sha512 {
            d += &format!(
                "image:\n  url: {}/images/debian-12-rootfs.tar.zst\n  sha512: \"{sha}\"\n  format: rootfs\n",
                self.base
            );
        }
        if !self.deployed_kargs.is_empty() {
            d += &format!(
                "boot:\n  kernel_args: [{}]\n",
                self.deployed_kargs.join(", ")
            );
        }
        // bootcmd runs on every boot (the layout, printed to the console); runcmd once.
        // The ESP is `nofail`, so systemd may mount it after cloud-init starts: the
        // layout is printed once /boot/efi is mounted, or after 120 s without it (a
        // degraded boot), from the background so cloud-init does not wait. Under TCG on
        // a loaded host the guest can be starved past systemd's 90 s device timeout
        // before udev has even started ("Timed out waiting for device …" right after
        // "Started systemd-udevd"), and the nofail ESP is then skipped for the boot:
        // after 30 s the mount is asked for once more, as an operator would.
        d += r#"configdrive:
  format: nocloud
  user_data: |
    #cloud-config
    bootcmd:
      - [sh, -c, "( for i in $(seq 120); do findmnt /boot/efi >/dev/null && break; [ $i = 30 ] && systemctl start boot-efi.mount; sleep 1; done; { echo LAYOUT-BEGIN; findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS; cat /proc/mdstat; echo LAYOUT-END; } > /dev/console 2>&1 ) > /dev/null 2>&1 &"]
    runcmd: [[sh, -c, "echo imprint-$((6*7))-ok > /dev/console"]]
"#;
        d += &format!(
            "report: {{ url: \"{}{}\", token: \"{}\" }}\nfinish: reboot\n",
            self.base,
            self.report_path(),
            self.report_token
        );
        d
    }
}

/// One run of the agent: it boots (direct kernel boot) with `disks` (and a TPM when
/// `tpm` names its state directory), fetches `{base}{doc_path}` and powers off.
/// Returns the finished VM, the seconds to the agent's "provisioning …" line, the
/// final report and the console's tail.
pub fn run_agent(
    server: &Server,
    doc: &SeedDoc,
    doc_path: &str,
    disks: Vec<Disk>,
    firmware: Firmware,
    tpm: Option<&Path>,
) -> (Vm, f64, Value, String) {
    let out = repo_root().join("out");
    let mut b = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: doc
                .initrd
                .clone()
                .unwrap_or_else(|| out.join("initramfs.img")),
            append: format!(
                "console=ttyS0 imprint.config={}{doc_path} imprint.failure_delay=0 {}",
                doc.base, doc.kargs
            ),
        })
        .firmware(firmware)
        .memory_mib(1024);
    if let Some(v) = &doc.uefi_vars {
        b = b.uefi_vars(v);
    }
    if let Some(t) = tpm {
        b = b.tpm(t);
    }
    for d in disks {
        b = b.disk(d);
    }
    let mut vm = b.start().unwrap();
    let log = vm
        .wait_for_serial("imprint: provisioning ", Duration::from_secs(2400))
        .unwrap();
    let secs = vm.elapsed().as_secs_f64();
    vm.wait_exit(Duration::from_secs(120)).unwrap();
    let fin: Value = server
        .posts()
        .iter()
        .filter(|p| p.path == doc.report_path())
        .filter_map(|p| serde_json::from_slice::<Value>(&p.body).ok())
        .rfind(|v| v["kind"] == "final")
        .unwrap_or_else(|| {
            panic!(
                "no final report\n{}",
                &log[log.len().saturating_sub(6000)..]
            )
        });
    let tail = log[log.len().saturating_sub(6000)..].to_string();
    (vm, secs, fin, tail)
}

/// [`run_agent`], the final report asserted successful and free of secrets.
/// Returns the finished VM, the seconds to the agent's "provisioning …" line and the
/// final report.
pub fn provision(
    server: &Server,
    doc: &SeedDoc,
    doc_path: &str,
    disks: Vec<Disk>,
    firmware: Firmware,
    tpm: Option<&Path>,
) -> (Vm, f64, Value) {
    let (vm, secs, fin, log) = run_agent(server, doc, doc_path, disks, firmware, tpm);
    assert_eq!(
        fin["result"],
        "success",
        "{fin:#}\n{}",
        &log[log.len().saturating_sub(6000)..]
    );
    // No secret in any report body of this host.
    for p in server
        .posts()
        .iter()
        .filter(|p| p.path == doc.report_path())
    {
        let body = String::from_utf8_lossy(&p.body);
        if let Some(pw) = &doc.passphrase {
            assert!(
                !body.contains(pw.as_str()),
                "the recovery passphrase reached a report"
            );
        }
        assert!(
            !body.contains(&doc.report_token),
            "the report token reached a report body"
        );
    }
    eprintln!(
        "{}: provisioned in {secs:.0} s ({})",
        doc.hostname,
        slow_steps(&fin)
    );
    (vm, secs, fin)
}

/// The report's steps that took a second or more, `name secs` by descending time: where a
/// slow provisioning spent its time, in the log of every run.
pub fn slow_steps(fin: &Value) -> String {
    let mut steps: Vec<(String, u64)> = fin["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s["step"].as_str()?.to_string(), s["duration_ms"].as_u64()?)))
                .filter(|(_, ms)| *ms >= 1000)
                .collect()
        })
        .unwrap_or_default();
    steps.sort_by_key(|s| std::cmp::Reverse(s.1));
    steps
        .iter()
        .map(|(n, ms)| format!("{n} {:.0} s", *ms as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The step named `name` of a final report.
pub fn step<'a>(fin: &'a Value, name: &str) -> &'a Value {
    fin["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {fin:#}"))
}

/// A sparse disk file of `size` bytes in `dir`, for disks that outlive one VM.
pub fn disk_file(dir: &Path, name: &str, size: u64) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

/// Asserts what `findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS` printed on the deployed
/// system: every volume of [`VOLUMES`] on LVM with its type and options, `/boot` from a
/// device starting with `boot_from`, the ESP at `/boot/efi`.
pub fn assert_stig_layout(layout: &str, boot_from: &str) {
    let fields = |target: &str| -> Vec<String> {
        let l = layout
            .lines()
            .find(|l| l.split(' ').next() == Some(target))
            .unwrap_or_else(|| panic!("{target} is not mounted:\n{layout}"));
        l.split(' ').map(String::from).collect()
    };
    let check = |target: &str, fstype: &str, opts: &[&str]| -> String {
        let f = fields(target);
        assert_eq!(
            f.get(2).map(String::as_str),
            Some(fstype),
            "{target}: {f:?}"
        );
        let o: Vec<&str> = f
            .get(3)
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
            .collect();
        for x in opts {
            assert!(o.contains(x), "{target} lacks {x}: {f:?}");
        }
        f[1].clone()
    };
    for (mount, _, opts) in VOLUMES {
        let src = check(mount, "xfs", opts);
        assert!(src.starts_with("/dev/mapper/vg0-"), "{mount} from {src}");
    }
    assert_eq!(check("/", "xfs", &["rw"]), "/dev/mapper/vg0-root");
    let boot = check("/boot", "ext4", &[]);
    assert!(
        boot.starts_with(boot_from),
        "/boot from {boot}, expected {boot_from}…"
    );
    check("/boot/efi", "vfat", &[]);
}

/// A read-only loop device over a byte window of a file; detached on drop.
pub struct Window(pub String);

impl Window {
    pub fn new(file: &Path, offset: u64, len: u64) -> Window {
        let dev = sh(
            "losetup",
            &[
                "-f",
                "--show",
                "-r",
                "-o",
                &offset.to_string(),
                "--sizelimit",
                &len.to_string(),
                file.to_str().unwrap(),
            ],
        );
        Window(dev.trim().to_string())
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        let _ = sh_any("losetup", &["-d", &self.0]);
    }
}

/// Byte offset and length of partition `n` of a disk file.
pub fn partition(file: &Path, n: u32) -> (u64, u64) {
    let (_, off, len) = gpt_partitions(file.to_str().unwrap())
        .into_iter()
        .find(|(k, _, _)| *k == n)
        .unwrap_or_else(|| panic!("no partition {n} on {}", file.display()));
    (off, len)
}

/// `mdadm --examine` of partition `n`.
pub fn examine(file: &Path, n: u32) -> String {
    let (off, len) = partition(file, n);
    let w = Window::new(file, off, len);
    sh("mdadm", &["--examine", &w.0])
}

/// The data area of the md member in partition `n` (what the array holds: for the seed
/// layout's md-root, the LUKS2 device), as a read-only loop device.
pub fn md_member_data(file: &Path, n: u32) -> Window {
    let ex = examine(file, n);
    let data_offset: u64 = ex
        .lines()
        .find_map(|l| l.trim().strip_prefix("Data Offset : "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no data offset in\n{ex}"));
    let (off, len) = partition(file, n);
    Window::new(file, off + data_offset * 512, len - data_offset * 512)
}

/// Waits for the first boot's cloud-init marker. When it does not come, logs in and
/// panics with what the deployed system says about cloud-init (ds-identify's verdict,
/// the units, the labelled filesystems), so a failure names its cause.
pub fn wait_for_marker(vm: &mut Vm, timeout: Duration) {
    let Err(e) = vm.wait_for_serial(MARKER, timeout) else {
        return;
    };
    let diagnosis = vm
        .login("root", "imprint", Duration::from_secs(300))
        .and_then(|()| {
            vm.run(
                "ls -la /run/cloud-init/ /run/systemd/generator.early/multi-user.target.wants/ 2>&1; \
                 tail -n 30 /run/cloud-init/*.log 2>&1; \
                 dmesg | grep -i -E 'cloud|generator' | tail -20; \
                 journalctl -b --no-pager 2>&1 | grep -i -E 'cloud|cycle|generator|timed out' | head -40; \
                 systemctl --no-pager status cloud-init.target cloud-init-local.service 2>&1 | head -30; \
                 blkid -o list 2>&1; cat /proc/cmdline",
                Duration::from_secs(300),
            )
        })
        .unwrap_or_else(|d| format!("(no diagnosis: {d})"));
    panic!("{}\n--- the deployed system says:\n{diagnosis}", e.what);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_document_validates_in_each_variant() {
        let bin = crate::fixtures::imprint_bin();
        for (mirror, image, pins) in [
            (true, true, false),
            (false, true, false),
            (true, false, true),
        ] {
            let mut s = SeedDoc::new("http://10.0.2.2:8080", "db-17");
            s.mirror = mirror;
            s.passphrase = Some("a phrase".into());
            if image {
                s.rootfs_sha512 = Some("ab".repeat(64));
            }
            if pins {
                s.tang.push(Tang {
                    url: "http://10.0.2.2:9".into(),
                    thumbprint: "x".repeat(43),
                });
                s.tpm2 = true;
                s.threshold = Some(2);
            }
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("doc.yaml");
            std::fs::write(&p, s.render()).unwrap();
            let out = std::process::Command::new(&bin)
                .arg("validate")
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}\n{}",
                s.render(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
