//! `imprint validate`: a document checked without disks, for people (a line) or for
//! tools (`--json`: `ok`, and every error with its JSON path, line, column and message).

use super::document;
use super::exit::{self, Exit};
use imprint::config::DocError;
use serde::Serialize;

/// The `--json` result.
#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    errors: Vec<Problem>,
}

/// One error: where (JSON path; line and column when the parser knew them) and what.
#[derive(Debug, Serialize)]
struct Problem {
    path: String,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

impl Problem {
    fn from_doc(e: &DocError) -> Problem {
        let (message, at) = split_location(&e.message);
        Problem {
            path: e.path.clone(),
            line: at.map(|a| a.0),
            column: at.map(|a| a.1),
            message,
        }
    }
}

/// Parse errors end in ` (line L, column C)`; that suffix becomes numbers.
fn split_location(msg: &str) -> (String, Option<(usize, usize)>) {
    let parsed = msg
        .strip_suffix(')')
        .and_then(|m| m.rsplit_once(" (line "))
        .and_then(|(head, loc)| {
            let (l, c) = loc.split_once(", column ")?;
            Some((head.to_string(), (l.parse().ok()?, c.parse().ok()?)))
        });
    match parsed {
        Some((head, at)) => (head, Some(at)),
        None => (msg.to_string(), None),
    }
}

/// An `expires` time that has passed (or that this clock cannot judge), as an error at
/// its JSON path: `run` and `apply` would refuse the document.
fn expired(doc: &imprint::config::Document) -> Option<DocError> {
    let expires = doc.expires.as_ref()?;
    imprint::trust::document::check_expiry(
        "the document",
        Some(expires.unix_seconds()),
        imprint::timestamp::now(),
    )
    .err()
    .map(|e| DocError::new("expires", e.to_string()))
}

/// Checks `src`; exit 3 when it is invalid, 8 when it cannot be read.
pub fn validate(src: &str, json: bool) -> Result<(), Exit> {
    if !json {
        let (text, source) = document::read(src, None)?;
        let doc = document::parse(&text, &source)?;
        if let Some(e) = expired(&doc) {
            return Err(Exit::new(exit::INVALID_DOCUMENT, format!("{source}: {e}")));
        }
        println!("{source}: valid (version 1, host {})", doc.host.hostname);
        return Ok(());
    }
    let (report, code) = match document::read(src, None) {
        Err(e) => {
            let problem = Problem {
                path: String::new(),
                line: None,
                column: None,
                message: e.message,
            };
            (
                Report {
                    ok: false,
                    source: src.to_string(),
                    hostname: None,
                    errors: vec![problem],
                },
                e.code,
            )
        }
        Ok((text, source)) => match document::check(&text).and_then(|doc| match expired(&doc) {
            Some(e) => Err(vec![e]),
            None => Ok(doc),
        }) {
            Ok(doc) => (
                Report {
                    ok: true,
                    source,
                    hostname: Some(doc.host.hostname.to_string()),
                    errors: Vec::new(),
                },
                exit::OK,
            ),
            Err(errors) => {
                let errors = errors.iter().map(Problem::from_doc).collect();
                (
                    Report {
                        ok: false,
                        source,
                        hostname: None,
                        errors,
                    },
                    exit::INVALID_DOCUMENT,
                )
            }
        },
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?
    );
    // The errors are on stdout already; the exit code says the rest.
    if code == exit::OK {
        Ok(())
    } else {
        Err(Exit::new(code, ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_location_becomes_numbers() {
        let (m, at) = split_location("unknown field; expected a, b (line 12, column 5)");
        assert_eq!(
            (m.as_str(), at),
            ("unknown field; expected a, b", Some((12, 5)))
        );
        let (m, at) = split_location("must be unique (see disks[0])");
        assert_eq!((m.as_str(), at), ("must be unique (see disks[0])", None));
    }
}
