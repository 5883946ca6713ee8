//! The integration recipes (docs/integrations/), checked with the real tools that run
//! here: Foreman's templates rendered by Ruby's ERB for sample hosts and the result
//! validated and planned by imprint; the Tinkerbell action image `make` writes,
//! inspected by `skopeo`, unpacked by `umoci`, pushed to a real registry, and its
//! entrypoint run; the Tinkerbell template read by a real YAML parser.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::registry::{Access, Registry};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn foreman_template(name: &str) -> PathBuf {
    repo_root().join("integrations/foreman").join(name)
}

/// Renders `template` for `host` with the ERB harness; (exit status, stdout, stderr).
fn render(template: &Path, host: &Value) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let host_file = dir.path().join("host.json");
    std::fs::write(&host_file, host.to_string()).unwrap();
    Command::new("ruby")
        .arg(repo_root().join("tests/integrations/foreman_render.rb"))
        .arg(template)
        .arg(&host_file)
        .output()
        .expect("ruby (make deps installs it)")
}

fn rendered(template: &Path, host: &Value) -> String {
    let out = render(template, host);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn host(name: &str, params: Value) -> Value {
    json!({
        "name": name, "id": 17, "mac": "52:54:00:12:34:56",
        "foreman_url": "https://foreman.example", "token": "f0reman-build-token",
        "params": params,
        "snippets": {"imprint user_data": "#cloud-config\nruncmd: [[sh, -c, \"echo imprint-ok > /dev/console\"]]\n"}
    })
}

#[test]
fn foreman_renders_a_single_disk_document_that_plans_on_this_machine() {
    let disk = LoopDev::new(10 << 30, 512);
    let h = host(
        "web-01.example.com",
        json!({
            "imprint_image_url": "http://10.0.2.2:8080/images/web.raw.zst",
            "imprint_image_sha256": "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
            "imprint_report_url": "http://10.0.2.2:8080/report/web-01",
        }),
    );
    let doc = rendered(&foreman_template("imprint_provision.erb"), &h);
    let v = imprint_with_doc(&["validate"], &doc);
    assert_eq!(v.code, 0, "{}\n{doc}", v.stderr);
    let plan = imprint_with_doc(&["plan", "--json", "--disks", disk.dev()], &doc);
    assert_eq!(plan.code, 0, "{}\n{doc}", plan.stderr);
    let p: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(p["disks"][0]["path"], disk.dev(), "{p:#}");
    assert_eq!(p["host"]["hostname"], "web-01.example.com", "{p:#}");
    // Foreman learns the outcome from its own URLs, whose token is never shown.
    assert_eq!(
        p["report"]["built"],
        "https://foreman.example/unattended/built?<redacted>"
    );
    assert_eq!(
        p["report"]["failed"],
        "https://foreman.example/unattended/failed?<redacted>"
    );
    assert!(!plan.stdout.contains("f0reman-build-token"));
}

#[test]
fn foreman_renders_the_mirrored_encrypted_layout_and_imprint_validates_it() {
    let h = host(
        "db-17.example.com",
        json!({
            "imprint_image_url": "http://10.0.2.2:8080/images/debian-12-rootfs.tar.zst",
            "imprint_image_sha256": "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
            "imprint_image_format": "rootfs",
            "imprint_mirror": "true",
            "imprint_disk_serials": "SN-A-0001, SN-B-0002",
            "imprint_tang_servers": "http://10.0.2.2:7500#abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
            "imprint_tpm2": "true",
            "imprint_luks_threshold": "2",
            "imprint_lvm": [
                {"mount": "/", "size": "4GiB", "type": "xfs"},
                {"mount": "/var", "size": "rest", "type": "xfs", "options": ["nodev"]},
                {"swap": true, "size": "256MiB"}
            ],
            "imprint_report_url": "http://10.0.2.2:8080/report/db-17",
        }),
    );
    let doc = rendered(&foreman_template("imprint_provision.erb"), &h);
    let v = imprint_with_doc(&["validate", "--json"], &doc);
    assert_eq!(v.code, 0, "{}\n{}\n{doc}", v.stdout, v.stderr);
    let d: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(d["storage"]["layout"]["mirror"], json!(["a", "b"]));
    assert_eq!(d["disks"][1]["match"]["serial"], "SN-B-0002");
    assert_eq!(d["storage"]["layout"]["luks"]["threshold"], 2);
    assert_eq!(
        d["storage"]["layout"]["luks"]["tang"][0]["thumbprint"],
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
    );
    assert!(d["configdrive"]["user_data"]
        .as_str()
        .unwrap()
        .contains("imprint-ok"));
}

#[test]
fn foreman_refuses_to_render_a_host_without_an_image() {
    let out = render(
        &foreman_template("imprint_provision.erb"),
        &host("bare.example.com", json!({})),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host parameter imprint_image_url is not set for bare.example.com"),
        "{err}"
    );
}

#[test]
fn foreman_ipxe_template_chains_the_content_named_script() {
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("out/boot/current.json")).expect("make publishes out/boot"),
    )
    .unwrap();
    let script = manifest["ipxe"]["name"].as_str().unwrap();
    let h = host(
        "web-01.example.com",
        json!({
            "imprint_boot_url": "http://prov.example/imprint",
            "imprint_boot_script": script,
            "imprint_kargs": "imprint.report_timeout=30",
        }),
    );
    let text = rendered(&foreman_template("imprint_ipxe.erb"), &h);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "#!ipxe",
            "set imprint_base http://prov.example/imprint/",
            "set imprint_config https://foreman.example/unattended/provision?token=f0reman-build-token",
            "set imprint_kargs imprint.report_timeout=30",
            &format!("chain ${{imprint_base}}{script}"),
        ],
        "{text}"
    );
}

fn action_dir() -> PathBuf {
    let d = repo_root().join("out/tinkerbell");
    assert!(d.join("index.json").exists(), "make writes {}", d.display());
    d
}

fn version() -> String {
    sh(imprint_bin().to_str().unwrap(), &["--version"])
        .trim()
        .trim_start_matches("imprint ")
        .to_string()
}

#[test]
fn the_tinkerbell_action_is_an_oci_image_of_the_agent_that_runs() {
    let layout = format!("oci:{}:{}", action_dir().display(), version());
    let config: Value =
        serde_json::from_str(&sh("skopeo", &["inspect", "--config", &layout])).unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        json!(["/usr/bin/imprint", "run", "--no-finish"]),
        "{config:#}"
    );
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");

    // umoci checks every digest as it unpacks; the one file is the agent, byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let image = format!("{}:{}", action_dir().display(), version());
    sh(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &image,
            bundle.to_str().unwrap(),
        ],
    );
    let agent = bundle.join("rootfs/usr/bin/imprint");
    assert_eq!(
        std::fs::read(&agent).unwrap(),
        std::fs::read(imprint_bin()).unwrap(),
        "the image holds out/imprint"
    );
    // What a tink-agent runs: the entrypoint with the template's environment (a
    // document that is not there: a 404 fails at once).
    let server = imprint_tests::server::Server::start();
    let doc_url = server.url("/hosts/web-01.yaml");
    let run = Command::new(&agent)
        .args(["run", "--no-finish"])
        .env("IMPRINT_CONFIG", &doc_url)
        .env("IMPRINT_REPORT_TIMEOUT", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_ne!(run.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&doc_url),
        "the document comes from IMPRINT_CONFIG: {err}"
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path == "/hosts/web-01.yaml"),
        "it was asked for"
    );

    // A registry takes it as built, and gives back the same manifest.
    let registry = Registry::start(Access::Open);
    let dest = format!(
        "docker://{}/tink/imprint-action:{}",
        registry.host(),
        version()
    );
    sh(
        "skopeo",
        &["copy", "--dest-tls-verify=false", &layout, &dest],
    );
    let local: Value = serde_json::from_str(&sh("skopeo", &["inspect", &layout])).unwrap();
    let remote: Value =
        serde_json::from_str(&sh("skopeo", &["inspect", "--tls-verify=false", &dest])).unwrap();
    assert_eq!(local["Digest"], remote["Digest"], "{remote:#}");
}

#[test]
fn the_action_image_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let again = dir.path().join("again");
    sh(
        "bash",
        &[
            repo_root()
                .join("integrations/tinkerbell/build-action.sh")
                .to_str()
                .unwrap(),
            imprint_bin().to_str().unwrap(),
            again.to_str().unwrap(),
        ],
    );
    let index = |d: &Path| std::fs::read(d.join("index.json")).unwrap();
    assert_eq!(
        index(&action_dir()),
        index(&again),
        "same agent, same image"
    );
}

#[test]
fn the_tinkerbell_template_runs_the_action_with_the_document_url() {
    // A real YAML parser (Ruby's Psych) reads the Template and its data.
    let to_json = |file: &Path, key: Option<&str>| -> Value {
        let script = match key {
            None => "puts JSON.generate(YAML.safe_load(File.read(ARGV[0])))",
            Some(_) => {
                "puts JSON.generate(YAML.safe_load(YAML.safe_load(File.read(ARGV[0]))['spec']['data']))"
            }
        };
        let out = Command::new("ruby")
            .args(["-ryaml", "-rjson", "-e", script])
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let file = repo_root().join("integrations/tinkerbell/template.yaml");
    let template = to_json(&file, None);
    assert_eq!(template["kind"], "Template");
    let data = to_json(&file, Some("data"));
    let actions = data["tasks"][0]["actions"].as_array().unwrap();
    let imprint = &actions[0];
    assert!(
        imprint["image"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/imprint-action:{}", version())),
        "{imprint:#}"
    );
    assert!(imprint["environment"]["IMPRINT_CONFIG"]
        .as_str()
        .unwrap()
        .starts_with("http"));
    assert_eq!(
        actions.last().unwrap()["pid"],
        "host",
        "the reboot runs in the host"
    );
    let volumes = data["tasks"][0]["volumes"].as_array().unwrap();
    assert!(volumes.contains(&json!("/dev:/dev")), "{volumes:?}");
}
