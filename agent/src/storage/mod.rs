//! The block stack, bottom to top: [`wipe`] and [`teardown`] clear what a previous
//! run left, [`partition`] lays out GPT tables, [`raid`] assembles md arrays, [`luks`]
//! encrypts, [`lvm`] carves volumes and [`fs`] makes, grows and mounts filesystems.

pub mod erase;
pub mod fs;
pub mod luks;
pub mod lvm;
pub mod partition;
pub mod raid;
pub mod teardown;
pub mod wipe;
