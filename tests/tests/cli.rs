//! The binary as an operator meets it: static, runs in an empty chroot, validates the
//! product's documents, explains bad ones with their JSON path, prints its schema.

use imprint_tests::fixtures::*;
use std::process::Command;

use imprint_tests::documents::{SEED_DOC, WEB_DOC};

/// The seed document with its placeholders filled with well-formed values.
fn seed_doc() -> String {
    SEED_DOC
        .replace(
            "<S256 thumbprint of a signing key>",
            "Oq5AZkYvNHBIm0IqKrWtwL4yWBwfGbOzxdAuNYLvKmc",
        )
        .replace("<128 hex digits>", &"ab".repeat(64))
}

fn imprint(args: &[&str], stdin_doc: Option<&str>) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if let Some(doc) = stdin_doc {
        let p = dir.path().join("doc.yaml");
        std::fs::write(&p, doc).unwrap();
        a.push(p.to_str().unwrap().to_string());
    }
    let out = Command::new(imprint_bin()).args(&a).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn binary_is_static_and_runs_in_an_empty_chroot() {
    let bin = imprint_bin();
    let file = sh("file", &[bin.to_str().unwrap()]);
    assert!(file.contains("statically linked"), "{file}");
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&bin, root.path().join("imprint")).unwrap();
    std::fs::write(root.path().join("doc.yaml"), WEB_DOC).unwrap();
    let chroot = |args: &[&str]| {
        Command::new("/usr/sbin/chroot")
            .arg(root.path())
            .arg("/imprint")
            .args(args)
            .env_clear()
            .output()
            .unwrap()
    };
    let v = chroot(&["--version"]);
    assert!(
        v.status.success() && String::from_utf8_lossy(&v.stdout).starts_with("imprint "),
        "{v:?}"
    );
    let val = chroot(&["validate", "/doc.yaml"]);
    assert!(
        val.status.success(),
        "validate in an empty chroot: {}",
        String::from_utf8_lossy(&val.stderr)
    );
}

#[test]
fn both_product_documents_validate() {
    let (code, out, err) = imprint(&["validate"], Some(WEB_DOC));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("web-01"));
    let (code, _, err) = imprint(&["validate"], Some(&seed_doc()));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn plan_expands_the_seed_document_against_a_reported_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let inv = serde_json::json!([
        {"path": "/dev/vda", "size_bytes": 20u64 << 30, "logical_sector": 512, "physical_sector": 512, "rotational": false,
         "removable": false, "read_only": false, "serial": "SN-A-0001", "by_path": [], "partitions": [], "signatures": [], "holders": [], "mounts": []},
        {"path": "/dev/vdb", "size_bytes": 20u64 << 30, "logical_sector": 512, "physical_sector": 512, "rotational": false,
         "removable": false, "read_only": false, "serial": "SN-B-0002", "by_path": [], "partitions": [], "signatures": [], "holders": [], "mounts": []}
    ]);
    let inv_path = dir.path().join("inv.json");
    std::fs::write(&inv_path, inv.to_string()).unwrap();
    let (code, out, err) = imprint(
        &["plan", "--json", "--inventory", inv_path.to_str().unwrap()],
        Some(&seed_doc()),
    );
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        !out.contains("another-token"),
        "the token is redacted in the plan"
    );
    let text = out.to_string();
    // The tang pin needs the network in the deployed initramfs, and the plan says so.
    for want in [
        "/dev/vda",
        "/dev/vdb",
        "/var/log/audit",
        "nodev",
        "1.0",
        "1.2",
        "ip=dhcp",
    ] {
        assert!(text.contains(want), "plan lacks {want}");
    }
    assert!(plan["steps"].as_array().unwrap().len() > 5);
    let (code, human, err) = imprint(
        &["plan", "--inventory", inv_path.to_str().unwrap()],
        Some(&seed_doc()),
    );
    assert_eq!(code, 0, "{err}");
    assert!(human.contains("/dev/vda") && !human.contains("another-token"));
}

#[test]
fn typo_in_a_document_names_its_path() {
    let typo = WEB_DOC.replace("format: disk", "formt: disk");
    let (code, _, err) = imprint(&["validate"], Some(&typo));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("image") && err.contains("formt"), "{err}");
    let bad_url = WEB_DOC.replace(
        "url: http://10.0.2.2:8080/images/web.raw.zst",
        "url: htp:/nowhere",
    );
    let (code, _, err) = imprint(&["plan"], Some(&bad_url));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("image.url"), "{err}");
    let bad_size = WEB_DOC.replace("min_size: 4GiB", "min_size: 4 parsecs");
    let (code, _, err) = imprint(&["validate"], Some(&bad_size));
    assert_eq!(code, 3);
    assert!(err.contains("disks[0].match.min_size"), "{err}");
}

#[test]
fn schema_is_json_and_strict() {
    let (code, out, _) = imprint(&["schema"], None);
    assert_eq!(code, 0);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    let text = s.to_string();
    for key in [
        "host",
        "disks",
        "storage",
        "image",
        "configdrive",
        "boot",
        "report",
        "finish",
    ] {
        assert!(text.contains(&format!("\"{key}\"")), "schema lacks {key}");
    }
    assert!(text.contains("\"additionalProperties\":false"));
}

#[test]
fn schema_kinds_describe_what_the_binary_prints() {
    use imprint_tests::report_schema::ReportSchema;
    let schema = |kind: &str| -> serde_json::Value {
        let (code, out, err) = imprint(&["schema", kind], None);
        assert_eq!(code, 0, "schema {kind}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    let (_, default, _) = imprint(&["schema"], None);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&default).unwrap(), schema("document"));
    // The report schema is what the test server checks every report against.
    ReportSchema::new(&schema("report"));
    let disk = LoopDev::new(64 << 20, 512);
    let (code, out, err) = imprint(&["disks", "--json", "--disks", disk.dev()], None);
    assert_eq!(code, 0, "{err}");
    let inventory: serde_json::Value = serde_json::from_str(&out).unwrap();
    ReportSchema::new(&schema("inventory")).check(&inventory).unwrap_or_else(|e| panic!("{e}"));
    // The seed document's plan against a reported two-disk inventory.
    let dir = tempfile::tempdir().unwrap();
    let inv_path = dir.path().join("inv.json");
    let mut disks = inventory.as_array().unwrap().clone();
    for (i, path) in ["/dev/vda", "/dev/vdb"].iter().enumerate() {
        let mut d = inventory[0].clone();
        d["path"] = serde_json::json!(path);
        d["size_bytes"] = serde_json::json!(20u64 << 30);
        d["serial"] = serde_json::json!(["SN-A-0001", "SN-B-0002"][i]);
        d["rotational"] = serde_json::json!(false);
        d["by_path"] = serde_json::json!([]);
        disks.push(d);
    }
    disks.remove(0);
    std::fs::write(&inv_path, serde_json::Value::Array(disks).to_string()).unwrap();
    let (code, out, err) = imprint(&["plan", "--json", "--inventory", inv_path.to_str().unwrap()], Some(&seed_doc()));
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    ReportSchema::new(&schema("plan")).check(&plan).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn missing_document_is_a_clear_error() {
    let (code, _, err) = imprint(&["validate", "/nonexistent/host.yaml"], None);
    assert_eq!(code, 8);
    assert!(err.contains("/nonexistent/host.yaml"), "{err}");
}

#[test]
fn disks_lists_a_loop_device_with_its_attributes() {
    let disk = LoopDev::new(256 << 20, 4096);
    let (code, out, err) = imprint(&["disks", "--json", "--disks", disk.dev()], None);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let d = &v[0];
    assert_eq!(d["path"], disk.dev());
    assert_eq!(d["size_bytes"], 256u64 << 20);
    assert_eq!(d["logical_sector"], 4096);
}

#[test]
fn every_example_document_in_the_docs_validates() {
    let mut checked = Vec::new();
    for name in [
        "README.md",
        "docs/document.md",
        "docs/storage.md",
        "docs/bindings.md",
        "docs/boot.md",
        "docs/cli.md",
    ] {
        let text = std::fs::read_to_string(repo_root().join(name)).unwrap();
        for (i, block) in text.split("```yaml\n").skip(1).enumerate() {
            let doc = block.split("```").next().unwrap();
            if !doc.starts_with("version: 1") {
                continue;
            }
            let (code, out, err) = imprint(&["validate"], Some(doc));
            assert_eq!(code, 0, "{name}, yaml block {}: {out}{err}\n{doc}", i + 1);
            checked.push(format!("{name}#{}", i + 1));
        }
    }
    assert!(
        checked.len() >= 3,
        "the docs hold the two product documents and the data-partition example: {checked:?}"
    );
}

#[test]
fn the_document_reference_describes_every_schema_field() {
    let (code, out, _) = imprint(&["schema"], None);
    assert_eq!(code, 0);
    let schema: serde_json::Value = serde_json::from_str(&out).unwrap();
    let doc = std::fs::read_to_string(repo_root().join("docs/document.md")).unwrap();
    let mut missing = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Object(props)) = m.get("properties") {
                    out.extend(props.keys().cloned());
                }
                m.values().for_each(|x| walk(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut fields = Vec::new();
    walk(&schema, &mut fields);
    assert!(fields.len() > 40, "the schema lists its fields");
    for f in fields {
        if !doc.contains(&format!("`{f}`")) {
            missing.push(f);
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "docs/document.md does not describe: {missing:?}"
    );
}
