//! The error list every check appends to, and the words checks share.

use crate::config::error::DocError;
use crate::config::explicit::Origin;
use crate::config::model::Document;
use crate::config::types::Name;

/// Collects the errors of every check, in the order found.
#[derive(Default)]
pub(super) struct Checker {
    pub errors: Vec<DocError>,
}

impl Checker {
    /// Records an error at `path`.
    pub fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(DocError::new(path, message));
    }

    /// Whether `n` names a disk of the document; records an error at `path` if not.
    pub fn disk_ref(&mut self, doc: &Document, path: String, n: &Name) -> bool {
        if doc.disks.iter().any(|d| d.name == *n) {
            return true;
        }
        let names = known(doc.disks.iter().map(|d| d.name.to_string()));
        self.err(path, format!("unknown disk {:?}; {names}", n.as_str()));
        false
    }
}

/// The names an unknown one could have been, in words.
pub(super) fn known(names: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = names.collect();
    if v.is_empty() {
        "none are declared".into()
    } else {
        format!("known: {}", v.join(", "))
    }
}

/// Where an item came from, in words, for "already used by …".
pub(super) fn by(o: &Origin) -> String {
    if o.fields {
        o.path.clone()
    } else {
        format!("the layout ({})", o.path)
    }
}
