//! The per-worker keep-alive pool: idle upstream connections by `(host, port)`.
//!
//! One pool per thread (a worker is one thread, so one pool per worker process), so no locks.
//! The `RefCell` is only borrowed for a push or a pop, never across a park. A connection is put
//! back only after its response was read to the end; before reuse it is checked with a
//! non-blocking peek, which drops connections the upstream closed while they sat idle.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv};

use crate::coro::CoStream;

/// The most idle connections kept per upstream `(host, port)`: enough for every core of a
/// worker with `async = 1000` to get its connection back.
const MAX_IDLE_PER_HOST: usize = 1024;

/// Idle connections older than this are closed rather than reused: upstreams close idle
/// keep-alive connections after a while (nginx: 75 s) and a reused one that races that close
/// costs a retry.
const MAX_IDLE: Duration = Duration::from_secs(50);

struct Idle {
    stream: CoStream,
    /// Made inside a coroutine (registered with the runtime) or not; the two kinds do not mix.
    in_coroutine: bool,
    since: Instant,
}

type Key = (String, u16);

thread_local! {
    static POOL: RefCell<HashMap<Key, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// A live idle connection to `host:port`, most recently used first.
pub(crate) fn take(host: &str, port: u16, in_coroutine: bool) -> Option<CoStream> {
    loop {
        let idle = POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = pool.get_mut(&(host.to_string(), port))?;
            let idle = list.pop();
            if list.is_empty() {
                pool.remove(&(host.to_string(), port));
            }
            idle
        })?;
        if idle.in_coroutine == in_coroutine
            && idle.since.elapsed() < MAX_IDLE
            && is_quiet(&idle.stream)
        {
            return Some(idle.stream);
        }
    }
}

/// Keeps `stream` for the next request to `host:port` (closed if the pool for it is full).
pub(crate) fn put(host: &str, port: u16, stream: CoStream, in_coroutine: bool) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.entry((host.to_string(), port)).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(Idle {
                stream,
                in_coroutine,
                since: Instant::now(),
            });
        }
    });
}

/// How many idle connections the pool holds for `host:port` (for tests).
#[cfg(test)]
pub(crate) fn idle_count(host: &str, port: u16) -> usize {
    POOL.with(|pool| {
        pool.borrow()
            .get(&(host.to_string(), port))
            .map_or(0, Vec::len)
    })
}

/// Whether an idle connection has nothing to say: no EOF, no stray bytes, no error. Anything
/// else means the upstream closed it or broke framing, and it must not carry a request.
fn is_quiet(stream: &CoStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        recv(
            stream.as_raw_fd(),
            &mut byte,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Err(Errno::EAGAIN)
    )
}
