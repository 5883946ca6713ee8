//! cloud-init configdrives (NoCloud `cidata`, OpenStack `config-2`) as vfat built in Rust.
