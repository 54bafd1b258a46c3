//! Integration tests: the real `rcontainer` binary on real sockets.
//!
//! One test binary (see `Cargo.toml`), one module per area. The harness starts the binary from
//! an inline INI in a temp dir and kills what it started; every wait has a deadline.

mod cli;
mod conformance;
mod cores;
mod corpus;
mod emperor;
mod harness;
mod http;
mod library;
mod logs;
mod master;
mod memory;
mod nginx;
mod operations;
mod packaging;
#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_apps;
mod python_config;
mod reload;
mod stats;
mod tls;
mod uwsgi;
mod vassal;
