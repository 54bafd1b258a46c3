//! Time for coroutines: `sleep`, `yield_now` and `timeout`.
//!
//! Owns nothing: deadlines live in the scheduler's timer heap, `timeout` scopes in the task.
//! Outside a coroutine these fall back to plain blocking behaviour (`std::thread::sleep`).

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::cancel::TimeoutUnwind;
use super::sched;

/// `now + dur`, saturating far in the future instead of panicking on overflow
/// (`Duration::MAX` means "forever").
pub(crate) fn deadline_after(dur: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(dur)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Parks the current coroutine for `dur` (other coroutines run meanwhile). Outside a coroutine
/// it is `std::thread::sleep`. A cancelled coroutine unwinds here instead of sleeping.
pub fn sleep(dur: Duration) {
    sleep_until(deadline_after(dur));
}

/// Parks the current coroutine until `deadline`. See [`sleep`].
pub fn sleep_until(deadline: Instant) {
    let Some(rt) = sched::in_coroutine() else {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        return;
    };
    while Instant::now() < deadline {
        // Nothing registers this waiter: only the deadline (or a cancellation, which unwinds
        // an infallible park) wakes it.
        let _ = rt.park(Some(deadline), false, |_, _| {});
    }
}

/// Lets every other ready coroutine run once, then continues. Call it inside long CPU loops.
/// Outside a coroutine it is `std::thread::yield_now`.
#[inline]
pub fn yield_now() {
    match sched::in_coroutine() {
        Some(rt) => rt.yield_now(),
        None => std::thread::yield_now(),
    }
}

/// `timeout` gave up: the time limit passed before the closure finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("time limit elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> Self {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "time limit elapsed")
    }
}

/// Runs `f` with a time limit. If `f` is still running when `dur` has passed, the park it is in
/// (or its next park or `yield_now`) unwinds its frames back to here (destructors run, sockets
/// close) and `timeout` returns `Err(Elapsed)`, the way gevent's `Timeout` does.
///
/// `f` may borrow from the caller (it runs on the same coroutine). A CPU loop that never parks
/// cannot be interrupted. Outside a coroutine `f` runs without a limit.
///
/// ```no_run
/// # use rcontainer::rt;
/// # use std::time::Duration;
/// let r = rt::timeout(Duration::from_millis(10), || rt::sleep(Duration::from_secs(5)));
/// assert!(r.is_err());
/// ```
pub fn timeout<T>(dur: Duration, f: impl FnOnce() -> T) -> Result<T, Elapsed> {
    let Some(rt) = sched::in_coroutine() else {
        return Ok(f());
    };
    let Some(scope) = rt.push_scope(deadline_after(dur)) else {
        return Ok(f());
    };
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    rt.pop_scope(scope);
    match outcome {
        Ok(value) => Ok(value),
        Err(payload) => match payload.downcast::<TimeoutUnwind>() {
            Ok(t) if t.0 == scope => Err(Elapsed),
            Ok(other) => panic::resume_unwind(other),
            Err(payload) => panic::resume_unwind(payload),
        },
    }
}
