//! The coroutine runtime: a hand-rolled `mio` event loop running stackful coroutines
//! (`corosensei`), one per in-flight request, so handlers written in blocking style run
//! concurrently on one worker thread (the gevent model). Its public face is [`crate::rt`].
//!
//! | file | owns |
//! |---|---|
//! | `runtime.rs` | `Runtime`, `RuntimeConfig`: creation after fork, start-up checks, drain |
//! | `sched.rs` | the scheduler: task slab, ready queue, park/wake, cancellation, `timeout` scopes, labels, the loop turn |
//! | `timer.rs` | the timer heap (park deadlines, per-request cancel deadlines) |
//! | `reactor.rs` | the I/O registrations: `IoToken`s and who waits on each fd |
//! | `task.rs` | `spawn`/`JoinHandle`, each coroutine's root (panics caught there), cancellation API |
//! | `time.rs` | `sleep`, `yield_now`, `timeout` |
//! | `io.rs` | `CoStream`, `CoListener`, `TcpStream::connect`, `UnixStream` |
//! | `sync.rs` | `channel`, `Semaphore`, `Mutex` |
//! | `offload.rs` | the offload thread pool and `offload(f)` |
//! | `stack.rs` | the stack pool (slots of one reservation, guard pages) |
//!
//! It must not know about requests, protocols or configuration: the worker passes numbers in
//! (`RuntimeConfig`) and labels (`set_label`). Raw memory and signal handling live in
//! `crate::sys::{stack, fault}`.
//!
//! # Rules for handler authors
//!
//! A worker runs every request of its `async` cores on **one thread**. While a handler runs,
//! nothing else on that worker does, until the handler *parks*: reads or writes a
//! [`rt::CoStream`](crate::rt::CoStream), `rt::sleep`s, `join`s, `recv`s, `lock`s an
//! `rt::Mutex`, `offload`s. So:
//!
//! - **Do not block the thread.** These stall every request of the worker:
//!   `std::net` sockets (use `rt::TcpStream::connect`, `rt::UnixStream`), `std::thread::sleep`
//!   (use `rt::sleep`), `std::fs` and other blocking syscalls, `ToSocketAddrs` (DNS; use
//!   `rt::TcpStream::connect`, which resolves through `offload`), blocking HTTP clients,
//!   `Command::output`, and any C library that blocks. Wrap such calls in `rt::offload(|| ...)`,
//!   which runs them on a thread pool while the coroutine parks.
//! - **Do not hold a `std::sync::Mutex` (or a `RefCell` borrow, or a `thread_local!` `with`
//!   scope) across a park.** Another coroutine of the same thread taking it deadlocks or panics
//!   the worker, and cancelling the holder poisons it. Use `rt::Mutex`, which parks.
//! - **Break up long CPU work** with `rt::yield_now()`, or `offload` it: a loop that never
//!   parks starves every other request (and cannot be cancelled by `timeout`).
//! - **Thread-locals are shared by every coroutine of the worker.** Keep per-request state in
//!   the request, not in a `thread_local!`.
//! - **Stacks are finite** (`stack-size`, default 256 KiB). Deep recursion or big arrays on
//!   the stack overflow it; the worker then logs the request and exits (it is respawned).
//!   Put large buffers on the heap (`Vec`).
//! - **Spawned tasks have a budget** of their own, apart from the request cores: at most
//!   `spawn-limit` per worker at once (by default 4 x `async`, at least 1024), shared by all
//!   its requests. Size it for the peak fan-out (requests in flight x tasks each). When it is
//!   spent, `rt::spawn` panics (the request gets a 500) and `rt::try_spawn` returns the
//!   error, naming the option, for the handler to answer otherwise.
//! - **Cancellation unwinds.** When a request is cancelled (deadline, shutdown) or a
//!   `timeout` expires, the handler's frames are unwound like a panic: destructors run. A
//!   `catch_unwind` in a handler must re-raise what it did not expect (`rt::catch_panic` does).

#![allow(unsafe_code)]

mod io;
mod offload;
mod reactor;
mod runtime;
mod sched;
mod stack;
mod sync;
mod task;
mod time;
mod timer;

// The handler API, re-exported as `crate::rt` (DESIGN §8).
pub use io::{Addr, CoStream, TcpStream, UnixStream};
pub use offload::offload;
pub use sched::CancelReason;
pub use sync::{Mutex, MutexGuard, Permit, Receiver, Semaphore, SendError, Sender, channel};
pub use task::{JoinError, JoinHandle, catch_panic, join_all, spawn, try_spawn};
pub use time::{Elapsed, sleep, sleep_until, timeout, yield_now};

// The runtime itself: the worker's, and the benches' (through `crate::__bench`).
pub use runtime::{Runtime, RuntimeConfig};
pub use sched::TaskId;

// Engine controls for the worker and the client: a handler holding these could disarm its own
// `harakiri` or cancel another request, so they stay inside the crate.
pub(crate) use io::CoListener;
#[cfg_attr(
    not(test),
    expect(
        unused_imports,
        reason = "the worker does not label its request coroutines yet"
    )
)]
pub(crate) use task::set_label;
pub(crate) use task::{cancel, cancel_at, current, is_cancelled, spawn_owned, take_cancel};

#[cfg(test)]
mod tests;
