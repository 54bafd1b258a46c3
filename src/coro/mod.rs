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
//! | `budget.rs` | the owner's and the tasks' coroutine budgets (`Budget`, `Limits`) |
//! | `cancel.rs` | `CancelReason`, park errors, the unwind payloads of cancellation and `timeout` |
//! | `task.rs` | `spawn`/`JoinHandle`, each coroutine's root (panics caught there), cancellation API |
//! | `time.rs` | `sleep`, `yield_now`, `timeout` |
//! | `io.rs` | `CoStream`, the connections handlers open (`TcpStream`, `UnixStream`), `CoListener` |
//! | `sync.rs` | `channel`, `Semaphore`, `Mutex` |
//! | `offload.rs` | the offload thread pool and `offload(f)` |
//! | `stack.rs` | the stack pool (slots of one reservation, guard pages) |
//!
//! It must not know about requests, protocols or configuration: the worker passes numbers in
//! (`RuntimeConfig`) and labels (`set_label`). Raw memory and signal handling live in
//! `crate::sys::{stack, fault}`.
//!
//! The handler-facing part is re-exported as `crate::rt` (and listed exactly there); the rules
//! it asks handlers to keep (never block the thread, no `std::sync::Mutex` across a park,
//! finite stacks, cancellation unwinds) are in the crate docs, `src/lib.rs`. The rest
//! (`Runtime`, cancellation controls, labels, `CoListener`) is for the worker and stays
//! crate-private.

#![allow(unsafe_code)]

mod budget;
mod cancel;
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
pub use cancel::CancelReason;
pub use io::{Addr, CoStream, TcpStream, UnixStream};
pub use offload::offload;
#[cfg(any(test, feature = "python"))]
pub(crate) use offload::{Completion, wait_remote};
pub use sync::{Mutex, MutexGuard, Permit, Receiver, Semaphore, SendError, Sender, channel};
pub use task::{JoinError, JoinHandle, catch_panic, join_all, spawn, try_spawn};
pub use time::{Elapsed, sleep, sleep_until, timeout, yield_now};

// The runtime itself: the worker's, and the benches' (through `crate::__bench`).
pub use runtime::{Runtime, RuntimeConfig};
pub use sched::TaskId;

// Engine controls for the worker and the client: a handler holding these could disarm its own
// `harakiri` or cancel another request, so they stay inside the crate.
pub(crate) use io::CoListener;
pub(crate) use task::{
    cancel, cancel_at, current, is_cancelled, set_label, spawn_owned, take_cancel,
};
#[cfg(test)]
pub(crate) use task::{stack_pages, stack_written_by};

#[cfg(test)]
mod tests;
