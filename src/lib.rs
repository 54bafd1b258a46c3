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
//! - [`json`]: the JSON types of [`Request::read_json`] and [`Response::json_value`], so a
//!   handler needs no `serde_json` of its own.
//!
//! # Requests and responses
//!
//! What a handler reads and answers, tested the way handler tests do it: without a server,
//! through [`Request::builder`].
//!
//! ```
//! use std::io::Read;
//! use rcontainer::json::{Value, json};
//! use rcontainer::{Handler, Request, Response, ResponseBody, Routes};
//!
//! // GET /items?id=7: a query parameter, a request header, JSON or text, a response header.
//! fn show(req: &mut Request) -> Response {
//!     let Some(id) = req.query_param("id") else {
//!         return Response::error(400).body("missing ?id=\n"); // "400 Bad Request" page
//!     };
//!     if id != "7" {
//!         return Response::not_found();
//!     }
//!     let wants_text = req.header("accept").is_some_and(|a| a.starts_with("text/plain"));
//!     let answer = if wants_text {
//!         Response::text("item 7: a widget\n")
//!     } else {
//!         Response::json_value(&json!({ "id": 7, "name": "widget" }))
//!     };
//!     answer.header("Cache-Control", "max-age=60")
//! }
//!
//! // POST /items with a JSON body: 201 with a Location, or a 4xx that says what was wrong.
//! fn create(req: &mut Request) -> Response {
//!     let doc: Value = match req.read_json(64 * 1024) {
//!         Ok(doc) => doc,
//!         Err(e) => return Response::error(400).body(format!("bad JSON: {e}\n")),
//!     };
//!     let Some(name) = doc["name"].as_str() else {
//!         return Response::error(422).body("\"name\" must be a string\n");
//!     };
//!     Response::json(json!({ "id": 8, "name": name }).to_string()) // JSON text as given
//!         .with_status(201)
//!         .header("Location", "/items/8")
//! }
//!
//! // GET /export: a body streamed as it is read (the worker sends it chunk by chunk, so
//! // 10 MiB never sit in memory). The reader may park: an `rt::TcpStream`, `rt::offload`ed
//! // file reads, anything `Read + 'static`.
//! fn export(_req: &mut Request) -> Response {
//!     let rows = std::io::repeat(b'x').take(10 << 20);
//!     Response::ok().content_type("text/csv").stream(rows, Some(10 << 20))
//! }
//!
//! let app = Routes::new()
//!     .get("/items", show)
//!     .post("/items", create)
//!     .get("/export", export);
//!
//! let mut req = Request::builder("GET", "/items?id=7").header("Accept", "text/plain").build();
//! let res = app.handle(&mut req);
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.header_value("cache-control"), Some("max-age=60"));
//!
//! let mut req = Request::builder("POST", "/items")
//!     .header("Content-Type", "application/json")
//!     .body(br#"{"name":"gadget"}"#.as_slice())
//!     .build();
//! let res = app.handle(&mut req);
//! assert_eq!((res.status(), res.header_value("location")), (201, Some("/items/8")));
//!
//! let mut req = Request::builder("GET", "/items").build();
//! assert_eq!(app.handle(&mut req).status(), 400);
//!
//! let mut req = Request::builder("GET", "/export").build();
//! let (_, _, body) = app.handle(&mut req).into_parts();
//! assert!(matches!(body, ResponseBody::Stream { len: Some(10_485_760), .. }));
//! ```
//!
//! The worker frames the answer (`Content-Length`, chunked or close-delimited): do not set
//! `Content-Length`, `Transfer-Encoding` or `Connection` yourself. With the `serde` feature,
//! `Request::read_json_as::<T>` and `Response::json_of(&value)` take and give any `serde`
//! type.
//!
//! # Sizing `async` for handlers that fan out
//!
//! A worker serves `async` requests at once (its *cores*). A request holds its core from its
//! complete head to the end of its answer, **including** the time it waits for upstream calls
//! and for the tasks it spawned: a handler that fans out to three 100 ms calls holds one core
//! for about 100 ms, and three *task slots* meanwhile. So, per worker:
//!
//! - **`async`** ≥ requests in flight at peak = request rate × time per request (Little's
//!   law): 500 requests/s that each wait 100 ms on upstreams keep 50 cores busy. A request
//!   whose head is complete while every core is busy waits for one.
//! - **`spawn-limit`** ≥ peak in-flight requests × tasks each (50 × 3 = 150 here). The default,
//!   4 × `async` (at least 1024), covers a fan-out of 4 from every core at once. When it is
//!   spent [`rt::spawn`] panics (a 500) and [`rt::try_spawn`] returns the error: use
//!   `try_spawn` to answer 503 or do the work inline, and an [`rt::Semaphore`] to bound the
//!   fan-out of one request.
//! - **`worker-connections`** (by default also 4 × `async`, at least 1024): connections the
//!   worker holds, idle keep-alive ones included; beyond it new clients wait in the kernel's
//!   backlog. Keep it well above `async`, or cores stay idle while clients wait to connect.
//! - Every core, connection and task slot reserves a `stack-size` stack (256 KiB by default):
//!   address space only, RSS grows with the pages a handler touches (a few KiB for a typical
//!   request).
//! - A fan-out takes as long as its slowest call: bound it with [`rt::timeout`] (or the
//!   client's per-request time limit) so one slow upstream cannot hold the core for long.
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
pub(crate) mod emperor;
pub(crate) mod exit;
pub(crate) mod log;
pub(crate) mod master;
pub(crate) mod net;
pub(crate) mod proto;
#[cfg(feature = "python")]
pub(crate) mod python;
pub(crate) mod scoreboard;
mod server;
pub(crate) mod sys;
pub(crate) mod worker;

/// The coroutine API for handlers: blocking-style sockets, sleeps, tasks, time limits,
/// channels and locks that park the calling coroutine instead of the worker thread, and
/// `offload` for code that would block it.
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
/// | sockets | [`rt::TcpStream::connect`] (DNS on the offload pool), [`rt::UnixStream::connect`]; both are a [`rt::CoStream`] |
/// | blocking code (files, C libraries) | [`rt::offload`]`(\|\| ..)` |
/// | catch a panic without swallowing a cancellation | [`rt::catch_panic`] |
/// | HTTP upstreams | [`client`] |
///
/// The engine that runs handlers (the worker's runtime, request deadlines, task ids) is not
/// reachable from here: a handler can cancel or abort the tasks it spawned
/// ([`rt::JoinHandle::cancel`], [`rt::JoinHandle::abort`]), never its own request's
/// `harakiri` or another request.
pub mod rt {
    pub use crate::coro::{
        Addr, CancelReason, CoStream, Elapsed, JoinError, JoinHandle, Mutex, MutexGuard, Permit,
        Receiver, Semaphore, SendError, Sender, TcpStream, UnixStream, catch_panic, channel,
        join_all, offload, sleep, sleep_until, spawn, timeout, try_spawn, yield_now,
    };
}

/// JSON for handlers, re-exported from `serde_json` so a handler needs no dependency of its
/// own: the [`Value`](json::Value) that [`Request::read_json`] returns and
/// [`Response::json_value`] sends, and the [`json!`](json::json) macro to build one.
///
/// ```
/// use rcontainer::Response;
/// use rcontainer::json::json;
///
/// let res = Response::json_value(&json!({ "ok": true, "items": [1, 2, 3] }));
/// assert_eq!(res.header_value("content-type"), Some("application/json"));
/// ```
pub mod json {
    #[doc(no_inline)]
    pub use serde_json::{Map, Number, Value, json};
}

/// The runtime's engine, for `benches/` only: not part of the API, not documented, may change
/// at any time.
#[doc(hidden)]
pub mod __bench {
    pub use crate::coro::{Runtime, RuntimeConfig, TaskId};
}

/// The README's Rust examples, compiled (and the runnable ones run) by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

use std::process::ExitCode;

pub use api::{
    AppConfig, AppOption, Body, Handler, HeaderField, Headers, IntoBytes, OptionKind, Request,
    RequestBuilder, Response, ResponseBody, Routes, reason_phrase,
};
pub use server::Server;

/// Runs rcontainer with the process's command line and returns the exit code for `main`.
///
/// This is the whole of the stock binary: `fn main() -> ExitCode { rcontainer::run() }`.
pub fn run() -> ExitCode {
    Server::new().run()
}
