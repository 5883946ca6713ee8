//! JSON Schemas of what imprint reads and writes: the document it reads, the plan
//! `plan` prints, the host inventory `inventory` prints (and a lookup POSTs), the disk
//! list `disks --json` prints and the report events it sends.
//! `imprint schema <kind>` prints them; each comes from the types themselves.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;

/// Which schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Kind {
    /// The provisioning document (what `validate` accepts).
    #[default]
    Document,
    /// The resolved plan (`plan --json`).
    Plan,
    /// The host inventory (`inventory`, the body of a lookup; `plan --inventory` reads it).
    Inventory,
    /// The block devices alone (`disks --json`).
    Disks,
    /// One report event (a POST body to `report.url`).
    Report,
}

/// The JSON Schema (draft 2020-12) of `kind`.
pub fn of(kind: Kind) -> Value {
    match kind {
        Kind::Document => crate::config::json_schema(),
        Kind::Plan => written::<crate::plan::Plan>(),
        Kind::Inventory => written::<crate::inventory::Inventory>(),
        Kind::Disks => written::<Vec<crate::disks::Disk>>(),
        Kind::Report => written::<crate::report::Event>(),
    }
}

/// The schema of what imprint writes as `T` (optional fields are the ones it may leave out).
fn written<T: JsonSchema>() -> Value {
    let schema = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>();
    serde_json::to_value(schema).unwrap_or(Value::Null)
}
