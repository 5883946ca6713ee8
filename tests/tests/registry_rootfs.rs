//! Container images as `format: rootfs` through the real binary onto loop devices:
//! a three-layer OCI image (gzip, gzip, zstd) with whiteouts, an opaque directory
//! marked after the layer's own entry, an overwritten file, a hard link to a lower
//! layer's file and a separate /var, written with Python's `tarfile`, pushed with
//! `skopeo` to Debian's `docker-registry` and deployed by imprint; the tree is compared
//! with what `umoci unpack` makes of the same image (its third layer gzip: umoci 0.4.7
//! refuses zstd). A wrong diff_id fails the step; a missing layer blob fails the
//! preflight with the disk as it was, and so do a wrong password, a wrong manifest
//! digest and a missing config.
//!
//! The runs share the agent's one staging root, so they run one after the other.

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::registry::layout::{Layout, LAYER_GZIP, LAYER_ZSTD};
use imprint_tests::registry::sigstore::Sigstore;
use imprint_tests::registry::{Access, Registry};
use imprint_tests::server::Server;
use imprint_tests::signing::{keys, rogue};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

const REPORT: &str = "/report/web-01";
const REPO: &str = "os/app";

/// One run at a time: the agent assembles every target under the same staging root.
static SERIAL: Mutex<()> = Mutex::new(());

/// Writes a tar of `spec` (one member a line: `type|path|mode|uid|gid|data or link`,
/// type `f` file, `F` file copied from a host path, `d` dir, `l` symlink, `h` hard
/// link) with Python's tarfile, in order.
fn tar(spec: &str) -> Vec<u8> {
    let py = r#"
import io, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    for line in sys.argv[1].strip().splitlines():
        kind, path, mode, uid, gid, data = line.strip().split("|")
        i = tarfile.TarInfo(path)
        i.mode, i.uid, i.gid, i.mtime = int(mode, 8), int(uid), int(gid), 1700000000
        body = None
        if kind == "f":
            body = data.encode(); i.size = len(body)
        elif kind == "F":
            body = open(data, "rb").read(); i.size = len(body)
        elif kind == "d":
            i.type = tarfile.DIRTYPE
        elif kind == "l":
            i.type, i.linkname = tarfile.SYMTYPE, data
        elif kind == "h":
            i.type, i.linkname = tarfile.LNKTYPE, data
        t.addfile(i, io.BytesIO(body) if body is not None else None)
sys.stdout.buffer.write(buf.getvalue())
"#;
    let out = Command::new("python3")
        .args(["-c", py, spec])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `data` compressed by `prog` (`gzip -n`, `zstd`).
fn compress(prog: &str, data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("layer.tar");
    std::fs::write(&f, data).unwrap();
    let args: Vec<&str> = match prog {
        "gzip" => vec!["-n", "-q", "-k", "-c"],
        _ => vec!["-q", "-c"],
    };
    let out = Command::new(prog).args(&args).arg(&f).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

const LAYER1: &str = "
d|etc|755|0|0|
f|etc/a.conf|644|0|0|a
f|etc/b.conf|600|0|0|b
d|opt|755|0|0|
d|opt/x|755|0|0|
f|opt/x/old1|644|0|0|old1
d|opt/x/sub|700|0|0|
f|opt/x/sub/deep|644|0|0|deep
d|bin|755|0|0|
f|bin/tool|755|0|0|v1
l|bin/tool-link|777|0|0|tool
h|bin/tool-hard|755|0|0|bin/tool
f|bin/su-ish|4755|0|0|setuid
F|bin/busybox|755|0|0|/bin/busybox
d|usr|755|0|0|
d|usr/bin|755|0|0|
l|usr/bin/env|777|0|0|/bin/busybox
d|home|755|0|0|
d|home/user|700|1000|1000|
f|home/user/.profile|640|1000|1000|export A=1
d|srv|755|0|0|
d|srv/tree|755|0|0|
f|srv/tree/f|644|0|0|f
d|var|755|0|0|
d|var/lib|755|0|0|
f|var/lib/state|644|0|0|state
d|var/log|755|0|0|
f|var/log/old.log|644|0|0|log
";

const LAYER2: &str = "
d|etc|755|0|0|
f|etc/.wh.a.conf|644|0|0|
d|opt|755|0|0|
d|opt/x|750|0|0|
f|opt/x/new|644|0|0|new
f|opt/x/.wh..wh..opq|644|0|0|
d|bin|755|0|0|
f|bin/tool|700|0|0|v2
";

const LAYER3: &str = "
d|usr|755|0|0|
d|usr/share|755|0|0|
f|usr/share/readme|644|0|0|layer three
h|usr/share/hl|600|0|0|etc/b.conf
d|var|755|0|0|
f|var/.wh.log|644|0|0|
f|srv/tree|644|0|0|a file where a tree was
l|etc/a.conf|777|0|0|b.conf
";

/// The three layers' tars.
fn tars() -> [Vec<u8>; 3] {
    [tar(LAYER1), tar(LAYER2), tar(LAYER3)]
}

fn diff_id(t: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(t))
}

/// A layout of the image with its third layer as `third` (`LAYER_GZIP` or `LAYER_ZSTD`),
/// layer `bad`'s diff_id replaced by a wrong one if given; tagged `tag`.
fn layout(third: &str, bad: Option<usize>, tag: &str) -> (Layout, String) {
    let t = tars();
    let mut layers: Vec<(Vec<u8>, &str, String)> = vec![
        (compress("gzip", &t[0]), LAYER_GZIP, diff_id(&t[0])),
        (compress("gzip", &t[1]), LAYER_GZIP, diff_id(&t[1])),
        match third {
            LAYER_ZSTD => (compress("zstd", &t[2]), LAYER_ZSTD, diff_id(&t[2])),
            _ => (compress("gzip", &t[2]), LAYER_GZIP, diff_id(&t[2])),
        },
    ];
    if let Some(i) = bad {
        layers[i].2 = format!("sha256:{}", "0".repeat(64));
    }
    let l = Layout::new();
    let m = l.container(&layers);
    l.tag(&m, tag);
    (l, m.digest)
}

/// The rootfs document: / and /var on their own partitions of one disk.
fn document(server: &Server, url: &str) -> String {
    format!(
        r#"version: 1
host: {{ hostname: web-01 }}
disks:
  - name: root
    match: {{ smallest: true, min_size: 1GiB }}
storage:
  partitions:
    - {{ name: rootp, disk: root, size: 1GiB }}
    - {{ name: varp, disk: root, size: rest }}
  filesystems:
    - {{ device: rootp, type: ext4, mount: / }}
    - {{ device: varp, type: ext4, mount: /var }}
image:
  url: {url}
  format: rootfs
boot:
  finalize:
    - [/bin/busybox, "true"]
report: {{ url: "{}", token: "{TOKEN}" }}
finish: none
"#,
        server.url(REPORT)
    )
}

/// Unmounts (innermost first) on drop.
struct Mounts(
    Vec<std::path::PathBuf>,
    #[allow(dead_code)] tempfile::TempDir,
);

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = Command::new("umount").arg(m).status();
        }
    }
}

/// The deployed root (partition 1) with /var (partition 2) mounted in it.
fn mount_deployed(disk: &LoopDev) -> Mounts {
    let _ = Command::new("partx").args(["-u", disk.dev()]).status();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let var = root.join("var");
    sh(
        "mount",
        &[&format!("{}p1", disk.dev()), root.to_str().unwrap()],
    );
    let mut m = Mounts(vec![root], dir);
    sh(
        "mount",
        &[&format!("{}p2", disk.dev()), var.to_str().unwrap()],
    );
    m.0.push(var);
    m
}

/// Every path below `root` with its type, mode, owner and contents or link target;
/// ext4's `lost+found` left out.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel == "lost+found" || rel == "var/lost+found" {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                "dir".to_string()
            } else {
                format!(
                    "file {:?}",
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap())
                )
            };
            let mode = if m.file_type().is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            out.insert(
                rel,
                format!("{what} mode {mode:o} owner {}:{}", m.uid(), m.gid()),
            );
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// What `umoci unpack` makes of `layout`'s image `tag`.
fn umoci(layout: &Layout, tag: &str) -> (tempfile::TempDir, BTreeMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let image = format!("{}:{tag}", layout.path().display());
    sh(
        "umoci",
        &["unpack", "--image", &image, bundle.to_str().unwrap()],
    );
    let t = tree(&bundle.join("rootfs"));
    (dir, t)
}

fn write_image_output(fin: &Value) -> Value {
    fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "write-image")
        .expect("a write-image step")["output"]
        .clone()
}

#[test]
fn a_container_image_is_deployed_as_umoci_unpacks_it_and_reported() {
    let reg = Registry::start(Access::Open);
    let (deployed, manifest) = layout(LAYER_ZSTD, None, "v1");
    reg.push_layout(deployed.path(), "v1", REPO, false);
    let (reference, _) = layout(LAYER_GZIP, None, "ref");
    let (_keep, expected) = umoci(&reference, "ref");

    let server = Server::start();
    let url = reg.oci(&format!("{REPO}:v1@{manifest}"));
    let disk = LoopDev::new(2 << 30, 512);
    let run = {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        apply(&document(&server, &url), &disk, &[])
    };
    assert_eq!(run.code, 0, "{}", run.stderr);
    let fin = final_report(&server, REPORT);
    assert_eq!(fin["result"], "success", "{fin:#}");

    let m = mount_deployed(&disk);
    let root = &m.0[0];
    let mut got = tree(root);
    // Finalize's own files (fstab, …) and the chroot's mount points are not the image's.
    let out = fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "finalize")
        .expect("a finalize step")["output"]
        .clone();
    let written: Vec<String> = out["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().trim_start_matches('/').to_string())
        .collect();
    got.retain(|k, _| {
        expected.contains_key(k)
            || !(["dev", "proc", "sys", "run", "tmp"].contains(&k.as_str())
                || written
                    .iter()
                    .any(|w| w == k || w.starts_with(&format!("{k}/"))))
    });
    assert_eq!(got, expected, "imprint's tree and umoci's differ");
    // What umoci's tree says too, spelt out.
    assert!(!got.contains_key("etc/.wh.a.conf") && !got.contains_key("opt/x/old1"));
    assert_eq!(got["opt/x/new"], "file \"new\" mode 644 owner 0:0");
    assert_eq!(got["bin/tool"], "file \"v2\" mode 700 owner 0:0");
    assert!(!got.contains_key("var/log"), "{got:#?}");
    assert_eq!(got["var/lib/state"], "file \"state\" mode 644 owner 0:0");
    assert_eq!(got["bin/su-ish"], "file \"setuid\" mode 4755 owner 0:0");
    assert_eq!(got["home/user"], "dir mode 700 owner 1000:1000");
    assert_eq!(got["etc/a.conf"], "link -> b.conf mode 0 owner 0:0");
    assert_eq!(
        got["srv/tree"],
        "file \"a file where a tree was\" mode 644 owner 0:0"
    );
    assert_eq!(got["opt/x"], "dir mode 750 owner 0:0", "the new attributes");
    let ino = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap().ino();
    assert_eq!(
        ino("usr/share/hl"),
        ino("etc/b.conf"),
        "hard link to layer 1"
    );
    assert_ne!(
        ino("bin/tool-hard"),
        ino("bin/tool"),
        "the old inode keeps v1"
    );

    let out = write_image_output(&fin);
    let r = &out["registry"];
    assert_eq!(r["manifest"], manifest.as_str(), "{out:#}");
    assert!(r["config"].as_str().unwrap().starts_with("sha256:"));
    let layers = r["layers"].as_array().unwrap();
    let codecs: Vec<&str> = layers
        .iter()
        .map(|l| l["codec"].as_str().unwrap())
        .collect();
    assert_eq!(codecs, ["gzip", "gzip", "zstd"]);
    assert_eq!(
        (
            layers[1]["whiteouts"].as_u64(),
            layers[1]["opaque"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(layers[2]["whiteouts"], 1);
    let t = tars();
    for (l, tar) in layers.iter().zip(&t) {
        assert_eq!(l["diff_id"], diff_id(tar).as_str());
    }
    let blobs: u64 = layers.iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
    assert_eq!(out["bytes_downloaded"], blobs);
}

#[test]
fn a_layer_whose_diff_id_differs_fails_the_step() {
    let reg = Registry::start(Access::Open);
    let (l, manifest) = layout(LAYER_GZIP, Some(1), "bad");
    reg.push_layout(l.path(), "bad", REPO, false);
    let server = Server::start();
    let url = reg.oci(&format!("{REPO}@{manifest}"));
    let disk = LoopDev::new(2 << 30, 512);
    let run = {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        apply(&document(&server, &url), &disk, &[])
    };
    assert_ne!(run.code, 0, "{}", run.stderr);
    let fin = final_report(&server, REPORT);
    assert_eq!(fin["failed_step"], "write-image", "{fin:#}");
    assert_eq!(fin["disks_after"], "cleaned_up", "{fin:#}");
    let error = fin["error"].as_str().unwrap();
    assert!(
        error.contains("layer 2 of 3") && error.contains("diff_id"),
        "{error}"
    );
}

#[test]
fn a_missing_layer_blob_is_refused_before_any_disk_is_touched() {
    let reg = Registry::start(Access::Open);
    let (l, manifest) = layout(LAYER_GZIP, None, "v1");
    reg.push_layout(l.path(), "v1", REPO, false);
    let layer2 = format!("sha256:{}", sha256_hex(&compress("gzip", &tars()[1])));
    reg.delete_blob(REPO, &layer2);
    let server = Server::start();
    let url = reg.oci(&format!("{REPO}@{manifest}"));
    let disk = LoopDev::used(2 << 30);
    let before = disk.sha256();
    let run = {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        apply(&document(&server, &url), &disk, &[])
    };
    assert_eq!(run.code, 5, "{}", run.stderr);
    let fin = final_report(&server, REPORT);
    assert_eq!(fin["failed_step"], "preflight", "{fin:#}");
    assert_eq!(fin["disks_after"], "untouched", "{fin:#}");
    let error = fin["error"].as_str().unwrap();
    assert!(
        error.contains(&layer2) && error.contains("layer 2 of 3"),
        "{error}"
    );
    assert_eq!(disk.sha256(), before, "the disk changed");
}

#[test]
fn a_container_image_named_by_tag_alone_is_refused_by_validation() {
    let server = Server::start();
    let doc = document(&server, "oci://127.0.0.1:9/os/app:v1");
    let run = imprint_with_doc(&["validate"], &doc);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("image.url") && said.contains("pinned by its manifest digest"),
        "{said}"
    );
}

#[test]
fn a_wrong_password_is_refused_before_any_disk_is_touched() {
    let reg = Registry::start(Access::Basic {
        user: "alice".into(),
        password: "s3cret".into(),
    });
    let (l, manifest) = layout(LAYER_GZIP, None, "v1");
    reg.push_layout(l.path(), "v1", REPO, false);
    let server = Server::start();
    let url = reg.oci(&format!("{REPO}@{manifest}"));
    let doc = document(&server, &url).replacen(
        "  format: rootfs\n",
        "  format: rootfs\n  auth: { username: alice, password: n0t-the-passw0rd }\n",
        1,
    );
    let disk = LoopDev::used(2 << 30);
    let before = disk.sha256();
    let run = {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        apply(&doc, &disk, &[])
    };
    assert_eq!(run.code, 5, "{}", run.stderr);
    let fin = final_report(&server, REPORT);
    assert_eq!(fin["failed_step"], "preflight", "{fin:#}");
    assert_eq!(fin["disks_after"], "untouched", "{fin:#}");
    let error = fin["error"].as_str().unwrap();
    assert!(
        error.contains("without valid credentials") && error.contains("image.auth"),
        "{error}"
    );
    assert!(
        !run.stderr.contains("n0t-the-passw0rd"),
        "the password is never printed"
    );
    assert_eq!(disk.sha256(), before, "the disk changed");
}

#[test]
fn a_wrong_manifest_digest_or_a_missing_config_is_refused_before_any_disk_is_touched() {
    let reg = Registry::start(Access::Open);
    let (l, manifest) = layout(LAYER_GZIP, None, "v1");
    reg.push_layout(l.path(), "v1", REPO, false);
    let refused = |url: &str, phrases: &[&str]| {
        let server = Server::start();
        let disk = LoopDev::used(2 << 30);
        let before = disk.sha256();
        let run = {
            let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
            apply(&document(&server, url), &disk, &[])
        };
        assert_eq!(run.code, 5, "{}", run.stderr);
        let fin = final_report(&server, REPORT);
        assert_eq!(fin["failed_step"], "preflight", "{fin:#}");
        assert_eq!(fin["disks_after"], "untouched", "{fin:#}");
        let error = fin["error"].as_str().unwrap();
        for p in phrases {
            assert!(error.contains(p), "{p:?} in {error}");
        }
        assert_eq!(disk.sha256(), before, "the disk changed");
    };
    let wrong = format!("sha256:{}", "0".repeat(64));
    refused(
        &reg.oci(&format!("{REPO}:v1@{wrong}")),
        &["has no manifest in repository os/app", &wrong],
    );
    let m: Value = serde_json::from_slice(
        &std::fs::read(
            l.path()
                .join("blobs/sha256")
                .join(&manifest["sha256:".len()..]),
        )
        .unwrap(),
    )
    .unwrap();
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    reg.delete_blob(REPO, &config);
    refused(
        &reg.oci(&format!("{REPO}@{manifest}")),
        &[&format!(
            "has no image config {config} in repository os/app"
        )],
    );
}

/// Applies `doc`, signed by `ops`, with the suite's trust root (one apply at a time).
fn apply_signed(server: &Server, doc: &str, disk: &LoopDev) -> Run {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    imprint_tests::signing::apply_signed(server, "/docs/web-01.yaml", doc, disk)
}

#[test]
fn a_container_image_by_a_signed_tag_deploys_and_unsigned_or_foreign_ones_are_refused() {
    let reg = Registry::start(Access::Open);
    let store = Sigstore::new();
    let server = Server::start();
    let gnupg = keys().path("gnupg");
    // Three different manifests (a signature names one digest, whatever the tag).
    for (tag, home, fpr, third, bad) in [
        (
            "signed",
            Some(gnupg.as_path()),
            keys().gpg_fpr.as_str(),
            LAYER_ZSTD,
            None,
        ),
        (
            "foreign",
            Some(rogue().home()),
            rogue().fpr.as_str(),
            LAYER_GZIP,
            None,
        ),
        ("unsigned", None, "", LAYER_GZIP, Some(2)),
    ] {
        let (l, _) = layout(third, bad, tag);
        match home {
            Some(home) => reg.push_signed(l.path(), tag, REPO, &store, home, fpr, false),
            None => reg.push_layout(l.path(), tag, REPO, false),
        }
    }
    store.serve(&server, "/sigstore");
    let doc = |tag: &str| {
        document(&server, &reg.oci(&format!("{REPO}:{tag}"))).replace(
            "  format: rootfs\n",
            &format!(
                "  format: rootfs\n  signature:\n    lookaside: {}\n",
                server.url("/sigstore")
            ),
        )
    };

    let disk = LoopDev::new(2 << 30, 512);
    let run = apply_signed(&server, &doc("signed"), &disk);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let fin = final_report(&server, REPORT);
    let signer = format!("openpgp:{}", keys().gpg_fpr);
    assert!(
        fin.to_string()
            .contains(&format!("\"signed_by\":\"{signer}\"")),
        "the report names the signer: {:#}",
        write_image_output(&fin)
    );
    assert!(run.stderr.contains(&signer), "{}", run.stderr);

    for (tag, phrase) in [
        ("foreign", "which is not in the trust root".to_string()),
        ("unsigned", "is not signed".to_string()),
    ] {
        let server2 = Server::start();
        store.serve(&server2, "/sigstore");
        let doc = document(&server2, &reg.oci(&format!("{REPO}:{tag}"))).replace(
            "  format: rootfs\n",
            &format!(
                "  format: rootfs\n  signature:\n    lookaside: {}\n",
                server2.url("/sigstore")
            ),
        );
        let disk = LoopDev::used(2 << 30);
        let before = disk.sha256();
        let run = apply_signed(&server2, &doc, &disk);
        assert_eq!(run.code, 5, "{tag}: {}", run.stderr);
        assert!(run.stderr.contains(&phrase), "{tag}: {}", run.stderr);
        let fin = final_report(&server2, REPORT);
        assert_eq!(fin["failed_step"], "preflight", "{tag}: {fin:#}");
        assert_eq!(disk.sha256(), before, "{tag}: the disk changed");
    }
}
