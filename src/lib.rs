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
pub mod client;
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

/// The coroutine runtime for handlers and the worker: blocking-style I/O, sleeps, spawning,
/// timeouts, channels and locks that park the calling coroutine instead of the worker thread.
///
/// Read the rules for handler authors first: what blocks the worker and what to use instead.
///
/// # Rules for handler authors
///
/// - Never block the thread: no `std::net`, `std::thread::sleep`, `std::fs`, DNS
///   (`ToSocketAddrs`) or blocking C calls in a handler. Use [`rt::TcpStream`], [`rt::sleep`],
///   and wrap the rest in [`rt::offload`].
/// - Never hold a `std::sync::Mutex`, a `RefCell` borrow or a `thread_local!` scope across a
///   park (any `rt` call that waits); use [`rt::Mutex`].
/// - Break up long CPU loops with [`rt::yield_now`] or `offload` them.
/// - Thread-locals are shared by every coroutine of a worker; keep request state in the request.
/// - Stacks are `stack-size` KiB (default 256): keep big buffers on the heap.
/// - Cancellation and [`rt::timeout`] unwind the handler like a panic (destructors run); use
///   [`rt::catch_panic`], not a bare `catch_unwind`.
pub mod rt {
    pub use crate::coro::*;
}

use std::process::ExitCode;

pub use api::{
    Body, Handler, Request, RequestBuilder, Response, ResponseBody, Routes, reason_phrase,
};
pub use server::Server;

/// Runs rcontainer with the process's command line and returns the exit code for `main`.
///
/// This is the whole of the stock binary: `fn main() -> ExitCode { rcontainer::run() }`.
pub fn run() -> ExitCode {
    Server::new().run()
}
