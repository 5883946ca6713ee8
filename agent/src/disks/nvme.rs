//! NVMe namespace identities: the EUI-64, NGUID and UUID a namespace reports (sysfs
//! `eui`, `nguid`, `uuid` under `/sys/block/nvmeXnY`), the NVMe equivalents of a WWN.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The identities of one NVMe namespace, each lower-case hex without separators.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(default)]
pub struct NvmeIds {
    /// IEEE EUI-64 (16 hex digits), sysfs `eui`.
    pub eui64: Option<String>,
    /// Namespace Globally Unique Identifier (32 hex digits), sysfs `nguid`.
    pub nguid: Option<String>,
    /// Namespace UUID (32 hex digits), sysfs `uuid`.
    pub uuid: Option<String>,
}

/// One identity as sysfs prints it (`00 11 22 …` for the EUI-64, `0011…-…` for the
/// NGUID and UUID), or with a `eui.`/`uuid.`/`0x` prefix as a user writes it, as bare
/// lower-case hex; None when it is not hex or is all zeros (the namespace has none).
pub fn parse_id(raw: &str) -> Option<String> {
    let lower = raw.trim().to_ascii_lowercase();
    let bare = ["eui.", "uuid.", "naa.", "0x"]
        .iter()
        .fold(lower.as_str(), |s, p| s.strip_prefix(p).unwrap_or(s));
    let hex: String = bare
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | ':'))
        .collect();
    let is_hex = !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    (is_hex && hex.chars().any(|c| c != '0')).then_some(hex)
}

impl NvmeIds {
    /// Reads the identities under a `/sys/block/<name>` directory; None when it has none.
    pub fn read(sys: &Path) -> Option<NvmeIds> {
        let get = |f: &str| {
            std::fs::read_to_string(sys.join(f))
                .ok()
                .and_then(|s| parse_id(&s))
        };
        let ids = NvmeIds {
            eui64: get("eui"),
            nguid: get("nguid"),
            uuid: get("uuid"),
        };
        (ids != NvmeIds::default()).then_some(ids)
    }

    /// Every identity with its name: `("eui64", "0011…")`.
    pub fn all(&self) -> Vec<(&'static str, &str)> {
        [
            ("eui64", &self.eui64),
            ("nguid", &self.nguid),
            ("uuid", &self.uuid),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }

    /// The identity that stands in for a WWN: the NGUID, else the EUI-64 (as the
    /// kernel's `wwid` prefers them), as `eui.<hex>`.
    pub fn as_wwn(&self) -> Option<String> {
        self.nguid
            .as_deref()
            .or(self.eui64.as_deref())
            .map(|h| format!("eui.{h}"))
    }
}
