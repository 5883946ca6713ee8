//! What a chunked write reports: where the bytes came from, and what each store did.

use super::index::Index;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A chunked write, for the outcome and the read-back.
#[derive(Debug)]
pub struct Done {
    pub report: ChunkReport,
    pub index: Arc<Index>,
}

/// Where a chunked image's bytes came from (`write-image` output `chunks`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChunkReport {
    /// Chunks in the index, and how many distinct ids.
    pub chunks: u64,
    pub unique: u64,
    /// How chunk ids are computed (`sha512-256` or `sha256`).
    pub digest: String,
    /// Bytes already on the disk at their place: read and hashed, neither fetched nor written.
    pub in_place_bytes: u64,
    /// Bytes copied from another place on the disk.
    pub disk_bytes: u64,
    /// Bytes of zero chunks written as zeros (never fetched).
    pub zero_bytes: u64,
    /// Bytes (decoded) from local stores (`file:`, `medium:`).
    pub local_bytes: u64,
    /// Bytes (decoded) from network stores, and what crossed the network for them.
    pub network_bytes: u64,
    pub network_compressed_bytes: u64,
    /// Bytes of the target read before fetching, and the seconds it took.
    pub scanned_bytes: u64,
    pub scan_seconds: f64,
    /// When only a sample of this many places was read: at most two held a chunk of the
    /// image (a blank or foreign disk), so the rest was not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_sampled: Option<u64>,
    /// Every chunk re-read from the disk after writing matched its id (`verify: readback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readback_chunks: Option<u64>,
    /// Each store, in the document's order.
    pub stores: Vec<StoreReport>,
}

/// What one chunk store did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoreReport {
    pub url: String,
    /// A local folder rather than the network.
    pub local: bool,
    /// Chunks it gave, and their compressed bytes.
    pub chunks: u64,
    pub bytes: u64,
    /// Requests that failed (connection, server error, I/O).
    pub failures: u64,
    /// Chunks whose bytes did not match their id (each then asked of another store).
    pub corrupt_chunks: u64,
    /// Why it was dropped during the write, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<String>,
}
