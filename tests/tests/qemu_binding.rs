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
use imprint_tests::seed::{
    disk_file, provision, step, wait_for_marker, SeedDoc, Tang, BOOTED, SERIAL_A, SERIAL_B,
};
use imprint_tests::server::Server;
use imprint_tests::tang::TangServer;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PASSPHRASE: &str = "binding-test recovery phrase";
const PROMPT: &str = "Please unlock disk";
/// What Debian's initramfs prints once it has opened the root volume.
const UNLOCKED: &str = "luks-root: set up successfully";

fn boot(disks: &[PathBuf], tpm: &Path) -> Vm {
    let mut b = Vm::builder()
        .boot(Boot::Disk)
        .firmware(Firmware::Uefi)
        .memory_mib(1536)
        .tpm(tpm)
        .serial_input();
    for (p, serial) in disks.iter().zip([SERIAL_A, SERIAL_B]) {
        b = b.disk(Disk::existing(p, serial));
    }
    b.start().unwrap()
}

/// Waits at the unlock prompt for `secs` and asserts the system did not come up by itself
/// (cloud-init's every-boot `bootcmd` output would show it had).
fn stays_locked(vm: &mut Vm, secs: u64, why: &str) {
    vm.wait_for_serial(PROMPT, Duration::from_secs(900))
        .unwrap_or_else(|e| panic!("{why}: {e}"));
    std::thread::sleep(Duration::from_secs(secs));
    assert!(
        !vm.serial_log().contains(BOOTED),
        "{why}: the volume unlocked by itself"
    );
}

#[test]
fn tang_and_tpm2_bound_volumes_unlock_unattended_and_only_with_both() {
    let img = debian_rootfs();
    let mut tang = TangServer::start();
    let server = Server::start();
    server.serve_file("/images/debian-12-rootfs.tar.zst", &img.path);
    let base = guest_base(&server);
    let mut doc = SeedDoc::new(&base, "db-17");
    doc.tang.push(Tang {
        url: format!("http://10.0.2.2:{}", tang.port()),
        thumbprint: tang.thumbprint(),
    });
    doc.tpm2 = true;
    doc.threshold = Some(2);
    doc.passphrase = Some(PASSPHRASE.into());
    doc.rootfs_sha512 = Some(img.sha512.clone());
    server.serve_bytes("/db-17.yaml", doc.render().into_bytes());
    let tpm = tempfile::tempdir().unwrap();
    let keep = tempfile::tempdir().unwrap();
    let disks = vec![
        disk_file(keep.path(), "a.raw", 12 << 30),
        disk_file(keep.path(), "b.raw", 12 << 30),
    ];

    // (Tang down before the start — the run refused at its checks with the disks
    // untouched — is shown on loop devices with a real tang by `preflight.rs`; a kernel
    // boot proves nothing more there.)
    // Provision with tang reachable and the TPM attached.
    let (agent, _, fin) = provision(
        &server,
        &doc,
        "/db-17.yaml",
        vec![
            Disk::existing(&disks[0], SERIAL_A),
            Disk::existing(&disks[1], SERIAL_B),
        ],
        Firmware::Uefi,
        Some(tpm.path()),
    );
    let agent_console = agent.serial_log();
    drop(agent);
    let luks = step(&fin, "luks:luks-root");
    let binding = &luks["output"]["bindings"][0];
    assert_eq!(
        binding["verified"], true,
        "the agent verified the binding: {luks:#}"
    );
    assert_eq!(binding["threshold"], 2);

    // 1. Same TPM, tang up: unattended unlock, cloud-init runs.
    let mut vm = boot(&disks, tpm.path());
    wait_for_marker(&mut vm, Duration::from_secs(900));
    eprintln!(
        "unattended unlock: marker after {:.0} s",
        vm.elapsed().as_secs_f64()
    );
    assert!(!vm.serial_log().contains(PASSPHRASE));

    // The secrets the agent generated, read back by the deployed system's own tools: the
    // volume key (through the recovery passphrase) and the clevis binding's passphrase
    // (through tang and the TPM). None of them, nor the recovery passphrase or the report
    // token, is in the agent's console output or in any report body.
    vm.login("root", "imprint", Duration::from_secs(600))
        .unwrap();
    let t = Duration::from_secs(300);
    let dev = "$(blkid -t TYPE=crypto_LUKS -o device | head -1)";
    let dump = vm
        .run(&format!("printf %s '{PASSPHRASE}' | cryptsetup luksDump --dump-volume-key --batch-mode --key-file=- {dev}"), t)
        .unwrap();
    let volume_key: String = dump
        .split("MK dump:")
        .nth(1)
        .unwrap_or_else(|| panic!("no volume key dumped:\n{dump}"))
        .split_whitespace()
        .take_while(|w| w.len() == 2 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    assert_eq!(volume_key.len(), 128, "a 512-bit volume key: {dump}");
    let slot = binding["keyslot"]
        .as_u64()
        .expect("the binding's keyslot in the report");
    // Through tang and the TPM: with a DHCP lease of its own if the deployed system has
    // no route yet, and bounded tries.
    let net = vm
        .run(
            "ip -4 route | grep -q default || dhclient -1 $(ls /sys/class/net | grep -v '^lo$' | head -1) 2>&1; \
             ip -4 -o addr show scope global; ip -4 route",
            Duration::from_secs(300),
        )
        .unwrap();
    let pass = vm
        .run(
            &format!(
                "for i in 1 2 3 4 5 6; do \
                 clevis luks pass -d {dev} -s {slot} > /run/p && break; sleep 10; done; \
                 echo; base64 -w0 /run/p; rm -f /run/p"
            ),
            Duration::from_secs(600),
        )
        .unwrap();
    let encoded = pass.lines().last().unwrap_or("").trim().to_string();
    let binding_pass = {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .unwrap_or_else(|e| panic!("{e}: {pass:?}\nnetwork: {net}"));
        String::from_utf8(raw).expect("a text passphrase")
    };
    assert!(
        binding_pass.len() >= 32,
        "the binding's passphrase from clevis: {pass:?}\nnetwork: {net}"
    );
    let reports: String = server
        .posts()
        .iter()
        .map(|p| String::from_utf8_lossy(&p.body).into_owned())
        .collect();
    for (what, secret) in [
        ("the recovery passphrase", PASSPHRASE.to_string()),
        ("the report token", doc.report_token.clone()),
        ("the LUKS volume key", volume_key.clone()),
        ("the LUKS volume key", volume_key.to_ascii_uppercase()),
        ("the binding passphrase", binding_pass.clone()),
    ] {
        assert!(
            !agent_console.contains(&secret),
            "{what} is on the agent's console"
        );
        assert!(!reports.contains(&secret), "{what} is in a report body");
    }
    vm.kill();
    drop(vm);

    // 2. Tang stopped: one of two pins is not enough; the recovery passphrase typed at
    // the prompt opens the volume. (That the system then boots is what the first boot
    // showed; the passphrase itself opened the volume key above.)
    tang.stop();
    let mut vm = boot(&disks, tpm.path());
    stays_locked(&mut vm, 30, "tang stopped");
    vm.send(&format!("{PASSPHRASE}\r")).unwrap();
    vm.wait_for_serial(UNLOCKED, Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("the recovery passphrase at the prompt: {e}"));
    vm.kill();
    drop(vm);

    // 3. Tang back, but another machine's TPM: still locked.
    tang.resume();
    let other_tpm = tempfile::tempdir().unwrap();
    let mut vm = boot(&disks, other_tpm.path());
    stays_locked(&mut vm, 30, "another machine's TPM");
}
