//! Tests for the configdrive: the file trees, the FAT image checked by blkid,
//! fsck.vfat and mtools, and cloud-init's own readers (Debian's python3).

mod cloudinit;
mod drive;
mod files;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::plan::{ConfigdriveFormat, ConfigdrivePlan};
use crate::runner;

const MIB: u64 = 1024 * 1024;

/// A plan with the given flavour and everything optional left out.
fn plan(format: ConfigdriveFormat) -> ConfigdrivePlan {
    ConfigdrivePlan {
        disk: "root".into(),
        disk_path: PathBuf::from("/dev/null"),
        format,
        size_bytes: 16 * MIB,
        hostname: "web-01".into(),
        instance_id: "i-web-01".into(),
        meta_data: json!({ "instance-id": "i-web-01", "local-hostname": "web-01" }),
        user_data: None,
        network_config: None,
        vendor_data: None,
        partition: None,
        copy: false,
    }
}

/// A plan with user data, vendor data and a static netplan v2 network config.
fn full_plan(format: ConfigdriveFormat) -> ConfigdrivePlan {
    let mut p = plan(format);
    p.user_data =
        Some("#cloud-config\nruncmd:\n  - [sh, -c, \"echo imprint-ok > /dev/console\"]\n".into());
    p.vendor_data = Some("#cloud-config\npackages: [htop]\n".into());
    p.network_config = Some(static_v2());
    p
}

fn static_v2() -> Value {
    json!({
        "version": 2,
        "ethernets": {
            "lan": {
                "match": { "macaddress": "52:54:00:12:34:56" },
                "set-name": "lan0",
                "addresses": ["192.0.2.10/24", "2001:db8::10/64"],
                "gateway4": "192.0.2.1",
                "routes": [{ "to": "198.51.100.0/24", "via": "192.0.2.254", "metric": 50 }],
                "nameservers": { "addresses": ["192.0.2.53", "2001:db8::53"], "search": ["example.net"] },
                "mtu": 9000
            }
        }
    })
}

fn dhcp_v2() -> Value {
    json!({ "version": 2, "ethernets": { "eth0": { "dhcp4": true, "dhcp6": true } } })
}

/// The tree as a map, content as text.
fn tree_map(tree: Vec<(String, Vec<u8>)>) -> BTreeMap<String, String> {
    tree.into_iter()
        .map(|(p, c)| (p, String::from_utf8(c).expect("utf-8 seed file")))
        .collect()
}

fn run(prog: &str, args: &[&str]) -> runner::Output {
    runner::run(prog, args, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"))
}

/// A temp dir with an image file of `len` bytes, filled with `fill`.
fn image(len: u64, fill: u8) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("drive.img");
    std::fs::write(&path, vec![fill; len as usize]).expect("write image");
    (dir, path)
}

/// mtools image spec for a filesystem at `offset` in `img`.
fn mspec(img: &Path, offset: u64) -> String {
    format!("{}@@{offset}", img.display())
}

/// Copies every file of the FAT filesystem at `offset` in `img` into `dest` with mtools.
fn extract(img: &Path, offset: u64, dest: &Path) {
    std::fs::create_dir_all(dest).expect("mkdir");
    run(
        "mcopy",
        &[
            "-s",
            "-n",
            "-i",
            &mspec(img, offset),
            "::*",
            &dest.display().to_string(),
        ],
    );
}

/// Runs `script` with Debian's python3, where cloud-init is installed; its stdout is JSON.
fn python(script: &str, args: &[&str]) -> Value {
    let mut argv = vec!["-c", script];
    argv.extend_from_slice(args);
    let out = run("/usr/bin/python3", &argv);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("python output {e}: {}\n{}", out.stdout, out.stderr))
}
