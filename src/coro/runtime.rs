//! The worker's handle on its coroutine runtime: [`RuntimeConfig`], [`Runtime`] (create after
//! fork, drive with `turn`, drain, drop), and the start-up checks (stack size, the kernel's
//! mapping limit).
//!
//! Owns nothing but the boxed scheduler state (`sched::Inner`) and this thread's alternate
//! signal stack; all scheduling is in `sched.rs`. Never used from inside a coroutine. Not part
//! of the handler API: the crate and its benches (`crate::__bench`) use it, handlers never see
//! it.

use std::io;
use std::time::{Duration, Instant};

use super::budget::{Budget, Limits};
use super::cancel::CancelReason;
use super::sched::{self, Inner, TaskId};
use super::stack::StackPool;
use super::task::{JoinError, JoinHandle};
use crate::sys::fault::{self, AltStack};
use crate::sys::stack as sys_stack;

/// Smallest `stack-size` accepted: a panic with a symbolised backtrace alone needs ~24 KiB.
pub(crate) const MIN_STACK_SIZE: usize = 64 * 1024;
/// Default `stack-size` (256 KiB): RSS only grows with the pages a handler touches.
pub(crate) const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Settings fixed when a worker creates its runtime (after fork).
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Usable bytes of each coroutine stack (`stack-size`), at least 64 KiB.
    pub stack_size: usize,
    /// Most coroutines the runtime's owner runs at once: those it starts with
    /// [`Runtime::spawn`], [`Runtime::spawn_detached`] and [`Runtime::block_on`] (a worker: one
    /// per acceptor and one per connection slot, `worker-connections`).
    pub max_coroutines: usize,
    /// Most tasks alive at once that coroutines start with [`rt::spawn`](crate::rt::spawn) and
    /// [`rt::try_spawn`](crate::rt::try_spawn) (a worker's `spawn-limit`). A budget of its own:
    /// tasks never take one of the `max_coroutines`, and the other way round.
    pub max_tasks: usize,
    /// Threads of the offload pool (`offload-threads`); started lazily, at least 1.
    pub offload_threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            stack_size: DEFAULT_STACK_SIZE,
            max_coroutines: 100,
            max_tasks: 1024,
            offload_threads: 4,
        }
    }
}

/// The coroutine runtime of one worker thread. Create it after `fork`; at most one per thread.
///
/// The worker drives it with [`Runtime::turn`] and does its own per-turn work (heartbeat,
/// signal flags) in between. In outline (`worker/mod.rs` is the real thing): create it with
/// `max_coroutines` = acceptors + connection slots and `max_tasks` = `spawn-limit`; spawn one
/// acceptor per listener on the owner's budget, each taking a core (a `Semaphore` permit)
/// before it accepts and handing the connection to a coroutine of its own; `turn` until told
/// to stop; `abort` the acceptors; [`drain`](Runtime::drain) with the shutdown deadline.
/// Each connection coroutine arms `harakiri` around its handler (`cancel_at`), catches the
/// handler's panic (`catch_panic`) and answers 504 when `take_cancel` says the deadline passed.
pub struct Runtime {
    inner: Box<Inner>,
    _altstack: Option<AltStack>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("live", &self.live())
            .field("pool", self.inner.pool())
            .finish()
    }
}

impl Runtime {
    /// Creates the runtime of the current thread: reserves the stacks (one per slot of
    /// `max_coroutines` and `max_tasks`; address space only until used), installs the
    /// stack-overflow handler, opens the poller. Fails if the thread already has a runtime, if
    /// the stack size is below 64 KiB, or if the stacks would not fit under
    /// `vm.max_map_count`.
    pub fn new(config: RuntimeConfig) -> io::Result<Runtime> {
        if sched::runtime().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "this thread already has a coroutine runtime",
            ));
        }
        if config.stack_size < MIN_STACK_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "stack-size {} KiB is below the minimum of {} KiB",
                    config.stack_size / 1024,
                    MIN_STACK_SIZE / 1024
                ),
            ));
        }
        let limits = Limits {
            owner: config.max_coroutines.max(1),
            tasks: config.max_tasks,
        };
        let capacity = limits.owner.saturating_add(limits.tasks);
        check_map_count(capacity)?;
        let pool = StackPool::new(capacity, config.stack_size).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "coroutine stacks: reserving {capacity} x {} KiB: {e} (lower async, \
                     worker-connections, spawn-limit or stack-size)",
                    config.stack_size / 1024
                ),
            )
        })?;
        let altstack = fault::ensure_altstack()?;
        let inner = Inner::install(pool, limits, config.offload_threads)?;
        Ok(Runtime {
            inner,
            _altstack: altstack,
        })
    }

    /// Starts `f` on a new coroutine of the owner's budget; it first runs at the next
    /// [`turn`](Self::turn). Fails with `WouldBlock` when `max_coroutines` of them are alive.
    pub fn spawn<F, T>(&self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.inner.spawn(Budget::Owner, f)
    }

    /// Starts `f` on a new coroutine of the owner's budget without a join handle (cheaper: no
    /// allocation), for coroutines that report their own outcome (wrap what may panic in
    /// [`catch_panic`](crate::rt::catch_panic)). Fails with `WouldBlock` at the limit.
    pub fn spawn_detached<F>(&self, f: F) -> io::Result<TaskId>
    where
        F: FnOnce() + 'static,
    {
        self.inner.spawn_detached(Budget::Owner, f)
    }

    /// Runs `f` on a coroutine and turns the loop until it finishes (other coroutines run
    /// meanwhile). For tests, tools and simple programs; a worker uses `turn`.
    pub fn block_on<F, T>(&mut self, f: F) -> Result<T, JoinError>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.spawn(f).map_err(JoinError::Io)?.join()
    }

    /// One loop iteration: polls for I/O (waiting, if no coroutine is ready, at most until the
    /// next timer or `max_wait`; `None`: no limit beyond timers), wakes the coroutines whose
    /// events or deadlines arrived, then runs the ready ones (up to a budget of 256 resumes).
    /// Never called from a coroutine.
    pub fn turn(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        self.inner.turn(max_wait)
    }

    /// Coroutines alive (running, ready or parked).
    pub fn live(&self) -> usize {
        self.inner.live()
    }

    /// How many more coroutines of the owner's budget (`max_coroutines`) can start now.
    pub fn free_slots(&self) -> usize {
        self.inner.free_slots(Budget::Owner)
    }

    /// How many more tasks (`max_tasks`) coroutines can spawn now.
    pub fn free_task_slots(&self) -> usize {
        self.inner.free_slots(Budget::Tasks)
    }

    /// Usable bytes of each coroutine stack.
    pub fn stack_size(&self) -> usize {
        self.inner.pool().stack_size()
    }

    /// One line for the worker's boot log: stack count, size, guard and how guards are made.
    pub fn stack_summary(&self) -> String {
        let pool = self.inner.pool();
        let guards = match pool.guard_mode() {
            sys_stack::GuardMode::Madvise => "madvise guards, one mapping for all stacks",
            sys_stack::GuardMode::Mprotect => "mprotect guards, 2 mappings per stack",
        };
        format!(
            "{} coroutine stacks of {} KiB + {} KiB guard ({guards})",
            pool.capacity(),
            pool.stack_size() / 1024,
            super::stack::GUARD_BYTES / 1024
        )
    }

    /// Cancels a coroutine: its current or next park fails with `reason`'s error.
    pub fn cancel(&self, id: TaskId, reason: CancelReason) {
        self.inner.cancel(id, reason);
    }

    /// Drops a coroutine now, unwinding its stack (destructors run, sockets close). Its joiner
    /// gets [`JoinError::Aborted`].
    pub fn abort(&self, id: TaskId) {
        self.inner.abort(id);
    }

    /// Graceful drain: turns the loop until no coroutine is alive or `deadline` passes (calling
    /// `on_turn` after each turn, e.g. for the heartbeat), then drops the ones left. Stop
    /// accepting first (abort the acceptors). Returns how many were dropped.
    pub fn drain(&mut self, deadline: Instant, mut on_turn: impl FnMut()) -> io::Result<usize> {
        while self.live() > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.turn(Some((deadline - now).min(Duration::from_secs(1))))?;
            on_turn();
        }
        Ok(self.inner.abort_all())
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.inner.uninstall();
    }
}

/// With `mprotect` guards each stack costs 2 kernel mappings: refuse up front rather than fail
/// (or crash malloc) at the 32,766th coroutine.
fn check_map_count(capacity: usize) -> io::Result<()> {
    let per_slot = sys_stack::guard_mode().vmas_per_slot();
    if per_slot == 0 {
        return Ok(());
    }
    let (Ok(limit), Ok(now)) = (sys_stack::max_map_count(), sys_stack::map_count()) else {
        return Ok(()); // no /proc: nothing to check against
    };
    match map_budget_error(capacity, per_slot, limit, now) {
        Some(message) => Err(io::Error::other(message)),
        None => Ok(()),
    }
}

/// Why `capacity` stacks of `per_slot` mappings each do not fit under `limit` when the process
/// already has `now` mappings (keeping 1024 spare for malloc and libraries), if they do not.
fn map_budget_error(capacity: usize, per_slot: usize, limit: usize, now: usize) -> Option<String> {
    let needed = now + capacity * per_slot + 1024;
    (needed > limit).then(|| {
        format!(
            "{capacity} coroutine stacks (connections, acceptors and spawned tasks) need {} \
             memory mappings (each stack and its guard page), but vm.max_map_count is {limit} \
             and the process already uses {now}: lower `worker-connections`, `spawn-limit` or \
             `async`, or raise the limit (sysctl -w vm.max_map_count={needed})",
            capacity * per_slot
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_budget_refuses_what_would_not_fit() {
        assert_eq!(
            map_budget_error(20_000, 0, 65_530, 100),
            None,
            "madvise guards need none"
        );
        assert_eq!(map_budget_error(20_000, 2, 65_530, 100), None);
        let err = map_budget_error(40_000, 2, 65_530, 100).expect("too many");
        assert!(err.contains("40000 coroutine stacks"), "{err}");
        assert!(err.contains("vm.max_map_count is 65530"), "{err}");
        assert!(err.contains("sysctl -w vm.max_map_count=81124"), "{err}");
    }
}
