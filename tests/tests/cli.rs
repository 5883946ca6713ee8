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
fn plan_refuses_an_image_of_another_architecture_and_plans_it_for_a_host_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let disk = |path: &str, serial: &str| {
        serde_json::json!({"path": path, "size_bytes": 20u64 << 30, "logical_sector": 512,
            "physical_sector": 512, "rotational": false, "removable": false, "read_only": false,
            "serial": serial, "by_path": [], "partitions": [], "signatures": [], "holders": [],
            "mounts": []})
    };
    let disks = serde_json::json!([disk("/dev/vda", "SN-A-0001"), disk("/dev/vdb", "SN-B-0002")]);
    // The image is built for the architecture the agent (this machine) is not.
    let (other, this) = if agent_arch() == "aarch64" {
        ("x86_64", "aarch64")
    } else {
        ("aarch64", "x86_64")
    };
    let doc = seed_doc().replace(
        "  format: rootfs\n",
        &format!("  format: rootfs\n  arch: {other}\n"),
    );
    let bare = dir.path().join("disks.json");
    std::fs::write(&bare, disks.to_string()).unwrap();
    let (code, _, err) = imprint(&["plan", "--inventory", bare.to_str().unwrap()], Some(&doc));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("image.arch")
            && err.contains(&format!("built for {other} and this machine is {this}")),
        "{err}"
    );
    // A host inventory of that architecture plans it, without a BIOS boot partition on Arm.
    let host = dir.path().join("host.json");
    std::fs::write(
        &host,
        serde_json::json!({"schema_version": 1, "cpu": {"architecture": other}, "disks": disks})
            .to_string(),
    )
    .unwrap();
    let (code, out, err) = imprint(
        &["plan", "--json", "--inventory", host.to_str().unwrap()],
        Some(&doc),
    );
    assert_eq!(code, 0, "{err}");
    let bios_boot = "21686148-6449-6E6F-744E-656564454649";
    assert_eq!(
        out.to_ascii_uppercase().contains(bios_boot),
        other == "x86_64",
        "{out}"
    );
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
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&default).unwrap(),
        schema("document")
    );
    // The report schema is what the test server checks every report against.
    ReportSchema::new(&schema("report"));
    let disk = LoopDev::new(64 << 20, 512);
    let (code, out, err) = imprint(&["disks", "--json", "--disks", disk.dev()], None);
    assert_eq!(code, 0, "{err}");
    let inventory: serde_json::Value = serde_json::from_str(&out).unwrap();
    ReportSchema::new(&schema("disks"))
        .check(&inventory)
        .unwrap_or_else(|e| panic!("{e}"));
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
    // The host inventory `imprint inventory` prints, carrying the same disks, plans alike.
    let (code, host, err) = imprint(&["inventory"], None);
    assert_eq!(code, 0, "{err}");
    let mut host: serde_json::Value = serde_json::from_str(&host).unwrap();
    ReportSchema::new(&schema("inventory"))
        .check(&host)
        .unwrap_or_else(|e| panic!("{e}"));
    host["disks"] = serde_json::Value::Array(disks.clone());
    let host_path = dir.path().join("host.json");
    std::fs::write(&host_path, host.to_string()).unwrap();
    std::fs::write(&inv_path, serde_json::Value::Array(disks).to_string()).unwrap();
    let (code, out, err) = imprint(
        &["plan", "--json", "--inventory", inv_path.to_str().unwrap()],
        Some(&seed_doc()),
    );
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    ReportSchema::new(&schema("plan"))
        .check(&plan)
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, from_host, err) = imprint(
        &["plan", "--json", "--inventory", host_path.to_str().unwrap()],
        Some(&seed_doc()),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&from_host).unwrap(),
        plan
    );
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

// ---- exit codes, safety and output of the command line (docs/cli.md) ----

use imprint_tests::provision as run;
use imprint_tests::server::Server;

/// Unmounts on drop.
struct Mounted(tempfile::TempDir);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn run_keeps_each_failure_its_documented_exit_code() {
    let server = Server::start();
    // A document URL the server does not have: it could not be fetched (8), not "a step failed" (5).
    let url = server.url("/no/such/host.yaml");
    let r = run::imprint(&["run", "--no-finish", "--config", &url]);
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(
        r.stderr.contains(&url),
        "the message names the URL: {}",
        r.stderr
    );
    // A document that is there but invalid: 3, with its JSON path.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, WEB_DOC.replace("format: disk", "formt: disk")).unwrap();
    // (--report-timeout: the document's report server is not there; the failure report gives up fast.)
    let r = run::imprint(&[
        "run",
        "--no-finish",
        "--report-timeout",
        "1",
        "--config",
        &format!("file://{}", bad.display()),
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("formt"), "{}", r.stderr);
}

/// A file holding a blank customization area 64 KiB in, where the sector scan finds it.
fn iso_with_area() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let len: u32 = 256 * 1024;
    let mut bytes = vec![0u8; 1 << 20];
    let area = &mut bytes[64 << 10..];
    area[..23].copy_from_slice(b"IMPRINT-CONFIG-AREA-v1\n");
    area[32..36].copy_from_slice(&len.to_le_bytes());
    let iso = dir.path().join("imprint.iso");
    std::fs::write(&iso, &bytes).unwrap();
    (dir, iso)
}

#[test]
fn iso_customize_refuses_an_invalid_document_and_leaves_the_iso_untouched() {
    let (dir, iso) = iso_with_area();
    let iso_s = iso.to_str().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, WEB_DOC).unwrap();
    let r = run::imprint(&[
        "iso",
        "customize",
        "--config",
        good.to_str().unwrap(),
        "--karg",
        "ip=dhcp",
        iso_s,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = std::fs::read(&iso).unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        WEB_DOC.replace("min_size: 4GiB", "min_size: 4 parsecs"),
    )
    .unwrap();
    let r = run::imprint(&["iso", "customize", "--config", bad.to_str().unwrap(), iso_s]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("disks[0].match.min_size"),
        "the JSON path is named: {}",
        r.stderr
    );
    assert!(std::fs::read(&iso).unwrap() == before, "the ISO changed");
    let shown = run::imprint(&["iso", "show", iso_s]);
    assert!(
        shown.code == 0 && shown.stdout.contains("web-01") && shown.stdout.contains("ip=dhcp"),
        "{shown:?}"
    );
    // A document that cannot be read: 8; a file that is no imprint ISO: 9; a bad argument: 2.
    let r = run::imprint(&[
        "iso",
        "customize",
        "--config",
        "/nonexistent/doc.yaml",
        iso_s,
    ]);
    assert_eq!(r.code, 8, "{}", r.stderr);
    let plain = dir.path().join("plain.bin");
    std::fs::write(&plain, vec![0u8; 1 << 20]).unwrap();
    let r = run::imprint(&["iso", "show", plain.to_str().unwrap()]);
    assert_eq!(r.code, 9, "{}", r.stderr);
    let r = run::imprint(&["iso", "customize", "--karg", "a\nb", iso_s]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(std::fs::read(&iso).unwrap() == before, "the ISO changed");
}

#[test]
fn configdrive_onto_a_device_asks_first() {
    let disk = LoopDev::new(64 << 20, 512);
    let before = disk.read_at(0, 1 << 20);
    // No terminal, no --yes: refused (6), nothing written.
    let r = run::imprint_with_doc(&["configdrive", "--target", disk.dev()], WEB_DOC);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    assert_eq!(
        disk.read_at(0, 1 << 20),
        before,
        "the device changed without consent"
    );
    // With --yes it is written: a vfat labelled cidata.
    let r = run::imprint_with_doc(&["configdrive", "--yes", "--target", disk.dev()], WEB_DOC);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let label = sh("blkid", &["-o", "value", "-s", "LABEL", disk.dev()]);
    assert_eq!(label.trim(), "cidata");
}

#[test]
fn configdrive_refuses_a_mounted_device_even_with_force() {
    let disk = LoopDev::new(64 << 20, 512);
    sh("mkfs.ext4", &["-q", "-F", "-L", "busy", disk.dev()]);
    let mnt = Mounted(tempfile::tempdir().unwrap());
    sh("mount", &[disk.dev(), mnt.0.path().to_str().unwrap()]);
    let before = disk.read_at(0, 1 << 20);
    let r = run::imprint_with_doc(&["configdrive", "--yes", "--target", disk.dev()], WEB_DOC);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("mounted"), "{}", r.stderr);
    // --force passes the disk-level checks, but the exclusive open still refuses the target.
    let r = run::imprint_with_doc(
        &["configdrive", "--yes", "--force", "--target", disk.dev()],
        WEB_DOC,
    );
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("in use"), "{}", r.stderr);
    assert_eq!(
        disk.read_at(0, 1 << 20),
        before,
        "the mounted device changed"
    );
}

#[test]
fn configdrive_refuses_a_device_another_program_holds() {
    use std::os::unix::fs::OpenOptionsExt;
    let disk = LoopDev::new(64 << 20, 512);
    // What md, dm or a running mkfs does: an exclusive claim on the device.
    let _held = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(&disk.path)
        .unwrap();
    let before = disk.read_at(0, 1 << 20);
    let r = run::imprint_with_doc(&["configdrive", "--yes", "--target", disk.dev()], WEB_DOC);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("in use"), "{}", r.stderr);
    assert_eq!(disk.read_at(0, 1 << 20), before, "the held device changed");
}

#[test]
fn validate_json_lists_every_error_with_its_place() {
    let (code, out, _) = imprint(&["validate", "--json"], Some(WEB_DOC));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["hostname"], "web-01");
    assert_eq!(v["errors"], serde_json::json!([]));
    // A parse error: path, line and column.
    let (code, out, _) = imprint(
        &["validate", "--json"],
        Some(&WEB_DOC.replace("format: disk", "formt: disk")),
    );
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    let e = &v["errors"][0];
    assert_eq!(e["path"], "image.formt", "{v:#}");
    assert_eq!(e["line"], 9, "{v:#}");
    assert!(e["column"].as_u64().is_some(), "{v:#}");
    assert!(
        e["message"].as_str().unwrap().starts_with("unknown field"),
        "{v:#}"
    );
    assert!(
        !e["message"].as_str().unwrap().contains("(line"),
        "the place is in the fields: {v:#}"
    );
    // An unreadable document: still JSON on stdout, exit 8.
    let (code, out, _) = imprint(&["validate", "--json", "/nonexistent/host.yaml"], None);
    assert_eq!(code, 8);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/host.yaml"),
        "{v:#}"
    );
}

#[test]
fn quiet_prints_no_progress() {
    let img = TestImage::build(48, 512);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, &img.raw).unwrap();
    let url = format!("file://{}", raw.display());
    let sha = sha256_hex(&img.raw);
    let disk = LoopDev::new(128 << 20, 512);
    let args = [
        "write-image",
        "--yes",
        "--url",
        &url,
        "--sha256",
        &sha,
        "--target",
        disk.dev(),
    ];
    let loud = run::imprint(&args);
    assert_eq!(loud.code, 0, "{}", loud.stderr);
    assert!(
        loud.stderr.contains("step write-image"),
        "without --quiet the step is logged: {}",
        loud.stderr
    );
    let mut quiet_args = vec!["--quiet"];
    quiet_args.extend_from_slice(&args);
    let quiet = run::imprint(&quiet_args);
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert_eq!(quiet.stderr, "", "--quiet printed on stderr");
}

#[test]
fn man_pages_and_completions_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = imprint(&["generate-docs", dir.path().to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    for page in [
        "imprint",
        "imprint-apply",
        "imprint-run",
        "imprint-validate",
        "imprint-iso",
        "imprint-iso-customize",
    ] {
        let path = dir.path().join(format!("man/{page}.1"));
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.len() > 200,
            "man -l {}: {text}",
            path.display()
        );
    }
    let apply = std::fs::read_to_string(dir.path().join("man/imprint-apply.1")).unwrap();
    assert!(
        apply.contains("keep\\-on\\-failure") || apply.contains("keep-on-failure"),
        "{apply}"
    );
    assert!(
        !dir.path().join("man/imprint-generate-docs.1").exists(),
        "the hidden command has no page"
    );
    for name in ["imprint.bash", "_imprint", "imprint.fish"] {
        let text = std::fs::read_to_string(dir.path().join("completions").join(name)).unwrap();
        assert!(
            text.contains("write-image") && text.contains("quiet"),
            "{name}: {text}"
        );
    }
    let bash = sh_any(
        "bash",
        &[
            "-n",
            dir.path()
                .join("completions/imprint.bash")
                .to_str()
                .unwrap(),
        ],
    );
    assert!(
        bash.status.success(),
        "{}",
        String::from_utf8_lossy(&bash.stderr)
    );
    // `make agent` leaves them in out/ too.
    let out = repo_root().join("out");
    if imprint_bin() == out.join("imprint") {
        assert!(out.join("man/imprint.1").exists() && out.join("completions/_imprint").exists());
    }
}
