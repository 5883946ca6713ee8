//! The provisioning document (version 1): typed model, strict parsing with JSON
//! paths in every error, JSON Schema, short-form expansion and validation.
