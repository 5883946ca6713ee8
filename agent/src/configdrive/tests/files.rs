//! `files()` trees for both flavours, and the network_data.json conversion.

use super::*;
use crate::configdrive::{files, write_dir, ConfigdriveError};

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).expect("valid YAML")
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

#[test]
fn nocloud_without_user_data_or_network_has_meta_data_and_an_empty_cloud_config() {
    let mut p = plan(ConfigdriveFormat::Nocloud);
    p.meta_data = json!({ "instance-id": "i-web-01", "availability-zone": "rack-3" });
    let t = tree_map(files(&p).expect("files"));
    assert_eq!(t.keys().collect::<Vec<_>>(), ["meta-data", "user-data"]);
    assert_eq!(t["user-data"], "#cloud-config\n{}\n");
    let md = yaml(&t["meta-data"]);
    assert_eq!(md["instance-id"], "i-web-01");
    assert_eq!(
        md["local-hostname"], "web-01",
        "hostname filled in from the plan"
    );
    assert_eq!(
        md["availability-zone"], "rack-3",
        "other meta_data keys kept"
    );
}

#[test]
fn nocloud_full_passes_user_vendor_and_network_config_through() {
    let p = full_plan(ConfigdriveFormat::Nocloud);
    let t = tree_map(files(&p).expect("files"));
    assert_eq!(
        t.keys().collect::<Vec<_>>(),
        ["meta-data", "network-config", "user-data", "vendor-data"]
    );
    assert_eq!(&t["user-data"], p.user_data.as_ref().expect("user data"));
    assert_eq!(
        &t["vendor-data"],
        p.vendor_data.as_ref().expect("vendor data")
    );
    assert_eq!(yaml(&t["network-config"]), static_v2());
}

#[test]
fn nocloud_accepts_a_network_wrapper_and_version_1() {
    let mut p = plan(ConfigdriveFormat::Nocloud);
    p.network_config = Some(json!({ "network": dhcp_v2() }));
    assert!(files(&p).is_ok());
    p.network_config = Some(json!({ "version": 1, "config": [] }));
    assert!(files(&p).is_ok());
}

#[test]
fn bad_inputs_name_the_document_path() {
    let mut p = plan(ConfigdriveFormat::Nocloud);
    p.network_config = Some(json!({ "version": 3 }));
    let e = files(&p).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("configdrive.network_config.version:"),
        "{e}"
    );

    let mut p = plan(ConfigdriveFormat::Config2);
    p.meta_data = json!(["not", "a", "map"]);
    let e = files(&p).unwrap_err();
    assert!(
        matches!(e, ConfigdriveError::MetaDataNotMapping { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("configdrive.meta_data"), "{e}");
}

#[test]
fn config2_minimal_has_meta_data_in_both_versions_only() {
    let t = tree_map(files(&plan(ConfigdriveFormat::Config2)).expect("files"));
    assert_eq!(
        t.keys().collect::<Vec<_>>(),
        [
            "openstack/2018-08-27/meta_data.json",
            "openstack/latest/meta_data.json"
        ]
    );
    let md = json_of(&t["openstack/latest/meta_data.json"]);
    assert_eq!(
        md,
        json!({ "uuid": "i-web-01", "hostname": "web-01", "name": "web-01" })
    );
}

#[test]
fn config2_full_writes_user_vendor_and_network_data_identically_per_version() {
    let p = full_plan(ConfigdriveFormat::Config2);
    let t = tree_map(files(&p).expect("files"));
    for v in ["2018-08-27", "latest"] {
        assert_eq!(
            &t[&format!("openstack/{v}/user_data")],
            p.user_data.as_ref().expect("user data")
        );
        let vd = json_of(&t[&format!("openstack/{v}/vendor_data.json")]);
        assert_eq!(vd, json!({ "cloud-init": p.vendor_data.clone() }));
        assert!(t.contains_key(&format!("openstack/{v}/network_data.json")));
    }
    assert_eq!(
        t["openstack/latest/network_data.json"],
        t["openstack/2018-08-27/network_data.json"]
    );
}

#[test]
fn config2_maps_public_keys_and_inline_files() {
    let mut p = plan(ConfigdriveFormat::Config2);
    p.meta_data = json!({
        "public-keys": ["ssh-ed25519 AAAA one", "ssh-ed25519 BBBB two"],
        "files": [{ "path": "/etc/motd", "content": "hello\n" }],
        "meta": { "role": "web" }
    });
    let t = tree_map(files(&p).expect("files"));
    let md = json_of(&t["openstack/latest/meta_data.json"]);
    assert_eq!(
        md["public_keys"],
        json!({ "key-0": "ssh-ed25519 AAAA one", "key-1": "ssh-ed25519 BBBB two" })
    );
    assert_eq!(
        md["files"],
        json!([{ "path": "/etc/motd", "content_path": "/content/0000" }])
    );
    assert_eq!(md["meta"], json!({ "role": "web" }));
    assert_eq!(t["openstack/content/0000"], "hello\n");
}

#[test]
fn write_dir_puts_the_same_tree_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = full_plan(ConfigdriveFormat::Config2);
    let written = write_dir(dir.path(), &p).expect("write_dir");
    let tree = files(&p).expect("files");
    assert_eq!(
        written,
        tree.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()
    );
    for (path, content) in tree {
        assert_eq!(
            std::fs::read(dir.path().join(&path)).expect("read"),
            content,
            "{path}"
        );
    }
}

fn network_data(net: Value) -> Result<Value, ConfigdriveError> {
    let mut p = plan(ConfigdriveFormat::Config2);
    p.network_config = Some(net);
    let t = tree_map(files(&p)?);
    Ok(json_of(&t["openstack/latest/network_data.json"]))
}

#[test]
fn netplan_dhcp_converts_to_dhcp_networks_on_a_named_link() {
    let nd = network_data(dhcp_v2()).expect("convert");
    assert_eq!(
        nd["links"],
        json!([{ "id": "eth0", "type": "phy", "name": "eth0" }])
    );
    let types: Vec<&str> = nd["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["ipv4_dhcp", "ipv6_dhcp"]);
    assert_eq!(nd["services"], json!([]));
}

#[test]
fn netplan_static_converts_addresses_routes_and_nameservers() {
    let nd = network_data(static_v2()).expect("convert");
    assert_eq!(
        nd["links"],
        json!([{ "id": "lan", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56", "name": "lan0", "mtu": 9000 }])
    );
    let v4 = &nd["networks"][0];
    assert_eq!(
        (v4["type"].as_str(), v4["ip_address"].as_str()),
        (Some("ipv4"), Some("192.0.2.10"))
    );
    assert_eq!(v4["netmask"], "255.255.255.0");
    assert_eq!(
        v4["routes"],
        json!([
            { "network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1" },
            { "network": "198.51.100.0", "netmask": "255.255.255.0", "gateway": "192.0.2.254", "metric": 50 }
        ])
    );
    assert_eq!(v4["dns_search"], json!(["example.net"]));
    let v6 = &nd["networks"][1];
    assert_eq!(
        (v6["type"].as_str(), v6["netmask"].as_str()),
        (Some("ipv6"), Some("ffff:ffff:ffff:ffff::"))
    );
    assert_eq!(
        nd["services"],
        json!([{ "type": "dns", "address": "192.0.2.53" }, { "type": "dns", "address": "2001:db8::53" }])
    );
}

#[test]
fn cloud_init_v1_static_converts_like_netplan() {
    let v1 = json!({ "version": 1, "config": [
        { "type": "physical", "name": "eth0", "mac_address": "52:54:00:AA:BB:CC", "subnets": [
            { "type": "static", "address": "10.1.0.5", "netmask": "255.255.0.0", "gateway": "10.1.0.1",
              "dns_nameservers": ["10.1.0.2"] },
            { "type": "dhcp6" }
        ]},
        { "type": "nameserver", "address": ["10.1.0.3"], "search": ["lab"] }
    ]});
    let nd = network_data(v1).expect("convert");
    assert_eq!(nd["links"][0]["ethernet_mac_address"], "52:54:00:aa:bb:cc");
    assert_eq!(nd["networks"][0]["ip_address"], "10.1.0.5");
    assert_eq!(nd["networks"][0]["netmask"], "255.255.0.0");
    assert_eq!(nd["networks"][0]["routes"][0]["gateway"], "10.1.0.1");
    assert_eq!(nd["networks"][0]["dns_search"], json!(["lab"]));
    assert_eq!(nd["networks"][1]["type"], "ipv6_dhcp");
    assert_eq!(nd["services"].as_array().map(Vec::len), Some(2));
}

#[test]
fn unconvertible_network_config_is_refused_with_its_path() {
    let bond =
        json!({ "version": 2, "ethernets": {}, "bonds": { "bond0": { "interfaces": ["eth0"] } } });
    let e = network_data(bond).unwrap_err().to_string();
    assert!(
        e.starts_with("configdrive.network_config.bonds:") && e.contains("nocloud"),
        "{e}"
    );

    let dhcp_gw =
        json!({ "version": 2, "ethernets": { "eth0": { "dhcp4": true, "gateway4": "10.0.0.1" } } });
    let e = network_data(dhcp_gw).unwrap_err().to_string();
    assert!(
        e.starts_with("configdrive.network_config.ethernets.eth0.gateway4:"),
        "{e}"
    );

    let glob = json!({ "version": 2, "ethernets": { "all": { "match": { "name": "en*" }, "dhcp4": true } } });
    let e = network_data(glob).unwrap_err().to_string();
    assert!(
        e.starts_with("configdrive.network_config.ethernets.all.match.name:"),
        "{e}"
    );

    let bad_addr = json!({ "version": 2, "ethernets": { "eth0": { "addresses": ["10.0.0.5"] } } });
    let e = network_data(bad_addr).unwrap_err().to_string();
    assert!(
        e.starts_with("configdrive.network_config.ethernets.eth0.addresses[0]:"),
        "{e}"
    );
}
