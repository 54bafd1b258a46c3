//! rcontainer: a uWSGI-style application container.
//!
//! A **master** process reads an INI file (uWSGI-compatible keys), binds the listening sockets,
//! pre-forks **workers** and supervises them. Each worker runs a hand-rolled event loop on
//! `mio` with one stackful coroutine per in-flight request, so handlers written in plain
//! blocking style (read, sleep, call an upstream) still run concurrently.
//!
//! The stock `rcontainer` binary is built from this library's public API alone.

mod api;
pub(crate) mod apps;
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod coro;
pub(crate) mod exit;
pub(crate) mod log;
pub(crate) mod master;
pub(crate) mod net;
pub(crate) mod proto;
pub(crate) mod scoreboard;
mod server;
pub(crate) mod sys;
pub(crate) mod worker;

use std::process::ExitCode;

pub use api::{Body, Handler, Request, RequestBuilder, Response, ResponseBody, reason_phrase};
pub use server::Server;

/// Runs rcontainer with the process's command line and returns the exit code for `main`.
///
/// This is the whole of the stock binary: `fn main() -> ExitCode { rcontainer::run() }`.
pub fn run() -> ExitCode {
    Server::new().run()
}
