//! rcontainer: a uWSGI-style application container.
//!
//! A **master** process reads an INI file (uWSGI-compatible keys), binds the listening sockets,
//! pre-forks **workers** and supervises them. Each worker runs a hand-rolled event loop on
//! `mio` with one stackful coroutine per in-flight request, so handlers written in plain
//! blocking style (read, sleep, call an upstream) still run concurrently.
//!
//! The stock `rcontainer` binary is built from this library's public API alone.
//!
//! # Your own handlers
//!
//! A [`Handler`] is any `Fn(&mut Request) -> Response`. [`Server`] turns your handlers into a
//! binary with the stock command line and INI files; the INI's `module` and
//! `mount = /prefix=app` lines say which app serves which path, and [`Routes`] routes by
//! method and path inside an app.
//!
//! ```no_run
//! use rcontainer::{Request, Response, Routes, Server, client, rt};
//!
//! fn search(req: &mut Request) -> Response {
//!     let q = client::encode_component(&req.query_param("q").unwrap_or_default());
//!     // Three upstream calls at once: each parks its own coroutine, the worker goes on.
//!     let calls: Vec<_> = ["web", "news", "images"]
//!         .into_iter()
//!         .map(|kind| {
//!             let url = format!("http://127.0.0.1:9000/{kind}?q={q}");
//!             rt::spawn(move || client::get(&url).map(|r| r.text()))
//!         })
//!         .collect();
//!     let parts: Vec<String> = rt::join_all(calls)
//!         .into_iter()
//!         .map(|r| match r {
//!             Ok(Ok(text)) => text,
//!             Ok(Err(e)) => format!("upstream failed: {e}"),
//!             Err(e) => format!("call failed: {e}"),
//!         })
//!         .collect();
//!     Response::text(parts.join("\n"))
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     Server::new().app("search", Routes::new().get("/search", search)).run()
//! }
//! ```
//!
//! - [`Request`] and [`Response`]: the request (query, headers, cookies, form and JSON bodies,
//!   CGI vars) and the answer (text, JSON, redirects, streaming bodies).
//! - [`rt`]: the coroutine runtime for handlers: sleep, spawn/join, timeouts, channels,
//!   locks, sockets and `offload` for blocking code.
//! - [`client`]: an HTTP/1.1 and HTTPS client for handlers, with a per-worker keep-alive pool.
//! - Built-in apps of every [`Server`]: `hello`, `echo`, `sleep`, `panic`, `fetch`
//!   (`fetch-url`), and static files for `static-map = /prefix=dir`.
//!
//! # Rules for handler authors
//!
//! A worker runs every request of its `async` cores on **one thread**. While a handler runs,
//! nothing else on that worker does, until the handler *parks*: reads or writes an
//! [`rt::CoStream`], calls [`client`], [`rt::sleep`]s, `join`s, `recv`s, `lock`s an
//! [`rt::Mutex`], [`rt::offload`]s. So:
//!
//! - **Do not block the thread.** These stall every request of the worker: `std::net`
//!   sockets (use [`rt::TcpStream::connect`], [`rt::UnixStream`], [`client`]),
//!   `std::thread::sleep` (use [`rt::sleep`]), `std::fs` and other blocking syscalls,
//!   `ToSocketAddrs` (DNS), blocking HTTP clients, `Command::output`, and any C library that
//!   blocks. Wrap such calls in [`rt::offload`], which runs them on a thread pool while the
//!   coroutine parks.
//! - **Do not hold a `std::sync::Mutex` (or a `RefCell` borrow, or a `thread_local!` `with`
//!   scope) across a park.** Another coroutine of the same thread taking it deadlocks or
//!   panics the worker, and cancelling the holder poisons it. Use [`rt::Mutex`], which parks.
//! - **Break up long CPU work** with [`rt::yield_now`], or `offload` it: a loop that never
//!   parks starves every other request (and cannot be cancelled by [`rt::timeout`]).
//! - **Thread-locals are shared by every coroutine of the worker.** Keep per-request state in
//!   the request, not in a `thread_local!`.
//! - **Stacks are finite** (`stack-size`, default 256 KiB). Deep recursion or big arrays on
//!   the stack overflow it; the worker then logs the request and exits (it is respawned).
//!   Put large buffers on the heap (`Vec`).
//! - **Spawned tasks have a budget** of their own, apart from the request cores: at most
//!   `spawn-limit` per worker at once (by default 4 x `async`, at least 1024), shared by all
//!   its requests. Size it for the peak fan-out (requests in flight x tasks each). When it is
//!   spent, [`rt::spawn`] panics (the request gets a 500) and [`rt::try_spawn`] returns the
//!   error, naming the option, for the handler to answer otherwise.
//! - **Cancellation unwinds.** When a request is cancelled (`harakiri`, shutdown) or an
//!   [`rt::timeout`] expires, the handler's frames are unwound like a panic: destructors run.
//!   A `catch_unwind` in a handler must re-raise what it did not expect
//!   ([`rt::catch_panic`] does).
//! - **A panic costs one request**: the client gets a 500, the worker logs it, counts it in
//!   the stats `exceptions` and goes on.
//! - **`spawn` needs the worker's runtime** (it is there in every handler); the other `rt`
//!   calls also work outside a coroutine, as plain blocking calls, which is what tests of
//!   handlers use.

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
/// Read the [rules for handler authors](crate#rules-for-handler-authors) first: what blocks
/// the worker and what to use instead.
///
/// | need | call |
/// |---|---|
/// | wait | [`rt::sleep`], [`rt::sleep_until`], [`rt::yield_now`] |
/// | run things in parallel | [`rt::spawn`] → [`rt::JoinHandle::join`], [`rt::join_all`]; [`rt::try_spawn`] when the worker's `spawn-limit` may be reached |
/// | give up after a while | [`rt::timeout`]`(dur, \|\| ..)` |
/// | talk between coroutines | [`rt::channel`], [`rt::Mutex`], [`rt::Semaphore`] |
/// | sockets | [`rt::TcpStream::connect`] (DNS on the offload pool), [`rt::UnixStream`] |
/// | blocking code (files, C libraries) | [`rt::offload`]`(\|\| ..)` |
/// | HTTP upstreams | [`client`] |
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
