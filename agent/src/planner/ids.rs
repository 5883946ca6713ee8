//! Identifiers the planner derives: stable per plan and host, different between hosts.

use sha2::{Digest as _, Sha256};

/// A UUID derived from the plan's seed, stable across reruns of the same plan on the
/// same host, different between hosts.
pub(super) fn derived_uuid(seed: &str, purpose: &str) -> uuid::Uuid {
    let h = Sha256::digest(format!("imprint\0{seed}\0{purpose}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}
