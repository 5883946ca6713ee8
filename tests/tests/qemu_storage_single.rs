//! The seed layout without `mirror`, on one disk, under BIOS (SeaBIOS) from start to
//! end: the agent provisions under BIOS, GRUB goes into the disk's BIOS boot partition,
//! and the deployed Debian boots from the disk under SeaBIOS, the passphrase typed at
//! the prompt, every STIG volume mounted with its options and `/boot` a plain
//! partition (no md anywhere).
//!
//! The root filesystem comes from a registry served over https with a private CA (the
//! ramdisk gets the CA as an operator adds one, a cpio appended to the initramfs): a
//! container image whose base layer is the Debian tarball (tar+zstd) and whose second
//! layer (tar+gzip) removes a file by a whiteout, hides a directory's contents by an
//! opaque marker and adds files; the booted system shows all three.
//!
//! First, on the same disk, the same layout with a busybox root whose finalize command
//! hangs with a background child (issue 16): at the document's `finalize_timeout` it is
//! killed with its child, every undo step succeeds (mounts, LVM, LUKS, the partition
//! table) and the disk ends wiped, which only a real kernel with dm-crypt and LVM shows.

use imprint_tests::fixtures::*;
use imprint_tests::images::debian_rootfs;
use imprint_tests::provision::assert_no_partition_table;
use imprint_tests::qemu::{initramfs_with, Boot, Disk, Firmware, Vm};
use imprint_tests::registry::layout::Layout;
use imprint_tests::registry::{Access, Registry};
use imprint_tests::seed::{
    assert_stig_layout, disk_file, provision, run_agent, step, SeedDoc, MARKER, SERIAL_A,
};
use imprint_tests::server::Server;
use imprint_tests::tls::Pki;
use std::time::Duration;

const PASSPHRASE: &str = "single-disk recovery phrase";

#[test]
fn the_seed_layout_on_one_disk_deploys_and_boots_under_bios() {
    let img = debian_rootfs();
    let server = Server::start();
    server.serve_file("/images/debian-12-rootfs.tar.zst", &img.path);
    let base = guest_base(&server);
    let keep = tempfile::tempdir().unwrap();
    let pki = Pki::new("IP:10.0.2.2,IP:127.0.0.1");
    let registry = Registry::start_tls(Access::Open, &pki);
    let manifest = push_debian_image(&registry, &img.path, keep.path());
    let mut doc = SeedDoc::new(&base, "web-3");
    doc.mirror = false;
    doc.passphrase = Some(PASSPHRASE.into());
    doc.rootfs_oci = Some(format!(
        "oci://10.0.2.2:{}/os/debian:bookworm@{manifest}",
        registry.port()
    ));
    doc.initrd = Some(initramfs_with(
        &repo_root().join("out/initramfs.img"),
        keep.path(),
        &[("etc/imprint/ca.pem", &std::fs::read(pki.ca()).unwrap())],
    ));
    doc.kargs = "imprint.ca=/etc/imprint/ca.pem".into();
    server.serve_bytes("/web-3.yaml", doc.render().into_bytes());
    let disk = disk_file(keep.path(), "a.raw", 12 << 30);

    // 0. A finalize that hangs, with a background child, killed at the limit: undone.
    let tar = busybox_rootfs();
    let mut hang = SeedDoc::new(&base, "web-3-hang");
    hang.mirror = false;
    hang.passphrase = Some(PASSPHRASE.into());
    let hang_doc = hang.render().replacen(
        "configdrive:",
        &format!(
            "image:\n  url: {base}/images/busybox.tar.zst\n  sha256: {}\n  format: rootfs\n\
             boot:\n  finalize:\n    - [sh, -c, \"sleep 900 & sleep 900\"]\n  finalize_timeout: 10\n\
             configdrive:",
            sha256_hex(&tar)
        ),
        1,
    );
    server.serve_bytes("/images/busybox.tar.zst", tar);
    server.serve_bytes("/web-3-hang.yaml", hang_doc.into_bytes());
    let (vm, _, failed, _) = run_agent(
        &server,
        &hang,
        "/web-3-hang.yaml",
        vec![Disk::existing(&disk, SERIAL_A)],
        Firmware::Bios,
        None,
    );
    let console = vm.serial_log();
    drop(vm);
    assert_eq!(failed["failed_step"], "finalize", "{failed:#}\n{console}");
    assert_eq!(failed["disks_after"], "cleaned_up", "{failed:#}\n{console}");
    // `remaining` is left out of the report when nothing is left.
    assert!(
        failed.get("remaining").is_none(),
        "nothing is left behind: {failed:#}"
    );
    let undone = failed["undone"].to_string();
    for what in [
        "unmounted",
        "deactivated volume group vg0",
        "closed LUKS mapping",
        "wiped",
    ] {
        assert!(undone.contains(what), "undone: {what}: {failed:#}");
    }
    assert!(
        console.contains("the disks were cleaned up"),
        "the console says so: {console}"
    );
    assert_no_partition_table(disk.to_str().unwrap());

    let (_, provision_secs, fin) = provision(
        &server,
        &doc,
        "/web-3.yaml",
        vec![Disk::existing(&disk, SERIAL_A)],
        Firmware::Bios,
        None,
    );
    let steps: Vec<&str> = fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(
        !steps.iter().any(|s| s.starts_with("raid:")),
        "no md on one disk: {steps:?}"
    );
    let fz = &step(&fin, "finalize")["output"];
    let commands = fz.to_string();
    assert!(
        commands.contains("--target=i386-pc"),
        "GRUB for BIOS was installed: {fz:#}"
    );
    assert_sgdisk_clean(disk.to_str().unwrap());
    let parts = gpt_partitions(disk.to_str().unwrap());
    assert!(
        parts.len() >= 4,
        "bios, esp, boot, root (and the configdrive): {parts:?}"
    );

    let mut vm = Vm::builder()
        .boot(Boot::Disk)
        .firmware(Firmware::Bios)
        .memory_mib(1536)
        .no_network()
        .serial_input()
        .disk(Disk::existing(&disk, SERIAL_A))
        .start()
        .unwrap();
    vm.wait_for_serial("Please unlock disk luks-root", Duration::from_secs(900))
        .unwrap();
    vm.send(&format!("{PASSPHRASE}\r")).unwrap();
    let log = vm
        .wait_for_serial(MARKER, Duration::from_secs(900))
        .unwrap();
    let log = vm
        .wait_for_serial("LAYOUT-END", Duration::from_secs(300))
        .unwrap_or(log);
    let begin = log.rfind("LAYOUT-BEGIN").expect("layout printed");
    let end = log[begin..]
        .find("LAYOUT-END")
        .map(|e| begin + e)
        .unwrap_or(log.len());
    let layout = log[begin..end].replace('\r', "");
    assert_stig_layout(&layout, "/dev/vda");
    assert!(!layout.contains("active raid1"), "no md arrays:\n{layout}");
    assert!(
        !log.contains(PASSPHRASE),
        "the passphrase was echoed on the console"
    );
    // The second layer, as the booted system sees it.
    vm.login("root", "imprint", Duration::from_secs(600))
        .unwrap();
    let seen = vm
        .run(
            "cat /etc/imprint-layer; ls /usr/share/doc; test -e /etc/motd && echo motd-present; \
             test -e /etc/.wh.motd && echo whiteout-materialised",
            Duration::from_secs(120),
        )
        .unwrap();
    assert!(seen.contains("from the second layer"), "{seen}");
    assert!(
        seen.contains("imprint-layer2") && !seen.contains("base-files"),
        "the opaque marker hid the base layer's /usr/share/doc: {seen}"
    );
    assert!(
        !seen.contains("motd-present"),
        "the whiteout removed /etc/motd: {seen}"
    );
    assert!(!seen.contains("whiteout-materialised"), "{seen}");
    eprintln!(
        "timings: provisioning {provision_secs:.0} s; boot to layout {:.0} s",
        vm.elapsed().as_secs_f64()
    );
}

/// Pushes the Debian root filesystem to `registry` as a two-layer container image
/// (`os/debian:bookworm`): the tarball as it is (tar+zstd), then a gzip layer with a
/// whiteout of `/etc/motd`, an opaque `/usr/share/doc` holding one new file, and
/// `/etc/imprint-layer`. Returns the manifest digest the registry serves.
fn push_debian_image(
    registry: &Registry,
    tarball: &std::path::Path,
    dir: &std::path::Path,
) -> String {
    use sha2::Digest;
    let base = std::fs::read(tarball).unwrap();
    let mut hasher = sha2::Sha256::new();
    let mut decoder = zstd::stream::read::Decoder::new(&base[..]).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut decoder, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let base_diff = format!("sha256:{}", hex::encode(hasher.finalize()));

    let stage = dir.join("layer2");
    std::fs::create_dir_all(stage.join("etc")).unwrap();
    std::fs::create_dir_all(stage.join("usr/share/doc")).unwrap();
    std::fs::write(stage.join("etc/.wh.motd"), b"").unwrap();
    std::fs::write(stage.join("etc/imprint-layer"), b"from the second layer\n").unwrap();
    std::fs::write(stage.join("usr/share/doc/.wh..wh..opq"), b"").unwrap();
    std::fs::write(stage.join("usr/share/doc/imprint-layer2"), b"layer 2\n").unwrap();
    let tar = dir.join("layer2.tar");
    sh(
        "tar",
        &[
            "--create",
            "--file",
            tar.to_str().unwrap(),
            "--directory",
            stage.to_str().unwrap(),
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mode=go-w",
            "etc",
            "usr",
        ],
    );
    let top = std::fs::read(&tar).unwrap();
    let top_diff = format!("sha256:{}", sha256_hex(&top));
    let gz = std::process::Command::new("gzip")
        .args(["-n", "-c"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(gz.status.success(), "gzip: {gz:?}");
    let top_gz = gz.stdout;

    let layout = Layout::new();
    let image = layout.container(&[
        (
            base,
            "application/vnd.oci.image.layer.v1.tar+zstd",
            base_diff,
        ),
        (
            top_gz,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            top_diff,
        ),
    ]);
    layout.tag(&image, "bookworm");
    registry.push_layout(layout.path(), "bookworm", "os/debian", false);
    let served = registry.manifest_digest("os/debian", "bookworm");
    assert_eq!(served, image.digest, "skopeo kept the manifest as written");
    served
}
