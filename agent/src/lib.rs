//! imprint: an image-based bare-metal provisioning agent.
//!
//! A byte travels document → [`config`] → [`plan`] → [`engine`], which runs each
//! [`plan::Step`]: the block stack in [`storage`] (wipe, partition, raid, luks, lvm, fs),
//! [`image`] (source → decode → verify → sink), [`configdrive`], [`rootfs`], [`finalize`],
//! and reports every step through [`report`]; `storage::teardown` clears stacks a
//! previous run left.

pub mod arch;
pub mod binding;
pub mod blockdev;
pub mod boot;
pub mod config;
pub mod configdrive;
pub mod disks;
pub mod efi;
pub mod engine;
pub mod finalize;
pub mod finish;
pub mod http;
pub mod image;
pub mod inventory;
pub mod iso;
pub mod kinds;
pub mod oci;
pub mod plan;
pub mod planner;
pub mod report;
pub mod rootfs;
pub mod runner;
pub mod schema;
pub mod secret;
pub mod storage;
pub mod timestamp;
pub mod trust;
pub mod units;
