//! Test harness shared by the integration and QEMU suites.

pub mod qemu;
