//! casync chunked images (issue 17) through the real binary: indexes and chunk stores
//! made by the real `casync make`, served by the test HTTP server (or read from a
//! folder), written onto loop devices and compared with what `casync extract` makes of
//! the same index. A re-image fetches only the chunks that changed; two stores, one
//! dying mid-run and one serving a corrupt chunk, still give the same bytes and the
//! report names both; each broken input fails cleanly with no partition table left
//! (or, before any write, with the disk as it was).

use imprint_tests::fixtures::*;
use imprint_tests::provision::*;
use imprint_tests::server::{Fault, Server};
use serde_json::Value;
use std::collections::HashSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const REPORT: &str = "/report/web-01";

/// Version 1: the partitioned test image with 32 MiB of incompressible data in its
/// root partition (a filesystem that is mostly files, as images in use are).
fn image() -> &'static Vec<u8> {
    static IMG: OnceLock<Vec<u8>> = OnceLock::new();
    IMG.get_or_init(|| {
        let mut raw = TestImage::build(48, 512).raw;
        let mut rng = Rng::from_env(3);
        for b in &mut raw[12 << 20..44 << 20] {
            *b = rng.next_u64() as u8;
        }
        raw
    })
}

/// Version 2 of the image: a tenth of its data rewritten in place (random runs
/// scattered over the root partition), the table and the first MiB untouched.
fn image_v2() -> &'static Vec<u8> {
    static V2: OnceLock<Vec<u8>> = OnceLock::new();
    V2.get_or_init(|| {
        let mut v2 = image().clone();
        let mut rng = Rng::from_env(17);
        let (start, len) = (12u64 << 20, 32u64 << 20);
        for _ in 0..16 {
            let at = start + rng.range(0, len - (320 << 10));
            for b in &mut v2[at as usize..at as usize + (300 << 10)] {
                *b = rng.next_u64() as u8;
            }
        }
        v2
    })
}

/// An index and its store, made by `casync make` from `raw`.
struct Made {
    dir: tempfile::TempDir,
    index: PathBuf,
    store: PathBuf,
}

impl Made {
    fn index_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.index).unwrap()
    }

    /// Chunk file paths relative to the store.
    fn chunk_files(&self) -> Vec<String> {
        chunk_store_files(&self.store)
    }

    /// What `casync extract` makes of the index.
    fn extract(&self) -> Vec<u8> {
        let out = self.dir.path().join("extracted.raw");
        let _ = std::fs::remove_file(&out);
        sh(
            "casync",
            &[
                "extract",
                &format!("--store={}", self.store.display()),
                self.index.to_str().unwrap(),
                out.to_str().unwrap(),
            ],
        );
        std::fs::read(out).unwrap()
    }
}

fn make(raw: &[u8], args: &[&str]) -> Made {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("disk.raw");
    std::fs::write(&src, raw).unwrap();
    let store = dir.path().join("store");
    make_into(&src, &store, &dir.path().join("disk.caibx"), args);
    Made {
        index: dir.path().join("disk.caibx"),
        store,
        dir,
    }
}

fn make_into(src: &Path, store: &Path, index: &Path, args: &[&str]) {
    let mut all = vec!["make".to_string(), format!("--store={}", store.display())];
    all.extend(args.iter().map(|s| s.to_string()));
    all.push(index.to_str().unwrap().into());
    all.push(src.to_str().unwrap().into());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    sh("casync", &refs);
}

/// Serves every chunk of `store` under `prefix` on `server`.
fn serve_store(server: &Server, prefix: &str, store: &Path, files: &[String]) {
    for f in files {
        server.serve_file(&format!("{prefix}/{f}"), store.join(f));
    }
}

fn write_image(index_url: &str, sha: &str, disk: &LoopDev, extra: &[&str]) -> Output {
    let mut args = vec![
        "write-image",
        "--yes",
        "--url",
        index_url,
        "--sha256",
        sha,
        "--target",
        disk.dev(),
    ];
    args.extend_from_slice(extra);
    Command::new(imprint_bin()).args(&args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The disk holds `want` (`write-image` onto a disk of the image's size, so the GPT
/// stays where the image put it).
fn assert_disk_holds(disk: &LoopDev, want: &[u8], what: &str) {
    assert_range_holds(disk, want, 0, want.len(), what);
}

/// The disk holds `want` but its first and last MiB: after `apply` on a larger disk the
/// GPT was moved to the disk's end and a configdrive partition added.
fn assert_data_holds(disk: &LoopDev, want: &[u8], what: &str) {
    assert_range_holds(disk, want, 1 << 20, want.len() - (1 << 20), what);
}

fn assert_range_holds(disk: &LoopDev, want: &[u8], from: usize, to: usize, what: &str) {
    let got = disk.read_at(from as u64, to - from);
    if got != want[from..to] {
        let first = got
            .iter()
            .zip(&want[from..to])
            .position(|(a, b)| a != b)
            .unwrap();
        panic!(
            "{what}: the disk differs from casync extract, first at byte {}",
            from + first
        );
    }
}

/// A loop device of the image's size full of garbage (a used disk).
fn garbage_disk() -> LoopDev {
    let size = image().len() as u64;
    let d = LoopDev::new(size, 512);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&d.path)
        .unwrap();
    let mut rng = Rng::from_env(5);
    let mut block = vec![0u8; 1 << 20];
    for at in (0..size).step_by(1 << 20) {
        for b in block.iter_mut().step_by(512) {
            *b = rng.next_u64() as u8 | 1;
        }
        f.write_all_at(&block, at).unwrap();
    }
    f.sync_all().unwrap();
    d
}

fn chunk_requests(server: &Server, prefix: &str) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(prefix) && r.path.ends_with(".cacnk"))
        .map(|r| r.path)
        .collect()
}

#[test]
fn casync_indexes_land_byte_for_byte_for_every_chunker_digest_and_codec() {
    for args in [
        vec![],
        vec!["--chunk-size=4096"],
        vec!["--chunk-size=1048576", "--digest=sha256"],
        vec!["--compression=xz"],
        vec!["--compression=gzip", "--chunk-size=16384:65536:131072"],
    ] {
        let m = make(image(), &args);
        let want = m.extract();
        assert_eq!(want, *image(), "{args:?}: casync's own round trip");
        let server = Server::start();
        let idx = m.index_bytes();
        server.serve_bytes("/img/disk.caibx", idx.clone());
        let files = m.chunk_files();
        serve_store(&server, "/img/store", &m.store, &files);
        let disk = garbage_disk();
        let out = write_image(
            &server.url("/img/disk.caibx"),
            &sha256_hex(&idx),
            &disk,
            &[
                "--store",
                &server.url("/img/store/"),
                "--verify",
                "readback",
            ],
        );
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_disk_holds(&disk, &want, &format!("{args:?}"));
        assert_sgdisk_clean(disk.dev());
        // Each distinct chunk at most once; zero chunks never.
        let got = chunk_requests(&server, "/img/store/");
        let distinct: HashSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), got.len(), "{args:?}: a chunk fetched twice");
        assert!(got.len() <= files.len(), "{args:?}");
    }
}

#[test]
fn the_default_store_is_beside_the_index_and_a_file_store_works() {
    let m = make(image(), &[]);
    let idx = m.index_bytes();
    // casync's convention: default.castr beside the index.
    let server = Server::start();
    server.serve_bytes("/os/disk.caibx", idx.clone());
    serve_store(&server, "/os/default.castr", &m.store, &m.chunk_files());
    let disk = garbage_disk();
    let out = write_image(&server.url("/os/disk.caibx"), &sha256_hex(&idx), &disk, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_disk_holds(&disk, image(), "default store");
    // A folder, by file:// URL, index and store both local.
    let disk = garbage_disk();
    let out = write_image(
        &format!("file://{}", m.index.display()),
        &sha256_hex(&idx),
        &disk,
        &["--store", &format!("file://{}", m.store.display())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_disk_holds(&disk, image(), "file store");
}

/// The single-disk document with the index as its image and `stores` under it.
fn chunked_document(server: &Server, idx: &[u8], stores: &[String]) -> String {
    let doc = single_disk_document(
        &server.url("/v/disk.caibx"),
        &sha256_hex(idx),
        &server.url(REPORT),
    );
    let mut lines = String::from("  stores:\n");
    for s in stores {
        lines.push_str(&format!("    - {s}\n"));
    }
    doc.replace("  format: disk\n", &format!("  format: disk\n{lines}"))
}

fn chunks_of(fin: &Value) -> Value {
    let step = fin["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "write-image")
        .unwrap_or_else(|| panic!("no write-image step: {fin:#}"));
    step["output"]["image"]["chunks"].clone()
}

#[test]
fn a_reimage_fetches_only_the_chunks_that_changed() {
    let m1 = make(image(), &[]);
    // v2 into the same store, as a publisher adds a version.
    let v2_src = m1.dir.path().join("v2.raw");
    std::fs::write(&v2_src, image_v2()).unwrap();
    let v2_index = m1.dir.path().join("v2.caibx");
    make_into(&v2_src, &m1.store, &v2_index, &[]);
    let idx1 = m1.index_bytes();
    let idx2 = std::fs::read(&v2_index).unwrap();
    let server = Server::start();
    serve_store(&server, "/store", &m1.store, &m1.chunk_files());
    let disk = LoopDev::new(2 << 30, 512);

    server.serve_bytes("/v/disk.caibx", idx1.clone());
    let doc = chunked_document(&server, &idx1, &[server.url("/store")]);
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let first = chunks_of(&final_report(&server, REPORT));
    assert_data_holds(&disk, image(), "v1");
    let fetched_v1 = chunk_requests(&server, "/store").len();

    // v2 over v1: only chunks v1 lacks cross the network.
    let server2 = Server::start();
    serve_store(&server2, "/store", &m1.store, &m1.chunk_files());
    server2.serve_bytes("/v/disk.caibx", idx2.clone());
    let doc = chunked_document(&server2, &idx2, &[server2.url("/store")]);
    let run = apply(&doc, &disk, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_data_holds(&disk, image_v2(), "v2 over v1");
    let second = chunks_of(&final_report(&server2, REPORT));
    let fetched = chunk_requests(&server2, "/store");
    let new_ids = new_chunk_ids(&idx1, &idx2);
    // The wipe before the write rewrites the table's chunk (and any chunk holding a
    // signature it erased): those few come again. Preflight asks for one chunk more.
    let written = second["stores"][0]["chunks"].as_u64().unwrap() as usize;
    assert!(
        written <= new_ids + 4,
        "fetched {written} chunks for {new_ids} new ones: {second:#}"
    );
    assert!(fetched.len() <= written + 1, "{fetched:?}");
    assert!(fetched.len() < fetched_v1 / 2, "{first:#}\n{second:#}");
    assert!(
        // 32 MiB of data, 16 × 300 KiB of it rewritten: the rest stays in place (zero
        // chunks are zeroed, not read, where the device makes zeros for free).
        second["in_place_bytes"].as_u64().unwrap() > 24 << 20,
        "{second:#}"
    );
    let sum = [
        "in_place_bytes",
        "disk_bytes",
        "zero_bytes",
        "local_bytes",
        "network_bytes",
    ]
    .iter()
    .map(|k| second[k].as_u64().unwrap())
    .sum::<u64>();
    assert_eq!(
        sum,
        image().len() as u64,
        "every byte accounted for: {second:#}"
    );
}

/// Chunks of the index `b` whose ids the index `a` does not have.
fn new_chunk_ids(a: &[u8], b: &[u8]) -> usize {
    let ids = |x: &[u8]| -> HashSet<Vec<u8>> {
        x[64..x.len() - 40]
            .chunks(40)
            .map(|item| item[8..].to_vec())
            .collect()
    };
    ids(b).difference(&ids(a)).count()
}

#[test]
fn two_stores_one_dying_and_one_corrupt_give_the_same_bytes_and_are_named() {
    let m = make(image(), &["--chunk-size=16384"]);
    let idx = m.index_bytes();
    let files = m.chunk_files();
    let good = Server::start();
    good.serve_bytes("/v/disk.caibx", idx.clone());
    serve_store(&good, "/store", &m.store, &files);
    // The good server flips a bit in the first chunk (the partition table, asked for
    // first): it must come from the other store, which is still up then.
    let first = hex(&idx[72..104]);
    let corrupt = files
        .iter()
        .find(|f| f.contains(&first))
        .expect("the first chunk's file");
    good.set_fault(&format!("/store/{corrupt}"), Fault::FlipBit(3));
    let dying = Server::start();
    serve_store(&dying, "/store", &m.store, &files);
    let dying_url = dying.url("/store");
    // The dying store stops answering after a few chunks.
    let watcher = std::thread::spawn(move || {
        for _ in 0..3000 {
            if chunk_requests(&dying, "/store").len() >= 20 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        drop(dying);
    });
    // Job j starts at store j mod 2: the first chunk is asked of the good store first.
    let doc = chunked_document(&good, &idx, &[good.url("/store"), dying_url.clone()]);
    let disk = LoopDev::new(2 << 30, 512);
    let run = apply(&doc, &disk, &[]);
    watcher.join().unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_data_holds(&disk, image(), "two stores");
    let chunks = chunks_of(&final_report(&good, REPORT));
    let stores = chunks["stores"].as_array().unwrap();
    assert_eq!(stores[1]["url"], dying_url.as_str());
    assert!(stores[1]["failures"].as_u64().unwrap() > 0, "{chunks:#}");
    assert!(stores[1]["dropped"].is_string(), "{chunks:#}");
    assert!(stores[1]["chunks"].as_u64().unwrap() >= 5, "{chunks:#}");
    assert!(
        stores[0]["corrupt_chunks"].as_u64().unwrap() >= 1,
        "{chunks:#}"
    );
    assert!(run.stderr.contains("corrupt"), "{}", run.stderr);
}

#[test]
fn broken_indexes_and_unreachable_stores_change_nothing_and_a_bad_chunk_leaves_no_table() {
    let m = make(image(), &[]);
    let idx = m.index_bytes();
    let files = m.chunk_files();
    let server = Server::start();
    serve_store(&server, "/store", &m.store, &files);
    let store = server.url("/store");
    let closed = format!("http://127.0.0.1:{}/store", closed_port());

    // Refused before any disk is touched: a truncated index, an index with another
    // digest, a store list that does not answer.
    let cut = idx[..idx.len() - 20].to_vec();
    let doc = |index: &[u8], sha: &str, stores: &[String]| {
        chunked_document(&server, index, stores).replace(&sha256_hex(index), sha)
    };
    let cases = [
        (
            doc(&cut, &sha256_hex(&cut), std::slice::from_ref(&store)),
            "truncated",
        ),
        (
            doc(&idx, &sha256_hex(b"another"), std::slice::from_ref(&store)),
            "is expected",
        ),
        (
            doc(&idx, &sha256_hex(&idx), std::slice::from_ref(&closed)),
            "no store gives chunk",
        ),
    ];
    let disk = LoopDev::used(2 << 30);
    let before = disk.sha256();
    for (doc, phrase) in &cases {
        server.serve_bytes(
            "/v/disk.caibx",
            if phrase == &"truncated" {
                cut.clone()
            } else {
                idx.clone()
            },
        );
        let run = apply(doc, &disk, &[]);
        assert_eq!(run.code, 5, "{phrase}: {}", run.stderr);
        assert!(run.stderr.contains(phrase), "{phrase}: {}", run.stderr);
        assert!(run.stderr.contains("preflight"), "{phrase}: {}", run.stderr);
    }
    assert_eq!(disk.sha256(), before, "a refused document changed the disk");

    // A chunk wrong in every store: the write fails, no partition table is left.
    server.serve_bytes("/v/disk.caibx", idx.clone());
    server.set_fault(
        &format!("/store/{}", files[files.len() / 2]),
        Fault::FlipBit(0),
    );
    let run = apply(&chunked_document(&server, &idx, &[store]), &disk, &[]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("corrupt") && run.stderr.contains("could not be had"),
        "{}",
        run.stderr
    );
    assert_no_partition_table(disk.dev());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
