//! Built-in apps of the stock binary, written against the public API only (`api` and `rt`).
//!
//! - `hello`: `Hello World`; `?bytes=N` answers N bytes instead (for large-response tests).
//! - `echo`: the request as JSON (method, uri, path, query, protocol, headers, vars,
//!   body_len, body when UTF-8 and at most 64 KiB, worker id, pid).
//! - `sleep`: `?ms=N` parks the coroutine N ms (other requests go on); `&block=1` blocks the
//!   whole worker thread instead, to exercise the watchdog.
//! - `panic`: panics, to show that a handler panic costs one 500 and nothing else.

mod echo;
mod hello;
mod panic;
mod sleep;

use crate::api::Handler;

/// The built-in apps by name, in the order `--help` lists them.
pub(crate) fn builtin() -> Vec<(&'static str, Box<dyn Handler>)> {
    vec![
        ("hello", Box::new(hello::hello)),
        ("echo", Box::new(echo::echo)),
        ("sleep", Box::new(sleep::sleep)),
        ("panic", Box::new(panic::panic)),
    ]
}
