//! Loading the kernel modules the hardware needs: every `modalias` under `/sys/devices`
//! is matched against `modules.alias` (shell glob patterns), and the matching modules
//! are loaded with `modprobe` (which also loads their dependencies from `modules.dep`).
//! Loading a bus driver makes new devices appear, so this repeats a few rounds.

use crate::runner::{self, log};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// Modules loaded whatever the hardware: storage stacks, filesystems, the boot medium.
pub const ALWAYS: &[&str] = &[
    "sd_mod",
    "sr_mod",
    "isofs",
    "md_mod",
    "raid0",
    "raid1",
    "raid10",
    "raid456",
    "dm_mod",
    "dm_crypt",
    "ext4",
    "xfs",
    "vfat",
    // vfat loads its default iocharset (Debian: ascii) at every mount.
    "nls_ascii",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    "af_alg",
    "algif_skcipher",
    "xts",
];

/// One `alias PATTERN MODULE` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub pattern: String,
    pub module: String,
}

/// Parses `modules.alias`.
pub fn parse_aliases(text: &str) -> Vec<Alias> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("alias")).then_some(())?;
            Some(Alias {
                pattern: f.next()?.to_string(),
                module: f.next()?.to_string(),
            })
        })
        .collect()
}

/// Matches `s` against a shell glob with `*`, `?` and `[...]` classes (as kmod does).
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    // Iterative matcher with one backtrack point for the last `*`.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(&p, pi, t[ti]) {
                        if matched {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; returns (matched, index after `]`).
fn class_match(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() && (p[i] != ']' || first) {
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            matched |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((matched != negate, i + 1))
}

/// The modules whose aliases match any of `modaliases`.
pub fn modules_for(aliases: &[Alias], modaliases: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in modaliases {
        for a in aliases {
            if glob_match(&a.pattern, m) {
                out.insert(a.module.clone());
            }
        }
    }
    out
}

/// Every `modalias` file's content under `root` (normally `/sys/devices`), without
/// following symlinks and to a bounded depth.
pub fn collect_modaliases(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, depth: usize, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && depth < 40 {
                walk(&e.path(), depth + 1, out);
            } else if ft.is_file() && e.file_name() == "modalias" {
                if let Ok(s) = std::fs::read_to_string(e.path()) {
                    let s = s.trim();
                    if !s.is_empty() {
                        out.insert(s.to_string());
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, 0, &mut out);
    out
}

/// Loads `modules` with one `modprobe -a`; failures (absent hardware, absent module) are
/// logged, not fatal.
pub fn load(modules: &[String]) {
    if modules.is_empty() {
        return;
    }
    log::debug(&format!("loading modules: {}", modules.join(" ")));
    let args = ["-a", "-b", "-q"]
        .into_iter()
        .map(str::to_string)
        .chain(modules.iter().cloned());
    if let Err(e) = runner::run("modprobe", args, Duration::from_secs(120)) {
        log::debug(&format!("some modules did not load: {e}"));
    }
}

/// Loads the [`ALWAYS`] set, then the modules matching the hardware, up to `rounds` times
/// while new modules keep turning up. Returns every module asked for.
pub fn load_for_hardware(rounds: usize) -> BTreeSet<String> {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let alias_file = Path::new("/lib/modules")
        .join(&kernel)
        .join("modules.alias");
    let aliases = match std::fs::read_to_string(&alias_file) {
        Ok(t) => parse_aliases(&t),
        Err(e) => {
            log::warn(&format!(
                "reading {}: {e}; no hardware modules will be loaded",
                alias_file.display()
            ));
            Vec::new()
        }
    };
    let mut asked: BTreeSet<String> = BTreeSet::new();
    for round in 0..rounds {
        let wanted = modules_for(&aliases, &collect_modaliases(Path::new("/sys/devices")));
        let new: Vec<String> = wanted.difference(&asked).cloned().collect();
        if new.is_empty() {
            break;
        }
        log::debug(&format!("module round {}: {}", round + 1, new.join(" ")));
        load(&new);
        asked.extend(new);
        // New buses (virtio, USB) enumerate their devices asynchronously.
        std::thread::sleep(Duration::from_millis(500));
    }
    let always: Vec<String> = ALWAYS
        .iter()
        .map(|s| s.to_string())
        .filter(|m| !asked.contains(m))
        .collect();
    load(&always);
    asked.extend(always);
    asked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_kmod() {
        assert!(glob_match(
            "pci:v00001AF4d00001000sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(!glob_match(
            "pci:v00001AF4d00001001sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(glob_match(
            "usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*",
            "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"
        ));
        assert!(glob_match("acpi*:PNP0B0[0-2]:*", "acpi:PNP0B01:"));
        assert!(!glob_match("acpi*:PNP0B0[0-2]:*", "acpi:PNP0B05:"));
        assert!(glob_match("a[!x]c", "abc") && !glob_match("a[!b]c", "abc"));
        assert!(glob_match(
            "virtio:d00000001v*",
            "virtio:d00000001v00001AF4"
        ));
        assert!(glob_match("*", "") && !glob_match("a?", "a"));
    }

    #[test]
    fn modules_are_picked_by_the_aliases_of_present_devices() {
        let aliases = parse_aliases(
            "# comment\nalias virtio:d00000001v* virtio_net\nalias virtio:d00000002v* virtio_blk\nalias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n",
        );
        assert_eq!(aliases.len(), 3);
        let present: BTreeSet<String> = [
            "virtio:d00000002v00001AF4".to_string(),
            "pci:v00008086d0000100Esv1sd2bc02sc00i00".into(),
        ]
        .into();
        let picked = modules_for(&aliases, &present);
        assert_eq!(picked, ["e1000".to_string(), "virtio_blk".into()].into());
    }

    #[test]
    fn modaliases_are_collected_from_a_sysfs_like_tree_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("pci0000:00/0000:00:03.0");
        std::fs::create_dir_all(dev.join("virtio0")).unwrap();
        std::fs::write(dev.join("modalias"), "pci:v1\n").unwrap();
        std::fs::write(dev.join("virtio0/modalias"), "virtio:d1\n").unwrap();
        std::os::unix::fs::symlink(dir.path(), dev.join("subsystem")).unwrap();
        let found = collect_modaliases(dir.path());
        assert_eq!(found, ["pci:v1".to_string(), "virtio:d1".into()].into());
    }

    #[test]
    fn the_hosts_own_modules_alias_parses_and_matches_its_own_devices() {
        // Independent check against the real files of this machine's kernel, when present.
        let Ok(u) = nix::sys::utsname::uname() else {
            return;
        };
        let f = Path::new("/lib/modules")
            .join(u.release())
            .join("modules.alias");
        let Ok(text) = std::fs::read_to_string(f) else {
            return;
        };
        let aliases = parse_aliases(&text);
        assert!(aliases.len() > 1000);
        let virtio_net = "virtio:d00000001v00001AF4".to_string();
        assert!(modules_for(&aliases, &[virtio_net].into()).contains("virtio_net"));
    }
}
