//! POSIX ACLs given as text (`SCHILY.acl.*`) to the kernel's xattr form.

use std::collections::HashMap;
use std::path::Path;

/// The access ACL's xattr name.
pub const ACCESS: &str = "system.posix_acl_access";
/// The default ACL's xattr name.
pub const DEFAULT: &str = "system.posix_acl_default";

const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// Names of users and groups of the extracted system (`/etc/passwd`, `/etc/group`).
#[derive(Default)]
pub struct Names {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

impl Names {
    /// Reads the target's account databases (missing files: no names).
    pub fn of_root(root: &Path) -> Names {
        let read = |f: &str| {
            std::fs::read_to_string(root.join(f))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut it = l.split(':');
                    let name = it.next()?.to_string();
                    let id = it.nth(1)?.parse().ok()?;
                    Some((name, id))
                })
                .collect()
        };
        Names {
            users: read("etc/passwd"),
            groups: read("etc/group"),
        }
    }
}

/// The binary xattr value of an ACL in text form (`user::rwx,group:adm:r-x,…`).
pub fn to_xattr(text: &str, names: &Names) -> Result<Vec<u8>, String> {
    let mut entries: Vec<(u16, u32, u16)> = Vec::new();
    for item in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with('#'))
    {
        let f: Vec<&str> = item.split(':').collect();
        if f.len() < 3 {
            return Err(format!("ACL entry {item:?} is not tag:qualifier:perms"));
        }
        let perm = f[2].chars().try_fold(0u16, |acc, c| match c {
            'r' => Ok(acc | 4),
            'w' => Ok(acc | 2),
            'x' => Ok(acc | 1),
            '-' => Ok(acc),
            _ => Err(format!("ACL entry {item:?} has bad permissions")),
        })?;
        // A fourth field (numeric id, as star and getfacl -n write it) wins over the name.
        let id = |map: &HashMap<String, u32>| -> Result<u32, String> {
            if let Some(n) = f.get(3).and_then(|s| s.parse().ok()) {
                return Ok(n);
            }
            f[1].parse()
                .ok()
                .or_else(|| map.get(f[1]).copied())
                .ok_or_else(|| format!("ACL names unknown {:?}", f[1]))
        };
        let (tag, qual) = match (f[0], f[1].is_empty()) {
            ("user" | "u", true) => (USER_OBJ, UNDEFINED_ID),
            ("user" | "u", false) => (USER, id(&names.users)?),
            ("group" | "g", true) => (GROUP_OBJ, UNDEFINED_ID),
            ("group" | "g", false) => (GROUP, id(&names.groups)?),
            ("mask" | "m", _) => (MASK, UNDEFINED_ID),
            ("other" | "o", _) => (OTHER, UNDEFINED_ID),
            _ => return Err(format!("ACL entry {item:?} has an unknown tag")),
        };
        entries.push((tag, qual, perm));
    }
    entries.sort();
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, qual, perm) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(qual.to_le_bytes());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_acl_matches_the_kernel_form_tar_stores() {
        // /var/log/journal of the Debian image: GNU tar stored both forms; adm is gid 4.
        let mut names = Names::default();
        names.groups.insert("adm".into(), 4);
        let v = to_xattr(
            "user::rwx\ngroup::r-x\ngroup:adm:r-x\nmask::r-x\nother::r-x\n",
            &names,
        )
        .unwrap();
        let expected: Vec<u8> = [
            &[2u8, 0, 0, 0][..],
            &[1, 0, 7, 0, 255, 255, 255, 255],
            &[4, 0, 5, 0, 255, 255, 255, 255],
            &[8, 0, 5, 0, 4, 0, 0, 0],
            &[0x10, 0, 5, 0, 255, 255, 255, 255],
            &[0x20, 0, 5, 0, 255, 255, 255, 255],
        ]
        .concat();
        assert_eq!(v, expected);
        assert!(to_xattr("group:nobody-here:r--", &names).is_err());
    }
}
