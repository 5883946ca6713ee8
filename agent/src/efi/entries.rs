//! imprint's own boot entries: how they are named, recognised and replaced, and
//! `BootOrder` with the new ones first.
//!
//! Nothing is put in an entry's optional data (shim reads it as a loader path); the
//! description carries the mark instead: `<os> (imprint, <disk identity>)`.

use super::load_option::{HardDrive, LoadOption};
use super::vars::{boot_name, order_with_first, Efivars, VarError};

/// The description of imprint's entry for `os` on the disk known as `identity`.
pub fn description(os: &str, identity: &str) -> String {
    format!("{os} (imprint, {identity})")
}

/// The disk identity in the description of an entry imprint made, or `None` for an
/// entry of any other tool.
pub fn made_for(description: &str) -> Option<&str> {
    let (_, tail) = description.rsplit_once(" (imprint, ")?;
    tail.strip_suffix(')')
}

/// An entry to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub description: String,
    pub partition: HardDrive,
    /// The loader's path on the partition, with backslashes.
    pub loader: String,
}

/// What [`install`] changed, by boot option number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Installed {
    /// The numbers given to the new entries, in the order asked.
    pub made: Vec<u16>,
    /// imprint's earlier entries for the same disks, deleted.
    pub replaced: Vec<u16>,
    /// `BootOrder` as written.
    pub boot_order: Vec<u16>,
}

/// Deletes imprint's earlier entries for any of `identities` (and takes them out of
/// `BootOrder`), creates `entries` in the lowest free numbers and puts them first in
/// `BootOrder`, in their order. Entries of other tools are left as they are.
pub fn install(
    vars: &Efivars,
    identities: &[String],
    entries: &[NewEntry],
) -> Result<Installed, VarError> {
    let mut out = Installed::default();
    for n in vars.boot_numbers()? {
        let Some((_, value)) = vars.read(&boot_name(n))? else {
            continue;
        };
        // What cannot be read as a load option is not imprint's.
        let ours = LoadOption::decode(&value).is_ok_and(|o| {
            made_for(&o.description).is_some_and(|id| identities.iter().any(|i| i == id))
        });
        if ours {
            vars.delete(&boot_name(n))?;
            out.replaced.push(n);
        }
    }
    for e in entries {
        let n = vars.free_boot_number()?;
        let option = LoadOption::new(&e.description, e.partition, &e.loader);
        vars.write(&boot_name(n), &option.encode())?;
        out.made.push(n);
    }
    let before = vars.boot_order()?;
    let kept: Vec<u16> = before
        .iter()
        .copied()
        .filter(|n| !out.replaced.contains(n))
        .collect();
    out.boot_order = order_with_first(&kept, &out.made);
    if out.boot_order != before {
        vars.set_boot_order(&out.boot_order)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn hd(n: u32) -> HardDrive {
        HardDrive {
            partition_number: n,
            start_lba: 2048,
            size_lba: 1 << 20,
            partition_guid: Uuid::from_u128(0x1234_0000 + u128::from(n)),
        }
    }

    fn entry(os: &str, id: &str) -> NewEntry {
        NewEntry {
            description: description(os, id),
            partition: hd(1),
            loader: "\\EFI\\debian\\shimx64.efi".into(),
        }
    }

    /// A firmware store with a PXE entry (Boot0000) and a disk entry of another tool
    /// (Boot0001), booting in that order.
    fn firmware() -> (tempfile::TempDir, Efivars) {
        let dir = tempfile::tempdir().unwrap();
        let v = Efivars::at(dir.path());
        let other = LoadOption::new("UEFI PXEv4 (MAC:525400123456)", hd(9), "\\x.efi");
        v.write("Boot0000", &other.encode()).unwrap();
        let grub = LoadOption::new("debian", hd(1), "\\EFI\\debian\\shimx64.efi");
        v.write("Boot0001", &grub.encode()).unwrap();
        v.set_boot_order(&[0, 1]).unwrap();
        (dir, v)
    }

    fn description_of(v: &Efivars, n: u16) -> String {
        let (_, b) = v.read(&boot_name(n)).unwrap().unwrap();
        LoadOption::decode(&b).unwrap().description
    }

    #[test]
    fn recognises_only_its_own_descriptions() {
        assert_eq!(
            made_for("Debian GNU/Linux (imprint, wwn 5000c5)"),
            Some("wwn 5000c5")
        );
        assert_eq!(
            made_for(&description("imprint", "serial SN-A")),
            Some("serial SN-A")
        );
        assert_eq!(made_for("debian"), None);
        assert_eq!(made_for("UEFI QEMU HARDDISK (imprint)"), None);
    }

    #[test]
    fn new_entries_go_first_in_boot_order_in_free_numbers() {
        let (_d, v) = firmware();
        let ids = ["serial A".to_string(), "serial B".to_string()];
        let got = install(
            &v,
            &ids,
            &[entry("debian", "serial A"), entry("debian", "serial B")],
        )
        .unwrap();
        assert_eq!(got.made, [2, 3]);
        assert!(got.replaced.is_empty());
        assert_eq!(got.boot_order, [2, 3, 0, 1]);
        assert_eq!(v.boot_order().unwrap(), [2, 3, 0, 1]);
        assert_eq!(description_of(&v, 2), "debian (imprint, serial A)");
        let (attrs, _) = v.read("Boot0003").unwrap().unwrap();
        assert_eq!(attrs, 7);
    }

    #[test]
    fn a_rerun_replaces_its_earlier_entries_instead_of_piling_up() {
        let (_d, v) = firmware();
        let ids = ["serial A".to_string(), "serial B".to_string()];
        let both = [entry("debian", "serial A"), entry("debian", "serial B")];
        install(&v, &ids, &both).unwrap();
        // The firmware (or an operator) moved PXE first since.
        v.set_boot_order(&[0, 2, 1, 3]).unwrap();
        let again = install(&v, &ids, &both).unwrap();
        assert_eq!(again.replaced, [2, 3]);
        assert_eq!(again.made, [2, 3]);
        assert_eq!(again.boot_order, [2, 3, 0, 1]);
        assert_eq!(v.boot_numbers().unwrap(), [0, 1, 2, 3]);
    }

    #[test]
    fn entries_of_other_disks_and_tools_are_left_alone() {
        let (_d, v) = firmware();
        let a = ["serial A".to_string()];
        install(&v, &a, &[entry("debian", "serial A")]).unwrap();
        let b = ["serial B".to_string()];
        let got = install(&v, &b, &[entry("rocky", "serial B")]).unwrap();
        assert!(got.replaced.is_empty());
        assert_eq!(got.made, [3]);
        assert_eq!(got.boot_order, [3, 2, 0, 1]);
        assert_eq!(description_of(&v, 0), "UEFI PXEv4 (MAC:525400123456)");
        assert_eq!(description_of(&v, 2), "debian (imprint, serial A)");
        // A value no load option decoder accepts stays where it is.
        v.write("Boot0007", b"\x01").unwrap();
        install(&v, &a, &[]).unwrap();
        assert!(v.read("Boot0007").unwrap().is_some());
        assert_eq!(
            v.boot_order().unwrap(),
            [3, 0, 1],
            "serial A's entry was removed"
        );
    }
}
