//! cloud-init readers.
