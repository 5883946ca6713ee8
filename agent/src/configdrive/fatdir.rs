//! FAT directory entries: short (8.3) names, long-name (VFAT) entries, the
//! tree of directories for a list of paths, and DOS timestamps.

use std::collections::HashSet;

/// Size of one directory entry.
pub(super) const ENTRY: usize = 32;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_LFN: u8 = 0x0F;
/// UTF-16 units per long-name entry.
const LFN_CHARS: usize = 13;

/// What a directory holds: subdirectories (index into [`Tree::dirs`]) and files (index into the file list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Child {
    Dir(usize),
    File(usize),
}

/// One directory; `dirs[0]` is the root.
#[derive(Debug, Default)]
pub(super) struct DirNode {
    pub parent: usize,
    pub children: Vec<(String, Child)>,
}

/// The directories needed to hold a list of `/`-separated paths.
#[derive(Debug)]
pub(super) struct Tree {
    pub dirs: Vec<DirNode>,
}

impl Tree {
    /// Builds the directory tree; a path that names both a file and a directory is an error.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a str>) -> Result<Tree, String> {
        let mut dirs = vec![DirNode::default()];
        for (index, path) in paths.into_iter().enumerate() {
            let mut parts: Vec<&str> = path.split('/').collect();
            let name = parts.pop().unwrap_or_default();
            let mut dir = 0;
            for part in parts {
                validate(part)?;
                let found = dirs[dir]
                    .children
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(part))
                    .map(|c| c.1);
                dir = match found {
                    Some(Child::Dir(d)) => d,
                    Some(Child::File(_)) => {
                        return Err(format!("`{part}` in `{path}` is also a file"))
                    }
                    None => {
                        dirs.push(DirNode {
                            parent: dir,
                            children: vec![],
                        });
                        let new = dirs.len() - 1;
                        dirs[dir].children.push((part.to_string(), Child::Dir(new)));
                        new
                    }
                };
            }
            validate(name)?;
            if dirs[dir]
                .children
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                return Err(format!("`{path}` is given twice"));
            }
            dirs[dir]
                .children
                .push((name.to_string(), Child::File(index)));
        }
        Ok(Tree { dirs })
    }

    /// Number of 32-byte entries directory `d` needs (with `.`/`..`, or the volume label for the root).
    pub fn entries(&self, d: usize) -> usize {
        let own = if d == 0 { 1 } else { 2 };
        own + self.dirs[d]
            .children
            .iter()
            .map(|(n, _)| long_entries(n) + 1)
            .sum::<usize>()
    }
}

/// A name FAT's long names can hold.
fn validate(name: &str) -> Result<(), String> {
    let bad = |c: char| c < ' ' || "\"*/:<>?\\|".contains(c);
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.encode_utf16().count() > 255
        || name.contains(bad)
    {
        return Err(format!("`{name}` cannot be a FAT file name"));
    }
    Ok(())
}

/// How a name is stored: `Some` when it is already a valid upper-case 8.3 name.
fn exact_short(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    let ok = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes().all(|b| {
                b.is_ascii_uppercase() || b.is_ascii_digit() || b"_-~!#$%&'()@^`{}".contains(&b)
            })
    };
    if !ok(base, 8) || !(ext.is_empty() || ok(ext, 3)) {
        return None;
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(out)
}

/// Long-name entries needed for `name` (0 when its 8.3 form is exact).
fn long_entries(name: &str) -> usize {
    if exact_short(name).is_some() {
        0
    } else {
        name.encode_utf16().count().div_ceil(LFN_CHARS)
    }
}

/// A unique `BASIS~N.EXT` short name for a long name.
fn generated_short(name: &str, used: &HashSet<[u8; 11]>) -> [u8; 11] {
    let clean = |s: &str| -> Vec<u8> {
        s.chars()
            .filter(|c| *c != ' ' && *c != '.')
            .map(|c| match c.to_ascii_uppercase() {
                u @ ('A'..='Z' | '0'..='9' | '_' | '-') => u as u8,
                _ => b'_',
            })
            .collect()
    };
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) if !b.is_empty() => (clean(b), clean(e)),
        _ => (clean(name), vec![]),
    };
    let mut out = [b' '; 11];
    for (i, b) in ext.iter().take(3).enumerate() {
        out[8 + i] = *b;
    }
    for n in 1u32.. {
        let tail = format!("~{n}");
        let keep = base.len().min(8 - tail.len());
        let mut cand = out;
        cand[..8].fill(b' ');
        cand[..keep].copy_from_slice(&base[..keep]);
        cand[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
        if !used.contains(&cand) {
            return cand;
        }
    }
    unreachable!("u32 short-name counter exhausted")
}

/// The checksum of a short name that ties long-name entries to it.
fn checksum(short: &[u8; 11]) -> u8 {
    short.iter().fold(0u8, |sum, b| {
        (sum >> 1).wrapping_add(sum << 7).wrapping_add(*b)
    })
}

/// A date and time in FAT's packed form (local time = UTC in the ramdisk).
#[derive(Debug, Clone, Copy)]
pub(super) struct DosTime {
    date: u16,
    time: u16,
}

impl DosTime {
    /// The given Unix time, clamped to FAT's range (1980–2107).
    pub fn from_unix(secs: u64) -> DosTime {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u16;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u16;
        let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(1980, 2107) as u16;
        let (h, m, s) = (
            (rem / 3600) as u16,
            (rem / 60 % 60) as u16,
            (rem % 60) as u16,
        );
        DosTime {
            date: (year - 1980) << 9 | month << 5 | day,
            time: h << 11 | m << 5 | (s / 2),
        }
    }
}

/// Serializes directory entries, handing out short names unique within one directory.
pub(super) struct DirWriter {
    pub bytes: Vec<u8>,
    used: HashSet<[u8; 11]>,
    time: DosTime,
}

impl DirWriter {
    /// An empty directory body stamped with `time`.
    pub fn new(time: DosTime) -> DirWriter {
        DirWriter {
            bytes: Vec::new(),
            used: HashSet::new(),
            time,
        }
    }

    /// The root's volume label entry.
    pub fn label(&mut self, label: &[u8; 11]) {
        self.short(label, ATTR_VOLUME_ID, 0, 0);
    }

    /// The `.` and `..` entries of a subdirectory (`parent` is 0 for the root).
    pub fn dots(&mut self, own: u32, parent: u32) {
        let mut dot = [b' '; 11];
        dot[0] = b'.';
        self.short(&dot, ATTR_DIRECTORY, own, 0);
        dot[1] = b'.';
        self.short(&dot, ATTR_DIRECTORY, parent, 0);
    }

    /// A named file or directory starting at `cluster` (0 for an empty file).
    pub fn named(&mut self, name: &str, is_dir: bool, cluster: u32, size: u32) {
        let short = exact_short(name).unwrap_or_else(|| generated_short(name, &self.used));
        self.used.insert(short);
        if exact_short(name).is_none() {
            self.long_name(name, checksum(&short));
        }
        let attr = if is_dir { ATTR_DIRECTORY } else { ATTR_ARCHIVE };
        self.short(&short, attr, cluster, size);
    }

    fn long_name(&mut self, name: &str, sum: u8) {
        let mut units: Vec<u16> = name.encode_utf16().collect();
        let count = units.len().div_ceil(LFN_CHARS);
        if !units.len().is_multiple_of(LFN_CHARS) {
            units.push(0);
        }
        units.resize(count * LFN_CHARS, 0xFFFF);
        // Stored last piece first; the first stored entry carries the 0x40 "last" flag.
        for seq in (1..=count).rev() {
            let chunk = &units[(seq - 1) * LFN_CHARS..seq * LFN_CHARS];
            let mut e = [0u8; ENTRY];
            e[0] = seq as u8 | if seq == count { 0x40 } else { 0 };
            e[11] = ATTR_LFN;
            e[13] = sum;
            let slots = (1..11)
                .step_by(2)
                .chain((14..26).step_by(2))
                .chain((28..32).step_by(2));
            for (u, at) in chunk.iter().zip(slots) {
                e[at..at + 2].copy_from_slice(&u.to_le_bytes());
            }
            self.bytes.extend_from_slice(&e);
        }
    }

    fn short(&mut self, name: &[u8; 11], attr: u8, cluster: u32, size: u32) {
        let mut e = [0u8; ENTRY];
        e[..11].copy_from_slice(name);
        e[11] = attr;
        if attr != ATTR_VOLUME_ID {
            let (d, t) = (self.time.date.to_le_bytes(), self.time.time.to_le_bytes());
            e[14..16].copy_from_slice(&t); // created
            e[16..18].copy_from_slice(&d);
            e[18..20].copy_from_slice(&d); // accessed
            e[22..24].copy_from_slice(&t); // modified
            e[24..26].copy_from_slice(&d);
        }
        e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
        e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
        e[28..32].copy_from_slice(&size.to_le_bytes());
        self.bytes.extend_from_slice(&e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_exact_only_for_upper_case_8_3() {
        assert_eq!(exact_short("LATEST"), Some(*b"LATEST     "));
        assert_eq!(exact_short("A.JSO"), Some(*b"A       JSO"));
        assert_eq!(exact_short("latest"), None);
        assert_eq!(exact_short("meta_data.json"), None);
        assert_eq!(long_entries("meta_data.json"), 2);
        assert_eq!(long_entries("user-data"), 1);
    }

    #[test]
    fn generated_short_names_are_unique_per_directory() {
        let mut used = HashSet::new();
        let a = generated_short("meta_data.json", &used);
        assert_eq!(&a, b"META_D~1JSO");
        used.insert(a);
        assert_eq!(&generated_short("meta_data.jsonx", &used), b"META_D~2JSO");
        assert_eq!(&generated_short("2018-08-27", &used), b"2018-0~1   ");
    }

    #[test]
    fn dos_time_of_a_known_instant() {
        // 2024-02-29 13:45:58 UTC
        let t = DosTime::from_unix(1_709_214_358);
        assert_eq!(t.date, (2024 - 1980) << 9 | 2 << 5 | 29);
        assert_eq!(t.time, 13 << 11 | 45 << 5 | 29);
    }

    #[test]
    fn tree_rejects_a_path_used_as_file_and_dir() {
        assert!(Tree::new(["a", "a/b"]).is_err());
        assert!(Tree::new(["a/b", "A/c"]).is_ok());
        assert!(Tree::new(["x", "X"]).is_err());
    }
}
