//! The provisioning document (version 1): typed model, strict parsing with JSON
//! paths in every error, JSON Schema, short-form expansion and validation.
//!
//! [`parse`] turns text into a [`Document`] (structure and value shapes);
//! [`validate`] checks what spans fields (references, uniqueness, thresholds);
//! [`expand`] turns the short form `storage.layout` into the explicit form.

mod error;
mod expand;
mod explicit;
mod layout;
mod model;
mod types;
mod validate;

pub use crate::kinds::{FsType, MdMetadata, PcrBank, RaidLevel, WipePolicy};
pub use error::DocError;
pub use expand::expand_storage;
pub use explicit::{ExplicitStorage, Origin};
pub use layout::lv_name_for;
pub use model::*;
pub use types::*;
pub use validate::{validate, validate_all};

/// Parses a document: JSON when it starts with `{`, YAML otherwise. Checks structure and
/// value shapes only; call [`validate`] for what spans fields.
pub fn parse(text: &str) -> Result<Document, DocError> {
    if text.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(text);
        let doc: Document = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let (l, c) = (e.inner().line(), e.inner().column());
            let msg = strip_suffix_location(&e.inner().to_string(), l, c);
            from_serde(
                &e.path().to_string(),
                &msg,
                Some((l, c)),
                e.inner().is_syntax() || e.inner().is_eof(),
            )
        })?;
        de.end().map_err(|e| {
            DocError::new(
                "",
                format!("trailing text after the document (line {})", e.line()),
            )
        })?;
        Ok(doc)
    } else {
        let de = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let loc = e.inner().location().map(|l| (l.line(), l.column()));
            let mut msg = e.inner().to_string();
            if let Some((l, c)) = loc {
                msg = strip_suffix_location(&msg, l, c);
            }
            from_serde(&e.path().to_string(), &msg, loc, !yaml_well_formed(text))
        })
    }
}

/// Whether `text` is well-formed YAML of any shape. Only what the YAML parser itself
/// refuses makes reading it into `IgnoredAny` fail, so a failing document is a syntax
/// error without looking at the parser's wording. Called on the error path only.
fn yaml_well_formed(text: &str) -> bool {
    use serde::Deserialize;
    serde::de::IgnoredAny::deserialize(serde_norway::Deserializer::from_str(text)).is_ok()
}

fn strip_suffix_location(msg: &str, line: usize, col: usize) -> String {
    msg.strip_suffix(&format!(" at line {line} column {col}"))
        .unwrap_or(msg)
        .to_string()
}

/// Turns a serde message at a serde_path_to_error path into our path and sentence.
fn from_serde(path: &str, msg: &str, loc: Option<(usize, usize)>, syntax: bool) -> DocError {
    let mut path = if path == "." || path == "?" {
        String::new()
    } else {
        path.to_string()
    };
    let join = |p: &str, f: &str| {
        if p.is_empty() {
            f.to_string()
        } else {
            format!("{p}.{f}")
        }
    };
    let tick_list = |s: &str| s.replace('`', "");
    // The YAML error puts its own idea of the path in front of the message; ours is better.
    let msg = match msg.split_once(": ") {
        Some((p, rest))
            if !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-[]".contains(c)) =>
        {
            rest
        }
        _ => msg,
    };
    let mut message = if syntax {
        format!("the document is not well-formed: {msg}")
    } else if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        if !path.ends_with(field) {
            path = join(&path, field);
        }
        let accepted = expected.trim_start_matches(", expected ");
        if accepted.starts_with("there are no fields") || accepted.is_empty() {
            "unknown field; this object takes no fields".to_string()
        } else {
            format!("unknown field; expected {}", tick_list(accepted))
        }
    } else if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        path = join(&path, field);
        "required, but missing".to_string()
    } else if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let (got, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = tick_list(expected.trim_start_matches(", expected "));
        format!("expected {expected}, got {got:?}")
    } else if let Some((got, expected)) = msg
        .strip_prefix("invalid type: ")
        .or_else(|| msg.strip_prefix("invalid value: "))
        .and_then(|r| r.split_once(", expected "))
    {
        // serde names Rust types ("struct Host"); a person wrote a mapping of fields.
        let expected = match expected.strip_prefix("struct ") {
            Some(_) if path.is_empty() => {
                "a mapping of fields (version, host, disks, …)".to_string()
            }
            Some(_) => "a mapping of fields".to_string(),
            None => expected.to_string(),
        };
        format!("expected {expected}, got {}", got.replace('`', ""))
    } else {
        msg.to_string()
    };
    if let Some((line, col)) = loc {
        message.push_str(&format!(" (line {line}, column {col})"));
    }
    DocError { path, message }
}

/// The JSON Schema of the document, generated from the same types [`parse`] uses.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Document);
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}

/// Validates `doc` and returns it with its storage in the explicit form (no `layout`):
/// what `imprint plan` prints as the expansion, and what parses back to the same plan.
pub fn expand(doc: &Document) -> Result<Document, DocError> {
    validate(doc)?;
    let explicit = expand_storage(doc)?;
    let mut out = doc.clone();
    if let Some(storage) = &mut out.storage {
        *storage = explicit.to_storage();
    }
    Ok(out)
}

/// `<...>` placeholders left in the document, as `(path, value)`; `apply` refuses them.
pub fn placeholders(doc: &Document) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(img) = &doc.image {
        if let Some(h) = img.sha256.as_ref().filter(|h| is_placeholder(h.as_str())) {
            out.push(("image.sha256".into(), h.to_string()));
        }
        if let Some(h) = img.sha512.as_ref().filter(|h| is_placeholder(h.as_str())) {
            out.push(("image.sha512".into(), h.to_string()));
        }
    }
    let tang_pins = |base: String, tang: &[Tang], out: &mut Vec<(String, String)>| {
        for (i, t) in tang.iter().enumerate() {
            if let Some(tp) = t.thumbprint.as_ref().filter(|t| is_placeholder(t.as_str())) {
                out.push((format!("{base}.tang[{i}].thumbprint"), tp.to_string()));
            }
        }
    };
    if let Some(storage) = &doc.storage {
        if let Some(luks) = storage.layout.as_ref().and_then(|l| l.luks.as_ref()) {
            tang_pins("storage.layout.luks".into(), &luks.tang, &mut out);
        }
        for (i, l) in storage.luks.iter().enumerate() {
            tang_pins(format!("storage.luks[{i}]"), &l.tang, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod raid_tests;
#[cfg(test)]
mod tests;

/// The product.md documents, for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::{DOC1, DOC2};
}
