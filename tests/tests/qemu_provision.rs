//! Issue 3 acceptance: the single-disk document provisions a VM through every boot
//! path a provisioning system uses — direct kernel boot, PXE through iPXE (the script
//! `make` published under its digest, loading the kernel and initramfs by theirs), the ISO as
//! a CD under BIOS and UEFI, the ISO as a USB stick, each ISO customized with the
//! document embedded and no `imprint.config=` — with 512 MiB of RAM. Each run is then
//! checked from the host on the VM's disk files and through the reports it sent.

use imprint_tests::fixtures::*;
use imprint_tests::qemu::{Boot, Bus, Disk, Firmware, Vm};
use imprint_tests::server::{Answer, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const RUN_TIMEOUT: Duration = Duration::from_secs(420);

fn out_dir() -> PathBuf {
    let out = repo_root().join("out");
    for f in [
        "vmlinuz",
        "initramfs.img",
        "boot.ipxe",
        "imprint.iso",
        "imprint",
    ] {
        assert!(
            out.join(f).exists(),
            "{} is missing: run `make` first",
            out.join(f).display()
        );
    }
    out
}

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(48, 512))
}

/// A server with the image and the single-disk document for `host`; returns the document URL.
fn serve(server: &Server, host: &str) -> (String, String) {
    let data = image().zstd();
    let sha = sha256_hex(&data);
    server.serve_bytes("/images/web.raw.zst", data);
    let base = guest_base(server);
    let doc = vm_single_disk_document(
        host,
        &base,
        &format!("{base}/images/web.raw.zst"),
        &sha,
        "imprint-ok",
        "vm-token",
    );
    server.serve_bytes("/host.yaml", doc.clone().into_bytes());
    (format!("{base}/host.yaml"), doc)
}

/// Two disks: the smaller (4 GiB) is the one `smallest: true, min_size: 4GiB` must pick.
fn disks() -> [Disk; 2] {
    [
        Disk::virtio(6 << 30, "SN-BIG-0001"),
        Disk::virtio(4 << 30, "SN-SMALL-0002"),
    ]
}

fn customized_iso(dir: &Path, doc: &str) -> PathBuf {
    let out = out_dir();
    let doc_path = dir.join("host.yaml");
    std::fs::write(&doc_path, doc).unwrap();
    let iso = dir.join("host.iso");
    let t0 = std::time::Instant::now();
    let st = Command::new(out.join("imprint"))
        .args(["iso", "customize", "--config"])
        .arg(&doc_path)
        .args(["--karg", "imprint.failure_delay=0", "-o"])
        .arg(&iso)
        .arg(out.join("imprint.iso"))
        .status()
        .unwrap();
    assert!(st.success(), "imprint iso customize failed");
    eprintln!("iso customize took {:?}", t0.elapsed());
    iso
}

/// Waits for the run to end (finish: reboot ends QEMU under -no-reboot), then checks
/// the reports and the disks.
fn provisioned(mut vm: Vm, server: &Server, host: &str, what: &str) {
    vm.wait_for_serial("provisioning succeeded", RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let took = vm.elapsed();
    vm.wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{what}: the finish action (reboot) did not happen: {e}"));
    let log = vm.serial_log();
    assert!(!log.contains("Kernel panic"), "{what}: {log}");
    assert!(
        !log.contains("vm-token"),
        "{what}: the report token reached the console"
    );
    eprintln!(
        "{what}: provisioned in {:.1} s from QEMU start",
        took.as_secs_f64()
    );
    let reports: Vec<Value> = server
        .posts()
        .into_iter()
        .filter(|p| p.path == format!("/report/{host}"))
        .map(|p| serde_json::from_slice(&p.body).unwrap())
        .collect();
    let fin = reports
        .iter()
        .find(|r| r["kind"] == "final")
        .unwrap_or_else(|| panic!("{what}: no final report"));
    assert_eq!(fin["result"], "success", "{what}: {fin:#}");
    assert!(reports
        .iter()
        .any(|r| r["kind"] == "step" && r["step"] == "write-image" && r["state"] == "succeeded"));
    // The small disk was chosen and deployed; the big one was left alone.
    assert_eq!(fin["disks"][0]["serial"], "SN-SMALL-0002", "{fin:#}");
    assert_single_disk_deployed(vm.disk_path(1).to_str().unwrap(), image(), host);
    let big = sh_any("blkid", &["-p", vm.disk_path(0).to_str().unwrap()]);
    assert!(big.stdout.is_empty(), "the other disk was touched");
}

fn vm_with(boot: Boot, firmware: Firmware) -> Vm {
    let [a, b] = disks();
    Vm::builder()
        .boot(boot)
        .firmware(firmware)
        .disk(a)
        .disk(b)
        .memory_mib(512)
        .start()
        .unwrap()
}

#[test]
fn direct_kernel_boot_provisions_with_512_mib() {
    let out = out_dir();
    let server = Server::start();
    let (_, doc) = serve(&server, "direct-01");
    // No document URL: the machine asks by lookup, posting its inventory; the server
    // knows it by the serial of its small disk and has it wait once (202).
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let first = asked.clone();
    server.respond_posts("/lookup", move |p| {
        let inv: Value = serde_json::from_slice(&p.body).unwrap_or(Value::Null);
        let ours = inv["disks"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["serial"] == "SN-SMALL-0002"));
        if !ours {
            Answer::status(404)
        } else if !first.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Answer::status(202).header("Retry-After", "5")
        } else {
            Answer::status(200).body(doc.clone().into_bytes())
        }
    });
    let append = format!(
        "console=ttyS0 imprint.lookup={}/lookup imprint.failure_delay=0",
        guest_base(&server)
    );
    // The big disk on NVMe, a second NIC (e1000) beside the virtio one, a TPM 2.0.
    let tpm_state = tempfile::tempdir().unwrap();
    let vm = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append,
        })
        .firmware(Firmware::Bios)
        .disk(Disk::virtio(6 << 30, "SN-BIG-0001").bus(Bus::Nvme))
        .disk(Disk::virtio(4 << 30, "SN-SMALL-0002"))
        .arg("-netdev")
        .arg("user,id=second")
        .arg("-device")
        .arg("e1000,netdev=second,mac=52:54:00:aa:bb:02")
        .tpm(tpm_state.path())
        .memory_mib(512)
        .start()
        .unwrap();
    provisioned(vm, &server, "direct-01", "direct boot");

    // What the machine said about itself, as the schema says it may.
    let lookups: Vec<Value> = server
        .posts()
        .into_iter()
        .filter(|p| p.path == "/lookup")
        .map(|p| p.json())
        .collect();
    assert_eq!(lookups.len(), 2, "a 202, then the document");
    let inv = &lookups[1];
    let schema = imprint_tests::report_schema::ReportSchema::new(
        &serde_json::from_str(&sh(
            imprint_bin().to_str().unwrap(),
            &["schema", "inventory"],
        ))
        .unwrap(),
    );
    schema.check(inv).unwrap_or_else(|e| panic!("{e}\n{inv:#}"));
    let disk = |serial: &str| {
        inv["disks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["serial"] == serial)
            .unwrap_or_else(|| panic!("no disk {serial}: {inv:#}"))
            .clone()
    };
    assert!(
        disk("SN-BIG-0001")["path"]
            .as_str()
            .unwrap()
            .starts_with("/dev/nvme"),
        "{inv:#}"
    );
    assert_eq!(disk("SN-SMALL-0002")["path"], "/dev/vda", "{inv:#}");
    let nics = inv["nics"].as_array().unwrap();
    let drivers: Vec<&str> = nics.iter().filter_map(|n| n["driver"].as_str()).collect();
    assert!(
        drivers.contains(&"virtio_net") && drivers.contains(&"e1000"),
        "{inv:#}"
    );
    assert!(
        nics.iter().any(|n| n["mac"] == "52:54:00:aa:bb:02"),
        "{inv:#}"
    );
    // The TPM and its endorsement key, as tpm2-tools computes it from the same TPM state.
    assert_eq!(inv["tpm"]["present"], true, "{inv:#}");
    assert_eq!(inv["tpm"]["version_major"], 2, "{inv:#}");
    let tpm = imprint_tests::swtpm::Swtpm::on_state(tpm_state.path());
    assert_eq!(
        inv["tpm"]["endorsement_key"]["sha256"],
        tpm.ek_sha256().as_str(),
        "the EK fingerprint is tpm2_createek's: {inv:#}"
    );
    assert_eq!(inv["firmware"]["mode"], "bios", "{inv:#}");
    assert_eq!(inv["system"]["vendor"], "QEMU", "SMBIOS from QEMU: {inv:#}");
}

#[test]
fn pxe_through_ipxe_provisions() {
    let out = out_dir();
    let server = Server::start();
    let (url, _) = serve(&server, "pxe-01");
    // The boot files as `make` published them, named by their content (out/boot/):
    // the script the manifest names loads the kernel and initramfs by digest.
    let store = out.join("boot");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(store.join("current.json")).unwrap()).unwrap();
    let script = manifest["ipxe"]["name"].as_str().unwrap();
    server.serve_file(&format!("/boot/{script}"), store.join(script));
    for a in manifest["artifacts"].as_array().unwrap() {
        let path = a["path"].as_str().unwrap();
        server.serve_file(&format!("/boot/{path}"), store.join(path));
    }
    let base = url.trim_end_matches("host.yaml");
    // What a provisioning system's DHCP/TFTP hands out: a tiny script chaining imprint's.
    let tftp = tempfile::tempdir().unwrap();
    std::fs::write(
        tftp.path().join("start.ipxe"),
        format!(
            "#!ipxe\ndhcp\nset imprint_config {url}\nset imprint_console console=ttyS0\n\
             set imprint_kargs imprint.failure_delay=0\nchain {base}boot/{script}\n"
        ),
    )
    .unwrap();
    let vm = vm_with(
        Boot::Pxe {
            tftp_dir: tftp.path().into(),
            bootfile: "start.ipxe".into(),
        },
        Firmware::Bios,
    );
    provisioned(vm, &server, "pxe-01", "PXE");
}

#[test]
fn customized_iso_as_cd_under_bios_provisions() {
    let server = Server::start();
    let (_, doc) = serve(&server, "cd-bios-01");
    let dir = tempfile::tempdir().unwrap();
    let vm = vm_with(
        Boot::Cdrom(customized_iso(dir.path(), &doc)),
        Firmware::Bios,
    );
    provisioned(vm, &server, "cd-bios-01", "CD/BIOS");
}

#[test]
fn customized_iso_as_cd_under_uefi_provisions() {
    let server = Server::start();
    let (_, doc) = serve(&server, "cd-uefi-01");
    let dir = tempfile::tempdir().unwrap();
    let vm = vm_with(
        Boot::Cdrom(customized_iso(dir.path(), &doc)),
        Firmware::Uefi,
    );
    provisioned(vm, &server, "cd-uefi-01", "CD/UEFI");
}

#[test]
fn customized_iso_as_usb_stick_provisions() {
    let server = Server::start();
    let (_, doc) = serve(&server, "usb-01");
    let dir = tempfile::tempdir().unwrap();
    let vm = vm_with(Boot::Usb(customized_iso(dir.path(), &doc)), Firmware::Uefi);
    provisioned(vm, &server, "usb-01", "USB/UEFI");
}

/// A minisign key pair made by the real `minisign` in `dir`: (public key file, secret).
fn minisign_key(dir: &Path) -> (PathBuf, PathBuf) {
    let (public, secret) = (dir.join("ops.pub"), dir.join("ops.sec"));
    sh(
        "minisign",
        &[
            "-G",
            "-W",
            "-p",
            public.to_str().unwrap(),
            "-s",
            secret.to_str().unwrap(),
        ],
    );
    (public, secret)
}

/// The `.minisig` of `data` made with `secret`.
fn minisign(secret: &Path, data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc");
    std::fs::write(&file, data).unwrap();
    sh(
        "minisign",
        &[
            "-S",
            "-s",
            secret.to_str().unwrap(),
            "-m",
            file.to_str().unwrap(),
        ],
    );
    std::fs::read(dir.path().join("doc.minisig")).unwrap()
}

/// The ISO customized with a trust key and `imprint.config=` (the document stays on the
/// network, beside its signature).
fn trusting_iso(dir: &Path, key: &Path, config_url: &str) -> PathBuf {
    let out = out_dir();
    let iso = dir.join("trusting.iso");
    let st = Command::new(out.join("imprint"))
        .args(["iso", "customize", "--trust"])
        .arg(key)
        .args(["--karg", &format!("imprint.config={config_url}")])
        .args(["--karg", "imprint.failure_delay=0", "-o"])
        .arg(&iso)
        .arg(out.join("imprint.iso"))
        .status()
        .unwrap();
    assert!(st.success(), "imprint iso customize --trust failed");
    iso
}

/// Issue 16: an ISO whose customization area carries a trust key provisions from a
/// signed network document, and refuses the same document tampered with — failure
/// report sent, neither disk written.
#[test]
fn a_trusting_iso_provisions_a_signed_document_and_refuses_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = minisign_key(dir.path());
    let id = std::fs::read_to_string(&public).unwrap();
    let id = id
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_uppercase();

    let server = Server::start();
    let (url, doc) = serve(&server, "trust-01");
    server.serve_bytes("/host.yaml.minisig", minisign(&secret, doc.as_bytes()));
    let vm = vm_with(
        Boot::Cdrom(trusting_iso(dir.path(), &public, &url)),
        Firmware::Uefi,
    );
    let mut vm = vm;
    let log = vm
        .wait_for_serial(" verified", RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("the signed document was not verified: {e}"));
    assert!(log.contains(&format!("trust: minisign:{id}")), "{log}");
    provisioned(vm, &server, "trust-01", "trusting ISO");

    // The same medium, the document changed after signing: refused before any disk.
    let bad = Server::start();
    let (url, doc) = serve(&bad, "trust-01");
    bad.serve_bytes("/host.yaml.minisig", minisign(&secret, doc.as_bytes()));
    bad.serve_bytes(
        "/host.yaml",
        doc.replace("imprint-ok", "imprint-0k").into_bytes(),
    );
    let other = tempfile::tempdir().unwrap();
    let mut vm = vm_with(
        Boot::Cdrom(trusting_iso(other.path(), &public, &url)),
        Firmware::Uefi,
    );
    vm.wait_for_serial("does not verify", RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("the tampered document was not refused: {e}"));
    vm.wait_exit(Duration::from_secs(120)).unwrap();
    let log = vm.serial_log();
    let fin: Value = bad
        .posts()
        .iter()
        .filter_map(|p| serde_json::from_slice::<Value>(&p.body).ok())
        .find(|r| r["kind"] == "final")
        .unwrap_or_else(|| panic!("no failure report:\n{log}"));
    assert_eq!(fin["failed_step"], "authenticate", "{fin:#}");
    assert_eq!(fin["disks_after"], "untouched", "{fin:#}");
    assert!(!fin.to_string().contains("imprint-0k"), "{fin:#}");
    for i in 0..2 {
        let d = vm.disk_path(i);
        let probe = sh_any("blkid", &["-p", d.to_str().unwrap()]);
        assert!(probe.stdout.is_empty(), "{} was written to", d.display());
    }
    assert!(
        bad.requests()
            .iter()
            .all(|r| !r.path.starts_with("/images/")),
        "the image was fetched for a refused document"
    );
}

#[test]
fn a_static_address_from_ip_provisions() {
    let out = out_dir();
    let server = Server::start();
    let (url, _) = serve(&server, "static-01");
    // Linux's nfsroot form: client::gateway:netmask:hostname:device:autoconf:dns
    let ip = "ip=10.0.2.50::10.0.2.2:255.255.255.0:static-01:eth0:off:10.0.2.3";
    let append = format!("console=ttyS0 {ip} imprint.config={url} imprint.failure_delay=0");
    let mut vm = vm_with(
        Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append,
        },
        Firmware::Bios,
    );
    vm.wait_for_serial("10.0.2.50", Duration::from_secs(120))
        .unwrap();
    assert!(
        !vm.serial_log().contains("(dhcp)"),
        "DHCP ran although ip= gave a static address"
    );
    provisioned(vm, &server, "static-01", "static ip=");
}

#[test]
fn a_dead_report_server_does_not_stop_provisioning_or_the_reboot() {
    let out = out_dir();
    let server = Server::start();
    let data = image().zstd();
    let sha = sha256_hex(&data);
    server.serve_bytes("/images/web.raw.zst", data);
    let base = guest_base(&server);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let doc = vm_single_disk_document(
        "dead-01",
        &format!("http://10.0.2.2:{dead}"),
        &format!("{base}/images/web.raw.zst"),
        &sha,
        "imprint-ok",
        "t",
    );
    server.serve_bytes("/host.yaml", doc.into_bytes());
    let append = format!("console=ttyS0 imprint.config={base}/host.yaml imprint.report_timeout=5 imprint.failure_delay=0");
    let mut vm = vm_with(
        Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append,
        },
        Firmware::Bios,
    );
    vm.wait_for_serial("provisioning succeeded", RUN_TIMEOUT)
        .unwrap();
    // finish: reboot still happens (QEMU exits under -no-reboot) within a bounded time.
    vm.wait_exit(Duration::from_secs(90)).unwrap();
    assert!(
        vm.serial_log().contains("finish: rebooting"),
        "{}",
        vm.serial_log()
    );
    assert_single_disk_deployed(vm.disk_path(1).to_str().unwrap(), image(), "dead-01");
}
