//! DMI identity from `/sys/class/dmi/id/*`. Every field is optional: arm64 servers
//! without DMI have no such directory, and `product_serial`, `product_uuid`,
//! `board_serial` and `chassis_serial` are readable by root only.

use super::read_trimmed;
use serde::{Deserialize, Serialize};
use std::path::Path;

const DIR: &str = "sys/class/dmi/id";

/// The system (SMBIOS type 1).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
pub struct System {
    /// `sys_vendor`.
    pub vendor: Option<String>,
    /// `product_name`.
    pub product: Option<String>,
    /// `product_version`.
    pub version: Option<String>,
    /// `product_serial` (root only).
    pub serial: Option<String>,
    /// `product_uuid` (root only), lower case: what Ironic and Foreman match on.
    pub uuid: Option<String>,
    /// `product_sku`.
    pub sku: Option<String>,
    /// `product_family`.
    pub family: Option<String>,
}

/// The baseboard (SMBIOS type 2).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
pub struct Baseboard {
    /// `board_vendor`.
    pub vendor: Option<String>,
    /// `board_name`.
    pub product: Option<String>,
    /// `board_serial` (root only).
    pub serial: Option<String>,
}

/// The chassis (SMBIOS type 3).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
pub struct Chassis {
    /// `chassis_vendor`.
    pub vendor: Option<String>,
    /// `chassis_type` by its SMBIOS name (`rack-mount`, `desktop`, …), or the number
    /// when imprint does not know the name.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `chassis_serial` (root only).
    pub serial: Option<String>,
    /// `chassis_asset_tag`.
    pub asset_tag: Option<String>,
}

fn field(root: &Path, name: &str) -> Option<String> {
    read_trimmed(root, &format!("{DIR}/{name}"))
}

/// The system identity.
pub fn system(root: &Path) -> System {
    System {
        vendor: field(root, "sys_vendor"),
        product: field(root, "product_name"),
        version: field(root, "product_version"),
        serial: field(root, "product_serial"),
        uuid: field(root, "product_uuid").map(|u| u.to_lowercase()),
        sku: field(root, "product_sku"),
        family: field(root, "product_family"),
    }
}

/// The baseboard.
pub fn baseboard(root: &Path) -> Baseboard {
    Baseboard {
        vendor: field(root, "board_vendor"),
        product: field(root, "board_name"),
        serial: field(root, "board_serial"),
    }
}

/// The chassis.
pub fn chassis(root: &Path) -> Chassis {
    Chassis {
        vendor: field(root, "chassis_vendor"),
        kind: field(root, "chassis_type").map(|t| chassis_type_name(&t)),
        serial: field(root, "chassis_serial"),
        asset_tag: field(root, "chassis_asset_tag"),
    }
}

/// SMBIOS 3.x chassis types (table 17) by number; unknown numbers stay numbers.
pub fn chassis_type_name(code: &str) -> String {
    const NAMES: [&str; 36] = [
        "other",
        "unknown",
        "desktop",
        "low-profile-desktop",
        "pizza-box",
        "mini-tower",
        "tower",
        "portable",
        "laptop",
        "notebook",
        "hand-held",
        "docking-station",
        "all-in-one",
        "sub-notebook",
        "space-saving",
        "lunch-box",
        "main-server-chassis",
        "expansion-chassis",
        "sub-chassis",
        "bus-expansion-chassis",
        "peripheral-chassis",
        "raid-chassis",
        "rack-mount",
        "sealed-case-pc",
        "multi-system-chassis",
        "compact-pci",
        "advanced-tca",
        "blade",
        "blade-enclosure",
        "tablet",
        "convertible",
        "detachable",
        "iot-gateway",
        "embedded-pc",
        "mini-pc",
        "stick-pc",
    ];
    code.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| code.to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::testtree::put;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn every_field_is_read_and_the_uuid_is_lower_case() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for (f, v) in [
            ("sys_vendor", "QEMU"),
            ("product_name", "Standard PC (Q35 + ICH9, 2009)\n"),
            ("product_serial", "SN-1"),
            ("product_uuid", "4C4C4544-0042-3510-8052-B4C04F4E4E32\n"),
            ("product_sku", "SKU9"),
            ("product_family", "Fam"),
            ("board_vendor", "Board Co"),
            ("board_name", "X11"),
            ("board_serial", "BS"),
            ("chassis_vendor", "Chassis Co"),
            ("chassis_type", "23\n"),
            ("chassis_serial", "CS"),
            ("chassis_asset_tag", "AT-7"),
        ] {
            put(r, &format!("{DIR}/{f}"), v);
        }
        let s = system(r);
        assert_eq!(s.vendor.as_deref(), Some("QEMU"));
        assert_eq!(s.product.as_deref(), Some("Standard PC (Q35 + ICH9, 2009)"));
        assert_eq!(
            s.uuid.as_deref(),
            Some("4c4c4544-0042-3510-8052-b4c04f4e4e32")
        );
        assert_eq!(
            (s.sku.as_deref(), s.family.as_deref()),
            (Some("SKU9"), Some("Fam"))
        );
        assert_eq!(baseboard(r).serial.as_deref(), Some("BS"));
        let c = chassis(r);
        assert_eq!(c.kind.as_deref(), Some("rack-mount"));
        assert_eq!(c.asset_tag.as_deref(), Some("AT-7"));
    }

    #[test]
    fn absent_dmi_gives_nulls() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(system(dir.path()), System::default());
        assert_eq!(baseboard(dir.path()), Baseboard::default());
        assert_eq!(chassis(dir.path()), Chassis::default());
    }

    #[test]
    fn an_unreadable_or_blank_file_is_null() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, &format!("{DIR}/product_serial"), "SECRET");
        put(r, &format!("{DIR}/board_serial"), "   \n");
        let p = r.join(DIR).join("product_serial");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        // As root the mode is no obstacle; then a directory in its place stands in.
        if std::fs::read(&p).is_ok() {
            std::fs::remove_file(&p).unwrap();
            std::fs::create_dir(&p).unwrap();
        }
        assert_eq!(system(r).serial, None);
        assert_eq!(baseboard(r).serial, None);
    }

    #[test]
    fn chassis_types_unknown_to_imprint_stay_numbers() {
        assert_eq!(chassis_type_name("1"), "other");
        assert_eq!(chassis_type_name("36"), "stick-pc");
        assert_eq!(chassis_type_name("99"), "99");
        assert_eq!(chassis_type_name("0"), "0");
    }
}
