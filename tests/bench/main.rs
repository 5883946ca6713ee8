//! `make bench`: imprint's image writer side by side with `curl | zstd | dd` and
//! `qemu-img convert`, onto loop devices, with a table and JSON results.
//!
//! Usage: imprint-bench --imprint out/imprint [--unverified PATH] [--cache target/bench]
//!        [--out out/bench] [--size-gib 4] [--reps 3] [--no-large] [--no-chunked]
//!        [--only-chunked]
//!
//! The served file is `pzstd`'s: independent frames a decoder may spread over cores.
//! `--unverified` names an imprint built with the `bench-unverified` feature (served
//! bytes not hashed): inline sha256 costs what it saves in wall time.
//! The chunked section (`chunked.rs`, skipped with `--no-chunked`, run alone with
//! `--only-chunked`, its JSON then in `chunked.json`) writes casync indexes of the same
//! image from a chunk store.

mod chunked;
mod image;
mod run;

use imprint_tests::server::{Fault, Server};
use run::{shell, timed, Loop, Sample};
use serde_json::json;
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// What a `bench-unverified` build says on stderr when it starts (agent/src/main.rs).
const UNVERIFIED_BANNER: &str = "DOES NOT VERIFY";

struct Args {
    imprint: PathBuf,
    unverified: Option<PathBuf>,
    cache: PathBuf,
    out: PathBuf,
    size_gib: u64,
    reps: usize,
    large: bool,
    chunked: bool,
    only_chunked: bool,
}

fn args() -> Args {
    let mut a = Args {
        imprint: "out/imprint".into(),
        unverified: None,
        cache: "target/bench".into(),
        out: "out/bench".into(),
        size_gib: 4,
        reps: 3,
        large: true,
        chunked: true,
        only_chunked: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--imprint" => a.imprint = v().into(),
            "--unverified" => a.unverified = Some(v().into()),
            "--cache" => a.cache = v().into(),
            "--out" => a.out = v().into(),
            "--size-gib" => a.size_gib = v().parse().expect("--size-gib N"),
            "--reps" => a.reps = v().parse().expect("--reps N"),
            "--no-large" => a.large = false,
            "--no-chunked" => a.chunked = false,
            "--only-chunked" => a.only_chunked = true,
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(a.reps > 0, "--reps must be at least 1");
    a
}

/// The run with the shortest wall time.
fn best_sample(samples: &[Sample]) -> &Sample {
    samples
        .iter()
        .min_by(|a, b| a.secs.total_cmp(&b.secs))
        .expect("every contender ran at least once")
}

/// The shortest wall time of the samples.
fn best(samples: &[Sample]) -> f64 {
    best_sample(samples).secs
}

fn samples_json(samples: &[Sample]) -> serde_json::Value {
    json!(samples
        .iter()
        .map(|s| json!({"secs": s.secs, "max_rss_kib": s.max_rss_kib,
                        "user_secs": s.user_secs, "sys_secs": s.sys_secs}))
        .collect::<Vec<_>>())
}

/// A contender's JSON entry: best wall time, and every sample.
fn entry_json(samples: &[Sample]) -> serde_json::Value {
    json!({"best_secs": best(samples), "samples": samples_json(samples)})
}

fn form_json(c: &image::Compressed) -> serde_json::Value {
    json!({"bytes": c.bytes, "sha256": c.sha256, "frames": c.frames})
}

/// Runs `make` `reps` times on fresh loop devices; a failed run aborts the bench.
fn repeat(
    name: &str,
    reps: usize,
    size: u64,
    dir: &Path,
    make: &dyn Fn(&Path) -> Command,
) -> Vec<Sample> {
    (0..reps)
        .map(|i| {
            let lo = Loop::new(dir, size);
            let s = timed(make(&lo.dev));
            assert!(s.ok, "{name} failed:\n{}", s.stderr);
            eprintln!(
                "bench: {name} #{}: {:.2} s, peak RSS {} MiB",
                i + 1,
                s.secs,
                s.max_rss_kib >> 10
            );
            s
        })
        .collect()
}

fn imprint_cmd(bin: &Path, url: &str, digest: (&str, &str), dev: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(["write-image", "--url", url, digest.0, digest.1, "--target"])
        .arg(dev)
        .arg("--yes")
        .args(extra);
    c
}

/// Seconds sha256 / sha512 take over `bytes` bytes, measured on a 256 MiB sample of `data`.
fn hash_secs(raw: &Path, bytes: u64) -> (f64, f64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(raw).expect("opening image.raw");
    let mut sample = vec![0u8; 256 * MIB as usize];
    let _ = f.read_at(&mut sample, 0);
    let t = Instant::now();
    std::hint::black_box(sha2::Sha256::digest(&sample));
    let s256 = t.elapsed().as_secs_f64() * bytes as f64 / sample.len() as f64;
    let t = Instant::now();
    std::hint::black_box(sha2::Sha512::digest(&sample));
    let s512 = t.elapsed().as_secs_f64() * bytes as f64 / sample.len() as f64;
    (s256, s512)
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn main() {
    let a = args();
    assert!(
        a.imprint.exists(),
        "{} not found: run `make agent` first",
        a.imprint.display()
    );
    let small = image::build(&a.cache, a.size_gib * GIB, 0.25);
    let rundir = a.cache.join("run");
    let chunked_opts = chunked::Opts {
        bin: &a.imprint,
        cache: &a.cache,
        rundir: &rundir,
        reps: a.reps,
    };
    if a.only_chunked {
        let c = chunked::run(&chunked_opts, &small);
        c.print();
        write_results(&a.out, "chunked.json", &json!({"chunked": c.json()}));
        return;
    }
    let server = Server::start();
    server.serve_file("/image.raw.zst", &small.zst.path);
    server.serve_file("/single.raw.zst", &small.single.path);
    server.serve_file("/drop.raw.zst", &small.zst.path);
    server.set_fault("/drop.raw.zst", Fault::DropEvery(256 * MIB));
    let url = server.url("/image.raw.zst");
    let single_url = server.url("/single.raw.zst");
    let drop_url = server.url("/drop.raw.zst");
    // Streamed: a large allocation here would count in every child's peak RSS (see run.rs).
    let sha512 = image::sha512_file(&small.zst.path);
    let d256 = ("--sha256", small.zst.sha256.as_str());
    let d256_single = ("--sha256", small.single.sha256.as_str());
    let bin = a.imprint.clone();
    let wz = Loop::new(&rundir, MIB).write_zeroes_max();
    eprintln!(
        "bench: {} GiB image, {} MiB data, {} MiB zstd in {} frames ({} MiB single-frame); loop write_zeroes_max_bytes = {wz}",
        small.size >> 30,
        small.data_bytes >> 20,
        small.zst.bytes >> 20,
        small.zst.frames,
        small.single.bytes >> 20
    );

    // Correctness first: imprint's result is byte-identical to the raw image, from
    // the multi-frame file every decoding contender gets and from the single frame.
    for (what, u, d) in [
        ("multi-frame", &url, d256),
        ("single-frame", &single_url, d256_single),
    ] {
        let lo = Loop::new(&rundir, small.size);
        let s = timed(imprint_cmd(&bin, u, d, &lo.dev, &[]));
        assert!(s.ok, "imprint ({what}) failed:\n{}", s.stderr);
        assert!(
            run::same_content(&lo.dev, &small.raw, small.size),
            "the device imprint wrote from the {what} file differs from image.raw"
        );
        eprintln!(
            "bench: warm-up run ({what}) {:.2} s; content verified with cmp",
            s.secs
        );
    }
    // The unverified build must be one: it says so, and accepts a wrong digest.
    if let Some(u) = &a.unverified {
        let lo = Loop::new(&rundir, small.size);
        let wrong = "0".repeat(64);
        let s = timed(imprint_cmd(u, &url, ("--sha256", &wrong), &lo.dev, &[]));
        assert!(
            s.ok && s.stderr.contains(UNVERIFIED_BANNER),
            "{} is not a bench-unverified build (it should skip the digest check and say so):\n{}",
            u.display(),
            s.stderr
        );
        eprintln!("bench: warm-up run (unverified) {:.2} s", s.secs);
    }

    // Rounds: every contender once per round, so load from other users of the
    // machine spreads over all of them; the best of the rounds is compared.
    let (mut imp, mut unverified, mut single) = (Vec::new(), Vec::new(), Vec::new());
    let (mut curl, mut qemu) = (Vec::new(), Vec::new());
    let (mut readback, mut drops, mut s512) = (Vec::new(), Vec::new(), Vec::new());
    let mut decode = Vec::new();
    let mut data_decode = Vec::new();
    let data_frames = image::data_frames(&small.zst.path);
    for _ in 0..a.reps {
        imp.extend(repeat("imprint", 1, small.size, &rundir, &|dev| {
            imprint_cmd(&bin, &url, d256, dev, &[])
        }));
        if let Some(u) = &a.unverified {
            unverified.extend(repeat(
                "imprint, no hashing (bench-unverified)",
                1,
                small.size,
                &rundir,
                &|dev| imprint_cmd(u, &url, d256, dev, &[]),
            ));
        }
        single.extend(repeat(
            "imprint, single-frame zstd",
            1,
            small.size,
            &rundir,
            &|dev| imprint_cmd(&bin, &single_url, d256_single, dev, &[]),
        ));
        curl.extend(repeat("curl|zstd|dd", 1, small.size, &rundir, &|dev| {
            shell(&format!(
                "curl -sf {url} | zstd -dcq | dd of={} bs=4M iflag=fullblock oflag=direct conv=fsync status=none",
                dev.display()
            ))
        }));
        qemu.extend(repeat("qemu-img convert", 1, small.size, &rundir, &|dev| {
            let mut c = Command::new("qemu-img");
            c.args(["convert", "-n", "-t", "none", "-f", "raw", "-O", "raw"])
                .arg(&small.raw)
                .arg(dev);
            c
        }));
        readback.extend(repeat(
            "imprint --verify readback",
            1,
            small.size,
            &rundir,
            &|dev| imprint_cmd(&bin, &url, d256, dev, &["--verify", "readback"]),
        ));
        drops.extend(repeat(
            "imprint, drop every 256 MiB",
            1,
            small.size,
            &rundir,
            &|dev| imprint_cmd(&bin, &drop_url, d256, dev, &[]),
        ));
        s512.extend(repeat("imprint --sha512", 1, small.size, &rundir, &|dev| {
            imprint_cmd(&bin, &url, ("--sha512", &sha512), dev, &[])
        }));
        // The decode floor: CPU time one zstd thread needs for the served file.
        let mut z = Command::new("zstd");
        z.arg("-dcq").arg(&small.zst.path);
        let s = timed(z);
        assert!(s.ok, "zstd -dcq failed:\n{}", s.stderr);
        eprintln!(
            "bench: zstd -dcq > /dev/null: {:.2} s, {:.2} CPU-s",
            s.secs,
            s.cpu_secs()
        );
        decode.push(s);
        // imprint's own floor: the frames holding data (it decodes no frame of zeros).
        let mut z = Command::new("zstd");
        z.arg("-dcq").arg(&data_frames);
        let s = timed(z);
        assert!(s.ok, "zstd -dcq failed:\n{}", s.stderr);
        data_decode.push(s);
    }
    let large = a.large.then(|| {
        let big = image::build(&a.cache, 4 * a.size_gib * GIB, 1.0 / 16.0);
        server.serve_file("/large.raw.zst", &big.zst.path);
        let lurl = server.url("/large.raw.zst");
        let s = repeat("imprint, 4x image", 1, big.size, &rundir, &|dev| {
            imprint_cmd(&bin, &lurl, ("--sha256", &big.zst.sha256), dev, &[])
        });
        (big, s)
    });
    // Before hash_secs: its 256 MiB sample would count in every later child's peak RSS.
    let chunked = a.chunked.then(|| chunked::run(&chunked_opts, &small));

    let t_imp = best(&imp);
    let t_curl = best(&curl);
    let t_qemu = best(&qemu);
    let t_rb = best(&readback);
    let t_drop = best(&drops);
    let rss_small = imp.iter().map(|s| s.max_rss_kib).max().unwrap_or(0);
    let rss_large = large
        .as_ref()
        .map(|(_, s)| s.iter().map(|s| s.max_rss_kib).max().unwrap_or(0));
    // No decoder can beat the CPU time decoding takes, spread perfectly over every core.
    let decode_cpu = decode
        .iter()
        .map(Sample::cpu_secs)
        .fold(f64::INFINITY, f64::min);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let decode_floor = decode_cpu / cores as f64;
    let data_decode_cpu = data_decode
        .iter()
        .map(Sample::cpu_secs)
        .fold(f64::INFINITY, f64::min);
    // What imprint hashes with sha256 inline: the served file. (The written MiBs are
    // hashed only for a read-back, whose cost the read-back row measures.)
    let hashed = small.zst.bytes;
    let (sha_secs, sha512_secs) = hash_secs(&small.raw, hashed);
    // Measured: the wall time a build that hashes nothing saves. Estimated (an upper
    // bound, hashing runs on the fetch thread): the CPU time of hashing, measured apart.
    let t_unverified = (!unverified.is_empty()).then(|| best(&unverified));
    let sha_measured = t_unverified.map(|t| (t_imp - t) / t_imp);
    let sha_estimate = sha_secs / t_imp;
    let sha_share = sha_measured.unwrap_or(sha_estimate);
    // A verified write by imprint cannot need less CPU than decoding the frames that
    // hold data and hashing the served file, spread perfectly over every core.
    let imprint_floor = (data_decode_cpu + sha_secs) / cores as f64;
    let qemu_reachable = imprint_floor <= t_qemu;
    let rb_share = (t_rb - t_imp) / t_imp;
    let drop_growth = (t_drop - t_imp) / t_imp;

    let rss_ok = rss_small < 64 * 1024 && rss_large.is_none_or(|r| r < 64 * 1024);
    println!();
    println!(
        "image: {} GiB raw, {} MiB data; served: {} MiB pzstd {}, {} frames (single-frame zstd: {} MiB); best of {} runs each",
        small.size >> 30,
        small.data_bytes >> 20,
        small.zst.bytes >> 20,
        image::LEVEL,
        small.zst.frames,
        small.single.bytes >> 20,
        a.reps
    );
    println!("| contender                                   | wall s | cpu s | imprint ratio |");
    println!("|---------------------------------------------|-------:|------:|--------------:|");
    let row = |name: &str, samples: &[Sample], ratio: bool| {
        if samples.is_empty() {
            return;
        }
        let b = best_sample(samples);
        let r = if ratio {
            format!("{:13.2}", b.secs / t_imp)
        } else {
            String::new()
        };
        println!(
            "| {name:<43} | {:6.2} | {:5.2} | {r:>13} |",
            b.secs,
            b.cpu_secs()
        );
    };
    row("imprint write-image (http+zstd+sha256)", &imp, true);
    row("imprint, single-frame zstd", &single, true);
    row("imprint, no hashing (bench-unverified)", &unverified, true);
    row("curl -s | zstd -dc | dd bs=4M oflag=direct", &curl, true);
    row("qemu-img convert -n -t none (local raw)", &qemu, true);
    row("imprint --verify readback", &readback, false);
    row("imprint, connection drop every 256 MiB", &drops, false);
    row("imprint --sha512", &s512, false);
    if let Some((big, s)) = &large {
        row(&format!("imprint, {} GiB image", big.size >> 30), s, false);
    }
    println!("(cpu s: user + sys of the best run, all processes of a pipeline)");
    println!();
    println!("targets:");
    println!(
        "  {} imprint >= 2x faster than curl|zstd|dd: {:.2}x",
        pass(t_curl / t_imp >= 2.0),
        t_curl / t_imp
    );
    println!(
        "  {} imprint no slower than qemu-img convert: {:.2} s vs {:.2} s",
        pass(t_imp <= t_qemu),
        t_imp,
        t_qemu
    );
    println!(
        "       decoding this file needs {decode_cpu:.2} CPU-s (zstd -dcq); on {cores} cores \
         (available_parallelism) no tool that decodes it can finish in under {decode_floor:.2} s: \
         {}",
        if decode_floor <= t_qemu {
            "a decoder could reach it here"
        } else {
            "no decoder reaches it here"
        }
    );
    println!(
        "       imprint decodes only the frames holding data ({data_decode_cpu:.2} CPU-s) and \
         hashes the served file ({sha_secs:.2} CPU-s): on {cores} cores at least \
         {imprint_floor:.2} s, {}",
        if qemu_reachable {
            "so the target is reachable here"
        } else {
            "so the target is out of reach on this machine"
        }
    );
    println!(
        "  {} peak RSS < 64 MiB: {} MiB ({} GiB image){}",
        pass(rss_ok),
        rss_small >> 10,
        small.size >> 30,
        rss_large
            .map(|r| format!(", {} MiB ({} GiB image)", r >> 10, 4 * a.size_gib))
            .unwrap_or_default()
    );
    let measured = match t_unverified {
        Some(t) => format!(
            "{:.1}% measured ({t_imp:.2} s, {t:.2} s without hashing)",
            sha_share * 100.0
        ),
        None => "not measured (no --unverified build); judged on the estimate".to_string(),
    };
    println!(
        "  {} sha256 < 10% of wall time: {measured}; CPU estimate {:.1}% ({:.2} s CPU for {} MiB hashed, measured apart: an upper bound; sha512 would be {:.2} s)",
        pass(sha_share < 0.10),
        sha_estimate * 100.0,
        sha_secs,
        hashed >> 20,
        sha512_secs
    );
    println!(
        "  {} read-back verification adds < 50% to the write: {:+.1}% ({:.2} s more than {:.2} s)",
        pass(rb_share < 0.5),
        rb_share * 100.0,
        t_rb - t_imp,
        t_imp
    );
    println!(
        "  {} drop every 256 MiB costs < +10%: {:+.1}%",
        pass(drop_growth < 0.10),
        drop_growth * 100.0
    );
    if let Some(c) = &chunked {
        c.print();
    }

    let results = json!({
        "image": {
            "size": small.size, "data_bytes": small.data_bytes,
            "zst_bytes": small.zst.bytes, "zst_sha256": small.zst.sha256,
            "served": form_json(&small.zst), "single_frame": form_json(&small.single),
            "zstd_level": image::LEVEL, "loop_write_zeroes_max_bytes": wz,
        },
        "reps": a.reps,
        "imprint": {"best_secs": t_imp, "samples": samples_json(&imp), "peak_rss_kib": rss_small},
        "imprint_single_frame": entry_json(&single),
        "imprint_unverified": t_unverified.map(|_| entry_json(&unverified)),
        "curl_zstd_dd": entry_json(&curl),
        "qemu_img_convert": entry_json(&qemu),
        "imprint_readback": entry_json(&readback),
        "imprint_drop_every_256mib": entry_json(&drops),
        "imprint_sha512": entry_json(&s512),
        "imprint_large": large.as_ref().map(|(b, s)| json!({
            "size": b.size, "data_bytes": b.data_bytes, "zst_bytes": b.zst.bytes,
            "frames": b.zst.frames, "best_secs": best(s), "samples": samples_json(s),
            "peak_rss_kib": rss_large,
        })),
        "decode_floor": {
            "cpu_secs": decode_cpu, "cores": cores, "floor_secs": decode_floor,
            "data_frames_cpu_secs": data_decode_cpu, "sha256_cpu_secs": sha_secs,
            "imprint_floor_secs": imprint_floor, "qemu_target_reachable": qemu_reachable,
            "samples": samples_json(&decode), "data_frames_samples": samples_json(&data_decode),
        },
        "sha256": {"share_of_wall": sha_share, "measured_share": sha_measured,
                   "unverified_best_secs": t_unverified,
                   "bytes_hashed": hashed, "cpu_secs": sha_secs, "cpu_estimate_share": sha_estimate,
                   "sha512_cpu_secs": sha512_secs},
        "ratios": {"curl_over_imprint": t_curl / t_imp, "qemu_over_imprint": t_qemu / t_imp,
                   "single_frame_over_imprint": best(&single) / t_imp,
                   "readback_share": rb_share, "drop_growth": drop_growth},
        "targets": {
            "twice_curl": t_curl / t_imp >= 2.0, "not_slower_than_qemu": t_imp <= t_qemu,
            "rss_under_64mib": rss_ok, "sha256_under_10pct": sha_share < 0.10,
            "readback_under_50pct": rb_share < 0.5, "drop_under_10pct": drop_growth < 0.10,
        },
        "chunked": chunked.as_ref().map(chunked::Chunked::json),
    });
    write_results(&a.out, "results.json", &results);
}

fn write_results(dir: &Path, name: &str, results: &serde_json::Value) {
    std::fs::create_dir_all(dir).expect("creating the results directory");
    let path = dir.join(name);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(results).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!("\nresults: {}", path.display());
}
