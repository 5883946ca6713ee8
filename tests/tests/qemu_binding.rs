//! Issue 5 end to end: the seed customer's document as product.md writes it — mirrored
//! disks, LUKS bound to tang AND the TPM (threshold 2), the STIG layout — plus a recovery
//! passphrase, provisioned with a real `tang` on loopback and a software TPM attached.
//! Then the deployed Debian boots from its disks with the same TPM and unlocks
//! **unattended** with its own clevis; with tang stopped it waits at the unlock prompt
//! (the recovery passphrase then proves the volume intact); with another machine's TPM it
//! does not unlock either.

use imprint_tests::fixtures::*;
use imprint_tests::images::debian_rootfs;
use imprint_tests::qemu::{Boot, Disk, Firmware, Vm};
use imprint_tests::server::Server;
use imprint_tests::tang::TangServer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PASSPHRASE: &str = "binding-test recovery phrase";
const MARKER: &str = "imprint-42-ok";
const PROMPT: &str = "Please unlock disk";

fn seed_doc(base: &str, tang_url: &str, thumbprint: &str, sha512: &str) -> String {
    format!(
        r#"version: 1
host: {{ hostname: db-17 }}
disks:
  - {{ name: a, match: {{ serial: "SN-A-0001" }} }}
  - {{ name: b, match: {{ serial: "SN-B-0002" }} }}
storage:
  layout:
    mirror: [a, b]
    luks:
      tang: [{{ url: "{tang_url}", thumbprint: "{thumbprint}" }}]
      tpm2: {{ pcrs: [] }}
      threshold: 2
      recovery_passphrase: "{PASSPHRASE}"
    lvm:
      - {{ mount: /,              size: 4GiB,   type: xfs }}
      - {{ mount: /home,          size: 512MiB, type: xfs, options: [nodev, nosuid] }}
      - {{ mount: /tmp,           size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }}
      - {{ mount: /var,           size: 2GiB,   type: xfs, options: [nodev] }}
      - {{ mount: /var/log,       size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }}
      - {{ mount: /var/log/audit, size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }}
      - {{ mount: /var/tmp,       size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }}
      - {{ swap: true,            size: 256MiB }}
image:
  url: {base}/images/debian-12-rootfs.tar.zst
  sha512: "{sha512}"
  format: rootfs
configdrive:
  format: nocloud
  user_data: |
    #cloud-config
    runcmd: [[sh, -c, "echo imprint-$((6*7))-ok > /dev/console"]]
report: {{ url: "{base}/report/db-17", token: "binding-token" }}
finish: reboot
"#
    )
}

fn boot(disks: &[PathBuf], tpm: &Path) -> Vm {
    let mut b = Vm::builder().boot(Boot::Disk).firmware(Firmware::Uefi).memory_mib(1536).tpm(tpm).serial_input();
    for (p, serial) in disks.iter().zip(["SN-A-0001", "SN-B-0002"]) {
        b = b.disk(Disk::existing(p, serial));
    }
    b.start().unwrap()
}

/// Waits at the unlock prompt for `secs` and asserts the system did not come up by itself.
fn stays_locked(vm: &mut Vm, secs: u64, why: &str) {
    vm.wait_for_serial(PROMPT, Duration::from_secs(900)).unwrap_or_else(|e| panic!("{why}: {e}"));
    std::thread::sleep(Duration::from_secs(secs));
    assert!(!vm.serial_log().contains(MARKER), "{why}: the volume unlocked by itself");
}

#[test]
fn tang_and_tpm2_bound_volumes_unlock_unattended_and_only_with_both() {
    let img = debian_rootfs();
    let mut tang = TangServer::start();
    let server = Server::start();
    server.serve_file("/images/debian-12-rootfs.tar.zst", &img.path);
    let base = guest_base(&server);
    let tang_url = format!("http://10.0.2.2:{}", tang.port());
    server.serve_bytes("/db-17.yaml", seed_doc(&base, &tang_url, &tang.thumbprint(), &img.sha512).into_bytes());
    let tpm = tempfile::tempdir().unwrap();

    // Provision with tang reachable and the TPM attached.
    let out = repo_root().join("out");
    let mut agent = Vm::builder()
        .boot(Boot::Direct {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.img"),
            append: format!("console=ttyS0 imprint.config={base}/db-17.yaml imprint.failure_delay=0"),
        })
        .firmware(Firmware::Uefi)
        .memory_mib(1024)
        .tpm(tpm.path())
        .disk(Disk::virtio(12 << 30, "SN-A-0001"))
        .disk(Disk::virtio(12 << 30, "SN-B-0002"))
        .start()
        .unwrap();
    agent.wait_for_serial("imprint: provisioning ", Duration::from_secs(2400)).unwrap();
    let provision_secs = agent.elapsed().as_secs_f64();
    agent.wait_exit(Duration::from_secs(120)).unwrap();
    let fin: Value = server
        .posts()
        .iter()
        .filter(|p| p.path == "/report/db-17")
        .filter_map(|p| serde_json::from_slice::<Value>(&p.body).ok())
        .filter(|v| v["kind"] == "final")
        .last()
        .expect("a final report");
    assert_eq!(fin["result"], "success", "{fin:#}");
    let luks = fin["steps"].as_array().unwrap().iter().find(|s| s["step"] == "luks:luks-root").expect("the luks step");
    let binding = &luks["output"]["bindings"][0];
    assert_eq!(binding["verified"], true, "the agent verified the binding: {luks:#}");
    assert_eq!(binding["threshold"], 2);
    let text = serde_json::to_string(&server.posts().iter().map(|p| String::from_utf8_lossy(&p.body).into_owned()).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains(PASSPHRASE), "the recovery passphrase reached a report");
    let disks = vec![agent.disk_path(0), agent.disk_path(1)];
    eprintln!("provisioned in {provision_secs:.0} s");

    // 1. Same TPM, tang up: unattended unlock, cloud-init runs.
    let mut vm = boot(&disks, tpm.path());
    vm.wait_for_serial(MARKER, Duration::from_secs(900)).unwrap();
    eprintln!("unattended unlock: marker after {:.0} s", vm.elapsed().as_secs_f64());
    assert!(!vm.serial_log().contains(PASSPHRASE));
    vm.kill();
    drop(vm);

    // 2. Tang stopped: one of two pins is not enough; the recovery passphrase still works.
    tang.stop();
    let mut vm = boot(&disks, tpm.path());
    stays_locked(&mut vm, 60, "tang stopped");
    vm.send(&format!("{PASSPHRASE}\r")).unwrap();
    vm.wait_for_serial(MARKER, Duration::from_secs(900)).unwrap();
    vm.kill();
    drop(vm);

    // 3. Tang back, but another machine's TPM: still locked.
    tang.resume();
    let other_tpm = tempfile::tempdir().unwrap();
    let mut vm = boot(&disks, other_tpm.path());
    stays_locked(&mut vm, 60, "another machine's TPM");
}
