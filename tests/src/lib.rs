//! Test harness shared by the integration and QEMU suites: loop devices, test
//! images built from scratch, the agent binary, and (in `server`) the loopback HTTP
//! server that serves images and records reports.

pub mod fixtures;
pub mod images;
