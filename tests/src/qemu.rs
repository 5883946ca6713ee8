//! The QEMU bench: boots a VM (TCG) by a chosen path — direct kernel, PXE through
//! QEMU's iPXE ROM, the ISO as a CD or a USB stick — under BIOS or UEFI, with virtual
//! disks, and watches its serial console. Every wait is bounded; the VM is killed on
//! drop; the serial log lives in the VM's temp dir and is included in every error.
//!
//! ```no_run
//! use imprint_tests::qemu::{Boot, Vm};
//! let vm = Vm::builder()
//!     .boot(Boot::Direct { kernel: "out/vmlinuz".into(), initrd: "out/initramfs.img".into(), append: "console=ttyS0".into() })
//!     .disk(imprint_tests::qemu::Disk::virtio(4 << 30, "SN-A-0001"))
//!     .start()
//!     .unwrap();
//! vm.wait_for_serial("imprint:", std::time::Duration::from_secs(60)).unwrap();
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// OVMF firmware as Debian's `ovmf` package installs it.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";
/// OVMF's code for a separate 4 MiB variable store (Debian's `ovmf`).
pub const OVMF_CODE_4M: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The empty variable store that goes with it.
pub const OVMF_VARS_4M: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// AAVMF, the arm64 build of the same firmware (Debian's `qemu-efi-aarch64`): code and
/// an empty variable store, both 64 MiB flash images.
pub const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
pub const AAVMF_VARS: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";

/// A fresh copy of AAVMF's empty variable store in `dir`, for [`VmBuilder::uefi_vars`].
pub fn aavmf_vars_file(dir: &Path) -> PathBuf {
    let p = dir.join("AAVMF_VARS.fd");
    std::fs::copy(AAVMF_VARS, &p).expect("copying AAVMF_VARS.fd (Debian package qemu-efi-aarch64)");
    p
}

/// A fresh copy of OVMF's empty variable store in `dir`, for [`VmBuilder::uefi_vars`].
pub fn uefi_vars_file(dir: &Path) -> PathBuf {
    let p = dir.join("OVMF_VARS_4M.fd");
    std::fs::copy(OVMF_VARS_4M, &p).expect("copying OVMF_VARS_4M.fd (Debian package ovmf)");
    p
}

/// How the VM boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// `-kernel`/`-initrd`/`-append`.
    Direct {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
    },
    /// Network boot: QEMU's DHCP/TFTP serve `bootfile` from `tftp_dir`; iPXE runs it.
    Pxe { tftp_dir: PathBuf, bootfile: String },
    /// The ISO as a CD (`-cdrom`), as virtual media on a BMC would present it.
    Cdrom(PathBuf),
    /// The ISO as a USB stick behind an xHCI controller.
    Usb(PathBuf),
    /// From the first disk, as a deployed machine boots.
    Disk,
}

/// Firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS (QEMU's default).
    Bios,
    /// OVMF.
    Uefi,
    /// An arm64 server: QEMU's `virt` machine (Cortex-A72) with AAVMF, under
    /// `qemu-system-aarch64`. Its variable store is the [`VmBuilder::uefi_vars`] file, or
    /// a fresh one in the VM's directory. CDs and USB sticks hang off virtio-scsi/xHCI.
    Aavmf,
}

impl Firmware {
    /// The QEMU system emulator for the firmware's machine.
    pub fn emulator(self) -> &'static str {
        match self {
            Firmware::Aavmf => "qemu-system-aarch64",
            Firmware::Bios | Firmware::Uefi => "qemu-system-x86_64",
        }
    }
}

/// How a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    Virtio,
    /// AHCI (`ide-hd` on an `ich9-ahci` controller).
    Sata,
    Nvme,
}

/// A virtual disk: a sparse raw file in the VM's temp dir.
#[derive(Debug, Clone)]
pub struct Disk {
    pub size: u64,
    pub serial: String,
    /// Logical (and physical) sector size: 512 or 4096.
    pub sector: u32,
    pub bus: Bus,
    /// An existing raw file to attach instead of a new sparse one (a disk another VM wrote).
    pub file: Option<PathBuf>,
}

impl Disk {
    /// An existing raw disk file (e.g. `Vm::disk_path` of a finished VM), virtio, 512-byte sectors.
    pub fn existing(path: &Path, serial: &str) -> Disk {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Disk {
            file: Some(path.to_path_buf()),
            ..Disk::virtio(size, serial)
        }
    }
    /// A virtio disk with 512-byte sectors.
    pub fn virtio(size: u64, serial: &str) -> Disk {
        Disk {
            size,
            serial: serial.to_string(),
            sector: 512,
            bus: Bus::Virtio,
            file: None,
        }
    }
    /// The same disk with another sector size.
    pub fn sector(mut self, bytes: u32) -> Disk {
        self.sector = bytes;
        self
    }
    /// The same disk on another bus.
    pub fn bus(mut self, bus: Bus) -> Disk {
        self.bus = bus;
        self
    }
}

/// What went wrong with a VM; `Display` includes the serial log's tail.
#[derive(Debug)]
pub struct VmError {
    pub what: String,
    pub log: String,
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail: Vec<&str> = self.log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        write!(
            f,
            "{}\n----- serial console (last {} lines) -----\n{}\n-----",
            self.what,
            tail.len(),
            tail.join("\n")
        )
    }
}

impl std::error::Error for VmError {}

/// Builds a [`Vm`].
#[derive(Debug, Clone)]
pub struct VmBuilder {
    boot: Option<Boot>,
    firmware: Firmware,
    disks: Vec<Disk>,
    memory_mib: u32,
    nic: bool,
    extra: Vec<String>,
    /// A software TPM 2.0 whose state lives in this directory (kept across VMs).
    tpm_state: Option<PathBuf>,
    /// OVMF's variable store in this file (kept across VMs), instead of in memory.
    uefi_vars: Option<PathBuf>,
    serial_input: bool,
    /// Further options of the user (slirp) network, e.g. `ipv4=off,ipv6=on`.
    user_net: Option<String>,
}

impl VmBuilder {
    /// The serial console through a pipe pair, so [`Vm::send`] can type on it (the log
    /// is still `serial.log`, copied by a thread).
    pub fn serial_input(mut self) -> Self {
        self.serial_input = true;
        self
    }
    /// The boot path (required).
    pub fn boot(mut self, b: Boot) -> Self {
        self.boot = Some(b);
        self
    }
    /// BIOS (default) or UEFI.
    pub fn firmware(mut self, f: Firmware) -> Self {
        self.firmware = f;
        self
    }
    /// Under UEFI: OVMF's variables live in `vars` (a copy of `OVMF_VARS_4M.fd` made
    /// by [`uefi_vars_file`]), so boot entries written in one VM are there in the next.
    pub fn uefi_vars(mut self, vars: &Path) -> Self {
        self.uefi_vars = Some(vars.to_path_buf());
        self
    }
    /// Adds a disk.
    pub fn disk(mut self, d: Disk) -> Self {
        self.disks.push(d);
        self
    }
    /// RAM in MiB (default 512).
    pub fn memory_mib(mut self, m: u32) -> Self {
        self.memory_mib = m;
        self
    }
    /// Without a network card (the "no network link" case).
    /// Attaches a software TPM 2.0 (swtpm) whose state persists in `state_dir`, so a
    /// later VM given the same directory sees the same TPM; a fresh directory is
    /// another machine's TPM.
    pub fn tpm(mut self, state_dir: &Path) -> Self {
        self.tpm_state = Some(state_dir.to_path_buf());
        self
    }

    /// Options appended to the user (slirp) network's `-netdev user,id=n`: an IPv6-only
    /// network is `ipv4=off,ipv6=on,ipv6-net=fd42:9::/64,ipv6-host=fd42:9::2`.
    pub fn user_net(mut self, options: &str) -> Self {
        self.user_net = Some(options.to_string());
        self
    }

    pub fn no_network(mut self) -> Self {
        self.nic = false;
        self
    }
    /// Raw extra QEMU arguments (e.g. a TPM).
    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.to_string());
        self
    }

    /// The QEMU command line for a VM living in `dir` (for reading, logging and tests).
    pub fn command_line(&self, dir: &Path) -> Result<Vec<String>, String> {
        let boot = self.boot.as_ref().ok_or("no boot path given")?;
        let s = |p: &Path| p.display().to_string();
        let mut a: Vec<String> = [
            "-accel",
            "tcg",
            "-nographic",
            "-no-reboot",
            "-display",
            "none",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(["-m".into(), self.memory_mib.to_string()]);
        // The human monitor on a socket, for what happens to the hardware (`set_link`).
        a.extend([
            "-monitor".into(),
            format!("unix:{},server=on,wait=off", s(&dir.join("monitor.sock"))),
        ]);
        if self.serial_input {
            a.extend([
                "-chardev".into(),
                format!("pipe,id=ser0,path={}", s(&dir.join("serial"))),
                "-serial".into(),
                "chardev:ser0".into(),
            ]);
        } else {
            a.extend([
                "-serial".into(),
                format!("file:{}", s(&dir.join("serial.log"))),
            ]);
        }
        match (&self.firmware, &self.uefi_vars) {
            (Firmware::Uefi, Some(vars)) => a.extend([
                "-drive".into(),
                format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE_4M}"),
                "-drive".into(),
                format!("if=pflash,format=raw,unit=1,file={}", s(vars)),
            ]),
            (Firmware::Uefi, None) => a.extend(["-bios".into(), OVMF.into()]),
            (Firmware::Aavmf, vars) => {
                let vars = vars.clone().unwrap_or_else(|| dir.join("AAVMF_VARS.fd"));
                a.extend([
                    "-machine".into(),
                    "virt".into(),
                    "-cpu".into(),
                    "cortex-a72".into(),
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=0,readonly=on,file={AAVMF_CODE}"),
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=1,file={}", s(&vars)),
                ])
            }
            (Firmware::Bios, _) => {}
        }
        let arm = self.firmware == Firmware::Aavmf;
        let mut netdev = "user,id=n".to_string();
        match boot {
            Boot::Direct {
                kernel,
                initrd,
                append,
            } => a.extend([
                "-kernel".into(),
                s(kernel),
                "-initrd".into(),
                s(initrd),
                "-append".into(),
                // Under TCG on a loaded host the kernel's IO-APIC timer check can fail
                // ("IO-APIC + timer doesn't work!", a panic seen once at boot): skip it.
                format!("{append} no_timer_check"),
            ]),
            Boot::Pxe { tftp_dir, bootfile } => {
                netdev = format!("user,id=n,tftp={},bootfile={bootfile}", s(tftp_dir));
                a.extend(["-boot".into(), "n".into()]);
            }
            // `virt` has no IDE: the CD is a SCSI CD-ROM on virtio-scsi, first in boot order.
            Boot::Cdrom(iso) if arm => a.extend([
                "-device".into(),
                "virtio-scsi-pci,id=scsi".into(),
                "-drive".into(),
                format!(
                    "if=none,id=cd,media=cdrom,format=raw,readonly=on,file={}",
                    s(iso)
                ),
                "-device".into(),
                "scsi-cd,bus=scsi.0,drive=cd,bootindex=0".into(),
            ]),
            Boot::Cdrom(iso) => a.extend(["-cdrom".into(), s(iso), "-boot".into(), "d".into()]),
            Boot::Usb(iso) => a.extend([
                "-device".into(),
                "qemu-xhci,id=xhci".into(),
                "-drive".into(),
                format!("if=none,id=usb0,format=raw,readonly=on,file={}", s(iso)),
                "-device".into(),
                "usb-storage,bus=xhci.0,drive=usb0,bootindex=0".into(),
            ]),
            // The firmware's own boot order (its variable store) decides on `virt`.
            Boot::Disk if arm => {}
            Boot::Disk => a.extend(["-boot".into(), "c".into()]),
        }
        let pxe = matches!(boot, Boot::Pxe { .. });
        if let Some(o) = &self.user_net {
            netdev = format!("{netdev},{o}");
        }
        if self.nic || pxe {
            a.extend([
                "-netdev".into(),
                netdev,
                "-device".into(),
                format!(
                    "virtio-net-pci,netdev=n{}",
                    if pxe { ",bootindex=0" } else { "" }
                ),
            ]);
        }
        if self.disks.iter().any(|d| d.bus == Bus::Sata) {
            a.extend(["-device".into(), "ich9-ahci,id=ahci".into()]);
        }
        for (i, d) in self.disks.iter().enumerate() {
            let file = d
                .file
                .clone()
                .unwrap_or_else(|| dir.join(format!("disk{i}.raw")));
            // Zeros the guest writes (an md resync of never-written blocks, mkfs) become
            // holes in the sparse file: a 12 GiB mirror member stays as big as its data.
            a.extend([
                "-drive".into(),
                format!(
                    "if=none,id=d{i},format=raw,cache=unsafe,discard=unmap,detect-zeroes=unmap,file={}",
                    s(&file)
                ),
            ]);
            let sz = format!("logical_block_size={0},physical_block_size={0}", d.sector);
            a.extend([
                "-device".into(),
                match d.bus {
                    Bus::Virtio => format!("virtio-blk-pci,drive=d{i},serial={},{sz}", d.serial),
                    Bus::Sata => format!("ide-hd,bus=ahci.{i},drive=d{i},serial={},{sz}", d.serial),
                    Bus::Nvme => format!("nvme,drive=d{i},serial={},{sz}", d.serial),
                },
            ]);
        }
        if self.tpm_state.is_some() {
            a.extend([
                "-chardev".into(),
                format!("socket,id=chrtpm,path={}", s(&dir.join("swtpm.sock"))),
                "-tpmdev".into(),
                "emulator,id=tpm0,chardev=chrtpm".into(),
                "-device".into(),
                "tpm-tis,tpmdev=tpm0".into(),
            ]);
        }
        a.extend(self.extra.iter().cloned());
        Ok(a)
    }

    /// Creates the disks and starts QEMU.
    pub fn start(self) -> Result<Vm, VmError> {
        let err = |what: String| VmError {
            what,
            log: String::new(),
        };
        let dir = tempfile::Builder::new()
            .prefix("imprint-vm-")
            .tempdir()
            .map_err(|e| err(format!("creating a temp dir: {e}")))?;
        for (i, d) in self
            .disks
            .iter()
            .enumerate()
            .filter(|(_, d)| d.file.is_none())
        {
            let f = std::fs::File::create(dir.path().join(format!("disk{i}.raw")))
                .map_err(|e| err(format!("creating disk {i}: {e}")))?;
            f.set_len(d.size)
                .map_err(|e| err(format!("sizing disk {i}: {e}")))?;
        }
        let swtpm = match &self.tpm_state {
            Some(state) => Some(start_swtpm(state, &dir.path().join("swtpm.sock")).map_err(err)?),
            None => None,
        };
        if self.serial_input {
            for f in ["serial.in", "serial.out"] {
                let st = Command::new("mkfifo").arg(dir.path().join(f)).status();
                if !st.map(|s| s.success()).unwrap_or(false) {
                    return Err(err(format!("mkfifo {f} failed")));
                }
            }
            // QEMU opens both FIFOs read-write, so neither open below blocks for long.
            let out = dir.path().join("serial.out");
            let log = dir.path().join("serial.log");
            std::fs::File::create(&log).map_err(|e| err(e.to_string()))?;
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let Ok(mut r) = std::fs::File::open(&out) else {
                    return;
                };
                let Ok(mut w) = std::fs::OpenOptions::new().append(true).open(&log) else {
                    return;
                };
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 || w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        let args = self.command_line(dir.path()).map_err(err)?;
        std::fs::write(dir.path().join("qemu.cmdline"), args.join(" "))
            .map_err(|e| err(format!("writing the command line: {e}")))?;
        let emulator = self.firmware.emulator();
        if self.firmware == Firmware::Aavmf && self.uefi_vars.is_none() {
            std::fs::copy(AAVMF_VARS, dir.path().join("AAVMF_VARS.fd")).map_err(|e| {
                err(format!(
                    "copying {AAVMF_VARS}: {e} (install qemu-efi-aarch64: make deps)"
                ))
            })?;
        }
        let child = Command::new(emulator)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.path().join("qemu.stderr"))
                    .map_err(|e| err(e.to_string()))?,
            )
            .spawn()
            .map_err(|e| {
                err(format!(
                    "starting {emulator}: {e} (install qemu-system-x86 and qemu-system-arm: make deps)"
                ))
            })?;
        Ok(Vm {
            child,
            dir,
            started: Instant::now(),
            disks: self.disks,
            swtpm,
            commands: 0,
        })
    }
}

/// A running VM.
pub struct Vm {
    child: Child,
    dir: tempfile::TempDir,
    started: Instant,
    disks: Vec<Disk>,
    swtpm: Option<Child>,
    /// Commands run on the console so far (numbers their end markers).
    commands: u32,
}

/// Starts `swtpm socket` for QEMU's TPM emulator backend and waits (bounded) for its socket.
fn start_swtpm(state: &Path, sock: &Path) -> Result<Child, String> {
    std::fs::create_dir_all(state).map_err(|e| format!("creating {}: {e}", state.display()))?;
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", state.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", sock.display()))
        .args(["--flags", "startup-clear"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting swtpm: {e} (install swtpm: make deps)"))?;
    let t0 = Instant::now();
    while !sock.exists() {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "swtpm did not create {} within 10 s",
                sock.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

/// `s` without terminal escape sequences (`ESC [ … letter`, e.g. bracketed-paste mode).
fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() || c == '~' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Vm {
    /// A builder with BIOS, 512 MiB, one virtio NIC on user networking, no disks.
    pub fn builder() -> VmBuilder {
        VmBuilder {
            boot: None,
            firmware: Firmware::Bios,
            disks: Vec::new(),
            memory_mib: 512,
            nic: true,
            extra: Vec::new(),
            tpm_state: None,
            uefi_vars: None,
            serial_input: false,
            user_net: None,
        }
    }

    /// Runs `command` on QEMU's human monitor and returns what it printed (bounded: 10 s).
    pub fn monitor(&self, command: &str) -> Result<String, VmError> {
        use std::io::{Read, Write};
        let fail = |what: String| VmError {
            what,
            log: self.serial_log(),
        };
        let path = self.dir.path().join("monitor.sock");
        let t0 = Instant::now();
        let mut sock = loop {
            match std::os::unix::net::UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(e) if t0.elapsed() > Duration::from_secs(10) => {
                    return Err(fail(format!("connecting to the QEMU monitor: {e}")))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| fail(e.to_string()))?;
        // Read up to the prompt, send, read up to the next prompt.
        let until_prompt = |sock: &mut std::os::unix::net::UnixStream| -> Result<String, VmError> {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&got).contains("(qemu)") {
                let n = sock
                    .read(&mut buf)
                    .map_err(|e| fail(format!("reading the QEMU monitor: {e}")))?;
                if n == 0 {
                    return Err(fail("the QEMU monitor closed".into()));
                }
                got.extend_from_slice(&buf[..n]);
            }
            Ok(strip_escapes(&String::from_utf8_lossy(&got)))
        };
        until_prompt(&mut sock)?;
        sock.write_all(format!("{command}\n").as_bytes())
            .map_err(|e| fail(e.to_string()))?;
        until_prompt(&mut sock)
    }

    /// Plugs the NIC's cable in or pulls it (`set_link`): the guest sees carrier go.
    pub fn set_link(&self, up: bool) -> Result<(), VmError> {
        let out = self.monitor(&format!("set_link n {}", if up { "on" } else { "off" }))?;
        if out.to_lowercase().contains("not found") || out.contains("Error") {
            return Err(VmError {
                what: format!("set_link: {out}"),
                log: self.serial_log(),
            });
        }
        Ok(())
    }

    /// Types `text` on the serial console (needs [`VmBuilder::serial_input`]).
    pub fn send(&self, text: &str) -> Result<(), VmError> {
        use std::io::Write;
        let p = self.dir.path().join("serial.in");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(|e| {
                self.error(format!(
                    "opening {} (serial_input not set?): {e}",
                    p.display()
                ))
            })?;
        // Slowly, as a person types: the guest's UART has a 16-byte FIFO.
        for b in text.as_bytes() {
            f.write_all(&[*b])
                .map_err(|e| self.error(format!("typing on the console: {e}")))?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Waits until `pattern` shows on the console after byte `from` of the log; returns
    /// the log and where the pattern starts.
    pub fn wait_for_serial_from(
        &mut self,
        pattern: &str,
        from: usize,
        timeout: Duration,
    ) -> Result<(String, usize), VmError> {
        let start = Instant::now();
        loop {
            let log = self.serial_log();
            if let Some(i) = log.get(from..).and_then(|tail| tail.find(pattern)) {
                return Ok((log, from + i));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.error(format!(
                    "QEMU exited ({status}) before the console showed {pattern:?}"
                )));
            }
            if start.elapsed() > timeout {
                return Err(self.error(format!(
                    "the console did not show {pattern:?} within {} s",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Logs in on the serial console's getty (needs [`VmBuilder::serial_input`]); a
    /// person's way in, so checks need nothing from the guest but its own login.
    pub fn login(&mut self, user: &str, password: &str, timeout: Duration) -> Result<(), VmError> {
        let (_, at) = self.wait_for_serial_from(" login: ", 0, timeout)?;
        // A getty that printed its prompt while boot messages still flow: let them settle.
        std::thread::sleep(Duration::from_secs(2));
        self.send(&format!("{user}\r"))?;
        self.wait_for_serial_from("Password:", at, Duration::from_secs(120))?;
        self.send(&format!("{password}\r"))?;
        // A shell is there once a command's output comes back.
        let who = self
            .run("id -un", Duration::from_secs(120))
            .map_err(|e| VmError {
                what: format!("logging in as {user}: {}", e.what),
                log: e.log,
            })?;
        // The console is shared with the kernel's and cloud-init's messages, which may
        // land between the markers: the shell's own line is the one that names the user.
        if !who.lines().any(|l| l.trim() == user) {
            return Err(self.error(format!("logged in as {user} but `id -un` printed {who:?}")));
        }
        Ok(())
    }

    /// Runs a shell command on the console (after [`Vm::login`] or in a debug shell) and
    /// returns what it printed (stdout and stderr, `\r` removed).
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<String, VmError> {
        let n = self.commands;
        self.commands += 1;
        // The echoed command line shows `__run""_begin_N` (quotes split the word, and the
        // line editor may wrap it anywhere), the output `__run_begin_N`: only what the
        // command printed lies between the two printed markers.
        let begin = format!("__run_begin_{n}__");
        let done = format!("__run_done_{n}__");
        let from = self.serial_log().len();
        self.send(&format!(
            "echo __run\"\"_begin_{n}__; {cmd}; echo __run\"\"_done_{n}__\r"
        ))?;
        let (log, end) = self.wait_for_serial_from(&done, from, timeout)?;
        let out = &log[from..end];
        let out = match out.rfind(&begin) {
            Some(i) => out[i + begin.len()..]
                .split_once('\n')
                .map(|(_, rest)| rest)
                .unwrap_or(""),
            None => out,
        };
        Ok(strip_escapes(out).replace('\r', ""))
    }

    /// The serial console so far (lossy UTF-8).
    pub fn serial_log(&self) -> String {
        String::from_utf8_lossy(
            &std::fs::read(self.dir.path().join("serial.log")).unwrap_or_default(),
        )
        .into_owned()
    }

    /// The raw file behind disk `i`, for inspection from the host after the VM ends.
    pub fn disk_path(&self, i: usize) -> PathBuf {
        self.disks[i]
            .file
            .clone()
            .unwrap_or_else(|| self.dir.path().join(format!("disk{i}.raw")))
    }

    /// The disks as configured.
    pub fn disks(&self) -> &[Disk] {
        &self.disks
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn error(&self, what: String) -> VmError {
        let stderr =
            std::fs::read_to_string(self.dir.path().join("qemu.stderr")).unwrap_or_default();
        let what = if stderr.trim().is_empty() {
            what
        } else {
            format!("{what}\nqemu stderr: {}", stderr.trim())
        };
        VmError {
            what,
            log: self.serial_log(),
        }
    }

    /// Waits until the serial log contains `pattern`; returns the log. Fails if QEMU exits
    /// first or `timeout` passes.
    pub fn wait_for_serial(&mut self, pattern: &str, timeout: Duration) -> Result<String, VmError> {
        self.wait_for_patterns(&[pattern], timeout)
            .map(|(_, log)| log)
    }

    /// Waits until the serial log contains one of `patterns`; returns the index of the
    /// first of them (in the order given) that it contains. Fails like
    /// [`Vm::wait_for_serial`].
    pub fn wait_for_any(&mut self, patterns: &[&str], timeout: Duration) -> Result<usize, VmError> {
        self.wait_for_patterns(patterns, timeout).map(|(i, _)| i)
    }

    /// The index of the first of `patterns` the serial log contains, and the log.
    fn wait_for_patterns(
        &mut self,
        patterns: &[&str],
        timeout: Duration,
    ) -> Result<(usize, String), VmError> {
        let start = Instant::now();
        let what = match patterns {
            [one] => format!("{one:?}"),
            many => format!("any of {many:?}"),
        };
        loop {
            let log = self.serial_log();
            if let Some(i) = patterns.iter().position(|p| log.contains(p)) {
                return Ok((i, log));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // One last look: QEMU may have written the line just before exiting.
                let log = self.serial_log();
                if let Some(i) = patterns.iter().position(|p| log.contains(p)) {
                    return Ok((i, log));
                }
                return Err(self.error(format!(
                    "QEMU exited ({status}) before the console showed {what}"
                )));
            }
            if start.elapsed() > timeout {
                return Err(self.error(format!(
                    "the console did not show {what} within {} s",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until QEMU exits (the guest powered off or rebooted under `-no-reboot`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus, VmError> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                return Err(self.error(format!("QEMU did not exit within {} s", timeout.as_secs())));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops QEMU now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        if let Some(t) = &mut self.swtpm {
            let _ = t.kill();
            let _ = t.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- serial console of the failed VM -----\n{}\n-----",
                self.serial_log()
            );
        }
    }
}

/// `base` (an initramfs) with `files` added, as an operator adds a site CA to the boot
/// files: a newc cpio made by the real `cpio` from a staging directory, appended to
/// the image after zeros up to a 512-byte boundary (the kernel unpacks concatenated
/// archives in turn, each starting on a 4-byte boundary). Written into `dir`.
pub fn initramfs_with(base: &Path, dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let stage = dir.join("initramfs-extra");
    for (path, bytes) in files {
        let p = stage.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("a file under a directory")).expect("mkdir");
        std::fs::write(&p, bytes).expect("write an initramfs file");
    }
    let cpio = std::process::Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet")
        .arg("sh")
        .arg(&stage)
        .output()
        .expect("cpio");
    assert!(cpio.status.success(), "cpio: {cpio:?}");
    let mut image = std::fs::read(base).expect("read the initramfs");
    // An archive after a compressed one must start on a 4-byte boundary; the kernel
    // skips the zeros between them.
    image.resize(image.len().div_ceil(512) * 512, 0);
    image.extend_from_slice(&cpio.stdout);
    let out = dir.join("initramfs-extra.img");
    std::fs::write(&out, image).expect("write the initramfs");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_stripped_from_console_output() {
        assert_eq!(
            strip_escapes("\u{1b}[?2004l\rroot\r\n\u{1b}[0;32m OK \u{1b}[0m"),
            "\rroot\r\n OK "
        );
    }

    #[test]
    fn the_command_line_has_disks_with_serials_sectors_and_buses() {
        let b = Vm::builder()
            .boot(Boot::Usb("/x/imprint.iso".into()))
            .firmware(Firmware::Uefi)
            .disk(Disk::virtio(1 << 30, "SN-A-0001").sector(4096))
            .disk(Disk::virtio(1 << 30, "SN-B-0002").bus(Bus::Sata))
            .disk(Disk::virtio(1 << 30, "SN-C-0003").bus(Bus::Nvme));
        let a = b.command_line(Path::new("/t")).unwrap().join(" ");
        assert!(
            a.contains("-accel tcg") && a.contains("-no-reboot") && a.contains("-m 512"),
            "{a}"
        );
        assert!(a.contains("-bios /usr/share/ovmf/OVMF.fd"), "{a}");
        assert!(a.contains("virtio-blk-pci,drive=d0,serial=SN-A-0001,logical_block_size=4096,physical_block_size=4096"), "{a}");
        assert!(
            a.contains("ich9-ahci,id=ahci")
                && a.contains("ide-hd,bus=ahci.1,drive=d1,serial=SN-B-0002"),
            "{a}"
        );
        assert!(a.contains("nvme,drive=d2,serial=SN-C-0003"), "{a}");
        assert!(
            a.contains("usb-storage,bus=xhci.0,drive=usb0") && a.contains("file=/x/imprint.iso"),
            "{a}"
        );
    }

    #[test]
    fn pxe_uses_qemus_tftp_and_boots_from_the_nic() {
        let b = Vm::builder()
            .boot(Boot::Pxe {
                tftp_dir: "/srv/tftp".into(),
                bootfile: "start.ipxe".into(),
            })
            .no_network();
        let a = b.command_line(Path::new("/t")).unwrap().join(" ");
        assert!(
            a.contains("user,id=n,tftp=/srv/tftp,bootfile=start.ipxe") && a.contains("-boot n"),
            "{a}"
        );
        assert!(a.contains("virtio-net-pci,netdev=n,bootindex=0"), "{a}");
    }
}
