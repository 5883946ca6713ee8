//! Disk inventory (sysfs + libblkid) and selection by hints.
//!
//! The inventory reads sysfs for what the kernel knows (size, sectors, model,
//! serial, partitions, holders) and libblkid for what is written on the disk
//! (signatures, partition tables the kernel may not have parsed).

pub(crate) mod blkid;
pub mod nvme;
mod paths;
pub mod probe;
mod select;
mod table;

pub use paths::{group_paths, refusal as multipath_refusal};
pub use select::{explain, select};
pub use table::render_table;

use crate::blockdev;
use crate::units::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One block device with the attributes hints match on.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(default)]
pub struct Disk {
    /// `/dev/sda`, `/dev/nvme0n1`, `/dev/loop3`.
    pub path: PathBuf,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Logical sector size in bytes (512 or 4096).
    pub logical_sector: u64,
    /// Physical sector size in bytes.
    pub physical_sector: u64,
    /// Spinning disk (sysfs `queue/rotational`).
    pub rotational: bool,
    /// Removable medium (USB stick, card reader).
    pub removable: bool,
    /// The kernel marks it read-only.
    pub read_only: bool,
    /// Model string from sysfs, trimmed.
    pub model: Option<String>,
    /// Vendor string from sysfs, trimmed.
    pub vendor: Option<String>,
    /// Serial number (`device/serial`, or `serial` for virtio).
    pub serial: Option<String>,
    /// World Wide Name / WWID as sysfs gives it (`naa.…`, `eui.…`); for an NVMe
    /// namespace without one, its NGUID or EUI-64 as `eui.…`.
    pub wwn: Option<String>,
    /// An NVMe namespace's EUI-64, NGUID and UUID; a `wwn` hint matches any of them.
    pub nvme: Option<nvme::NvmeIds>,
    /// `/dev/disk/by-path/…` names (empty when udev is absent and none can be derived).
    pub by_path: Vec<String>,
    /// Partitions the kernel knows, then those only the on-disk table lists.
    pub partitions: Vec<PartitionInfo>,
    /// Signatures libblkid finds on the whole device.
    pub signatures: Vec<Signature>,
    /// Kernel holders (`md127`, `dm-0`) of the disk or its partitions.
    pub holders: Vec<String>,
    /// Mount points of the disk or its partitions.
    pub mounts: Vec<String>,
    /// What could not be read on it, one sentence each (a partition libblkid cannot
    /// probe, a stale kernel partition past the end). Such a disk is still listed,
    /// matched by hints and wiped.
    pub problems: Vec<String>,
    /// Further paths to this same disk (same WWN, else same serial and size): one disk
    /// the kernel sees twice. A document that chooses it is refused.
    pub other_paths: Vec<PathBuf>,
}

/// A partition of a disk, known to the kernel or only to the on-disk table.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(default)]
pub struct PartitionInfo {
    /// Device node (it may not exist when only the table knows the partition).
    pub path: PathBuf,
    /// Partition number.
    pub number: u32,
    /// Start, in logical sectors of the disk.
    pub start_sector: u64,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Signatures libblkid finds inside the partition.
    pub signatures: Vec<Signature>,
}

/// A signature found by libblkid (filesystem, RAID member, LUKS, partition table).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(default)]
pub struct Signature {
    /// `ext4`, `crypto_LUKS`, `linux_raid_member`, `LVM2_member`, `gpt`, …
    pub kind: String,
    /// Filesystem or volume label.
    pub label: Option<String>,
    /// Filesystem, volume or partition-table UUID.
    pub uuid: Option<String>,
    /// Byte offset of the magic on the disk.
    pub offset: Option<u64>,
}

/// Hints selecting one disk (shared with the document's model).
pub use crate::kinds::Hints;

/// Why selection failed; the message lists every candidate and why it did or did not match.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no disk matches {hints}:\n{candidates}")]
    NoMatch { hints: String, candidates: String },
    #[error("{count} disks match {hints}; add a hint that tells them apart (serial, wwn, by_path):\n{candidates}")]
    Ambiguous {
        hints: String,
        count: usize,
        candidates: String,
    },
}

/// Errors reading the inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("reading {path}: {source}")]
    Sysfs {
        path: String,
        source: std::io::Error,
    },
    #[error("probing {path} with libblkid: {msg}")]
    Probe { path: String, msg: String },
}

/// Lists the block devices this machine has (whole disks; no partitions, ram, zram,
/// dm or md devices, optical drives; loop devices only when they have a backing file).
pub fn inventory() -> Result<Vec<Disk>, InventoryError> {
    let dir = Path::new("/sys/block");
    let entries = fs::read_dir(dir).map_err(|source| sysfs_err(dir, source))?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let ctx = Context::load();
    let mut disks = Vec::new();
    for name in names.iter().filter(|n| is_candidate(n)) {
        // One unreadable device (a busy or fenced disk) must not hide all the others.
        match read_disk(name, &ctx) {
            Ok(Some(d)) => disks.push(d),
            Ok(None) => {}
            Err(e) => {
                crate::runner::log::warn(&format!("skipping /dev/{name} in the inventory: {e}"))
            }
        }
    }
    Ok(group_paths(disks))
}

/// The inventory of specific devices (symlinks resolved), e.g. a `--candidates` list.
pub fn inventory_paths(paths: &[PathBuf]) -> Result<Vec<Disk>, InventoryError> {
    let ctx = Context::load();
    let mut disks = Vec::new();
    for p in paths {
        let name = blockdev::sysfs_name(p).map_err(|e| InventoryError::Probe {
            path: p.display().to_string(),
            msg: e.to_string(),
        })?;
        match read_disk(&name, &ctx)? {
            Some(d) => disks.push(d),
            None => {
                return Err(InventoryError::Probe {
                    path: p.display().to_string(),
                    msg: "not a usable whole disk (empty, or a loop device without a backing file)"
                        .into(),
                })
            }
        }
    }
    Ok(group_paths(disks))
}

fn sysfs_err(path: &Path, source: std::io::Error) -> InventoryError {
    InventoryError::Sysfs {
        path: path.display().to_string(),
        source,
    }
}

/// Whether a `/sys/block` name can be a target disk at all.
fn is_candidate(name: &str) -> bool {
    !["ram", "zram", "dm-", "md", "sr", "fd", "zd"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// What the whole machine knows once: mounts and swaps by device number, by-path and by-id links.
struct Context {
    mounts: HashMap<u64, Vec<String>>,
    by_path: HashMap<u64, Vec<String>>,
}

impl Context {
    fn load() -> Context {
        let mut mounts: HashMap<u64, Vec<String>> = HashMap::new();
        for line in fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
        {
            let f: Vec<&str> = line.split(' ').collect();
            let (Some(devno), Some(mp)) = (f.get(2), f.get(4)) else {
                continue;
            };
            let Some((maj, min)) = devno.split_once(':') else {
                continue;
            };
            let (Ok(maj), Ok(min)) = (maj.parse::<u32>(), min.parse::<u32>()) else {
                continue;
            };
            mounts
                .entry(libc::makedev(maj, min))
                .or_default()
                .push(unescape_mount(mp));
        }
        for line in fs::read_to_string("/proc/swaps")
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            if let Some(dev) = line.split_whitespace().next() {
                if let Ok(md) = fs::metadata(dev) {
                    if md.file_type().is_block_device() {
                        mounts.entry(md.rdev()).or_default().push("[swap]".into());
                    }
                }
            }
        }
        let mut by_path: HashMap<u64, Vec<String>> = HashMap::new();
        if let Ok(rd) = fs::read_dir("/dev/disk/by-path") {
            for e in rd.flatten() {
                if let Ok(md) = fs::metadata(e.path()) {
                    by_path
                        .entry(md.rdev())
                        .or_default()
                        .push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Context { mounts, by_path }
    }
}

/// mountinfo escapes spaces and such as `\040`.
fn unescape_mount(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(
                u8::from_str_radix(&s[i + 1..i + 4], 8)
                    .map(char::from)
                    .unwrap_or('?'),
            );
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn read_opt(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn read_u64(path: &Path) -> Result<u64, InventoryError> {
    let s = fs::read_to_string(path).map_err(|source| sysfs_err(path, source))?;
    s.trim().parse().map_err(|_| {
        sysfs_err(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number"),
        )
    })
}

fn list_dir(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn devno(sys: &Path) -> Option<u64> {
    let s = read_opt(&sys.join("dev"))?;
    let (maj, min) = s.split_once(':')?;
    Some(libc::makedev(maj.parse().ok()?, min.parse().ok()?))
}

/// A World Wide Name as hints compare it: lower case, without `0x`, `naa.`, `eui.` prefixes.
pub fn normalize_wwn(w: &str) -> String {
    let w = w.trim().to_ascii_lowercase();
    ["0x", "naa.", "eui.", "wwn-0x"]
        .iter()
        .fold(w, |w, p| w.strip_prefix(p).map(str::to_string).unwrap_or(w))
}

/// The by-path name udev would give, derived from the sysfs device path, for the buses
/// where that is unambiguous (virtio-blk, NVMe on PCI); None otherwise.
fn derive_by_path(name: &str, sys: &Path) -> Option<String> {
    let real = fs::canonicalize(sys).ok()?;
    let comps: Vec<String> = real
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let is_pci_addr = |c: &str| {
        c.len() == 12
            && c.as_bytes()[4] == b':'
            && c.as_bytes()[7] == b':'
            && c.as_bytes()[10] == b'.'
    };
    let pci = comps.iter().rev().find(|c| is_pci_addr(c))?;
    if comps.iter().any(|c| c.starts_with("virtio")) && name.starts_with("vd") {
        return Some(format!("pci-{pci}"));
    }
    if name.starts_with("nvme") {
        let nsid = read_opt(&sys.join("nsid"))
            .or_else(|| name.rsplit_once('n').map(|(_, n)| n.to_string()))?;
        return Some(format!("pci-{pci}-nvme-{nsid}"));
    }
    None
}

fn probe_err(path: &Path, msg: String) -> InventoryError {
    InventoryError::Probe {
        path: path.display().to_string(),
        msg,
    }
}

/// Reads one `/sys/block/<name>` disk; None when it is not a usable disk.
fn read_disk(name: &str, ctx: &Context) -> Result<Option<Disk>, InventoryError> {
    let sys = Path::new("/sys/block").join(name);
    if name.starts_with("loop") && !sys.join("loop/backing_file").exists() {
        return Ok(None);
    }
    let size_bytes = read_u64(&sys.join("size"))? * 512;
    if size_bytes == 0 {
        return Ok(None);
    }
    let path = Path::new("/dev").join(name);
    let dev = sys.join("device");
    let nvme = nvme::NvmeIds::read(&sys);
    let wwn = read_opt(&sys.join("wwid"))
        .or_else(|| read_opt(&dev.join("wwid")))
        .or_else(|| nvme.as_ref().and_then(nvme::NvmeIds::as_wwn));
    let mut by_path = devno(&sys)
        .and_then(|d| ctx.by_path.get(&d).cloned())
        .unwrap_or_default();
    if by_path.is_empty() {
        by_path.extend(derive_by_path(name, &sys));
    }
    let mut disk = Disk {
        path: path.clone(),
        size_bytes,
        logical_sector: read_u64(&sys.join("queue/logical_block_size"))?,
        physical_sector: read_u64(&sys.join("queue/physical_block_size"))?,
        rotational: read_opt(&sys.join("queue/rotational")).as_deref() == Some("1"),
        removable: read_opt(&sys.join("removable")).as_deref() == Some("1"),
        read_only: read_opt(&sys.join("ro")).as_deref() == Some("1"),
        model: read_opt(&dev.join("model")),
        vendor: read_opt(&dev.join("vendor")),
        serial: read_opt(&dev.join("serial")).or_else(|| read_opt(&sys.join("serial"))),
        wwn,
        nvme,
        by_path,
        ..Disk::default()
    };
    let mut devnos: Vec<u64> = devno(&sys).into_iter().collect();
    disk.holders = list_dir(&sys.join("holders"));

    // Kernel partitions first, then those only the on-disk table knows (this host's
    // kernel parses no GPT, and a fresh image's table may not be read yet). What cannot
    // be probed is noted on the disk, not fatal: a damaged disk must stay re-provisionable.
    let file = File::open(&path).map_err(|e| probe_err(&path, format!("opening: {e}")))?;
    read_kernel_partitions(&mut disk, name, &sys, &file, &mut devnos)?;
    read_table_partitions(&mut disk, &file);
    disk.partitions.sort_by_key(|p| p.number);
    disk.signatures = disk.probe_or_note(&file, &path, probe::Area::WHOLE);
    disk.holders.sort();
    disk.holders.dedup();
    for d in devnos {
        disk.mounts
            .extend(ctx.mounts.get(&d).into_iter().flatten().cloned());
    }
    Ok(Some(disk))
}

/// The partitions the kernel lists for `/sys/block/<name>`, their holders and device numbers.
fn read_kernel_partitions(
    disk: &mut Disk,
    name: &str,
    sys: &Path,
    file: &File,
    devnos: &mut Vec<u64>,
) -> Result<(), InventoryError> {
    for part in list_dir(sys)
        .into_iter()
        .filter(|p| p.starts_with(name) && sys.join(p).join("partition").exists())
    {
        let psys = sys.join(&part);
        let start512 = read_u64(&psys.join("start"))?;
        let ppath = Path::new("/dev").join(&part);
        let area = probe::Area {
            offset: start512 * 512,
            size: Some(read_u64(&psys.join("size"))? * 512),
        };
        let size_bytes = area.size.unwrap_or(0);
        let signatures = if area.offset + size_bytes > disk.size_bytes {
            disk.problems.push(format!(
                "the kernel lists {} ({} at {}) past the end of the disk ({}): a stale \
                 partition, which the wipe removes",
                ppath.display(),
                Bytes(size_bytes).human(),
                Bytes(area.offset).human(),
                Bytes(disk.size_bytes).human()
            ));
            Vec::new()
        } else {
            disk.probe_or_note(file, &ppath, area)
        };
        disk.partitions.push(PartitionInfo {
            path: ppath,
            number: read_u64(&psys.join("partition"))? as u32,
            start_sector: start512 * 512 / disk.logical_sector,
            size_bytes,
            signatures,
        });
        devnos.extend(devno(&psys));
        disk.holders.extend(list_dir(&psys.join("holders")));
    }
    Ok(())
}

/// The partitions only the table on the disk knows.
fn read_table_partitions(disk: &mut Disk, file: &File) {
    let path = disk.path.clone();
    let table = match probe::table_partitions(file, &path) {
        Ok(t) => t,
        Err(m) => {
            disk.note(probe_err(&path, m));
            return;
        }
    };
    for tp in table {
        if disk.partitions.iter().any(|p| p.number == tp.number) {
            continue;
        }
        let area = probe::Area {
            offset: tp.start_bytes,
            size: Some(tp.len_bytes),
        };
        let node = blockdev::partition_node(&path, tp.number);
        let signatures = disk.probe_or_note(file, &node, area);
        disk.partitions.push(PartitionInfo {
            path: node,
            number: tp.number,
            start_sector: tp.start_bytes / disk.logical_sector,
            size_bytes: tp.len_bytes,
            signatures,
        });
    }
}

impl Disk {
    /// Records what could not be read, and says so in the log.
    fn note(&mut self, e: InventoryError) {
        crate::runner::log::warn(&format!("{}: {e}", self.path.display()));
        self.problems.push(e.to_string());
    }

    /// The signatures in `area` (of `what`, a partition node or the disk), or none and
    /// a problem noted when libblkid cannot probe it.
    fn probe_or_note(&mut self, file: &File, what: &Path, area: probe::Area) -> Vec<Signature> {
        let disk = self.path.clone();
        probe::signatures(file, &disk, area).unwrap_or_else(|m| {
            self.note(probe_err(what, m));
            Vec::new()
        })
    }

    /// `/dev/disk/by-path` name(s), comma-separated, or `-`.
    pub fn by_path_display(&self) -> String {
        if self.by_path.is_empty() {
            "-".into()
        } else {
            self.by_path.join(",")
        }
    }

    /// What names this disk in the description of its UEFI boot entries, steadier
    /// than its node: `wwn <wwn>`, else `serial <serial>`, else `path <by-path name>`,
    /// else `device <node>`.
    pub fn boot_identity(&self) -> String {
        if let Some(w) = self.wwn.as_deref().filter(|w| !w.trim().is_empty()) {
            format!("wwn {}", normalize_wwn(w))
        } else if let Some(s) = self.serial.as_deref().filter(|s| !s.trim().is_empty()) {
            format!("serial {}", s.trim())
        } else if let Some(p) = self.by_path.first() {
            format!("path {p}")
        } else {
            format!("device {}", self.path.display())
        }
    }

    /// The serial number, or `-`.
    pub fn serial_display(&self) -> String {
        self.serial.clone().unwrap_or_else(|| "-".into())
    }

    /// One-line summary: `/dev/sdb 500.0 GiB serial SN-B`.
    pub fn summary(&self) -> String {
        let mut s = format!("{} {}", self.path.display(), Bytes(self.size_bytes).human());
        if let Some(m) = &self.model {
            s += &format!(" model {m}");
        }
        if let Some(sn) = &self.serial {
            s += &format!(" serial {sn}");
        }
        if !self.problems.is_empty() {
            s += &format!(" (damaged: {})", self.problems.join("; "));
        }
        s
    }
}

#[cfg(test)]
mod tests;
