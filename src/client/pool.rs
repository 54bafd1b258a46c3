//! The per-worker keep-alive pool: idle upstream connections by scheme, host and port (and,
//! for `https`, the TLS configuration that verified them).
//!
//! One pool per thread (a worker is one thread, so one pool per worker process), so no locks.
//! The `RefCell` is only borrowed for a push or a pop, never across a park. A connection is put
//! back only after its response was read to the end; before reuse it is checked with a
//! non-blocking peek at the socket, which drops connections the upstream closed while they sat
//! idle (for TLS, the `close_notify` record or the FIN shows up the same way).

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv};

use super::conn::Conn;
use super::url::Scheme;
use crate::coro::CoStream;

/// The most idle connections kept per upstream: enough for every core of a
/// worker with `async = 1000` to get its connection back.
const MAX_IDLE_PER_HOST: usize = 1024;

/// Idle connections older than this are closed rather than reused: upstreams close idle
/// keep-alive connections after a while (nginx: 75 s) and a reused one that races that close
/// costs a retry.
const MAX_IDLE: Duration = Duration::from_secs(50);

struct Idle {
    conn: Conn,
    /// Made inside a coroutine (registered with the runtime) or not; the two kinds do not mix.
    in_coroutine: bool,
    since: Instant,
}

/// Where idle connections are filed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) scheme: Scheme,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The TLS configuration's id (`0` for plain connections): a connection verified against
    /// one set of CAs is not handed to a request that trusts another.
    pub(crate) tls: u64,
}

thread_local! {
    static POOL: RefCell<HashMap<Key, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// A live idle connection filed under `key`, most recently used first. Never inlined, like
/// [`put`]: the map's code stays out of the frames a request waits in.
#[inline(never)]
pub(crate) fn take(key: &Key, in_coroutine: bool) -> Option<Conn> {
    loop {
        let idle = POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = pool.get_mut(key)?;
            let idle = list.pop();
            if list.is_empty() {
                pool.remove(key);
            }
            idle
        })?;
        if idle.in_coroutine == in_coroutine
            && idle.since.elapsed() < MAX_IDLE
            && is_quiet(idle.conn.socket())
        {
            return Some(idle.conn);
        }
    }
}

/// Keeps `conn` for the next request filed under `key` (closed if the pool for it is full).
#[inline(never)]
pub(crate) fn put(key: &Key, conn: Conn, in_coroutine: bool) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.entry(key.clone()).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(Idle {
                conn,
                in_coroutine,
                since: Instant::now(),
            });
        }
    });
}

/// How many idle connections the pool holds for `scheme://host:port`, any TLS configuration
/// (for tests).
#[cfg(test)]
pub(crate) fn idle_count(scheme: Scheme, host: &str, port: u16) -> usize {
    POOL.with(|pool| {
        (pool.borrow().iter())
            .filter(|(key, _)| key.scheme == scheme && key.host == host && key.port == port)
            .map(|(_, list)| list.len())
            .sum()
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
