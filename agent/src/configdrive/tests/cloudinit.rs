//! cloud-init's own readers (Debian's /usr/bin/python3) read what we wrote.
//! The drive is written to an image, copied out with mtools, and handed to the
//! same code cloud-init runs at boot on a seed directory.

use super::*;
use crate::configdrive::write;

/// NoCloud's datasource on a seed dir; device probing (`fs_label`) off so no host device is touched.
const NOCLOUD: &str = r#"
import json, sys
from cloudinit import helpers
from cloudinit.sources.DataSourceNoCloud import DataSourceNoCloud
root = sys.argv[1]
paths = helpers.Paths({"cloud_dir": root + "/cloud", "run_dir": root + "/run"})
ds = DataSourceNoCloud({"datasource": {"NoCloud": {"fs_label": None}}}, None, paths)
ok = ds._get_data()
text = lambda b: b.decode() if isinstance(b, bytes) else b
print(json.dumps({
    "ok": ok, "seed": ds.seed, "instance_id": ds.get_instance_id(),
    "hostname": ds.metadata.get("local-hostname"), "metadata": ds.metadata,
    "userdata": text(ds.userdata_raw), "vendordata": text(ds.vendordata_raw),
    "network_config": ds.network_config,
}))
"#;

/// OpenStack config drive reader, then cloud-init's network_data.json conversion and parse.
const CONFIG2: &str = r#"
import json, sys
from cloudinit.sources.helpers import openstack
from cloudinit.net.network_state import parse_net_config_data
r = openstack.ConfigDriveReader(sys.argv[1]).read_v2()
out = {"metadata": r["metadata"], "userdata": r["userdata"].decode() if isinstance(r["userdata"], bytes) else r["userdata"],
       "vendordata": r.get("vendordata"), "networkdata": r.get("networkdata"), "files": {k: v.decode() for k, v in r["files"].items()}}
if r.get("networkdata"):
    v1 = openstack.convert_net_json(r["networkdata"], known_macs={"52:54:00:12:34:56": "ens3"})
    ns = parse_net_config_data(v1)
    out["v1"] = v1
    out["interfaces"] = {i["name"]: [s.get("type") + ":" + str(s.get("address")) + "/" + str(s.get("prefix")) for s in i["subnets"]] for i in ns.iter_interfaces()}
    out["routes"] = [r.get("network") + "/" + str(r.get("prefix")) + " via " + r.get("gateway")
                     for i in ns.iter_interfaces() for s in i["subnets"] for r in s.get("routes", [])]
    out["dns"] = ns.dns_nameservers
print(json.dumps(out, default=str))
"#;

/// Writes `p` into a fresh 16 MiB image and copies its files out to `dest` with mtools.
fn drive_to_dir(p: &crate::plan::ConfigdrivePlan, dest: &Path) {
    let (_img_dir, img) = image(16 * MIB, 0);
    write(&img, 0, 16 * MIB, p).expect("write configdrive");
    extract(&img, 0, dest);
}

fn nocloud_read(p: &crate::plan::ConfigdrivePlan) -> (tempfile::TempDir, Value) {
    let root = tempfile::tempdir().expect("tempdir");
    let seed = root.path().join("cloud/seed/nocloud");
    drive_to_dir(p, &seed);
    let out = python(NOCLOUD, &[&root.path().display().to_string()]);
    (root, out)
}

#[test]
fn cloud_init_nocloud_reads_instance_id_hostname_user_data_and_network_config() {
    let p = full_plan(ConfigdriveFormat::Nocloud);
    let (root, out) = nocloud_read(&p);
    assert_eq!(out["ok"], true, "{out}");
    assert!(
        out["seed"].as_str().unwrap_or("").ends_with("seed/nocloud"),
        "{out}"
    );
    assert_eq!(out["instance_id"], "i-web-01");
    assert_eq!(out["hostname"], "web-01");
    assert_eq!(out["userdata"].as_str(), p.user_data.as_deref());
    assert_eq!(out["vendordata"].as_str(), p.vendor_data.as_deref());
    assert_eq!(out["network_config"], static_v2());

    let ud = root
        .path()
        .join("cloud/seed/nocloud/user-data")
        .display()
        .to_string();
    let schema = run("cloud-init", &["schema", "--config-file", &ud]);
    assert!(
        schema.stdout.contains("Valid cloud-config"),
        "{}",
        schema.stdout
    );
}

#[test]
fn cloud_init_nocloud_accepts_a_drive_without_user_data() {
    let (root, out) = nocloud_read(&plan(ConfigdriveFormat::Nocloud));
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["instance_id"], "i-web-01");
    assert_eq!(out["userdata"], "#cloud-config\n{}\n");
    assert_eq!(out["network_config"], Value::Null);
    let ud = root
        .path()
        .join("cloud/seed/nocloud/user-data")
        .display()
        .to_string();
    assert!(run("cloud-init", &["schema", "--config-file", &ud])
        .stdout
        .contains("Valid cloud-config"));
}

fn config2_read(p: &crate::plan::ConfigdrivePlan) -> Value {
    let root = tempfile::tempdir().expect("tempdir");
    drive_to_dir(p, root.path());
    python(CONFIG2, &[&root.path().display().to_string()])
}

#[test]
fn cloud_init_config_drive_reads_static_network_data() {
    let mut p = full_plan(ConfigdriveFormat::Config2);
    p.meta_data = json!({ "public-keys": ["ssh-ed25519 AAAA k"], "files": [{ "path": "/etc/motd", "content": "hi\n" }] });
    let out = config2_read(&p);
    assert_eq!(out["metadata"]["uuid"], "i-web-01", "{out}");
    assert_eq!(
        out["metadata"]["instance-id"], "i-web-01",
        "cloud-init's key copy"
    );
    assert_eq!(out["metadata"]["local-hostname"], "web-01");
    assert_eq!(
        out["metadata"]["public_keys"],
        json!({ "key-0": "ssh-ed25519 AAAA k" })
    );
    assert_eq!(out["files"], json!({ "/etc/motd": "hi\n" }));
    assert_eq!(out["userdata"].as_str(), p.user_data.as_deref());
    assert_eq!(out["vendordata"], json!({ "cloud-init": p.vendor_data }));
    assert_eq!(
        out["networkdata"]["links"][0]["ethernet_mac_address"],
        "52:54:00:12:34:56"
    );

    let ifaces = &out["interfaces"];
    assert_eq!(
        ifaces["lan0"],
        json!(["static:192.0.2.10/24", "static6:2001:db8::10/64"]),
        "{out}"
    );
    let routes: Vec<&str> = out["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(routes.contains(&"0.0.0.0/0 via 192.0.2.1"), "{routes:?}");
    assert!(
        routes.contains(&"198.51.100.0/24 via 192.0.2.254"),
        "{routes:?}"
    );
    assert_eq!(out["dns"], json!(["192.0.2.53", "2001:db8::53"]));
}

#[test]
fn cloud_init_config_drive_reads_dhcp_network_data() {
    let mut p = plan(ConfigdriveFormat::Config2);
    p.network_config = Some(dhcp_v2());
    let out = config2_read(&p);
    assert_eq!(out["metadata"]["uuid"], "i-web-01", "{out}");
    assert_eq!(
        out["userdata"], "",
        "no user_data file: cloud-init's empty default"
    );
    assert_eq!(
        out["interfaces"]["eth0"],
        json!(["dhcp4:None/None", "dhcp6:None/None"]),
        "{out}"
    );
}
