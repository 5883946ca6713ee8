//! imprint: an image-based bare-metal provisioning agent.
//!
//! A byte travels document → [`config`] → [`plan`] → [`engine`], which runs each
//! [`plan::Step`]: [`wipe`], [`partition`], [`image`] (source → decode → verify → sink),
//! [`configdrive`], and reports every step through [`report`].

pub mod binding;
pub mod blockdev;
pub mod boot;
pub mod config;
pub mod configdrive;
pub mod disks;
pub mod engine;
pub mod finish;
pub mod http;
pub mod image;
pub mod iso;
pub mod partition;
pub mod plan;
pub mod planner;
pub mod report;
pub mod runner;
pub mod secret;
pub mod units;
pub mod wipe;
