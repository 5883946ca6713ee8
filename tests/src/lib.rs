//! Test harness shared by the integration and QEMU suites: loop devices, test
//! images built from scratch, the Debian images built by `images/`, the agent
//! binary, the loopback HTTP server that serves images, injects faults and records
//! reports, and the QEMU bench.

pub mod documents;
pub mod fixtures;
pub mod images;
pub mod nginx;
pub mod provision;
pub mod qemu;
pub mod registry;
pub mod report_schema;
pub mod seed;
pub mod server;
pub mod signing;
pub mod swtpm;
pub mod tang;
pub mod tls;
