//! Report events checked against a JSON Schema: the one the binary under test prints
//! (`imprint schema report`), which the HTTP server applies to every report it
//! receives, or one given by a unit test.

use serde_json::Value;
use std::sync::OnceLock;

/// URL paths whose POSTs are report events (every suite reports to `/report/<host>`).
pub const REPORT_PREFIX: &str = "/report";

/// A compiled report schema.
pub struct ReportSchema {
    validator: jsonschema::Validator,
}

impl ReportSchema {
    /// Compiles `schema` (panics in the test if it is not a valid JSON Schema).
    pub fn new(schema: &Value) -> ReportSchema {
        // Formats are checked too: `run_id` is a UUID, `time` an RFC 3339 date-time.
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .unwrap_or_else(|e| panic!("the report schema does not compile: {e}\n{schema:#}"));
        ReportSchema { validator }
    }

    /// The schema `imprint schema report` prints, compiled once per test process.
    pub fn of_binary() -> &'static ReportSchema {
        static SCHEMA: OnceLock<ReportSchema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            let bin = crate::fixtures::imprint_bin();
            let out = crate::fixtures::sh(&bin.display().to_string(), &["schema", "report"]);
            let schema: Value = serde_json::from_str(&out).unwrap_or_else(|e| {
                panic!("`{} schema report` printed no JSON: {e}", bin.display())
            });
            ReportSchema::new(&schema)
        })
    }

    /// Checks one event; the error names every violation and shows the event.
    pub fn check(&self, event: &Value) -> Result<(), String> {
        let errors: Vec<String> = self
            .validator
            .iter_errors(event)
            .map(|e| format!("at {}: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        Err(format!(
            "report event does not match the report schema:\n  {}\nevent: {event:#}",
            errors.join("\n  ")
        ))
    }

    /// Checks a POST body: JSON, and an event.
    pub fn check_body(&self, body: &[u8]) -> Result<(), String> {
        let event: Value = serde_json::from_slice(body).map_err(|e| {
            format!(
                "report body is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        })?;
        self.check(&event)
    }
}
