//! Why a coroutine stops early: [`CancelReason`] (a request deadline, a shutdown), the errors
//! a park returns instead of its event ([`ParkError`]), and the unwind payloads that end a
//! cancelled coroutine or an expired `timeout` scope. Owns no state: each task's cancellation
//! and scopes live in the scheduler's task table (`sched.rs`).

use std::io;
use std::panic;
use std::time::Instant;

/// Why a coroutine is cancelled. Its current (or next) fallible park returns the matching
/// [`io::Error`]; a later park, or an infallible one (`sleep`, `yield_now`), unwinds it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CancelReason {
    /// A per-request deadline (`harakiri`) passed: parks fail with `ErrorKind::TimedOut`.
    Deadline,
    /// The worker is shutting down: parks fail with `ErrorKind::ConnectionAborted`.
    /// (Not `Interrupted`: std's `read_exact`/`write_all` retry that kind forever.)
    Shutdown,
}

impl CancelReason {
    /// The error a fallible park returns for this reason.
    pub(crate) fn to_io_error(self) -> io::Error {
        match self {
            CancelReason::Deadline => io::Error::new(
                io::ErrorKind::TimedOut,
                "request deadline (harakiri) passed",
            ),
            CancelReason::Shutdown => {
                io::Error::new(io::ErrorKind::ConnectionAborted, "worker is shutting down")
            }
        }
    }
}

/// Why a park returned without its event.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ParkError {
    TimedOut,
    Cancelled(CancelReason),
    /// An I/O wait on a token that names no registration (the socket was registered with an
    /// earlier runtime of the thread, or its registration is gone): parking would never end.
    NotRegistered,
}

impl ParkError {
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            ParkError::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "operation timed out"),
            ParkError::Cancelled(reason) => reason.to_io_error(),
            ParkError::NotRegistered => io::Error::other(
                "the socket is not registered with this thread's coroutine runtime",
            ),
        }
    }
}

/// Unwind payload of a cancelled coroutine whose park cannot return an error.
pub(crate) struct CancelUnwind(pub(crate) CancelReason);
/// Unwind payload that ends the `timeout` scope with this id.
pub(crate) struct TimeoutUnwind(pub(crate) u64);

/// Unwinds to the outermost expired `timeout` scope (inner scopes re-raise what is not theirs).
pub(crate) fn unwind_expired_scope(scopes: &[(u64, Instant)]) -> ! {
    let now = Instant::now();
    let scope = scopes.iter().find(|s| s.1 <= now).map_or(0, |s| s.0);
    panic::resume_unwind(Box::new(TimeoutUnwind(scope)))
}
