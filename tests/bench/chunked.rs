//! `make bench`, chunked section: casync blob images (`write-image` of a `.caibx`
//! with `--store`) beside imprint's own best stream path, on the same image.
//!
//! v1 is the bench image; v2 is v1 with a tenth of its data bytes rewritten in place
//! (runs of 64 KiB–2 MiB, their bytes shifted by a constant, so they compress like
//! the rest) and a "package" written into a gap of zeros, deterministic. Both are
//! chunked by `casync make` (default chunker, zstd, SHA-256 ids) into one store, served
//! over loopback HTTP by nginx (keep-alive, as a fleet's store would be). Measured,
//! best of `--reps` rounds:
//!
//! - full write of v2 onto a blank loop device, against imprint streaming v2's pzstd
//!   file, and against the machine's floor: the largest of the CPU to decode v2's
//!   chunks and check their ids (`zstd -d`, `openssl dgst`) ÷ cores, the loop
//!   device's write time for the data, and the transfer time of the compressed chunks
//!   over loopback;
//! - re-image: the device holds v1, v2 is written: compressed bytes fetched against
//!   the compressed size of the chunks v1 lacks, wall time against the full write;
//! - two stores, one corrupting v2's first chunk and one stopped mid-run;
//! - peak RSS of every chunked run.
//!
//! Every device written is compared with v2 (`cmp`): a difference aborts the bench,
//! a missed target is reported.

use crate::image::{self, BenchImage};
use crate::run::{shell, timed, Loop, Sample};
use imprint_tests::nginx::Nginx;
use imprint_tests::server::{Fault, Server};
use serde_json::{json, Value};
use sha2::Digest as _;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// The chunk ids' digest: SHA-256, which every current server CPU computes in hardware
/// (here 2.4 times as fast as casync's default SHA-512/256); docs/streaming.md
/// recommends it for stores made for imprint.
const DIGEST: &str = "sha256";
/// Share of v1's data bytes rewritten in place in v2.
const REWRITE_SHARE: f64 = 0.10;
/// Size of the "package" v2 adds in a region of zeros, as a share of v1's data bytes.
const PACKAGE_SHARE: f64 = 0.02;
/// Seed of v2's changes.
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
/// Bumped when the way v2 or the store is made changes (part of the cache key).
const RECIPE: &str = "bench-chunked-v2";

/// What the section needs from the bench.
pub struct Opts<'a> {
    pub bin: &'a Path,
    pub cache: &'a Path,
    pub rundir: &'a Path,
    pub reps: usize,
}

/// v2, its pzstd file, both indexes and the store (cached).
struct Inputs {
    v2_raw: PathBuf,
    v2_zst: PathBuf,
    v2_zst_bytes: u64,
    v2_zst_sha256: String,
    v1_idx: PathBuf,
    v2_idx: PathBuf,
    store: PathBuf,
    /// v2's distinct non-zero chunks, their .cacnk files end to end (a zstd stream).
    chunks_zst: PathBuf,
    /// The same, decoded: the data a full write puts on the device.
    data_raw: PathBuf,
    rewritten_bytes: u64,
    rewrite_runs: u64,
    package_bytes: u64,
    make_secs: f64,
}

/// One chunk table item.
#[derive(Clone, Copy)]
struct Item {
    size: u64,
    id: [u8; 32],
}

/// What the indexes and the store say (computed on every run: cheap).
struct Analysis {
    v2_chunks: usize,
    v2_unique: usize,
    min_avg_max: (u64, u64, u64),
    /// v2's distinct chunks that are not all zeros, in order of first appearance.
    nonzero: Vec<[u8; 32]>,
    /// Their bytes, decoded and as stored.
    nonzero_bytes: u64,
    nonzero_stored: u64,
    /// v2's distinct chunks v1 does not have: count, bytes decoded and as stored.
    changed: usize,
    changed_bytes: u64,
    changed_stored: u64,
    /// Store path of v2's first chunk.
    first_chunk: String,
    /// Every chunk file of the store (relative paths).
    store_files: Vec<String>,
}

/// The section's measurements.
pub struct Chunked {
    size: u64,
    inp: Inputs,
    an: Analysis,
    cores: usize,
    stream: Vec<Sample>,
    full: Vec<Sample>,
    full_json: Vec<Value>,
    reimage: Vec<Sample>,
    reimage_json: Vec<Value>,
    decode: Vec<Sample>,
    /// `openssl dgst` of the chunks' bytes: checking their ids.
    ids: Vec<Sample>,
    dd: Vec<Sample>,
    curl: Vec<Sample>,
    two: Sample,
    two_json: Value,
    two_urls: (String, String),
    two_dropped_after: usize,
    /// The full write from the store as a local folder (`file://`): no HTTP.
    local: Option<(Sample, Value)>,
    cmp_checks: usize,
    /// The test server's time per chunk request on one connection, s.
    /// /proc/loadavg before and after the section (the machine may be shared).
    load: (String, String),
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn store_path(id: &[u8; 32]) -> String {
    let h = hex(id);
    format!("{}/{h}.cacnk", &h[..4])
}

/// The chunk table of a `.caibx`: a 64-byte head (INDEX record, TABLE header), 40-byte
/// items {u64 LE end offset, 32-byte id}, a 40-byte tail.
fn parse_index(p: &Path) -> (Vec<Item>, (u64, u64, u64)) {
    let b = fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    assert!(
        b.len() >= 104 && (b.len() - 104).is_multiple_of(40),
        "{} is not a casync blob index",
        p.display()
    );
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    let sizes = (word(24), word(32), word(40));
    let mut start = 0;
    let items = b[64..b.len() - 40]
        .chunks(40)
        .map(|it| {
            let end = u64::from_le_bytes(it[..8].try_into().unwrap_or([0; 8]));
            let mut id = [0u8; 32];
            id.copy_from_slice(&it[8..]);
            let item = Item {
                size: end - start,
                id,
            };
            start = end;
            item
        })
        .collect();
    (items, sizes)
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [lo, hi], rounded down to 4 KiB.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        (lo + self.next() % (hi - lo + 1)) & !4095
    }
}

/// The data extents (offset, len) of a sparse file (`SEEK_DATA` / `SEEK_HOLE`).
fn extents(f: &File) -> Vec<(u64, u64)> {
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: libc::off_t = 0;
    loop {
        // SAFETY: lseek on an open descriptor we own; no memory is passed.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole <= data {
            break;
        }
        out.push((data as u64, (hole - data) as u64));
        pos = hole;
    }
    out
}

/// Copies `len` bytes of `src` at `from` into `dst` at `to`, each byte plus `k`.
fn shifted_copy(src: &File, from: u64, dst: &File, to: u64, len: u64, k: u8) {
    let mut buf = vec![0u8; (4 * MIB).min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..n], from + done)
            .expect("reading image.raw");
        buf[..n].iter_mut().for_each(|b| *b = b.wrapping_add(k));
        dst.write_all_at(&buf[..n], to + done)
            .expect("writing v2.raw");
        done += n as u64;
    }
}

/// v2.raw from v1's image.raw: returns (rewritten bytes, runs, package bytes).
fn make_v2(v1: &Path, v2: &Path) -> (u64, u64, u64) {
    let st = Command::new("cp")
        .arg("--sparse=always")
        .arg(v1)
        .arg(v2)
        .status()
        .expect("running cp");
    assert!(st.success(), "cp {} {} failed", v1.display(), v2.display());
    let src = File::open(v1).expect("opening image.raw");
    let dst = fs::OpenOptions::new()
        .write(true)
        .open(v2)
        .expect("opening v2.raw");
    let size = src.metadata().map(|m| m.len()).unwrap_or(0);
    // The first MiB (where a partition table would be) stays as it is.
    let ext: Vec<(u64, u64)> = extents(&src)
        .into_iter()
        .filter_map(|(o, l)| {
            let end = o + l;
            let o = o.max(MIB);
            (end > o + (64 << 10)).then_some((o, end - o))
        })
        .collect();
    let data: u64 = ext.iter().map(|e| e.1).sum();
    assert!(data > 0, "{} holds no data extents", v1.display());
    let mut rng = Rng(SEED);
    // Rewrites: runs at uniform places of the data, not overlapping.
    let want = (data as f64 * REWRITE_SHARE) as u64;
    let mut taken: Vec<(u64, u64)> = Vec::new();
    let (mut rewritten, mut runs) = (0u64, 0u64);
    let mut tries = 0;
    while rewritten < want && tries < 100_000 {
        tries += 1;
        let mut at = rng.next() % data;
        let (eo, el) = *ext
            .iter()
            .find(|e| {
                if at < e.1 {
                    true
                } else {
                    at -= e.1;
                    false
                }
            })
            .expect("a position inside the data");
        let off = (eo + at) & !4095;
        let off = off.max(eo);
        let len = rng
            .range(64 << 10, 2 * MIB)
            .min(eo + el - off)
            .min(want - rewritten + 4096);
        if len < 4096 || taken.iter().any(|&(o, l)| off < o + l && o < off + len) {
            continue;
        }
        let k = (rng.next() % 255) as u8 + 1;
        shifted_copy(&src, off, &dst, off, len, k);
        taken.push((off, len));
        rewritten += len;
        runs += 1;
    }
    // The package: data from elsewhere, shifted, in the middle of the largest gap.
    let mut gaps = Vec::new();
    let all = extents(&src);
    for w in all.windows(2) {
        gaps.push((w[0].0 + w[0].1, w[1].0 - (w[0].0 + w[0].1)));
    }
    if let Some(last) = all.last() {
        gaps.push((last.0 + last.1, size - (last.0 + last.1)));
    }
    let (go, gl) = gaps
        .into_iter()
        .max_by_key(|g| g.1)
        .expect("a gap of zeros");
    let package = ((data as f64 * PACKAGE_SHARE) as u64 & !(MIB - 1)).min(gl / 2);
    let at = (go + (gl - package) / 2) & !(MIB - 1);
    let from = ext[ext.len() / 3].0;
    let from_len = ext[ext.len() / 3..].iter().map(|e| e.1).sum::<u64>();
    // Copy extent by extent from the source region (its data, not its gaps).
    let mut done = 0;
    let k = (rng.next() % 255) as u8 + 1;
    for &(eo, el) in ext.iter().filter(|e| e.0 >= from) {
        if done >= package {
            break;
        }
        let n = el.min(package - done);
        shifted_copy(&src, eo, &dst, at + done, n, k);
        done += n;
    }
    assert!(
        done == package && from_len >= package,
        "not enough data for the package"
    );
    dst.sync_all().expect("syncing v2.raw");
    (rewritten, runs, package)
}

fn casync_make(store: &Path, index: &Path, raw: &Path) {
    let st = Command::new("casync")
        .arg("make")
        .arg(format!("--digest={DIGEST}"))
        .arg(format!("--store={}", store.display()))
        .arg(index)
        .arg(raw)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running casync (Debian package casync)");
    assert!(st.success(), "casync make {} failed", raw.display());
}

/// Builds (or finds in the cache) v2, its pzstd file, the store and both indexes.
fn prepare(cache: &Path, v1: &BenchImage) -> Inputs {
    let mut key = sha2::Sha256::new();
    key.update(format!(
        "{RECIPE} {SEED} {REWRITE_SHARE} {PACKAGE_SHARE} {}\n",
        v1.zst.sha256
    ));
    let key = &hex::encode(key.finalize())[..16];
    let base = v1.raw.parent().unwrap_or(cache);
    let dir = base.join(format!("chunked-{key}"));
    let inp = |m: &Value| Inputs {
        v2_raw: dir.join("v2.raw"),
        v2_zst: dir.join("v2.frames.zst"),
        v2_zst_bytes: m["v2_zst_bytes"].as_u64().unwrap_or(0),
        v2_zst_sha256: m["v2_zst_sha256"].as_str().unwrap_or("").to_string(),
        v1_idx: dir.join("v1.caibx"),
        v2_idx: dir.join("v2.caibx"),
        store: dir.join("store"),
        chunks_zst: dir.join("v2-chunks.zst"),
        data_raw: dir.join("v2-data.raw"),
        rewritten_bytes: m["rewritten_bytes"].as_u64().unwrap_or(0),
        rewrite_runs: m["rewrite_runs"].as_u64().unwrap_or(0),
        package_bytes: m["package_bytes"].as_u64().unwrap_or(0),
        make_secs: m["make_secs"].as_f64().unwrap_or(0.0),
    };
    let meta = dir.join("meta.json");
    if let Some(m) = fs::read(&meta)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    {
        let i = inp(&m);
        let sized = |p: &Path, n: u64| fs::metadata(p).is_ok_and(|md| md.len() == n);
        if sized(&i.v2_raw, v1.size)
            && sized(&i.v2_zst, i.v2_zst_bytes)
            && i.v1_idx.exists()
            && i.v2_idx.exists()
            && i.chunks_zst.exists()
            && i.data_raw.exists()
        {
            return i;
        }
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("creating the chunked cache directory");
    let t = Instant::now();
    eprintln!(
        "bench: chunked: making v2 and a casync store in {} ...",
        dir.display()
    );
    let (rewritten, runs, package) = make_v2(&v1.raw, &dir.join("v2.raw"));
    let v2_zst = dir.join("v2.frames.zst");
    let st = Command::new("pzstd")
        .args(["-q", "-f", image::LEVEL])
        .arg(dir.join("v2.raw"))
        .arg("-o")
        .arg(&v2_zst)
        .status()
        .expect("running pzstd");
    assert!(st.success(), "pzstd of v2.raw failed");
    let store = dir.join("store");
    let tm = Instant::now();
    casync_make(&store, &dir.join("v1.caibx"), &v1.raw);
    casync_make(&store, &dir.join("v2.caibx"), &dir.join("v2.raw"));
    let make_secs = tm.elapsed().as_secs_f64();
    let m = json!({
        "v2_zst_bytes": fs::metadata(&v2_zst).map(|m| m.len()).unwrap_or(0),
        "v2_zst_sha256": image::sha256_file(&v2_zst),
        "rewritten_bytes": rewritten, "rewrite_runs": runs, "package_bytes": package,
        "make_secs": make_secs,
    });
    let i = inp(&m);
    // v2's distinct non-zero chunks end to end, and decoded: the decode and write floors.
    let an = analyse(&i);
    let mut w = std::io::BufWriter::new(File::create(&i.chunks_zst).expect("v2-chunks.zst"));
    for id in &an.nonzero {
        let mut f = File::open(i.store.join(store_path(id))).expect("a chunk file");
        std::io::copy(&mut f, &mut w).expect("writing v2-chunks.zst");
    }
    w.flush().expect("writing v2-chunks.zst");
    drop(w);
    let st = Command::new("zstd")
        .args(["-dqf"])
        .arg(&i.chunks_zst)
        .arg("-o")
        .arg(&i.data_raw)
        .status()
        .expect("running zstd");
    assert!(st.success(), "zstd -d v2-chunks.zst failed");
    fs::write(&meta, m.to_string()).expect("writing meta.json");
    eprintln!(
        "bench: chunked: inputs made in {:.1} s (casync make {make_secs:.1} s)",
        t.elapsed().as_secs_f64()
    );
    i
}

/// Whether a stored chunk decodes to zeros only (only small files are looked at).
fn is_zero_chunk(p: &Path) -> bool {
    let Ok(md) = fs::metadata(p) else {
        return false;
    };
    if md.len() > 4096 {
        return false;
    }
    let Ok(f) = File::open(p) else { return false };
    let Ok(mut d) = zstd::stream::read::Decoder::new(f) else {
        return false;
    };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match d.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                if buf[..n].iter().any(|&b| b != 0) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

fn analyse(i: &Inputs) -> Analysis {
    let (v1, _) = parse_index(&i.v1_idx);
    let (v2, min_avg_max) = parse_index(&i.v2_idx);
    let in_v1: HashSet<[u8; 32]> = v1.iter().map(|c| c.id).collect();
    let mut seen: HashMap<[u8; 32], ()> = HashMap::new();
    let mut a = Analysis {
        v2_chunks: v2.len(),
        v2_unique: 0,
        min_avg_max,
        nonzero: Vec::new(),
        nonzero_bytes: 0,
        nonzero_stored: 0,
        changed: 0,
        changed_bytes: 0,
        changed_stored: 0,
        first_chunk: v2.first().map(|c| store_path(&c.id)).unwrap_or_default(),
        store_files: Vec::new(),
    };
    for c in &v2 {
        if seen.insert(c.id, ()).is_some() {
            continue;
        }
        let p = i.store.join(store_path(&c.id));
        let stored = fs::metadata(&p)
            .unwrap_or_else(|e| panic!("chunk file {}: {e}", p.display()))
            .len();
        if !in_v1.contains(&c.id) {
            a.changed += 1;
            a.changed_bytes += c.size;
            a.changed_stored += stored;
        }
        if !is_zero_chunk(&p) {
            a.nonzero.push(c.id);
            a.nonzero_bytes += c.size;
            a.nonzero_stored += stored;
        }
    }
    a.v2_unique = seen.len();
    let mut dirs: Vec<_> = fs::read_dir(&i.store)
        .expect("reading the store")
        .flatten()
        .collect();
    dirs.sort_by_key(|d| d.file_name());
    for d in dirs {
        for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".cacnk") {
                a.store_files
                    .push(format!("{}/{name}", d.file_name().to_string_lossy()));
            }
        }
    }
    a
}

/// nginx serving both indexes, the store (under `/store/`), the pzstd files and the
/// chunks end to end.
fn serve_nginx(i: &Inputs, v1: &BenchImage) -> Nginx {
    Nginx::start(&[
        ("/v1.caibx", &i.v1_idx),
        ("/v2.caibx", &i.v2_idx),
        ("/store/", &i.store),
        ("/v1.raw.zst", &v1.zst.path),
        ("/v2.raw.zst", &i.v2_zst),
        ("/v2-chunks.zst", &i.chunks_zst),
    ])
}

/// The test server with both indexes and the whole store (under `/store/`), for faults.
fn serve_store(i: &Inputs, files: &[String]) -> Server {
    let s = Server::start();
    s.serve_file("/v1.caibx", &i.v1_idx);
    s.serve_file("/v2.caibx", &i.v2_idx);
    for f in files {
        s.serve_file(&format!("/store/{f}"), i.store.join(f));
    }
    s
}

/// `imprint write-image --json` of a casync index, stdout into `json` (`exec`: the
/// rusage is imprint's own).
fn chunked_cmd(
    bin: &Path,
    url: &str,
    sha: &str,
    dev: &Path,
    stores: &[String],
    json: &Path,
) -> Command {
    let mut s = format!(
        "exec {} write-image --yes --json --url {url} --sha256 {sha} --target {}",
        bin.display(),
        dev.display()
    );
    for st in stores {
        s.push_str(&format!(" --store {st}"));
    }
    s.push_str(&format!(" > {}", json.display()));
    shell(&s)
}

fn stream_cmd(bin: &Path, url: &str, sha: &str, dev: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(["write-image", "--url", url, "--sha256", sha, "--target"])
        .arg(dev)
        .arg("--yes");
    c
}

/// The chunk report of a `--json` outcome.
fn chunks_of(path: &Path) -> Value {
    let v: Value = fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("{} holds no JSON outcome", path.display()));
    v["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| &s["output"]["image"]["chunks"])
        .find(|c| c.is_object())
        .cloned()
        .unwrap_or_else(|| panic!("no chunk report in {v:#}"))
}

/// Aborts the bench unless the device holds v2 exactly. The device is read with
/// `O_DIRECT` (what reached the device, and buffered reads of a loop device run at a
/// fifth of the speed here), compared by `cmp`.
fn assert_v2(dev: &Path, i: &Inputs, size: u64, what: &str) {
    let t = Instant::now();
    let same = shell(&format!(
        "dd if={} bs=4M iflag=direct status=none | cmp -s -n {size} - {}",
        dev.display(),
        i.v2_raw.display()
    ))
    .status()
    .is_ok_and(|s| s.success());
    assert!(
        same,
        "chunked: {what}: the device differs from v2.raw (cmp): a wrong result"
    );
    eprintln!(
        "bench: chunked: {what}: the device holds v2 (cmp, {:.1} s)",
        t.elapsed().as_secs_f64()
    );
}

fn check(name: &str, s: &Sample) {
    assert!(s.ok, "chunked: {name} failed:\n{}", s.stderr);
    eprintln!(
        "bench: chunked: {name}: {:.2} s, {:.2} CPU-s, peak RSS {} MiB",
        s.secs,
        s.cpu_secs(),
        s.max_rss_kib >> 10
    );
}

/// Runs the section.
pub fn run(o: &Opts, v1: &BenchImage) -> Chunked {
    let inp = prepare(o.cache, v1);
    let an = analyse(&inp);
    let size = v1.size;
    let sha2 = image::sha256_file(&inp.v2_idx);
    let json_out = o.rundir.join("chunked-outcome.json");
    eprintln!(
        "bench: chunked: v2 = v1 + {} MiB rewritten in {} runs + {} MiB package; v2: {} chunks, {} distinct, {} not zeros ({} MiB, {} MiB stored); {} new to v1 ({} MiB, {} MiB stored); store {} files",
        inp.rewritten_bytes >> 20,
        inp.rewrite_runs,
        inp.package_bytes >> 20,
        an.v2_chunks,
        an.v2_unique,
        an.nonzero.len(),
        an.nonzero_bytes >> 20,
        an.nonzero_stored >> 20,
        an.changed,
        an.changed_bytes >> 20,
        an.changed_stored >> 20,
        an.store_files.len()
    );
    // Every contender and the loopback measurement share one nginx.
    let plain = serve_nginx(&inp, v1);
    let v1_url = plain.url("/v1.raw.zst");
    let v2_url = plain.url("/v2.raw.zst");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut r = Chunked {
        size,
        inp,
        an,
        cores,
        stream: Vec::new(),
        full: Vec::new(),
        full_json: Vec::new(),
        reimage: Vec::new(),
        reimage_json: Vec::new(),
        decode: Vec::new(),
        ids: Vec::new(),
        dd: Vec::new(),
        curl: Vec::new(),
        two: Sample {
            secs: 0.0,
            max_rss_kib: 0,
            user_secs: 0.0,
            sys_secs: 0.0,
            ok: false,
            stderr: String::new(),
        },
        two_json: Value::Null,
        two_urls: (String::new(), String::new()),
        two_dropped_after: 0,
        local: None,
        cmp_checks: 0,
        load: (loadavg(), String::new()),
    };
    let i = &r.inp;
    for _ in 0..o.reps {
        // imprint's best stream path on v2.
        let lo = Loop::new(o.rundir, size);
        let s = timed(stream_cmd(o.bin, &v2_url, &i.v2_zst_sha256, &lo.dev));
        check("stream v2 pzstd", &s);
        r.stream.push(s);
        drop(lo);

        // Full write of v2 from the store onto a blank device.
        let lo = Loop::new(o.rundir, size);
        let store = vec![plain.url("/store/")];
        let s = timed(chunked_cmd(
            o.bin,
            &plain.url("/v2.caibx"),
            &sha2,
            &lo.dev,
            &store,
            &json_out,
        ));
        check("full write v2 from the store", &s);
        r.full_json.push(chunks_of(&json_out));
        assert_v2(&lo.dev, i, size, "full write");
        r.cmp_checks += 1;
        r.full.push(s);
        drop(lo);

        // Re-image: v1 on the device (streamed, not timed), then v2.
        let lo = Loop::new(o.rundir, size);
        let s = timed(stream_cmd(o.bin, &v1_url, &v1.zst.sha256, &lo.dev));
        assert!(s.ok, "chunked: writing v1 failed:\n{}", s.stderr);
        let store = vec![plain.url("/store/")];
        let s = timed(chunked_cmd(
            o.bin,
            &plain.url("/v2.caibx"),
            &sha2,
            &lo.dev,
            &store,
            &json_out,
        ));
        check("re-image v1 -> v2", &s);
        r.reimage_json.push(chunks_of(&json_out));
        assert_v2(&lo.dev, i, size, "re-image");
        r.cmp_checks += 1;
        r.reimage.push(s);
        drop(lo);

        // Floors: decode CPU, the device's write time for the data, loopback transfer.
        let mut z = Command::new("zstd");
        z.arg("-dcq").arg(&i.chunks_zst);
        let s = timed(z);
        check("zstd -dcq of v2's chunks", &s);
        r.decode.push(s);
        let mut d = Command::new("openssl");
        d.args(["dgst", &format!("-{DIGEST}")]).arg(&i.data_raw);
        let s = timed(d);
        check("openssl dgst of v2's chunk bytes", &s);
        r.ids.push(s);
        let lo = Loop::new(o.rundir, size);
        let s = timed(shell(&format!(
            "dd if={} of={} bs=4M oflag=direct conv=fsync status=none",
            i.data_raw.display(),
            lo.dev.display()
        )));
        check("dd of v2's data", &s);
        r.dd.push(s);
        drop(lo);
        let s = timed(shell(&format!(
            "curl -sf -o /dev/null {}",
            plain.url("/v2-chunks.zst")
        )));
        check("curl of v2's chunks over loopback", &s);
        r.curl.push(s);
    }

    // The same full write from the store as a folder: what the HTTP fetch costs.
    let abs = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let lo = Loop::new(o.rundir, size);
    let s = timed(chunked_cmd(
        o.bin,
        &format!("file://{}", abs(&i.v2_idx).display()),
        &sha2,
        &lo.dev,
        &[format!("file://{}/", abs(&i.store).display())],
        &json_out,
    ));
    check("full write v2 from a file:// store", &s);
    let report = chunks_of(&json_out);
    assert_v2(&lo.dev, i, size, "full write (file:// store)");
    r.cmp_checks += 1;
    r.local = Some((s, report));
    drop(lo);

    // Two stores: the first corrupts v2's first chunk, the second stops mid-run.
    let bad = serve_store(i, &r.an.store_files);
    bad.set_fault(&format!("/store/{}", r.an.first_chunk), Fault::FlipBit(3));
    let dying = serve_store(i, &r.an.store_files);
    let urls = (bad.url("/store/"), dying.url("/store/"));
    let threshold = (r.an.nonzero.len() / 20).max(1);
    let stop = AtomicBool::new(false);
    let lo = Loop::new(o.rundir, size);
    let (s, dropped_after) = std::thread::scope(|sc| {
        let stop = &stop;
        let watcher = sc.spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n = dying
                    .requests()
                    .iter()
                    .filter(|q| q.path.ends_with(".cacnk"))
                    .count();
                if n >= threshold {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            drop(dying);
            n
        });
        let s = timed(chunked_cmd(
            o.bin,
            &bad.url("/v2.caibx"),
            &sha2,
            &lo.dev,
            &[urls.0.clone(), urls.1.clone()],
            &json_out,
        ));
        stop.store(true, Ordering::Relaxed);
        (s, watcher.join().unwrap_or(0))
    });
    drop(bad);
    check("two stores, one corrupt, one dying", &s);
    r.two_json = chunks_of(&json_out);
    assert_v2(&lo.dev, i, size, "two stores");
    r.cmp_checks += 1;
    drop(lo);
    r.two = s;
    r.two_urls = urls;
    r.two_dropped_after = dropped_after;
    r.load.1 = loadavg();
    r
}

/// The first three fields of /proc/loadavg.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn best(s: &[Sample]) -> &Sample {
    s.iter()
        .min_by(|a, b| a.secs.total_cmp(&b.secs))
        .expect("at least one sample")
}

fn min_cpu(s: &[Sample]) -> f64 {
    s.iter().map(Sample::cpu_secs).fold(f64::INFINITY, f64::min)
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn samples_json(samples: &[Sample]) -> Value {
    json!(samples
        .iter()
        .map(|s| json!({"secs": s.secs, "max_rss_kib": s.max_rss_kib,
                        "user_secs": s.user_secs, "sys_secs": s.sys_secs}))
        .collect::<Vec<_>>())
}

/// The derived figures, for the table and the JSON.
struct Figures {
    t_stream: f64,
    t_full: f64,
    t_re: f64,
    decode_floor: f64,
    decode_cpu: f64,
    t_dd: f64,
    loop_mbps: f64,
    transfer: f64,
    floor: f64,
    fetched: u64,
    fetched_chunks: u64,
    fetched_plain: u64,
    rss_kib: u64,
    two_ok: bool,
    two_why: String,
}

impl Chunked {
    fn figures(&self) -> Figures {
        let t_stream = best(&self.stream).secs;
        let t_full = best(&self.full).secs;
        let t_re = best(&self.reimage).secs;
        let decode_cpu = min_cpu(&self.decode) + min_cpu(&self.ids);
        let decode_floor = decode_cpu / self.cores as f64;
        let t_dd = best(&self.dd).secs;
        let t_curl = best(&self.curl).secs;
        let loop_mbps = self.inp.chunks_zst_bytes() as f64 / t_curl / 1e6;
        let transfer = self.an.nonzero_stored as f64 / (loop_mbps * 1e6);
        let floor = decode_floor.max(t_dd).max(transfer);
        // The best re-image run's report (each one fetched the same).
        let re = &self.reimage_json[self
            .reimage
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.secs.total_cmp(&b.1.secs))
            .map_or(0, |x| x.0)];
        let sum = |k: &str| {
            re["stores"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| s[k].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let rss_kib = self
            .full
            .iter()
            .chain(&self.reimage)
            .chain([&self.two])
            .map(|s| s.max_rss_kib)
            .max()
            .unwrap_or(0);
        let stores = self.two_json["stores"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let find = |u: &str| stores.iter().find(|s| s["url"].as_str() == Some(u));
        let (bad, dying) = (find(&self.two_urls.0), find(&self.two_urls.1));
        let corrupt = bad.map_or(0, |s| s["corrupt_chunks"].as_u64().unwrap_or(0));
        let dropped = dying.is_some_and(|s| !s["dropped"].is_null() && s["dropped"] != false);
        let failures = dying.map_or(0, |s| s["failures"].as_u64().unwrap_or(0));
        let two_ok = self.two.ok && corrupt >= 1 && (dropped || failures > 0);
        let two_why = format!(
            "first store: corrupt_chunks {corrupt}; second (stopped after {} chunk requests): failures {failures}, dropped {}",
            self.two_dropped_after,
            dying.map_or(Value::Null, |s| s["dropped"].clone())
        );
        Figures {
            t_stream,
            t_full,
            t_re,
            decode_floor,
            decode_cpu,
            t_dd,
            loop_mbps,
            transfer,
            floor,
            fetched: sum("bytes"),
            fetched_chunks: sum("chunks"),
            fetched_plain: re["network_bytes"].as_u64().unwrap_or(0),
            rss_kib,
            two_ok,
            two_why,
        }
    }

    /// Prints the section's table and targets.
    pub fn print(&self) {
        let f = self.figures();
        let (an, i) = (&self.an, &self.inp);
        let (mn, avg, mx) = an.min_avg_max;
        println!();
        println!(
            "chunked (casync): v2 = v1 with {} MiB rewritten in place ({} runs) and a {} MiB package in a gap; \
             casync make (chunks {}/{}/{} KiB, zstd) of v1 and v2 into one store; v2: {} chunks, {} distinct, \
             {} not zeros = {} MiB ({} MiB stored); {} distinct chunks v1 lacks = {} MiB ({} MiB stored); \
             ids {DIGEST}; served over loopback HTTP by nginx; best of {} runs",
            i.rewritten_bytes >> 20,
            i.rewrite_runs,
            i.package_bytes >> 20,
            mn >> 10,
            avg >> 10,
            mx >> 10,
            an.v2_chunks,
            an.v2_unique,
            an.nonzero.len(),
            an.nonzero_bytes >> 20,
            an.nonzero_stored >> 20,
            an.changed,
            an.changed_bytes >> 20,
            an.changed_stored >> 20,
            self.full.len()
        );
        println!(
            "| run                                          | wall s | cpu s | peak RSS MiB |"
        );
        println!(
            "|----------------------------------------------|-------:|------:|-------------:|"
        );
        let row = |name: &str, s: &Sample| {
            println!(
                "| {name:<44} | {:6.2} | {:5.2} | {:12} |",
                s.secs,
                s.cpu_secs(),
                s.max_rss_kib >> 10
            );
        };
        row(
            &format!("imprint stream, v2 pzstd ({} MiB)", i.v2_zst_bytes >> 20),
            best(&self.stream),
        );
        row(
            "imprint chunked, full write of v2 (blank)",
            best(&self.full),
        );
        row("imprint chunked, re-image v1 -> v2", best(&self.reimage));
        row("imprint chunked, two stores (corrupt, dying)", &self.two);
        if let Some((s, _)) = &self.local {
            row("imprint chunked, full write, file:// store", s);
        }
        row("zstd -dcq of v2's non-zero chunks", best(&self.decode));
        row(
            &format!("openssl dgst -{DIGEST} of their bytes (ids)"),
            best(&self.ids),
        );
        row("dd of v2's data bytes, bs=4M oflag=direct", best(&self.dd));
        row("curl of v2's chunks (one file, loopback)", best(&self.curl));
        // Where the best runs' time went, from their own reports.
        let split = |samples: &[Sample], reports: &[Value]| {
            let k = samples
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.secs.total_cmp(&b.1.secs))
                .map_or(0, |x| x.0);
            let scan = reports[k]["scan_seconds"].as_f64().unwrap_or(0.0);
            let sampled = match reports[k]["scan_sampled"].as_u64() {
                Some(n) => format!(", a sample of {n} places"),
                None => String::new(),
            };
            format!(
                "scan {scan:.2} s ({} MiB read{sampled}), the rest {:.2} s",
                reports[k]["scanned_bytes"].as_u64().unwrap_or(0) >> 20,
                samples[k].secs - scan
            )
        };
        println!(
            "where the time went: full write {}; re-image {}",
            split(&self.full, &self.full_json),
            split(&self.reimage, &self.reimage_json)
        );
        // A re-image reads and hashes every data byte on the disk: its own floor.
        let scanned = self
            .reimage_json
            .first()
            .map_or(0, |r| r["scanned_bytes"].as_u64().unwrap_or(0));
        let per_byte = min_cpu(&self.ids) / an.nonzero_bytes.max(1) as f64;
        println!(
            "  re-image floor: hashing the {} MiB the disk holds ({DIGEST} at {:.0} MB/s per core, {} cores) = {:.2} s",
            scanned >> 20,
            1e-6 / per_byte.max(1e-12),
            self.cores,
            scanned as f64 * per_byte / self.cores as f64
        );
        if let Some((s, r)) = &self.local {
            println!(
                "  full write from a file:// store (no HTTP, one run): {:.2} s, {}",
                s.secs,
                split(std::slice::from_ref(s), std::slice::from_ref(r))
            );
        }
        println!(
            "load average before / after the section: {} / {}",
            self.load.0, self.load.1
        );
        println!(
            "floor of a full write: max(decode and check ids {:.2} CPU-s / {} cores = {:.2} s, loop write of {} MiB {:.2} s, \
             transfer of {} MiB at {:.0} MB/s loopback = {:.2} s) = {:.2} s",
            f.decode_cpu,
            self.cores,
            f.decode_floor,
            an.nonzero_bytes >> 20,
            f.t_dd,
            an.nonzero_stored >> 20,
            f.loop_mbps,
            f.transfer,
            f.floor
        );
        println!();
        println!("| target                                           | measured        | target          | ratio | result |");
        println!("|--------------------------------------------------|----------------:|----------------:|------:|--------|");
        let t = |name: &str, m: String, tg: String, ratio: f64, ok: bool| {
            println!(
                "| {name:<48} | {m:>15} | {tg:>15} | {ratio:5.2} | {:<6} |",
                pass(ok)
            );
        };
        t(
            "full write <= imprint stream (pzstd)",
            format!("{:.2} s", f.t_full),
            format!("<= {:.2} s", f.t_stream),
            f.t_full / f.t_stream,
            f.t_full <= f.t_stream,
        );
        t(
            "full write <= 1.3x machine floor",
            format!("{:.2} s", f.t_full),
            format!("<= {:.2} s", 1.3 * f.floor),
            f.t_full / f.floor,
            f.t_full <= 1.3 * f.floor,
        );
        t(
            "re-image fetched <= 1.2x changed (stored bytes)",
            format!("{:.1} MiB", f.fetched as f64 / MIB as f64),
            format!("<= {:.1} MiB", 1.2 * an.changed_stored as f64 / MIB as f64),
            f.fetched as f64 / an.changed_stored as f64,
            f.fetched as f64 <= 1.2 * an.changed_stored as f64,
        );
        t(
            "re-image wall <= 0.25x full write",
            format!("{:.2} s", f.t_re),
            format!("<= {:.2} s", 0.25 * f.t_full),
            f.t_re / f.t_full,
            f.t_re <= 0.25 * f.t_full,
        );
        t(
            "re-image result == v2 (cmp, every run)",
            "identical".into(),
            "identical".into(),
            1.0,
            true,
        );
        t(
            "two stores: completes, == v2, both named",
            if f.two_ok { "yes" } else { "no" }.into(),
            "yes".into(),
            1.0,
            f.two_ok,
        );
        t(
            "peak RSS < 64 MiB (every chunked run)",
            format!("{} MiB", f.rss_kib >> 10),
            "< 64 MiB".into(),
            f.rss_kib as f64 / (64 * 1024) as f64,
            f.rss_kib < 64 * 1024,
        );
        println!(
            "re-image fetched: {} chunks, {} MiB as stored (compressed, the stores' `bytes`), {} MiB decoded \
             (`network_bytes`); changed: {} chunks, {} MiB stored, {} MiB decoded",
            f.fetched_chunks,
            f.fetched >> 20,
            f.fetched_plain >> 20,
            an.changed,
            an.changed_stored >> 20,
            an.changed_bytes >> 20
        );
        println!("two stores: {}", f.two_why);
        println!(
            "every device written was compared with v2.raw by cmp ({} checks)",
            self.cmp_checks
        );
    }

    /// The section's entry in results.json.
    pub fn json(&self) -> Value {
        let f = self.figures();
        let (an, i) = (&self.an, &self.inp);
        json!({
            "size": self.size,
            "v2": {"rewritten_bytes": i.rewritten_bytes, "rewrite_runs": i.rewrite_runs,
                   "package_bytes": i.package_bytes, "zst_bytes": i.v2_zst_bytes,
                   "zst_sha256": i.v2_zst_sha256, "casync_make_secs": i.make_secs},
            "index": {"chunks": an.v2_chunks, "distinct": an.v2_unique,
                      "min_avg_max": [an.min_avg_max.0, an.min_avg_max.1, an.min_avg_max.2],
                      "nonzero_chunks": an.nonzero.len(), "nonzero_bytes": an.nonzero_bytes,
                      "nonzero_stored_bytes": an.nonzero_stored,
                      "changed_chunks": an.changed, "changed_bytes": an.changed_bytes,
                      "changed_stored_bytes": an.changed_stored,
                      "store_files": an.store_files.len()},
            "stream_v2": {"best_secs": f.t_stream, "samples": samples_json(&self.stream)},
            "full_write": {"best_secs": f.t_full, "samples": samples_json(&self.full),
                           "reports": self.full_json},
            "reimage": {"best_secs": f.t_re, "samples": samples_json(&self.reimage),
                        "reports": self.reimage_json,
                        "fetched_stored_bytes": f.fetched, "fetched_chunks": f.fetched_chunks,
                        "fetched_decoded_bytes": f.fetched_plain},
            "local_store_full_write": self.local.as_ref().map(|(s, r)| json!({
                "secs": s.secs, "user_secs": s.user_secs, "sys_secs": s.sys_secs,
                "max_rss_kib": s.max_rss_kib, "report": r})),
            "loadavg_before_after": [self.load.0, self.load.1],
            "two_stores": {"secs": self.two.secs, "max_rss_kib": self.two.max_rss_kib,
                           "report": self.two_json, "corrupt_store": self.two_urls.0,
                           "dying_store": self.two_urls.1,
                           "dying_after_chunk_requests": self.two_dropped_after},
            "floor": {"decode_cpu_secs": f.decode_cpu, "cores": self.cores,
                      "decode_secs": f.decode_floor, "loop_write_secs": f.t_dd,
                      "loopback_mb_per_s": f.loop_mbps, "transfer_secs": f.transfer,
                      "floor_secs": f.floor,
                      "decode_samples": samples_json(&self.decode),
                      "id_samples": samples_json(&self.ids),
                      "dd_samples": samples_json(&self.dd),
                      "curl_samples": samples_json(&self.curl)},
            "peak_rss_kib": f.rss_kib,
            "cmp_checks": self.cmp_checks,
            "ratios": {"full_over_stream": f.t_full / f.t_stream,
                       "full_over_floor": f.t_full / f.floor,
                       "fetched_over_changed_stored": f.fetched as f64 / an.changed_stored as f64,
                       "reimage_over_full": f.t_re / f.t_full},
            "targets": {
                "full_not_slower_than_stream": f.t_full <= f.t_stream,
                "full_within_1_3x_floor": f.t_full <= 1.3 * f.floor,
                "reimage_fetched_within_1_2x_changed":
                    f.fetched as f64 <= 1.2 * an.changed_stored as f64,
                "reimage_within_0_25x_full": f.t_re <= 0.25 * f.t_full,
                "reimage_identical": true,
                "two_stores_complete_and_named": f.two_ok,
                "rss_under_64mib": f.rss_kib < 64 * 1024,
            },
        })
    }
}

impl Inputs {
    fn chunks_zst_bytes(&self) -> u64 {
        fs::metadata(&self.chunks_zst).map_or(0, |m| m.len())
    }
}
