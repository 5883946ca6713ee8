//! Checks that span fields: references resolve, names are unique, each device has one
//! use, thresholds fit the pins, the image has somewhere to go. Runs before anything is touched.
//!
//! The document-wide fields first, then the short form; once those hold, the explicit
//! storage layer by layer (partitions, the block stack, filesystems, the image), so
//! errors come in document order.

mod checker;
mod document;
mod filesystems;
mod image;
mod layout;
mod names;
mod partitions;
mod stack;

use crate::config::error::DocError;
use crate::config::expand::expand_storage;
use crate::config::model::Document;
use checker::Checker;
use names::Namespace;

/// Validates a parsed document; the first error found.
pub fn validate(doc: &Document) -> Result<(), DocError> {
    match validate_all(doc).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Validates a parsed document; every error found, in document order.
pub fn validate_all(doc: &Document) -> Vec<DocError> {
    let mut c = Checker::default();
    document::disks(&mut c, doc);
    document::erase(&mut c, doc);
    document::host_and_configdrive(&mut c, doc);
    document::boot_and_report(&mut c, doc);
    if let Some(l) = doc.storage.as_ref().and_then(|s| s.layout.as_ref()) {
        layout::check(&mut c, doc, l);
    }
    if !c.errors.is_empty() {
        return c.errors;
    }
    let st = match expand_storage(doc) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut ns = Namespace::declare(&mut c, &st);
    partitions::check(&mut c, doc, &st);
    stack::raid(&mut c, &st, &mut ns);
    stack::luks(&mut c, &st, &mut ns);
    stack::lvm(&mut c, &st, &mut ns);
    filesystems::check(&mut c, &st, &mut ns);
    image::check(&mut c, doc, &st);
    c.errors
}
