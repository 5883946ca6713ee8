//! imprint: an image-based bare-metal provisioning agent.
//!
//! A byte travels document → [`config`] → [`plan`] → [`engine`], which runs each
//! [`plan::Step`]: [`wipe`], [`partition`], [`image`] (source → decode → verify → sink),
//! [`configdrive`], [`raid`], [`luks`], [`lvm`], [`fs`], [`rootfs`], [`finalize`], and
//! reports every step through [`report`]; [`teardown`] clears stacks a previous run left.

pub mod binding;
pub mod blockdev;
pub mod boot;
pub mod config;
pub mod configdrive;
pub mod disks;
pub mod engine;
pub mod finalize;
pub mod finish;
pub mod fs;
pub mod http;
pub mod image;
pub mod iso;
pub mod luks;
pub mod lvm;
pub mod partition;
pub mod plan;
pub mod planner;
pub mod raid;
pub mod report;
pub mod rootfs;
pub mod runner;
pub mod secret;
pub mod teardown;
pub mod units;
pub mod wipe;
