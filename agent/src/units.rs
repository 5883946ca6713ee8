//! Byte sizes as documents write them: `512MiB`, `4GiB`, `1T`, `1048576`, or `rest`.

use std::fmt;
use std::str::FromStr;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

/// An exact number of bytes, parsed from `4GiB`-style text or a bare integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

/// A size that may also be `rest`: everything left on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SizeSpec {
    Bytes(Bytes),
    Rest,
}

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a size such as 512MiB, 4GiB or a number of bytes, got {0:?}")]
pub struct SizeError(pub String);

impl FromStr for Bytes {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, SizeError> {
        let err = || SizeError(s.to_string());
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(err());
        }
        let mult = match unit.trim() {
            "" | "B" => 1,
            "K" | "KiB" => KIB,
            "M" | "MiB" => MIB,
            "G" | "GiB" => GIB,
            "T" | "TiB" => TIB,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return Err(err()),
        };
        if let Ok(n) = num.parse::<u64>() {
            return n.checked_mul(mult).map(Bytes).ok_or_else(err);
        }
        // Fractions are allowed with a unit ("1.5GiB") and rounded down to a byte.
        let f: f64 = num.parse().map_err(|_| err())?;
        if mult == 1 || !f.is_finite() || f < 0.0 || f * mult as f64 > u64::MAX as f64 {
            return Err(err());
        }
        Ok(Bytes((f * mult as f64) as u64))
    }
}

impl fmt::Display for Bytes {
    /// The largest binary unit that divides the value exactly, e.g. `4GiB`, `1536MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, m) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if n >= m && n.is_multiple_of(m) {
                return write!(f, "{}{}", n / m, unit);
            }
        }
        write!(f, "{n}B")
    }
}

impl Bytes {
    /// Human-readable approximation for logs and tables, e.g. `3.7 GiB`.
    pub fn human(self) -> String {
        let n = self.0 as f64;
        for (unit, m) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if self.0 >= m {
                return format!("{:.1} {unit}", n / m as f64);
            }
        }
        format!("{} B", self.0)
    }
}

impl FromStr for SizeSpec {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, SizeError> {
        if s.trim() == "rest" {
            Ok(SizeSpec::Rest)
        } else {
            s.parse()
                .map(SizeSpec::Bytes)
                .map_err(|_| SizeError(s.to_string()))
        }
    }
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeSpec::Bytes(b) => b.fmt(f),
            SizeSpec::Rest => f.write_str("rest"),
        }
    }
}

mod serde_impls {
    use super::*;
    use serde::de::{self, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct BytesVisitor;
    impl Visitor<'_> for BytesVisitor {
        type Value = Bytes;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a size such as 512MiB, 4GiB or a number of bytes")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bytes, E> {
            Ok(Bytes(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bytes, E> {
            u64::try_from(v)
                .map(Bytes)
                .map_err(|_| E::custom("expected a size, got a negative number"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
            v.parse().map_err(E::custom)
        }
    }
    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(BytesVisitor)
        }
    }
    impl Serialize for Bytes {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    struct SpecVisitor;
    impl Visitor<'_> for SpecVisitor {
        type Value = SizeSpec;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a size such as 512MiB or 4GiB, or \"rest\"")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeSpec, E> {
            Ok(SizeSpec::Bytes(Bytes(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeSpec, E> {
            BytesVisitor.visit_i64(v).map(SizeSpec::Bytes)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeSpec, E> {
            v.parse().map_err(|_| {
                E::custom(format!(
                    "expected a size such as 512MiB, 4GiB or \"rest\", got {v:?}"
                ))
            })
        }
    }
    impl<'de> Deserialize<'de> for SizeSpec {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(SpecVisitor)
        }
    }
    impl Serialize for SizeSpec {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl schemars::JsonSchema for Bytes {
        fn schema_name() -> std::borrow::Cow<'static, str> {
            "Size".into()
        }
        fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            schemars::json_schema!({
                "description": "A size: a number of bytes, or a number with a unit (KiB, MiB, GiB, TiB; KB, MB, GB, TB).",
                "oneOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?\\s*(B|K|KiB|M|MiB|G|GiB|T|TiB|kB|KB|MB|GB|TB)?$"}
                ]
            })
        }
    }
    impl schemars::JsonSchema for SizeSpec {
        fn schema_name() -> std::borrow::Cow<'static, str> {
            "SizeOrRest".into()
        }
        fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
            let bytes = g.subschema_for::<Bytes>();
            schemars::json_schema!({
                "description": "A size, or \"rest\" for all the space left.",
                "oneOf": [bytes, {"const": "rest"}]
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_units() {
        assert_eq!("512MiB".parse::<Bytes>().unwrap(), Bytes(512 * MIB));
        assert_eq!("4GiB".parse::<Bytes>().unwrap(), Bytes(4 * GIB));
        assert_eq!("1.5GiB".parse::<Bytes>().unwrap(), Bytes(3 * GIB / 2));
        assert_eq!("2GB".parse::<Bytes>().unwrap(), Bytes(2_000_000_000));
        assert_eq!("4096".parse::<Bytes>().unwrap(), Bytes(4096));
        assert_eq!("rest".parse::<SizeSpec>().unwrap(), SizeSpec::Rest);
    }

    #[test]
    fn rejects_garbage_and_overflow() {
        for bad in ["", "GiB", "4 parsecs", "-1", "99999999999TiB", "1.5"] {
            assert!(bad.parse::<Bytes>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn displays_exact_units() {
        assert_eq!(Bytes(4 * GIB).to_string(), "4GiB");
        assert_eq!(Bytes(1536 * MIB).to_string(), "1536MiB");
        assert_eq!(Bytes(1000).to_string(), "1000B");
    }
}
