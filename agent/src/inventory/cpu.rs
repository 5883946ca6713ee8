//! Processors from `/proc/cpuinfo` and the sysfs topology
//! (`/sys/devices/system/cpu/cpu*/topology/{physical_package_id,core_id}`).

use super::read_trimmed;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// What the processors are.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
pub struct Cpu {
    /// `model name` of the first processor (x86; arm64 kernels often give none).
    pub model: Option<String>,
    /// The architecture the agent runs as (`x86_64`, `aarch64`).
    pub architecture: String,
    /// Logical processors (`processor` entries).
    pub logical: Option<u32>,
    /// Physical packages (distinct `physical_package_id`).
    pub sockets: Option<u32>,
    /// Physical cores (distinct package and `core_id` pairs).
    pub cores: Option<u32>,
    /// Feature flags of the first processor (`flags` on x86, `Features` on arm64).
    pub flags: Vec<String>,
}

/// Reads `/proc/cpuinfo` and the topology under `root`.
pub fn collect(root: &Path) -> Cpu {
    let info = read_trimmed(root, "proc/cpuinfo").unwrap_or_default();
    let mut cpu = parse_cpuinfo(&info);
    let (sockets, cores) = topology(root);
    cpu.sockets = sockets.or(cpu.sockets);
    cpu.cores = cores.or(cpu.cores);
    cpu
}

/// Model, logical count, flags, and sockets/cores from `physical id`/`core id` when the
/// file has them (sysfs, when present, is preferred by [`collect`]).
pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut cpu = Cpu {
        architecture: std::env::consts::ARCH.to_string(),
        ..Default::default()
    };
    let mut logical = 0u32;
    let (mut packages, mut cores) = (BTreeSet::new(), BTreeSet::new());
    let mut package = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => logical += 1,
            "model name" if cpu.model.is_none() && !value.is_empty() => {
                cpu.model = Some(value.to_string())
            }
            "flags" | "Features" if cpu.flags.is_empty() => {
                cpu.flags = value.split_whitespace().map(str::to_string).collect()
            }
            "physical id" => {
                package = Some(value.to_string());
                packages.insert(value.to_string());
            }
            "core id" => {
                cores.insert((package.clone(), value.to_string()));
            }
            _ => {}
        }
    }
    cpu.logical = (logical > 0).then_some(logical);
    cpu.sockets = count(packages.len());
    cpu.cores = count(cores.len());
    cpu
}

/// (sockets, cores) from sysfs; `None` each when the topology files are absent.
fn topology(root: &Path) -> (Option<u32>, Option<u32>) {
    let dir = root.join("sys/devices/system/cpu");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return (None, None);
    };
    let (mut packages, mut cores) = (BTreeSet::new(), BTreeSet::new());
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_cpu = name
            .strip_prefix("cpu")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_cpu {
            continue;
        }
        let rel = |f: &str| format!("sys/devices/system/cpu/{name}/topology/{f}");
        let Some(pkg) = read_trimmed(root, &rel("physical_package_id")) else {
            continue;
        };
        if let Some(core) = read_trimmed(root, &rel("core_id")) {
            cores.insert((pkg.clone(), core));
        }
        packages.insert(pkg);
    }
    (count(packages.len()), count(cores.len()))
}

fn count(n: usize) -> Option<u32> {
    u32::try_from(n).ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::super::testtree::put;
    use super::*;

    const X86: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6230\nphysical id\t: 0\ncore id\t\t: 0\nflags\t\t: fpu vme sse2 avx2\n\n\
processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6230\nphysical id\t: 0\ncore id\t\t: 0\nflags\t\t: fpu vme sse2 avx2\n\n\
processor\t: 2\nmodel name\t: Intel(R) Xeon(R) Gold 6230\nphysical id\t: 1\ncore id\t\t: 0\nflags\t\t: fpu vme sse2 avx2\n";

    const ARM64: &str = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes\nCPU implementer\t: 0x41\n\n\
processor\t: 1\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes\n";

    #[test]
    fn x86_cpuinfo_gives_model_count_flags_and_topology() {
        let c = parse_cpuinfo(X86);
        assert_eq!(c.model.as_deref(), Some("Intel(R) Xeon(R) Gold 6230"));
        assert_eq!((c.logical, c.sockets, c.cores), (Some(3), Some(2), Some(2)));
        assert_eq!(c.flags, ["fpu", "vme", "sse2", "avx2"]);
    }

    #[test]
    fn arm64_cpuinfo_has_no_model_but_features() {
        let c = parse_cpuinfo(ARM64);
        assert_eq!(c.model, None);
        assert_eq!((c.logical, c.sockets, c.cores), (Some(2), None, None));
        assert_eq!(c.flags.len(), 4);
    }

    #[test]
    fn sysfs_topology_counts_sockets_and_cores() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "proc/cpuinfo", ARM64);
        for (cpu, pkg, core) in [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1), (4, 1, 1)] {
            let t = format!("sys/devices/system/cpu/cpu{cpu}/topology");
            put(r, &format!("{t}/physical_package_id"), &format!("{pkg}\n"));
            put(r, &format!("{t}/core_id"), &format!("{core}\n"));
        }
        // Not a CPU directory.
        put(r, "sys/devices/system/cpu/cpufreq/topology/core_id", "9");
        let c = collect(r);
        assert_eq!((c.logical, c.sockets, c.cores), (Some(2), Some(2), Some(4)));
    }

    #[test]
    fn nothing_readable_gives_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let c = collect(dir.path());
        assert_eq!(
            (c.model, c.logical, c.sockets, c.cores),
            (None, None, None, None)
        );
        assert!(!c.architecture.is_empty());
    }
}
