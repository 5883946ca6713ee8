//! The error a document can have: a JSON path and a sentence.

use std::fmt;

/// An error in a document, at a JSON path such as `storage.layout.luks.tang[0].url`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DocError {
    /// Dotted JSON path; empty for the document as a whole.
    pub path: String,
    /// What is wrong, as a sentence.
    pub message: String,
}

impl DocError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        DocError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}
