//! The bench's test image: a sparse raw disk image, a quarter (or a given share)
//! real data from files on this machine in realistic runs, the rest zeros;
//! compressed twice at the same level: by `pzstd` into independent 8 MiB frames
//! (the file the bench serves) and by `zstd` into one frame. All three are cached
//! under a content key.

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const MIB: u64 = 1 << 20;

/// zstd level of both compressed forms.
pub const LEVEL: &str = "-3";

/// One compressed form of the image.
#[derive(Debug, Clone)]
pub struct Compressed {
    pub path: PathBuf,
    pub bytes: u64,
    /// What a client checks the download against.
    pub sha256: String,
    /// zstd frames holding data (skippable frames not counted).
    pub frames: u64,
}

/// A built (or cached) bench image.
#[derive(Debug, Clone)]
pub struct BenchImage {
    pub raw: PathBuf,
    /// `pzstd`'s independent frames: the file served to every decoding contender.
    pub zst: Compressed,
    /// `zstd`'s single frame: the same bytes, decodable on one core only.
    pub single: Compressed,
    pub size: u64,
    pub data_bytes: u64,
    /// 1 MiB blocks holding any data (those imprint hashes; the rest are zero).
    pub data_blocks: u64,
}

/// Files under the data roots, in a stable order, until `need` bytes are covered.
fn data_files(need: u64) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec!["/usr/lib".into(), "/usr/share".into()];
    stack.reverse();
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        let mut subdirs = Vec::new();
        for p in entries {
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                subdirs.push(p);
            } else if m.is_file() && m.len() > 0 {
                total += m.len();
                out.push((p, m.len()));
                if total >= need {
                    return out;
                }
            }
        }
        // Depth first, in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    out
}

/// A tiny deterministic generator for the layout.
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

/// Data runs (offset, len): the first MiB, then runs of 64 KiB..32 MiB separated by
/// zero gaps sized so that data makes up `data_share` of `size`.
fn layout(size: u64, data_share: f64) -> Vec<(u64, u64)> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let target = (size as f64 * data_share) as u64;
    let mut runs = vec![(0, MIB)];
    let mut data = MIB;
    let mut pos = MIB;
    let gap_scale = (1.0 - data_share) / data_share;
    while data < target {
        let len = rng.range(64 << 10, 32 * MIB).min(target - data).max(4096);
        let mean_gap = (len as f64 * gap_scale) as u64;
        let gap = rng.range(mean_gap / 2, mean_gap * 3 / 2 + 4096);
        pos += gap;
        if pos + len > size {
            break;
        }
        runs.push((pos, len));
        data += len;
        pos += len;
    }
    runs
}

/// Builds (or finds in `cache`) the image of `size` bytes with `data_share` real data.
pub fn build(cache: &Path, size: u64, data_share: f64) -> BenchImage {
    let runs = layout(size, data_share);
    let need: u64 = runs.iter().map(|r| r.1).sum();
    let files = data_files(need);
    let mut key = Sha256::new();
    key.update(format!("bench-image-v2 {size} {data_share}\n"));
    for (p, len) in &files {
        key.update(format!("{} {len}\n", p.display()));
    }
    let key = &hex::encode(key.finalize())[..16];
    let dir = cache.join(format!("{}g-{key}", size >> 30));
    let raw = dir.join("image.raw");
    let frames = dir.join("frames.raw.zst");
    let single = dir.join("single.raw.zst");
    let meta = dir.join("meta.json");
    if let Some(img) = read_meta(&meta, &raw, &frames, &single) {
        return img;
    }
    fs::create_dir_all(&dir).expect("creating the bench cache directory");
    eprintln!(
        "bench: building {} ({} MiB of data from /usr files) ...",
        raw.display(),
        need >> 20
    );
    let t = Instant::now();
    let out = File::create(&raw).expect("creating image.raw");
    out.set_len(size).expect("sizing image.raw");
    let mut source = files
        .iter()
        .filter_map(|(p, _)| File::open(p).ok())
        .fold(Box::new(std::io::empty()) as Box<dyn Read>, |acc, f| {
            Box::new(acc.chain(f))
        });
    let mut buf = vec![0u8; 4 << 20];
    let mut written = 0;
    for &(off, len) in &runs {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            let mut filled = 0;
            while filled < n {
                match source.read(&mut buf[filled..n]) {
                    Ok(0) => break,
                    Ok(k) => filled += k,
                    Err(_) => break,
                }
            }
            // Out of files (tiny machine): repeat a pattern rather than leave zeros.
            buf[filled..n]
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (i % 251) as u8 | 1);
            out.write_all_at(&buf[..n], off + done)
                .expect("writing image.raw");
            done += n as u64;
        }
        written += len;
    }
    drop(out);
    // pzstd cuts its input into 8 MiB pieces (4 windows at this level) whatever its
    // thread count, so the file does not depend on the machine that made it.
    let frames = compress("pzstd", &["-q", "-f", LEVEL], &raw, &frames);
    assert!(
        frames.frames > 1,
        "pzstd wrote a single frame: {}",
        frames.path.display()
    );
    let single = compress("zstd", &["-q", "-f", LEVEL, "-T0"], &raw, &single);
    let img = BenchImage {
        raw,
        zst: frames,
        single,
        size,
        data_bytes: written,
        data_blocks: blocks_touched(&runs),
    };
    let form = |c: &Compressed| serde_json::json!({"bytes": c.bytes, "sha256": c.sha256, "frames": c.frames});
    let m = serde_json::json!({
        "size": img.size, "data_bytes": img.data_bytes, "data_blocks": img.data_blocks,
        "frames": form(&img.zst), "single": form(&img.single),
    });
    let mut f = File::create(&meta).expect("writing meta.json");
    f.write_all(m.to_string().as_bytes())
        .expect("writing meta.json");
    eprintln!("bench: image built in {:.1} s", t.elapsed().as_secs_f64());
    img
}

/// Compresses `raw` into `out` with `tool` (`zstd` or `pzstd`) and describes the result.
fn compress(tool: &str, args: &[&str], raw: &Path, out: &Path) -> Compressed {
    eprintln!("bench: compressing with {tool} {} ...", args.join(" "));
    let st = Command::new(tool)
        .args(args)
        .arg(raw)
        .arg("-o")
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("running {tool} (Debian package zstd): {e}"));
    assert!(st.success(), "{tool} failed compressing {}", raw.display());
    Compressed {
        path: out.to_path_buf(),
        bytes: fs::metadata(out).map(|m| m.len()).unwrap_or(0),
        sha256: sha256_file(out),
        frames: count_frames(out),
    }
}

/// zstd frames in a file as `pzstd` writes it: each one after a skippable frame
/// holding its compressed size. A file that does not start so counts as one frame.
fn count_frames(p: &Path) -> u64 {
    let f = File::open(p).expect("opening a compressed image");
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let (mut pos, mut frames) = (0, 0);
    let mut head = [0u8; 12];
    while pos + 12 <= len {
        f.read_exact_at(&mut head, pos)
            .expect("reading a compressed image");
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        if word(0) & 0xFFFF_FFF0 != 0x184D_2A50 || word(4) != 4 {
            break;
        }
        frames += 1;
        pos += 12 + u64::from(word(8));
    }
    frames.max(1)
}

/// The frames of the pzstd file `zst` that hold data, as a file of their own
/// (cached beside it): the decoding imprint cannot avoid, since it does not
/// decode frames of zeros.
pub fn data_frames(zst: &Path) -> PathBuf {
    let out = zst.with_file_name("data-frames.zst");
    let done = zst.with_file_name("data-frames.done");
    if done.exists() && out.exists() {
        return out;
    }
    let f = File::open(zst).expect("opening the served image");
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut w = std::io::BufWriter::new(File::create(&out).expect("creating data-frames.zst"));
    let (mut pos, mut head) = (0u64, [0u8; 12]);
    while pos + 12 <= len {
        f.read_exact_at(&mut head, pos)
            .expect("reading the served image");
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        assert!(
            word(0) & 0xFFFF_FFF0 == 0x184D_2A50 && word(4) == 4,
            "not pzstd's layout at byte {pos}"
        );
        let mut frame = vec![0u8; word(8) as usize];
        f.read_exact_at(&mut frame, pos + 12)
            .expect("reading a frame");
        let plain = zstd::stream::decode_all(&frame[..]).expect("decoding a frame");
        if plain.iter().any(|&b| b != 0) {
            w.write_all(&frame).expect("writing data-frames.zst");
        }
        pos += 12 + frame.len() as u64;
    }
    w.flush().expect("writing data-frames.zst");
    File::create(&done).expect("marking data-frames.zst done");
    out
}

fn read_meta(meta: &Path, raw: &Path, frames: &Path, single: &Path) -> Option<BenchImage> {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(meta).ok()?).ok()?;
    let size = v["size"].as_u64()?;
    if fs::metadata(raw).ok()?.len() != size {
        return None;
    }
    let form = |v: &serde_json::Value, path: &Path| {
        let bytes = v["bytes"].as_u64()?;
        (fs::metadata(path).ok()?.len() == bytes).then_some(())?;
        Some(Compressed {
            path: path.to_path_buf(),
            bytes,
            sha256: v["sha256"].as_str()?.to_string(),
            frames: v["frames"].as_u64()?,
        })
    };
    Some(BenchImage {
        raw: raw.to_path_buf(),
        zst: form(&v["frames"], frames)?,
        single: form(&v["single"], single)?,
        size,
        data_bytes: v["data_bytes"].as_u64()?,
        data_blocks: v["data_blocks"].as_u64()?,
    })
}

/// How many 1 MiB blocks the (sorted, disjoint) runs touch.
fn blocks_touched(runs: &[(u64, u64)]) -> u64 {
    let mut count = 0;
    let mut last: Option<u64> = None;
    for &(off, len) in runs {
        let (first, end) = (off / MIB, (off + len - 1) / MIB);
        let first = match last {
            Some(l) if l >= first => l + 1,
            _ => first,
        };
        if end >= first {
            count += end - first + 1;
        }
        last = Some(end.max(last.unwrap_or(0)));
    }
    count
}

/// sha256 of a file, hex.
pub fn sha256_file(p: &Path) -> String {
    hash_file::<Sha256>(p)
}

/// sha512 of a file, hex.
pub fn sha512_file(p: &Path) -> String {
    hash_file::<sha2::Sha512>(p)
}

fn hash_file<H: Digest>(p: &Path) -> String {
    let mut f = File::open(p).expect("opening for hashing");
    let mut h = H::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("reading for hashing");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}
