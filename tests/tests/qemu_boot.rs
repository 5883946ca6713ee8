//! End-to-end boot paths of the ramdisk in QEMU (TCG): direct kernel boot, the hybrid
//! ISO as a CD (BIOS, UEFI) and as a USB stick, and PXE through QEMU's iPXE ROM.
//! Needs `make iso` (out/vmlinuz, out/initramfs.img, out/boot.ipxe, out/imprint.iso).

use imprint_tests::qemu::{Boot, Firmware, Vm};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BANNER: &str = "provisioning agent starting";
const FOUND: &str = "found the provisioning document";
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

fn out_dir() -> PathBuf {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../out");
    for f in [
        "vmlinuz",
        "initramfs.img",
        "boot.ipxe",
        "imprint.iso",
        "imprint",
    ] {
        assert!(
            out.join(f).exists(),
            "{} is missing: run `make iso` first",
            out.join(f).display()
        );
    }
    out
}

/// A throwaway static file server on 127.0.0.1 (python3's http.server) until the
/// shared report server is merged; reachable from guests as 10.0.2.2:port.
struct FileServer {
    child: Child,
    port: u16,
}

impl FileServer {
    fn start(root: &Path) -> FileServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 for the test file server");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the test file server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        FileServer { child, port }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_no_panic(log: &str) {
    assert!(!log.contains("Kernel panic"), "the kernel panicked:\n{log}");
}

/// Customizes out/imprint.iso with a document (and no imprint.config=) into `dir`.
fn customized_iso(dir: &Path) -> PathBuf {
    let out = out_dir();
    let doc = dir.join("host.yaml");
    std::fs::write(&doc, "version: 1\nhost: { hostname: iso-test }\n").unwrap();
    let iso = dir.join("host.iso");
    let st = Command::new(out.join("imprint"))
        .args(["iso", "customize", "--config"])
        .arg(&doc)
        .args(["--karg", "imprint.failure_delay=0", "-o"])
        .arg(&iso)
        .arg(out.join("imprint.iso"))
        .status()
        .unwrap();
    assert!(st.success(), "imprint iso customize failed");
    iso
}

fn boot_iso(boot: Boot, firmware: Firmware, what: &str) {
    let mut vm = Vm::builder().boot(boot).firmware(firmware).start().unwrap();
    let log = vm
        .wait_for_serial(BANNER, BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let banner_at = vm.elapsed();
    let log2 = vm
        .wait_for_serial(FOUND, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!(
        "{what}: agent banner after {:.1} s, document found after {:.1} s",
        banner_at.as_secs_f64(),
        vm.elapsed().as_secs_f64()
    );
    assert_no_panic(&log);
    assert!(
        log2.contains("embedded in the boot medium"),
        "{what}: the document did not come from the ISO:\n{log2}"
    );
}

#[test]
fn direct_boot_with_a_missing_document_shows_the_404_and_does_not_panic() {
    let out = out_dir();
    let www = tempfile::tempdir().unwrap();
    let server = FileServer::start(www.path());
    let url = format!("http://10.0.2.2:{}/missing.yaml", server.port);
    let append = format!("console=ttyS0 imprint.config={url} imprint.failure_delay=0");
    let mut vm = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append,
        })
        .start()
        .unwrap();
    let log = vm.wait_for_serial("imprint: FAILED", BOOT_TIMEOUT).unwrap();
    eprintln!(
        "direct boot: failure shown after {:.1} s",
        vm.elapsed().as_secs_f64()
    );
    assert!(log.contains(BANNER), "{log}");
    assert!(
        log.contains("HTTP 404") && log.contains(&url),
        "the 404 is not explained:\n{log}"
    );
    // With failure_delay=0 the agent powers off; PID 1 never exits, so no panic.
    vm.wait_exit(Duration::from_secs(60)).unwrap();
    assert_no_panic(&vm.serial_log());
    assert!(
        vm.serial_log().contains("reboot: Power down"),
        "{}",
        vm.serial_log()
    );
}

#[test]
fn iso_as_cd_under_bios_finds_the_embedded_document() {
    let dir = tempfile::tempdir().unwrap();
    boot_iso(
        Boot::Cdrom(customized_iso(dir.path())),
        Firmware::Bios,
        "CD/BIOS",
    );
}

#[test]
fn iso_as_cd_under_uefi_finds_the_embedded_document() {
    let dir = tempfile::tempdir().unwrap();
    boot_iso(
        Boot::Cdrom(customized_iso(dir.path())),
        Firmware::Uefi,
        "CD/UEFI",
    );
}

#[test]
fn iso_as_usb_stick_under_uefi_finds_the_embedded_document() {
    let dir = tempfile::tempdir().unwrap();
    boot_iso(
        Boot::Usb(customized_iso(dir.path())),
        Firmware::Uefi,
        "USB/UEFI",
    );
}

#[test]
fn iso_as_usb_stick_under_bios_finds_the_embedded_document() {
    let dir = tempfile::tempdir().unwrap();
    boot_iso(
        Boot::Usb(customized_iso(dir.path())),
        Firmware::Bios,
        "USB/BIOS",
    );
}

#[test]
fn pxe_through_ipxe_loads_the_ramdisk_over_http_and_fetches_the_document() {
    let out = out_dir();
    let www = tempfile::tempdir().unwrap();
    for f in ["vmlinuz", "initramfs.img", "boot.ipxe"] {
        std::os::unix::fs::symlink(out.join(f).canonicalize().unwrap(), www.path().join(f))
            .unwrap();
    }
    std::fs::write(
        www.path().join("host.yaml"),
        "version: 1\nhost: { hostname: pxe-test }\n",
    )
    .unwrap();
    let server = FileServer::start(www.path());
    let base = format!("http://10.0.2.2:{}/", server.port);
    // What a provisioning system's TFTP/DHCP hands out: a tiny script chaining boot.ipxe.
    let tftp = tempfile::tempdir().unwrap();
    std::fs::write(
        tftp.path().join("start.ipxe"),
        format!(
            "#!ipxe\ndhcp\nset imprint_config {base}host.yaml\nset imprint_console console=ttyS0\n\
             set imprint_kargs imprint.failure_delay=0\nchain {base}boot.ipxe\n"
        ),
    )
    .unwrap();
    let mut vm = Vm::builder()
        .boot(Boot::Pxe {
            tftp_dir: tftp.path().into(),
            bootfile: "start.ipxe".into(),
        })
        .start()
        .unwrap();
    let log = vm.wait_for_serial(FOUND, BOOT_TIMEOUT).unwrap();
    eprintln!(
        "PXE: document found after {:.1} s",
        vm.elapsed().as_secs_f64()
    );
    assert_no_panic(&log);
    assert!(log.contains(&format!("{base}host.yaml")), "{log}");
}
