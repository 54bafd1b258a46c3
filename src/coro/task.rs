//! Handler-facing task API: `spawn` and [`JoinHandle`], the root of every coroutine (where
//! panics are caught and reported), `catch_panic`, and cancellation of the current task.
//!
//! Owns the join slot shared by a coroutine and its handle. Must not touch scheduler internals
//! beyond the `Inner` methods (`sched.rs` owns the task table).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Instant;

use super::budget::Budget;
use super::cancel::{CancelReason, CancelUnwind, TimeoutUnwind};
use super::sched::{self, TaskId, Waiter, Y};

/// Why [`JoinHandle::join`] (or [`catch_panic`]) did not return a value.
pub enum JoinError {
    /// The coroutine panicked; the payload is what `panic!` was given (see [`JoinError::message`]).
    Panic(Box<dyn Any + Send + 'static>),
    /// The coroutine was cancelled and unwound (see [`CancelReason`]).
    Cancelled(CancelReason),
    /// The coroutine was dropped (aborted, or the runtime shut down) before it finished.
    Aborted,
    /// The join itself failed: the joining coroutine was cancelled or timed out, or the
    /// coroutine could not be started.
    Io(io::Error),
}

impl JoinError {
    /// Whether the coroutine panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panic(_))
    }

    /// The panic message, when the payload is a string (as with `panic!("...")`).
    pub fn message(&self) -> Option<&str> {
        match self {
            JoinError::Panic(p) => p
                .downcast_ref::<&'static str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            _ => None,
        }
    }

    fn from_payload(payload: Box<dyn Any + Send>) -> JoinError {
        match payload.downcast::<CancelUnwind>() {
            Ok(c) => JoinError::Cancelled(c.0),
            Err(payload) => JoinError::Panic(payload),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panic(_) => write!(
                f,
                "Panic({:?})",
                self.message().unwrap_or("<non-string payload>")
            ),
            JoinError::Cancelled(r) => write!(f, "Cancelled({r:?})"),
            JoinError::Aborted => write!(f, "Aborted"),
            JoinError::Io(e) => write!(f, "Io({e:?})"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panic(_) => {
                write!(
                    f,
                    "coroutine panicked: {}",
                    self.message().unwrap_or("<non-string payload>")
                )
            }
            JoinError::Cancelled(r) => write!(f, "coroutine cancelled: {r:?}"),
            JoinError::Aborted => write!(f, "coroutine was dropped before it finished"),
            JoinError::Io(e) => write!(f, "join failed: {e}"),
        }
    }
}

impl std::error::Error for JoinError {}

pub(crate) struct JoinSlot<T> {
    result: RefCell<Option<Result<T, JoinError>>>,
    waiter: Cell<Option<Waiter>>,
}

/// The coroutine's end of the join slot. Dropped at the end of the root, during an unwind, or
/// with the never-started closure: in every case the joiner is told and woken.
pub(crate) struct Completion<T>(Rc<JoinSlot<T>>);

impl<T> Drop for Completion<T> {
    #[inline]
    fn drop(&mut self) {
        let mut result = self.0.result.borrow_mut();
        if result.is_none() {
            *result = Some(Err(JoinError::Aborted));
        }
        drop(result);
        if let (Some(w), Some(rt)) = (self.0.waiter.take(), sched::runtime()) {
            rt.wake(w);
        }
    }
}

#[inline]
pub(crate) fn join_slot<T>() -> (Rc<JoinSlot<T>>, Completion<T>) {
    let slot = Rc::new(JoinSlot {
        result: RefCell::new(None),
        waiter: Cell::new(None),
    });
    (slot.clone(), Completion(slot))
}

/// The body of every coroutine: runs `f`, catches its panic or cancellation and reports the
/// outcome to the join slot. The forced unwind of a dropped coroutine is passed through.
#[inline]
pub(crate) fn run_root<F, T>(y: &Y, f: F, completion: Option<Completion<T>>)
where
    F: FnOnce() -> T,
{
    let rt = sched::runtime().expect("invariant: coroutines run inside their runtime");
    rt.set_yielder(y);
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    let result = match outcome {
        Ok(value) => Ok(value),
        Err(payload) if rt.is_aborting() => panic::resume_unwind(payload),
        Err(payload) => Err(JoinError::from_payload(payload)),
    };
    if let Some(completion) = completion {
        *completion.0.result.borrow_mut() = Some(result);
    }
}

/// Owns a spawned coroutine's outcome. Dropping it detaches the coroutine (it runs on).
pub struct JoinHandle<T> {
    id: TaskId,
    slot: Rc<JoinSlot<T>>,
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(id: TaskId, slot: Rc<JoinSlot<T>>) -> Self {
        JoinHandle { id, slot }
    }

    /// The coroutine's id (for `Runtime::cancel` or `Runtime::abort`).
    #[cfg(test)]
    pub(crate) fn id(&self) -> TaskId {
        self.id
    }

    /// Whether the coroutine has finished (returned, panicked or been dropped).
    pub fn is_finished(&self) -> bool {
        self.slot.result.borrow().is_some()
    }

    /// Waits for the coroutine and returns its value, or [`JoinError::Panic`] with its panic.
    /// From a coroutine this parks; from the worker's root context it turns the loop.
    pub fn join(self) -> Result<T, JoinError> {
        loop {
            if let Some(result) = self.slot.result.borrow_mut().take() {
                return result;
            }
            if let Some(rt) = sched::in_coroutine() {
                let slot = &self.slot;
                rt.park(None, true, |_, w| slot.waiter.set(Some(w)))
                    .map_err(|e| JoinError::Io(e.into_io()))?;
            } else if let Some(rt) = sched::runtime() {
                rt.turn_until(|| self.is_finished())
                    .map_err(JoinError::Io)?;
            } else {
                return Err(JoinError::Aborted); // its runtime is gone, and the coroutine with it
            }
        }
    }

    /// Cancels the coroutine: its current or next fallible park fails with `reason`'s error
    /// (`TimedOut` for [`CancelReason::Deadline`]), a later park unwinds it; `join` then
    /// returns [`JoinError::Cancelled`] (unless it caught the error and returned).
    pub fn cancel(&self, reason: CancelReason) {
        cancel(self.id, reason);
    }

    /// Drops the coroutine now, unwinding its stack; `join` then returns [`JoinError::Aborted`].
    pub fn abort(&self) {
        if let Some(rt) = sched::runtime() {
            rt.abort(self.id);
        }
    }
}

/// Starts `f` on a new task (a coroutine of this thread's runtime) and returns its handle.
///
/// Tasks have their own budget, apart from the worker's request cores and connections: in a
/// worker, `spawn-limit` tasks may be alive at once (by default 4 x `async`, at least 1024),
/// shared by every request of the worker. Size it for the fan-out at peak: requests in flight
/// x tasks each (70 requests spawning 3 tasks hold 210). Each task gets a `stack-size` stack
/// from the same reservation as the cores (address space only, until used). Tasks that outlive
/// their request (detached, not joined) keep their slot until they end.
///
/// # Panics
/// If the thread has no runtime or the task budget is exhausted (the message says so and names
/// `spawn-limit`). In a handler that panic is a 500; use [`try_spawn`] to answer otherwise
/// (503, or doing the work inline).
///
/// ```no_run
/// # use rcontainer::rt;
/// let child = rt::spawn(|| 6 * 7);
/// assert_eq!(child.join().expect("child"), 42);
/// ```
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    match try_spawn(f) {
        Ok(handle) => handle,
        Err(e) => panic!("rt::spawn: {e}"),
    }
}

/// Starts `f` without a join handle on a coroutine of the runtime owner's budget
/// (`RuntimeConfig::max_coroutines`), which handlers' tasks cannot use up: for the worker's
/// connections, which an acceptor starts only once it holds a connection slot.
pub(crate) fn spawn_owned<F>(f: F) -> io::Result<TaskId>
where
    F: FnOnce() + 'static,
{
    let Some(rt) = sched::runtime() else {
        return Err(no_runtime());
    };
    rt.spawn_detached(Budget::Owner, f)
}

fn no_runtime() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "no coroutine runtime on this thread",
    )
}

/// Waits for every coroutine in `handles` and returns their outcomes in the same order.
///
/// The coroutines already run concurrently once spawned, so joining them one after the other
/// takes as long as the slowest, not the sum: gevent's `joinall`.
///
/// ```no_run
/// # use rcontainer::rt;
/// # use std::time::Duration;
/// let calls: Vec<_> = (1..=3u64)
///     .map(|n| rt::spawn(move || { rt::sleep(Duration::from_millis(300)); n * 10 }))
///     .collect();
/// let results = rt::join_all(calls); // about 300 ms, not 900
/// assert_eq!(results.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [10, 20, 30]);
/// ```
pub fn join_all<T>(handles: impl IntoIterator<Item = JoinHandle<T>>) -> Vec<Result<T, JoinError>> {
    handles.into_iter().map(JoinHandle::join).collect()
}

/// Like [`spawn`], but returns an error instead of panicking: `WouldBlock` when the task
/// budget (`spawn-limit` in a worker) is exhausted, with a message naming it, or `NotFound`
/// when the thread has no runtime.
///
/// ```no_run
/// use rcontainer::{Request, Response, rt};
///
/// fn handler(_req: &mut Request) -> Response {
///     match rt::try_spawn(|| 6 * 7) {
///         Ok(task) => Response::text(format!("{}\n", task.join().unwrap_or(0))),
///         // Every task slot of the worker is taken: shed the load (or do the work inline).
///         Err(e) => Response::error(503).body(format!("{e}\n")),
///     }
/// }
/// ```
pub fn try_spawn<F, T>(f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    let Some(rt) = sched::runtime() else {
        return Err(no_runtime());
    };
    rt.spawn(Budget::Tasks, f)
}

/// Runs `f`, catching a panic (or a cancellation unwind) as a [`JoinError`]: what a handler
/// uses instead of `std::panic::catch_unwind`. Unwinds that must reach someone else pass
/// through: an expired enclosing [`timeout`](super::time::timeout) and the unwind of a dropped
/// coroutine. Catching a cancellation ([`JoinError::Cancelled`]) does not undo it: the
/// coroutine stays cancelled and its next park fails or unwinds again, and a request whose
/// `harakiri` passed is answered 504 whatever the handler returns.
///
/// ```no_run
/// use rcontainer::{Response, rt};
///
/// # fn risky_plugin() -> String { String::new() }
/// let page = match rt::catch_panic(risky_plugin) {
///     Ok(text) => Response::text(text),
///     Err(e) if e.is_panic() => Response::error(500).body(format!("plugin failed: {e}\n")),
///     Err(e) => Response::error(503).body(format!("{e}\n")), // cancelled: 504 anyway
/// };
/// # let _ = page;
/// ```
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, JoinError> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Ok(value),
        Err(payload) => {
            let aborting = sched::runtime().is_some_and(|rt| rt.is_aborting());
            if aborting || payload.is::<TimeoutUnwind>() {
                panic::resume_unwind(payload);
            }
            Err(JoinError::from_payload(payload))
        }
    }
}

/// Runs `f` on the current coroutine and returns, with its value, how many bytes of stack
/// below the caller's frame `f` (and everything it called) ever wrote: its stack cost, exact
/// to the byte on a fresh stack (whose pages start out zero). `None` outside a coroutine.
#[cfg(test)]
#[inline(never)]
pub(crate) fn stack_written_by<T>(f: impl FnOnce() -> T) -> Option<(T, usize)> {
    let here = 0u8;
    let addr = std::hint::black_box(&here) as *const u8 as usize;
    let value = f();
    let written = sched::in_coroutine()?.pool().written_below(addr)?;
    Some((value, written))
}

/// How many pages of the running coroutine's stack are resident, `None` outside coroutines.
/// A page a stack touched once stays resident while the stack is pooled (idle stacks beyond
/// the warm set are trimmed), so on a fresh stack this is the deepest the coroutine reached:
/// the memory a parked request costs in stack. For tests (`mincore` per call).
#[cfg(test)]
pub(crate) fn stack_pages() -> Option<usize> {
    let here = 0u8;
    let addr = std::hint::black_box(&here) as *const u8 as usize;
    sched::in_coroutine()?.pool().resident_pages_at(addr)?.ok()
}

/// The id of the running coroutine, or `None` outside coroutines.
pub(crate) fn current() -> Option<TaskId> {
    sched::runtime().and_then(|rt| rt.current())
}

/// Cancels coroutine `id` of this thread's runtime: its current or next fallible park fails with
/// `reason`'s error (`TimedOut` for a deadline), a later park unwinds it.
pub(crate) fn cancel(id: TaskId, reason: CancelReason) {
    if let Some(rt) = sched::runtime() {
        rt.cancel(id, reason);
    }
}

/// Arms a deadline at which the current coroutine is cancelled with `reason` (the per-request
/// `harakiri`); `None` disarms it. No effect outside coroutines.
pub(crate) fn cancel_at(deadline: Option<Instant>, reason: CancelReason) {
    if let Some(rt) = sched::in_coroutine() {
        rt.set_cancel_deadline(deadline.map(|at| (at, reason)));
    }
}

/// Clears the current coroutine's cancellation and returns why it was cancelled, so the
/// connection code can still answer (504) after the handler gave up.
pub(crate) fn take_cancel() -> Option<CancelReason> {
    sched::in_coroutine().and_then(|rt| rt.take_cancel())
}

/// Whether the current coroutine has been cancelled.
pub(crate) fn is_cancelled() -> bool {
    sched::in_coroutine().is_some_and(|rt| rt.is_cancelled())
}

/// Names what the current coroutine is doing, `parts` joined by spaces (`["GET", "/search"]`);
/// the stack-overflow report quotes it. Reuses the coroutine's label buffer.
pub(crate) fn set_label(parts: &[&str]) {
    if let Some(rt) = sched::in_coroutine() {
        rt.set_label(parts);
    }
}
