//! The customization area of `imprint.iso`: a provisioning document and extra kernel
//! arguments written into a file reserved at build time, in place, in milliseconds.
//!
//! `initramfs/build.sh` puts a 256 KiB file `/imprint/config.img` into the ISO. ISO 9660
//! stores a file as one contiguous extent, so its bytes sit at a fixed offset of the
//! image (and of the CD or USB stick the image is written to). Layout of the area:
//!
//! | bytes    | content                                                        |
//! |----------|----------------------------------------------------------------|
//! | 0..23    | magic `IMPRINT-CONFIG-AREA-v1\n`, zero-padded to 32 bytes        |
//! | 32..36   | size of the whole area, u32 little-endian (262144)             |
//! | 36..40   | document length, u32 LE (0 = no document)                       |
//! | 40..44   | kernel-argument block length, u32 LE                            |
//! | 44..76   | SHA-256 of document ‖ argument block ‖ trust block (torn writes) |
//! | 76..80   | trust block length, u32 LE (0 = no keys; older areas hold 0)   |
//! | 512..    | the document, then the arguments, one per line, then the trust |
//! |          | block: per key, name length u32 LE, name, key length u32 LE,   |
//! |          | the key file's bytes (`iso customize --trust`)                 |
//!
//! The area is located by reading the ISO 9660 directory (`/IMPRINT/CONFIG.IMG`), and if
//! that fails (a rebuilt or unusual image) by scanning 2048-byte sectors for the magic.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The magic at the start of the area.
pub const MAGIC: &[u8; 23] = b"IMPRINT-CONFIG-AREA-v1\n";
/// Where the payload starts inside the area.
pub const HEADER_LEN: usize = 512;
/// Size of the area `build.sh` reserves.
pub const DEFAULT_AREA_LEN: u32 = 256 * 1024;
const SECTOR: u64 = 2048;
/// Fallback scans stop here: no boot ISO is this large.
const MAX_SCAN: u64 = 4 << 30;

/// Why an ISO could not be read or customized.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} has no imprint customization area (is it an imprint.iso built by `make iso`?)"
    )]
    NoArea { path: String },
    #[error(
        "the customization area of {path} is damaged: {why}; run `imprint iso customize` again"
    )]
    Damaged { path: String, why: String },
    #[error("the document and kernel arguments need {need} bytes; the area in {path} holds at most {have}")]
    TooLarge {
        path: String,
        need: usize,
        have: usize,
    },
    #[error("the provisioning document is not UTF-8 text: {0}")]
    NotText(std::str::Utf8Error),
    #[error("kernel argument {arg:?} contains a newline or NUL byte")]
    BadKarg { arg: String },
    #[error(transparent)]
    BadKey(#[from] crate::trust::root::KeyError),
}

/// What an ISO carries in its area.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Embedded {
    /// The provisioning document, if one was written.
    pub config: Option<String>,
    /// Extra kernel arguments, treated by the agent as if they were on the command line.
    pub kargs: Vec<String>,
    /// Trust keys (`iso customize --trust`), in the order given.
    pub trust: Vec<KeyFile>,
}

/// A trust key file stored in the area: its file name and bytes, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// The key file's name (no directories), shown as its origin.
    pub name: String,
    /// The key file's bytes (a minisign public key or an OpenPGP certificate).
    pub bytes: Vec<u8>,
}

/// The area's keys as `(origin, bytes)` for [`crate::trust::root::load`].
pub fn medium_keys(dev: &Path, e: &Embedded) -> Vec<(String, Vec<u8>)> {
    e.trust
        .iter()
        .map(|k| {
            (
                format!("{} in the boot medium {}", k.name, dev.display()),
                k.bytes.clone(),
            )
        })
        .collect()
}

fn trust_block(keys: &[KeyFile]) -> Vec<u8> {
    let mut b = Vec::new();
    for k in keys {
        b.extend_from_slice(&(k.name.len() as u32).to_le_bytes());
        b.extend_from_slice(k.name.as_bytes());
        b.extend_from_slice(&(k.bytes.len() as u32).to_le_bytes());
        b.extend_from_slice(&k.bytes);
    }
    b
}

fn parse_trust_block(mut b: &[u8]) -> Option<Vec<KeyFile>> {
    let mut keys = Vec::new();
    let take = |b: &mut &[u8]| -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let v = b.get(4..4 + len)?.to_vec();
        *b = &b[4 + len..];
        Some(v)
    };
    while !b.is_empty() {
        let name = String::from_utf8(take(&mut b)?).ok()?;
        let bytes = take(&mut b)?;
        keys.push(KeyFile { name, bytes });
    }
    Some(keys)
}

/// Where the area is and how much it can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    /// Byte offset of the area in the image or device.
    pub offset: u64,
    /// Total size of the area, header included.
    pub len: u32,
}

impl Area {
    /// Bytes available for document plus arguments.
    pub fn capacity(&self) -> usize {
        self.len as usize - HEADER_LEN
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> IsoError + 'a {
    move |source| IsoError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Writes `config` and `kargs` into the area of `input` — in place when `output` is
/// `None`, else into a copy at `output` (written beside it, then renamed). The area
/// then holds exactly what is given: `None` and no arguments clear it.
pub fn customize(
    input: &Path,
    output: Option<&Path>,
    config: Option<&[u8]>,
    kargs: &[String],
) -> Result<Area, IsoError> {
    customize_with_trust(input, output, config, kargs, &[])
}

/// [`customize`], also storing trust keys; each is checked to be a minisign public key
/// or an OpenPGP certificate first.
pub fn customize_with_trust(
    input: &Path,
    output: Option<&Path>,
    config: Option<&[u8]>,
    kargs: &[String],
    trust: &[KeyFile],
) -> Result<Area, IsoError> {
    for k in trust {
        crate::trust::root::parse_key(&k.bytes, &k.name)?;
    }
    if let Some(doc) = config {
        std::str::from_utf8(doc).map_err(IsoError::NotText)?;
    }
    if let Some(bad) = kargs.iter().find(|a| a.contains('\n') || a.contains('\0')) {
        return Err(IsoError::BadKarg { arg: bad.clone() });
    }
    let target = match output {
        None => input.to_path_buf(),
        Some(out) => {
            let tmp = tmp_beside(out);
            std::fs::copy(input, &tmp).map_err(io("copying the ISO to", &tmp))?;
            tmp
        }
    };
    let payload = Payload {
        doc: config.unwrap_or_default(),
        has_doc: config.is_some(),
        kargs,
        trust: &trust_block(trust),
    };
    let result = write_area(&target, &payload);
    match (output, result) {
        (Some(out), Ok(area)) => {
            std::fs::rename(&target, out).map_err(io("renaming the customized ISO to", out))?;
            Ok(area)
        }
        (Some(_), Err(e)) => {
            let _ = std::fs::remove_file(&target);
            Err(e)
        }
        (None, r) => r,
    }
}

fn tmp_beside(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.imprint-tmp"))
}

/// What [`write_area`] writes.
struct Payload<'a> {
    doc: &'a [u8],
    has_doc: bool,
    kargs: &'a [String],
    trust: &'a [u8],
}

fn write_area(path: &Path, p: &Payload) -> Result<Area, IsoError> {
    let (doc, has_doc, kargs) = (p.doc, p.has_doc, p.kargs);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("opening", path))?;
    let area = locate(&file, path)?;
    let karg_block: String = kargs.iter().map(|a| format!("{a}\n")).collect();
    let need = doc.len() + karg_block.len() + p.trust.len();
    if need > area.capacity() {
        return Err(IsoError::TooLarge {
            path: path.display().to_string(),
            need,
            have: area.capacity(),
        });
    }
    let mut buf = vec![0u8; area.len as usize];
    buf[..MAGIC.len()].copy_from_slice(MAGIC);
    buf[32..36].copy_from_slice(&area.len.to_le_bytes());
    // A present but empty document is stored as absent: there is nothing to apply.
    let doc_len = if has_doc { doc.len() } else { 0 };
    buf[36..40].copy_from_slice(&(doc_len as u32).to_le_bytes());
    buf[40..44].copy_from_slice(&(karg_block.len() as u32).to_le_bytes());
    buf[76..80].copy_from_slice(&(p.trust.len() as u32).to_le_bytes());
    let payload_end = HEADER_LEN + need;
    let kargs_end = HEADER_LEN + doc.len() + karg_block.len();
    buf[HEADER_LEN..HEADER_LEN + doc.len()].copy_from_slice(doc);
    buf[HEADER_LEN + doc.len()..kargs_end].copy_from_slice(karg_block.as_bytes());
    buf[kargs_end..payload_end].copy_from_slice(p.trust);
    let digest = Sha256::digest(&buf[HEADER_LEN..payload_end]);
    buf[44..76].copy_from_slice(&digest);
    file.write_all_at(&buf, area.offset)
        .map_err(io("writing the customization area of", path))?;
    file.sync_data().map_err(io("flushing", path))?;
    Ok(area)
}

/// An empty area of `len` bytes, as `build.sh` reserves it (magic and size only).
pub fn blank_area(len: u32) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    buf[..MAGIC.len()].copy_from_slice(MAGIC);
    buf[32..36].copy_from_slice(&len.to_le_bytes());
    buf
}

/// Reads what the area of an ISO image (or a device holding one) carries.
pub fn show(path: &Path) -> Result<Embedded, IsoError> {
    let file = File::open(path).map_err(io("opening", path))?;
    let area = locate(&file, path)?;
    read_area(&file, path, area)
}

/// Like [`show`], but `Ok(None)` when `device_or_file` has no area (not our medium).
pub fn find_embedded(device_or_file: &Path) -> Result<Option<Embedded>, IsoError> {
    match show(device_or_file) {
        Ok(e) => Ok(Some(e)),
        Err(IsoError::NoArea { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Block devices that may be the boot medium: CD drives (`sr*`) and whole disks whose
/// sector 16 carries an ISO 9660 signature (a hybrid ISO written to a USB stick).
pub fn candidate_devices() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .filter(|n| {
            !n.starts_with("loop")
                && !n.starts_with("ram")
                && !n.starts_with("dm-")
                && !n.starts_with("md")
        })
        .map(|n| PathBuf::from("/dev").join(n))
        .filter(|dev| has_iso9660_signature(dev))
        .collect()
}

fn has_iso9660_signature(dev: &Path) -> bool {
    let mut sig = [0u8; 5];
    File::open(dev)
        .and_then(|f| f.read_exact_at(&mut sig, 16 * SECTOR + 1))
        .is_ok()
        && &sig == b"CD001"
}

/// Looks at every [`candidate_devices`] entry; returns the first with an area.
pub fn find_boot_medium() -> Option<(PathBuf, Embedded)> {
    for dev in candidate_devices() {
        match find_embedded(&dev) {
            Ok(Some(e)) => return Some((dev, e)),
            Ok(None) => {}
            Err(e) => {
                crate::runner::log::warn(&format!("reading the boot medium {}: {e}", dev.display()))
            }
        }
    }
    None
}

fn read_area(file: &File, path: &Path, area: Area) -> Result<Embedded, IsoError> {
    let mut buf = vec![0u8; area.len as usize];
    file.read_exact_at(&mut buf, area.offset)
        .map_err(io("reading the customization area of", path))?;
    let damaged = |why: &str| IsoError::Damaged {
        path: path.display().to_string(),
        why: why.to_string(),
    };
    let doc_len = u32_at(&buf, 36) as usize;
    let karg_len = u32_at(&buf, 40) as usize;
    let trust_len = u32_at(&buf, 76) as usize;
    let total = doc_len + karg_len + trust_len;
    if total == 0 {
        return Ok(Embedded::default());
    }
    if total > area.capacity() {
        return Err(damaged("its lengths exceed the area"));
    }
    let payload = &buf[HEADER_LEN..HEADER_LEN + total];
    if Sha256::digest(payload).as_slice() != &buf[44..76] {
        return Err(damaged("its checksum does not match"));
    }
    let config = match doc_len {
        0 => None,
        n => Some(
            String::from_utf8(payload[..n].to_vec())
                .map_err(|_| damaged("the document is not UTF-8"))?,
        ),
    };
    let kargs = std::str::from_utf8(&payload[doc_len..doc_len + karg_len])
        .map_err(|_| damaged("the kernel arguments are not UTF-8"))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let trust = parse_trust_block(&payload[doc_len + karg_len..])
        .ok_or_else(|| damaged("its trust keys are truncated"))?;
    Ok(Embedded {
        config,
        kargs,
        trust,
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Finds the area: through the ISO 9660 directory first, then by scanning sectors.
pub fn locate(file: &File, path: &Path) -> Result<Area, IsoError> {
    if let Some(offset) = iso9660::find_file(file, &["IMPRINT", "CONFIG.IMG"]) {
        if let Some(area) = area_at(file, offset) {
            return Ok(area);
        }
    }
    scan(file).ok_or_else(|| IsoError::NoArea {
        path: path.display().to_string(),
    })
}

/// A valid area header at `offset`, if there is one.
fn area_at(file: &File, offset: u64) -> Option<Area> {
    let mut head = [0u8; 36];
    file.read_exact_at(&mut head, offset).ok()?;
    let len = u32_at(&head, 32);
    let plausible = len as usize > HEADER_LEN && u64::from(len) % SECTOR == 0 && len <= 16 << 20;
    (&head[..MAGIC.len()] == MAGIC && plausible).then_some(Area { offset, len })
}

fn scan(file: &File) -> Option<Area> {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK];
    let mut base = 0u64;
    while base < MAX_SCAN {
        let n = read_up_to(file, &mut buf, base);
        if n == 0 {
            return None;
        }
        for at in (0..n).step_by(SECTOR as usize) {
            if buf[at..].starts_with(MAGIC) {
                if let Some(area) = area_at(file, base + at as u64) {
                    return Some(area);
                }
            }
        }
        base += n as u64;
        if n < CHUNK {
            return None;
        }
    }
    None
}

fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    // Whole sectors only: a partial sector cannot hold a header.
    got - got % SECTOR as usize
}

/// Just enough ISO 9660 to find a file's extent by its path.
mod iso9660 {
    use super::SECTOR;
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    /// Byte offset of the file at `path` (upper-case ISO names, no version), if found.
    pub fn find_file(file: &File, path: &[&str]) -> Option<u64> {
        let mut pvd = [0u8; 2048];
        file.read_exact_at(&mut pvd, 16 * SECTOR).ok()?;
        if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
            return None;
        }
        let (mut lba, mut len) = extent(&pvd[156..190]);
        for (i, name) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let (l, n, is_dir) = lookup(file, lba, len, name)?;
            if is_dir == last {
                return None;
            }
            (lba, len) = (l, n);
        }
        Some(u64::from(lba) * SECTOR)
    }

    fn extent(rec: &[u8]) -> (u32, u32) {
        let le = |at: usize| u32::from_le_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]]);
        (le(2), le(10))
    }

    fn lookup(file: &File, lba: u32, len: u32, want: &str) -> Option<(u32, u32, bool)> {
        // Directories of a boot ISO are a few sectors; refuse absurd sizes.
        if len > 1 << 20 {
            return None;
        }
        let mut dir = vec![0u8; len as usize];
        file.read_exact_at(&mut dir, u64::from(lba) * SECTOR).ok()?;
        let mut at = 0usize;
        while at < dir.len() {
            let rec_len = dir[at] as usize;
            if rec_len == 0 {
                // Records do not cross sectors: skip to the next one.
                at = (at / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let rec = dir.get(at..at + rec_len)?;
            let name_len = *rec.get(32)? as usize;
            let name = rec.get(33..33 + name_len)?;
            let name = String::from_utf8_lossy(name);
            let name = name
                .split(';')
                .next()
                .unwrap_or_default()
                .trim_end_matches('.');
            if name.eq_ignore_ascii_case(want) {
                let (l, n) = extent(rec);
                return Some((l, n, rec[25] & 0x02 != 0));
            }
            at += rec_len;
        }
        None
    }
}

#[cfg(test)]
mod tests;
