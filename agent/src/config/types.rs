//! Newtypes for document values whose text has a shape (URLs, host names, digests,
//! mount points, names, partition types), each with a message that says what was expected.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// True for a `<...>` placeholder, as the documents in product.md write values the
/// operator fills in later; accepted by `validate` and `plan`, refused by `apply`.
pub fn is_placeholder(s: &str) -> bool {
    s.len() >= 2 && s.starts_with('<') && s.ends_with('>')
}

/// Defines a string newtype whose Deserialize checks the text with `$check`
/// (returning `true` when acceptable) and says `expected $what` otherwise.
macro_rules! checked_string {
    ($(#[$doc:meta])* $ty:ident, $what:expr, $check:expr, $schema:tt) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            /// The text as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// Checks `s` and wraps it.
            pub fn parse(s: &str) -> Result<Self, String> {
                let check: fn(&str) -> bool = $check;
                if check(s) {
                    Ok($ty(s.to_string()))
                } else {
                    Err(format!("expected {}, got {:?}", $what, s))
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        $ty::parse(v).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

fn is_url(s: &str, schemes: &[&str]) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    if !schemes.contains(&scheme) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    if scheme == "file" {
        return rest.starts_with('/') && rest.len() > 1;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = match hostport.strip_prefix('[') {
        // An IPv6 literal (RFC 3986 §3.2.2): only a valid address inside the brackets.
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) if h.parse::<std::net::Ipv6Addr>().is_ok() => {
                if !p.is_empty() && !p.starts_with(':') {
                    return false;
                }
                (h, p.strip_prefix(':'))
            }
            _ => return false,
        },
        // An unbracketed IPv6 address is not a host.
        None if hostport.matches(':').count() > 1 => return false,
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    };
    !host.is_empty() && port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok())
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_hex(s: &str, n: usize) -> bool {
    is_placeholder(s) || (s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn is_mount_point(s: &str) -> bool {
    s.starts_with('/')
        && (s == "/" || !s.ends_with('/'))
        && !s.contains("//")
        && !s.split('/').any(|c| c == "." || c == "..")
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_thumbprint(s: &str) -> bool {
    is_placeholder(s)
        || (matches!(s.len(), 27 | 43 | 86)
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}

checked_string!(
    /// An `http://` or `https://` URL.
    HttpUrl, "a URL (http:// or https://)", |s| is_url(s, &["http", "https"]),
    {"type": "string", "format": "uri", "pattern": "^https?://[^\\s/?#]+"}
);
checked_string!(
    /// An `http://`, `https://` or `file://` URL, or an `oci://` registry reference
    /// (image sources; a reference's parts are checked by validation, which says which).
    SourceUrl, "a URL (http://, https://, file:///path or oci://registry/repository:tag@sha256:<digest>)", |s| is_url(s, &["http", "https", "file", "oci"]),
    {"type": "string", "format": "uri", "pattern": "^(https?://[^\\s/?#]+|file:///|oci://[^\\s/?#]+/)"}
);
checked_string!(
    /// A chunk store: an `http://`, `https://` or `file://` URL, or `medium:/path` on the
    /// filesystem labelled `IMPRINT`.
    StoreUrl, "a chunk store (http://, https://, file:///path or medium:/path)", |s| is_url(s, &["http", "https", "file"]) || is_medium_path(s),
    {"type": "string", "pattern": "^(https?://[^\\s/?#]+|file:///|medium:/)"}
);

/// `medium:/path`: a path without `..` on the IMPRINT-labelled filesystem.
fn is_medium_path(s: &str) -> bool {
    s.strip_prefix("medium:/").is_some_and(|p| {
        !p.split('/').any(|c| c == "..") && !s.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

checked_string!(
    /// A host name (RFC 1123: dot-separated labels of letters, digits and '-').
    Hostname, "a host name (letters, digits and '-', labels of at most 63 characters)", is_hostname,
    {"type": "string", "pattern": "^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$", "maxLength": 253}
);
checked_string!(
    /// A SHA-256 digest: 64 hex digits (or a `<...>` placeholder).
    Sha256Hex, "a SHA-256 digest (64 hex digits)", |s| is_hex(s, 64),
    {"type": "string", "pattern": "^([0-9a-fA-F]{64}|<.*>)$"}
);
checked_string!(
    /// A SHA-512 digest: 128 hex digits (or a `<...>` placeholder).
    Sha512Hex, "a SHA-512 digest (128 hex digits)", |s| is_hex(s, 128),
    {"type": "string", "pattern": "^([0-9a-fA-F]{128}|<.*>)$"}
);
checked_string!(
    /// A tang signing-key thumbprint (base64url, as `tang-show-keys` prints it) or a placeholder.
    Thumbprint, "a tang key thumbprint (base64url, as tang-show-keys prints it)", is_thumbprint,
    {"type": "string", "pattern": "^([A-Za-z0-9_-]{27}|[A-Za-z0-9_-]{43}|[A-Za-z0-9_-]{86}|<.*>)$"}
);
checked_string!(
    /// A name in the document: a disk, partition, md array, LUKS mapping, volume group or volume.
    Name, "a name of letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)", is_name,
    {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
);
checked_string!(
    /// An absolute mount point such as `/var/log`.
    MountPoint, "an absolute path such as /var/log", is_mount_point,
    {"type": "string", "pattern": "^/"}
);

checked_string!(
    /// An RFC 3339 date-time such as `2026-12-31T00:00:00Z`.
    Timestamp, "an RFC 3339 date-time such as 2026-12-31T00:00:00Z", |s| crate::timestamp::parse_rfc3339(s).is_some(),
    {"type": "string", "format": "date-time"}
);

impl Timestamp {
    /// The time in unix seconds (the text was checked when it was read).
    pub fn unix_seconds(&self) -> i64 {
        crate::timestamp::parse_rfc3339(&self.0).unwrap_or(i64::MIN)
    }
}

impl Name {
    /// Wraps a name the expansion derives (always valid by construction).
    pub(crate) fn derived(s: String) -> Name {
        debug_assert!(is_name(&s), "derived name {s:?}");
        Name(s)
    }
}

/// GPT partition type aliases and their GUIDs.
pub const PARTITION_TYPES: &[(&str, &str)] = &[
    ("linux", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
    ("esp", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
    ("bios-boot", "21686148-6449-6E6F-744E-656564454649"),
    ("swap", "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"),
    ("raid", "A19D880F-05FC-4D3B-A006-448F40F4BF2F"),
    ("luks", "CA7D7CCB-63ED-4C53-861C-1742536059CC"),
    ("lvm", "E6D6D379-F507-44C2-A23C-238F2A3DF928"),
    ("xbootldr", "BC13C2FF-59E6-4262-A352-B275FD6F7172"),
];

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

checked_string!(
    /// A partition type: an alias (linux, esp, bios-boot, swap, raid, luks, lvm, xbootldr) or a GUID.
    PartitionType,
    "a partition type: linux, esp, bios-boot, swap, raid, luks, lvm, xbootldr, or a GUID",
    |s| is_guid(s) || PARTITION_TYPES.iter().any(|(a, _)| *a == s),
    {"type": "string", "pattern": "^(linux|esp|bios-boot|swap|raid|luks|lvm|xbootldr|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"}
);

impl PartitionType {
    /// The alias `alias` (must be one of [`PARTITION_TYPES`]).
    pub fn alias(alias: &str) -> PartitionType {
        debug_assert!(PARTITION_TYPES.iter().any(|(a, _)| *a == alias));
        PartitionType(alias.to_string())
    }
    /// The canonical upper-case GUID.
    pub fn guid(&self) -> String {
        PARTITION_TYPES
            .iter()
            .find(|(a, _)| *a == self.0)
            .map(|(_, g)| g.to_string())
            .unwrap_or_else(|| self.0.to_ascii_uppercase())
    }
}

impl Default for PartitionType {
    fn default() -> Self {
        PartitionType::alias("linux")
    }
}

/// The document version; only `1` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version;

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(1)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Version;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("1")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Version, E> {
                if v == 1 {
                    Ok(Version)
                } else {
                    Err(E::custom(format!(
                        "expected 1, got {v} (this imprint reads version 1 documents)"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Version, E> {
                Err(E::custom(format!("expected 1, got {v}")))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Version {
    fn schema_name() -> Cow<'static, str> {
        "Version".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"description": "Document version; always 1.", "const": 1})
    }
}

/// `boot.kernel_args`: a list, or one string split at spaces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelArgs(pub Vec<String>);

impl Serialize for KernelArgs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for KernelArgs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KernelArgs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of kernel arguments or one string of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KernelArgs, E> {
                Ok(KernelArgs(v.split_whitespace().map(String::from).collect()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<KernelArgs, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(KernelArgs(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for KernelArgs {
    fn schema_name() -> Cow<'static, str> {
        "KernelArgs".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Arguments appended to the deployed OS's kernel command line.",
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_hosts_names_and_digests() {
        assert!(HttpUrl::parse("http://10.0.2.2:8080/x").is_ok());
        assert!(HttpUrl::parse("https://[::1]:7500").is_ok());
        // IPv6 literals wherever a URL is taken: documents, images, reports, tang.
        assert!(HttpUrl::parse("http://[fd42:2::1]:8080/x.yaml").is_ok());
        assert!(HttpUrl::parse("http://[fd42:9::2]/report/web-01").is_ok());
        assert!(SourceUrl::parse("https://[2001:db8::5]/img.raw.zst").is_ok());
        assert!(SourceUrl::parse("oci://[fd42::1]:5000/os/web:1").is_ok());
        for bad in [
            "http://[fd42::zz]:8080/",
            "http://[fd42::1/",
            "http://[fd42::1]x/",
            "http://[fd42::1]:/",
            "http://fd42::1/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
        for bad in [
            "htp:/x",
            "ftp://h/",
            "http://",
            "http://h:99999/",
            "file:///x",
            "http://a b/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(SourceUrl::parse("file:///srv/img.raw").is_ok());
        assert!(Hostname::parse("web-01.example.com").is_ok());
        for bad in ["-web", "web_01", "", "a..b", &"x".repeat(64)] {
            assert!(Hostname::parse(bad).is_err(), "{bad}");
        }
        assert!(Sha256Hex::parse(&"a".repeat(64)).is_ok());
        assert!(Sha256Hex::parse(&"a".repeat(63)).is_err());
        assert!(Sha512Hex::parse("<128 hex digits>").is_ok());
        assert_eq!(
            PartitionType::alias("esp").guid(),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
        let t = PartitionType::parse("0fc63daf-8483-4772-8e79-3d69d8477de4").unwrap();
        assert_eq!(t.guid(), "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
        assert!(MountPoint::parse("/var/log").is_ok());
        for bad in ["var", "/var/", "/a/../b", "/a b"] {
            assert!(MountPoint::parse(bad).is_err(), "{bad}");
        }
    }
}
