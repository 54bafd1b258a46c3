//! Built-in apps of the stock binary, written against the public API only (`api` and `rt`).
//!
//! - `hello`: `Hello World`; `?bytes=N` answers N bytes instead (for large-response tests).
//! - `echo`: the request as JSON (method, uri, path, query, protocol, headers, vars,
//!   body_len, body when UTF-8 and at most 64 KiB, worker id, pid); `?env=NAME,...` adds those
//!   variables of the worker's environment (a debugging aid: never expose `echo`).
//! - `sleep`: `?ms=N` parks the coroutine N ms (other requests go on); `&block=1` blocks the
//!   whole worker thread instead, to exercise the watchdog; `&spawn=N` fans out to N tasks
//!   (`rt::try_spawn`) that each sleep `ms`, to exercise the spawn budget.
//! - `panic`: panics, to show that a handler panic costs one 500 and nothing else.
//! - `fetch`: GETs `fetch-url` through `rcontainer::client` (the request's query appended) and
//!   answers with the upstream's status and body; 502 when the upstream is down.
//! - static files: every `static-map = /prefix=dir` is served by [`static_files`], before
//!   any mount.

mod echo;
mod fetch;
mod hello;
mod panic;
mod sleep;
mod static_files;

use std::rc::Rc;

use crate::api::{AppRegistry, Handler};

/// Registers every built-in app and the static-file server in `registry`.
pub(crate) fn register(registry: &mut AppRegistry) {
    for (name, handler) in builtin() {
        registry.insert(name, Rc::from(handler));
    }
    registry.insert_configured("fetch", fetch::options(), Rc::new(fetch::configure));
    registry.set_static_files(static_files::options(), static_files::configure);
}

/// The ready-made built-in apps by name, in the order `--help` lists them.
fn builtin() -> Vec<(&'static str, Box<dyn Handler>)> {
    vec![
        ("hello", Box::new(hello::hello)),
        ("echo", Box::new(echo::echo)),
        ("sleep", Box::new(sleep::sleep)),
        ("panic", Box::new(panic::panic)),
    ]
}
