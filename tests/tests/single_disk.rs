//! Issue 2 acceptance: the single-disk document deploys a whole-disk image onto a
//! loop device through the real binary, a real HTTP server and real checkers.

use imprint_tests::fixtures::*;
use imprint_tests::server::Server;
use serde_json::Value;
use std::process::Command;
use std::sync::OnceLock;

const TOKEN: &str = "s3cr3t-token-for-tests";

fn image() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(48, 512))
}

fn image_4k() -> &'static TestImage {
    static IMG: OnceLock<TestImage> = OnceLock::new();
    IMG.get_or_init(|| TestImage::build(48, 4096))
}

/// The product's single-disk document with this test's URLs, digest and disk.
fn document(server: &Server, image_path: &str, sha256: &str, extra_match: &str) -> String {
    document_with(server, image_path, sha256, extra_match, "")
}

/// As [`document`], with extra lines in the `image` section.
fn document_with(
    server: &Server,
    image_path: &str,
    sha256: &str,
    extra_match: &str,
    image_extra: &str,
) -> String {
    format!(
        r#"version: 1
host: {{ hostname: web-01 }}
disks:
  - name: root
    match: {{ smallest: true, min_size: 1GiB{extra_match} }}
image:
  url: {url}
  sha256: {sha256}
  format: disk
  target: root{image_extra}
configdrive:
  format: nocloud
  meta_data: {{ instance-id: web-01 }}
  user_data: |
    #cloud-config
    runcmd: [[sh, -c, "echo imprint-ok > /dev/console"]]
  network_config: {{ version: 2, ethernets: {{ all: {{ match: {{ name: "e*" }}, dhcp4: true }} }} }}
report: {{ url: "{report}", token: "{TOKEN}" }}
finish: reboot
"#,
        url = server.url(image_path),
        report = server.url("/report/web-01"),
    )
}

/// A server with `img` served zstd-compressed at `/images/web.raw.zst`, and its digest.
fn serving(img: &TestImage) -> (Server, String) {
    let server = Server::start();
    let data = img.zstd();
    let sha = sha256_hex(&data);
    server.serve_bytes("/images/web.raw.zst", data);
    (server, sha)
}

/// `doc` with a `storage` section (`body`, its indented lines) before `image`.
fn with_storage(doc: &str, body: &str) -> String {
    doc.replacen("image:\n", &format!("storage:\n{body}image:\n"), 1)
}

struct Run {
    code: i32,
    stderr: String,
}

fn apply(doc: &str, disk: &LoopDev) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.yaml");
    std::fs::write(&path, doc).unwrap();
    let out = Command::new(imprint_bin())
        .args([
            "apply",
            "--yes",
            "--disks",
            disk.dev(),
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn reports(server: &Server) -> Vec<Value> {
    server
        .posts()
        .into_iter()
        .filter(|p| p.path == "/report/web-01")
        .map(|p| {
            let auth = p
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.clone());
            assert_eq!(
                auth.as_deref(),
                Some(format!("Bearer {TOKEN}").as_str()),
                "every report carries the bearer token"
            );
            serde_json::from_slice(&p.body).expect("report bodies are JSON")
        })
        .collect()
}

fn final_report(server: &Server) -> Value {
    let finals: Vec<Value> = reports(server)
        .into_iter()
        .filter(|r| r["kind"] == "final")
        .collect();
    assert_eq!(finals.len(), 1, "exactly one final report");
    finals.into_iter().next().unwrap()
}

/// Deploys `img` (served `compressed` at `name`) onto a loop disk with `sector`-byte
/// sectors; `readback` asks for read-back verification.
fn deploys(img: &TestImage, compressed: Vec<u8>, name: &str, sector: u32, readback: bool) {
    let server = Server::start();
    let sha = sha256_hex(&compressed);
    server.serve_bytes(name, compressed);
    let disk = LoopDev::new(2 << 30, sector);
    let extra = if readback { "\n  verify: readback" } else { "" };
    let run = apply(&document_with(&server, name, &sha, "", extra), &disk);
    assert_eq!(run.code, 0, "apply failed:\n{}", run.stderr);
    assert!(!run.stderr.contains(TOKEN), "the token appeared in the log");

    assert_single_disk_deployed(disk.dev(), img, "web-01");
    let seed = extract_vfat(disk.dev(), disk.partition_offsets()[2].1);
    let ci = cloud_init_read_nocloud(seed.path());
    assert_eq!(ci["meta_data"]["instance-id"], "web-01");
    assert_eq!(ci["network_config"]["ethernets"]["all"]["dhcp4"], true);

    // Reports: step events for every step, and a final success with digests and durations.
    let evs = reports(&server);
    for step in ["wipe:root", "write-image", "configdrive"] {
        for state in ["started", "succeeded"] {
            assert!(
                evs.iter()
                    .any(|e| e["kind"] == "step" && e["step"] == step && e["state"] == state),
                "no {state} event for {step}"
            );
        }
    }
    assert!(evs
        .iter()
        .all(|e| e["host"] == "web-01" && e["time"].is_string()));
    let fin = final_report(&server);
    assert_eq!(fin["result"], "success", "{fin:#}");
    let steps = fin["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["duration_ms"].is_u64()));
    let wi = steps.iter().find(|s| s["step"] == "write-image").unwrap();
    assert_eq!(wi["output"]["image"]["digest"]["hex"], sha);
    if readback {
        // Read back from the disk: the same hash list as the image's raw bytes.
        assert_eq!(
            wi["output"]["image"]["written_blake3"],
            hash_list_blake3(&img.raw)
        );
        assert_eq!(
            wi["output"]["image"]["readback_blake3"],
            hash_list_blake3(&img.raw)
        );
    } else {
        assert!(
            wi["output"]["image"].get("written_blake3").is_none(),
            "a written digest only with a read-back"
        );
    }
    let body = serde_json::to_string(&evs).unwrap();
    assert!(!body.contains(TOKEN), "the token appeared in a report body");
}

#[test]
fn zstd_image_deploys_on_512_byte_sectors() {
    deploys(image(), image().zstd(), "/images/web.raw.zst", 512, false);
}

#[test]
fn xz_image_deploys_on_4096_byte_sectors() {
    deploys(
        image_4k(),
        image_4k().xz(),
        "/images/web.raw.xz",
        4096,
        true,
    );
}

#[test]
fn a_512_byte_sector_image_on_a_4k_disk_is_refused_clearly() {
    let server = Server::start();
    let data = image().zstd();
    let sha = sha256_hex(&data);
    server.serve_bytes("/images/web.raw.zst", data);
    let disk = LoopDev::new(2 << 30, 4096);
    let run = apply(&document(&server, "/images/web.raw.zst", &sha, ""), &disk);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("512-byte sectors") && run.stderr.contains("4096-byte"),
        "{}",
        run.stderr
    );
    let probe = sh_any("blkid", &["-p", "-o", "export", disk.dev()]);
    assert!(
        !String::from_utf8_lossy(&probe.stdout).contains("PTTYPE"),
        "the failed image was not wiped"
    );
}

#[test]
fn wrong_digest_fails_and_leaves_no_partition_table() {
    let server = Server::start();
    let data = image().zstd();
    server.serve_bytes("/images/web.raw.zst", data);
    let disk = LoopDev::new(2 << 30, 512);
    // Leave an old GPT on the disk first: the failed run must not leave any table behind.
    sh("sgdisk", &["-n", "1:1MiB:+16MiB", disk.dev()]);
    let wrong = "0".repeat(64);
    let run = apply(&document(&server, "/images/web.raw.zst", &wrong, ""), &disk);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("write-image") && run.stderr.to_lowercase().contains("digest"),
        "{}",
        run.stderr
    );
    let fin = final_report(&server);
    assert_eq!(fin["result"], "failure");
    assert_eq!(fin["failed_step"], "write-image");
    assert!(fin["error"].as_str().unwrap().contains(&wrong));
    assert!(
        !fin["undone"].as_array().unwrap().is_empty(),
        "the failure report lists what was undone"
    );
    let probe = sh_any("blkid", &["-p", "-o", "export", disk.dev()]);
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        !text.contains("PTTYPE"),
        "a partition table survived: {text}"
    );
    // sgdisk finds no table to load and makes an empty one in memory.
    let v = sh_any("sgdisk", &["-v", disk.dev()]);
    let vt = String::from_utf8_lossy(&v.stdout).to_lowercase()
        + &String::from_utf8_lossy(&v.stderr).to_lowercase();
    assert!(
        vt.contains("creating new gpt entries"),
        "sgdisk still sees a GPT: {vt}"
    );
}

#[test]
fn missing_image_404_is_a_clear_failure() {
    let server = Server::start();
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(
        &document(&server, "/images/nope.raw.zst", &"a".repeat(64), ""),
        &disk,
    );
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("404") && run.stderr.contains("/images/nope.raw.zst"),
        "{}",
        run.stderr
    );
    // Found missing by the check before the disk was touched.
    let fin = final_report(&server);
    assert_eq!(fin["result"], "failure");
    assert_eq!(fin["failed_step"], "preflight");
    assert_eq!(fin["disks_after"], "untouched");
}

#[test]
fn unreachable_url_is_a_clear_failure() {
    let server = Server::start();
    let disk = LoopDev::new(2 << 30, 512);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let doc = document(&server, "/x", &"a".repeat(64), "").replace(
        &server.url("/x"),
        &format!("http://127.0.0.1:{dead}/images/web.raw.zst"),
    );
    let run = apply(&doc, &disk);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("127.0.0.1:{dead}")),
        "{}",
        run.stderr
    );
    assert_eq!(final_report(&server)["result"], "failure");
}

#[test]
fn missing_disk_is_a_clear_failure_with_a_report() {
    let server = Server::start();
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(
        &document(&server, "/x", &"a".repeat(64), ", serial: NO-SUCH-SERIAL"),
        &disk,
    );
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("disks[0].match") && run.stderr.contains(disk.dev()),
        "{}",
        run.stderr
    );
    let fin = final_report(&server);
    assert_eq!(fin["result"], "failure");
    assert_eq!(fin["failed_step"], "plan");
}

#[test]
fn ambiguous_hint_is_a_clear_failure() {
    let server = Server::start();
    let a = LoopDev::new(2 << 30, 512);
    let b = LoopDev::new(2 << 30, 512);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.yaml");
    std::fs::write(&path, document(&server, "/x", &"a".repeat(64), "")).unwrap();
    let out = Command::new(imprint_bin())
        .args([
            "apply",
            "--yes",
            "--disks",
            &format!("{},{}", a.dev(), b.dev()),
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(a.dev()) && err.contains(b.dev()),
        "both candidates are listed: {err}"
    );
    assert_eq!(final_report(&server)["result"], "failure");
}

#[test]
fn grow_extends_the_root_partition_and_leaves_room_for_the_configdrive() {
    let img = image();
    let (server, sha) = serving(img);
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(
        &document_with(&server, "/images/web.raw.zst", &sha, "", "\n  grow: true"),
        &disk,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_sgdisk_clean(disk.dev());
    let parts = disk.partition_offsets();
    assert_eq!(parts.len(), 3, "{parts:?}");
    let (_, root_start, root_len) = parts[1];
    assert_eq!(
        root_start, img.partitions[1].1,
        "the root partition did not move"
    );
    assert!(
        root_len > (1 << 30),
        "the root partition was grown: {root_len}"
    );
    let (_, cd_start, cd_len) = parts[2];
    assert!(
        cd_start >= root_start + root_len && cd_len >= 64 << 20,
        "configdrive after it, full size: {parts:?}"
    );
    assert!(cd_start + cd_len <= 2 << 30, "configdrive inside the disk");
    let cd = blkid_at(disk.dev(), cd_start, cd_len);
    assert!(cd.to_lowercase().contains("label=cidata"), "{cd}");
}

#[test]
fn data_partitions_beside_the_image_are_added_after_it_and_formatted() {
    let img = image();
    let (server, sha) = serving(img);
    let disk = LoopDev::new(2 << 30, 512);
    let doc = with_storage(
        &document(&server, "/images/web.raw.zst", &sha, ""),
        "  partitions:\n    - { name: scratch, disk: root, size: 256MiB, label: scratch }\n    - { name: bulk, disk: root, size: rest }\n  filesystems:\n    - { device: scratch, type: ext4, label: scratch }\n    - { device: bulk, type: xfs, label: bulk }\n",
    );
    let run = apply(&doc, &disk);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_sgdisk_clean(disk.dev());
    let parts = disk.partition_offsets();
    assert_eq!(
        parts.len(),
        5,
        "the image's two, scratch, bulk, the configdrive: {parts:?}"
    );
    assert_eq!(
        parts[..2],
        img.partitions[..],
        "the image's partitions did not move"
    );
    assert_eq!(
        disk.read_at(1 << 20, img.raw.len() - (2 << 20)),
        img.raw[1 << 20..img.raw.len() - (1 << 20)],
        "image intact"
    );
    let (_, s_start, s_len) = parts[2];
    assert!(
        s_start >= img.raw.len() as u64 && s_start % (1 << 20) == 0,
        "after the image, aligned: {parts:?}"
    );
    assert_eq!(s_len, 256 << 20);
    let scratch = blkid_at(disk.dev(), s_start, s_len);
    assert!(
        scratch.contains("TYPE=ext4") && scratch.contains("LABEL=scratch"),
        "{scratch}"
    );
    let (_, b_start, b_len) = parts[3];
    let bulk = blkid_at(disk.dev(), b_start, b_len);
    assert!(
        bulk.contains("TYPE=xfs") && bulk.contains("LABEL=bulk"),
        "{bulk}"
    );
    // `rest` took the disk up to the configdrive, which keeps its full size at the end.
    let (_, cd_start, cd_len) = parts[4];
    assert!(
        cd_start >= b_start + b_len && cd_start - (b_start + b_len) < 1 << 20,
        "{parts:?}"
    );
    assert!(
        cd_len >= 64 << 20 && cd_start + cd_len <= 2 << 30,
        "{parts:?}"
    );
    assert!(blkid_at(disk.dev(), cd_start, cd_len).contains("LABEL=cidata"));
    // The report names the real nodes, not the plan's stand-ins.
    let fin = final_report(&server);
    let steps = fin["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "preflight",
            "wipe:root",
            "write-image",
            "partition:root",
            "mkfs:scratch",
            "mkfs:bulk",
            "configdrive"
        ]
    );
    let appended = &steps[3]["output"]["appended"];
    assert_eq!(appended[0]["number"], 3, "{appended}");
    assert_eq!(appended[1]["name"], "bulk", "{appended}");
    let node = format!("{}p3", disk.dev());
    assert_eq!(steps[4]["output"]["device"], node.as_str());
}

#[test]
fn grow_leaves_room_for_the_data_partitions_and_the_configdrive() {
    let img = image();
    let (server, sha) = serving(img);
    let disk = LoopDev::new(2 << 30, 512);
    let doc = with_storage(
        &document_with(&server, "/images/web.raw.zst", &sha, "", "\n  grow: true"),
        "  partitions:\n    - { name: scratch, disk: root, size: 300MiB }\n  filesystems:\n    - { device: scratch, type: xfs }\n",
    );
    let run = apply(&doc, &disk);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_sgdisk_clean(disk.dev());
    let parts = disk.partition_offsets();
    assert_eq!(parts.len(), 4, "{parts:?}");
    let (_, root_start, root_len) = parts[1];
    assert!(
        root_len > (1 << 30),
        "the root partition was grown: {parts:?}"
    );
    let (_, s_start, s_len) = parts[2];
    assert!(
        s_start >= root_start + root_len && s_len == 300 << 20,
        "{parts:?}"
    );
    assert!(blkid_at(disk.dev(), s_start, s_len).contains("TYPE=xfs"));
    let (_, cd_start, cd_len) = parts[3];
    assert!(
        cd_start >= s_start + s_len && cd_len >= 64 << 20 && cd_start + cd_len <= 2 << 30,
        "{parts:?}"
    );
    // Grown as far as the two allow: under 2 MiB of alignment slack is left over.
    let slack = (2u64 << 30) - root_start - root_len - s_len - cd_len - (1 << 20);
    assert!(slack < 3 << 20, "{slack} bytes unused: {parts:?}");
}

#[test]
fn an_image_numbered_like_stock_cloud_images_keeps_its_numbers() {
    // Debian and Ubuntu cloud images: root in entry 1, the ESP in entry 15, 2-14 empty.
    let img = TestImage::build_numbered(48, 512, 15, 1);
    let (server, sha) = serving(&img);
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(&document(&server, "/images/web.raw.zst", &sha, ""), &disk);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_sgdisk_clean(disk.dev());
    let parts = disk.partition_offsets();
    let numbers: Vec<u32> = parts.iter().map(|p| p.0).collect();
    assert_eq!(
        numbers,
        [1, 2, 15],
        "the image's 1 and 15 kept, the configdrive in the first free entry"
    );
    for &(n, start, len) in &img.partitions {
        assert!(
            parts.contains(&(n, start, len)),
            "partition {n} kept its place: {parts:?}"
        );
        let on_disk = disk.read_at(start, len as usize);
        assert!(
            on_disk == img.raw[start as usize..(start + len) as usize],
            "partition {n} byte-identical"
        );
    }
    let (_, cs, cl) = parts[1];
    assert!(
        cs >= img.raw.len() as u64,
        "the configdrive after the image"
    );
    assert!(blkid_at(disk.dev(), cs, cl).contains("LABEL=cidata"));
    let (_, rs, rl) = img.partitions[0];
    assert!(blkid_at(disk.dev(), rs, rl).contains("LABEL=imgroot"));
}

#[test]
fn single_steps_write_image_and_configdrive_work_alone() {
    let img = image();
    let (server, sha) = serving(img);
    let disk = LoopDev::new(256 << 20, 512);
    let out = Command::new(imprint_bin())
        .args([
            "write-image",
            "--yes",
            "--url",
            &server.url("/images/web.raw.zst"),
            "--sha256",
            &sha,
            "--target",
            disk.dev(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_sgdisk_clean(disk.dev());
    let (_, rs, rl) = img.partitions[1];
    assert_eq!(
        sha256_hex(&disk.read_at(rs, rl as usize)),
        sha256_hex(&img.raw[rs as usize..(rs + rl) as usize])
    );
    // Without --yes and without a terminal it refuses, and changes nothing.
    let other = LoopDev::new(256 << 20, 512);
    let out = Command::new(imprint_bin())
        .args([
            "write-image",
            "--url",
            &server.url("/images/web.raw.zst"),
            "--sha256",
            &sha,
            "--target",
            other.dev(),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        other.read_at(0, 1 << 20).iter().all(|&b| b == 0),
        "an unconfirmed write-image touched the disk"
    );

    // configdrive into a seed directory, read back by cloud-init.
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("host.yaml");
    std::fs::write(&doc, document(&server, "/x", &sha, "")).unwrap();
    let seed = dir.path().join("seed");
    let out = Command::new(imprint_bin())
        .args([
            "configdrive",
            doc.to_str().unwrap(),
            "--dir",
            seed.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ci = cloud_init_read_nocloud(&seed);
    assert_eq!(ci["meta_data"]["instance-id"], "web-01");
}
