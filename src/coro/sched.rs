//! The scheduler of one worker thread (`Inner`, wrapped by `runtime::Runtime`): it owns the
//! `mio::Poll`, the task slab, the ready queue, the timer heap (`timer.rs`), the I/O
//! registrations (`reactor.rs`), the stack pool and the offload pool, and each task's
//! cancellation, `timeout` scopes and label.
//!
//! How a coroutine waits ("park"): it records who may wake it (a [`Waiter`]: task id + park
//! epoch) in whatever it waits on (an I/O slot, a timer, a channel...), marks itself parked and
//! switches back to the scheduler. Whoever wakes it pushes it on the ready queue with a
//! [`Wake`] reason, which becomes the return value of its switch. Stale waiters (the task woke
//! for another reason, finished, or its slot was reused) are rejected by the epoch and
//! generation checks, so nothing needs unregistering eagerly.
//!
//! Rules this module keeps: the `RefCell`s of the runtime are borrowed only between switches,
//! never across one; a coroutine is never dropped while a borrow is held (its destructors run
//! runtime code); panics of coroutine bodies are caught at their root (`task.rs`) and never
//! unwind through `turn`. This module must not do I/O other than `poll`, and never blocks
//! except in `poll`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::panic;
use std::ptr;
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult, Yielder};
use mio::event::Source;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::budget::{Budget, Limits};
use super::cancel::{CancelReason, CancelUnwind, ParkError, unwind_expired_scope};
use super::offload::Offload;
use super::reactor::{Dir, IoSlots, IoToken};
use super::stack::{PooledStack, StackPool};
use super::task::{self, JoinHandle};
use super::timer::Timers;
use crate::sys::fault;

/// A coroutine of this runtime: resumed with why it woke, yields nothing (what it waits for is
/// recorded before it switches), returns nothing (results go through its join slot).
pub(crate) type Co = Coroutine<Wake, (), (), PooledStack>;
pub(crate) type Y = Yielder<Wake, ()>;

/// The token of the offload pool's `mio::Waker`.
const WAKER_TOKEN: Token = Token(usize::MAX);
/// Coroutines resumed per turn before the loop polls for I/O again (bounds I/O latency when
/// many coroutines keep yielding; the poll is then non-blocking).
const BUDGET: usize = 256;
/// How often idle stacks beyond the warm set give their memory back, and how many at most
/// each time (~5 µs each: at most ~1.3 ms of loop time per second).
const TRIM_EVERY: Duration = Duration::from_secs(1);
const TRIM_MAX: usize = 256;

/// Identifies one coroutine of a runtime; never reused for another coroutine (a generation
/// counter tells slots apart).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TaskId {
    index: u32,
    generation: u32,
}

/// Who to wake: a task, and which of its parks (so a late wake-up for an earlier park is ignored).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Waiter {
    id: TaskId,
    epoch: u32,
}

/// Why a parked coroutine was resumed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Wake {
    /// What it waited for may have happened: it re-checks (spurious wake-ups are allowed).
    Event,
    /// Its park deadline passed.
    Deadline,
    /// It was cancelled (see [`CancelReason`]).
    Cancel,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TaskState {
    Queued,
    Running,
    Parked,
}

struct Task {
    /// `None` only while it runs (the scheduler holds it then).
    co: Option<Co>,
    /// Its `Yielder` (on its own stack); null until its first run.
    yielder: *const Y,
    generation: u32,
    epoch: u32,
    state: TaskState,
    /// A timer entry exists for the current park (so an early wake leaves a stale entry).
    has_timer: bool,
    cancel: Option<CancelReason>,
    /// The cancellation error was already returned once; the next park unwinds.
    cancel_delivered: bool,
    /// Sequence number of the armed cancel-deadline timer (0: none).
    cancel_timer: u64,
    /// Enclosing `timeout` scopes, outermost first: (scope id, deadline).
    scopes: Vec<(u64, Instant)>,
    /// What it is doing, for the stack-overflow report; empty if unnamed. Reused from one
    /// label to the next (a connection's coroutine labels each of its requests).
    label: String,
    budget: Budget,
}

impl Task {
    /// The check a running task makes before it switches out (`park`, `yield_now`): if it is
    /// cancelled, a `fallible` park fails once with the reason and anything else unwinds; if
    /// an enclosing `timeout` scope has expired, it unwinds to that scope. Returns the earliest
    /// deadline of its scopes, which bounds the park.
    #[inline]
    fn check_cancel(&mut self, fallible: bool) -> Result<Option<Instant>, ParkError> {
        if let Some(reason) = self.cancel {
            if fallible && !self.cancel_delivered {
                self.cancel_delivered = true;
                return Err(ParkError::Cancelled(reason));
            }
            panic::resume_unwind(Box::new(CancelUnwind(reason)));
        }
        let scope_deadline = self.scopes.iter().map(|s| s.1).min();
        if let Some(at) = scope_deadline
            && at <= Instant::now()
        {
            unwind_expired_scope(&self.scopes);
        }
        Ok(scope_deadline)
    }
}

/// What a due timer does.
enum TimerKind {
    /// Wake a parked task with `Wake::Deadline`.
    Park(Waiter),
    /// Cancel a task (a per-request deadline), if this is still its armed cancel timer.
    Cancel(TaskId, CancelReason),
}

/// The mutable state of the scheduler (tasks, ready queue, timers, I/O registrations),
/// borrowed only between switches. (Not to be confused with a worker's `async` cores, which
/// are coroutines of the runtime's owner.)
pub(crate) struct SchedState {
    tasks: Slab<Task>,
    /// Tasks alive per [`Budget`] (indexed by `Budget::index`).
    live: [usize; 2],
    ready: VecDeque<(TaskId, Wake)>,
    timers: Timers<TimerKind>,
    io: IoSlots,
    next_generation: u32,
}

impl SchedState {
    fn new(capacity: usize) -> SchedState {
        SchedState {
            tasks: Slab::with_capacity(capacity),
            live: [0; 2],
            ready: VecDeque::with_capacity(capacity),
            timers: Timers::new(),
            io: IoSlots::new(),
            next_generation: 0,
        }
    }

    #[inline]
    fn task(&mut self, id: TaskId) -> Option<&mut Task> {
        self.tasks
            .get_mut(id.index as usize)
            .filter(|t| t.generation == id.generation)
    }

    /// Takes task `index` out of the slab, counting it off its budget.
    fn remove_task(&mut self, index: usize) -> Option<Task> {
        let task = self.tasks.try_remove(index)?;
        self.live[task.budget.index()] -= 1;
        Some(task)
    }

    fn generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1);
        self.next_generation
    }

    /// Makes a parked task runnable if `w` is its current park. Returns whether it was woken.
    #[inline]
    pub(crate) fn wake(&mut self, w: Waiter, how: Wake) -> bool {
        let Some(task) = self.tasks.get_mut(w.id.index as usize) else {
            return false;
        };
        if task.generation != w.id.generation
            || task.state != TaskState::Parked
            || task.epoch != w.epoch
        {
            return false;
        }
        if task.has_timer && how != Wake::Deadline {
            self.timers.note_stale();
        }
        task.has_timer = false;
        task.state = TaskState::Queued;
        self.ready.push_back((w.id, how));
        true
    }

    fn cancel(&mut self, id: TaskId, reason: CancelReason) {
        let Some(task) = self.task(id) else { return };
        task.cancel = Some(reason);
        task.cancel_delivered = false;
        if task.state == TaskState::Parked {
            let w = Waiter {
                id,
                epoch: task.epoch,
            };
            self.wake(w, Wake::Cancel);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer.kind {
                TimerKind::Park(w) => {
                    self.wake(w, Wake::Deadline);
                }
                TimerKind::Cancel(id, reason) => {
                    if self.task(id).is_some_and(|t| t.cancel_timer == timer.seq) {
                        self.cancel(id, reason);
                    }
                }
            }
        }
        // Lazy deletion: entries of parks that woke early stay until they expire; drop them
        // when they are the majority so the heap stays O(live timers).
        if self.timers.wants_compaction() {
            let tasks = &self.tasks;
            self.timers.compact(|t| match &t.kind {
                TimerKind::Park(w) => tasks.get(w.id.index as usize).is_some_and(|task| {
                    task.generation == w.id.generation
                        && task.state == TaskState::Parked
                        && task.epoch == w.epoch
                }),
                TimerKind::Cancel(id, _) => tasks.get(id.index as usize).is_some_and(|task| {
                    task.generation == id.generation && task.cancel_timer == t.seq
                }),
            });
        }
    }

    fn dispatch_io(&mut self, token: IoToken, readable: bool, writable: bool, closed: bool) {
        for w in self
            .io
            .take_ready(token, readable, writable, closed)
            .into_iter()
            .flatten()
        {
            self.wake(w, Wake::Event);
        }
    }
}

thread_local! {
    /// The runtime of this thread (set by `Runtime::new`, cleared by its drop).
    static RUNTIME: Cell<*const Inner> = const { Cell::new(ptr::null()) };
}

/// The runtime of the current thread, if one exists.
#[inline]
pub(crate) fn runtime() -> Option<&'static Inner> {
    let p = RUNTIME.with(Cell::get);
    // SAFETY: the pointer is set by `Runtime::new` to its boxed `Inner` and cleared by
    // `Runtime::drop` after every coroutine is gone; `Inner` is !Send so it is only reached from
    // its own thread. Callers use the reference within the current call only (they never
    // store it), and the `Runtime` cannot be dropped during such a call on this thread.
    unsafe { p.as_ref() }
}

/// The runtime, if the caller is a coroutine of it.
#[inline]
pub(crate) fn in_coroutine() -> Option<&'static Inner> {
    runtime().filter(|rt| rt.current.get().is_some())
}

/// Everything a runtime owns. Reached by coroutines through the thread-local pointer.
pub(crate) struct Inner {
    state: RefCell<SchedState>,
    poll: RefCell<Poll>,
    events: RefCell<Events>,
    registry: mio::Registry,
    pool: StackPool,
    limits: Limits,
    pub(crate) offload: Offload,
    /// The running (or being-dropped) task.
    current: Cell<Option<TaskId>>,
    /// The `Yielder` of the running task.
    yielder: Cell<*const Y>,
    /// The task whose stack is being unwound because it was dropped.
    aborting: Cell<Option<TaskId>>,
    in_turn: Cell<bool>,
    last_trim: Cell<Instant>,
    next_scope: Cell<u64>,
}

impl Inner {
    /// Creates the runtime state around `pool` (whose capacity covers every budget of
    /// `limits`) and makes it this thread's runtime.
    pub(super) fn install(
        pool: StackPool,
        limits: Limits,
        offload_threads: usize,
    ) -> io::Result<Box<Inner>> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(&registry, WAKER_TOKEN)?;
        let inner = Box::new(Inner {
            state: RefCell::new(SchedState::new(pool.capacity())),
            poll: RefCell::new(poll),
            events: RefCell::new(Events::with_capacity(1024)),
            registry,
            pool,
            limits,
            offload: Offload::new(offload_threads.max(1), waker),
            current: Cell::new(None),
            yielder: Cell::new(ptr::null()),
            aborting: Cell::new(None),
            in_turn: Cell::new(false),
            last_trim: Cell::new(Instant::now()),
            next_scope: Cell::new(0),
        });
        RUNTIME.with(|r| r.set(&*inner));
        Ok(inner)
    }

    /// Drops every coroutine, stops the offload threads and stops being this thread's runtime.
    pub(super) fn uninstall(&self) {
        // Destructors running during the unwinds may spawn; a few rounds catch those.
        for _ in 0..4 {
            if self.abort_all() == 0 {
                break;
            }
        }
        self.offload.close();
        RUNTIME.with(|r| r.set(ptr::null()));
    }

    pub(super) fn live(&self) -> usize {
        self.state.borrow().tasks.len()
    }

    /// How many more coroutines of `budget` may start now.
    pub(super) fn free_slots(&self, budget: Budget) -> usize {
        let live = self.state.borrow().live[budget.index()];
        self.limits.of(budget).saturating_sub(live)
    }

    pub(super) fn pool(&self) -> &StackPool {
        &self.pool
    }

    pub(crate) fn spawn<F, T>(&self, budget: Budget, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        let (slot, completion) = task::join_slot();
        let id = self.spawn_root(budget, move |y| task::run_root(y, f, Some(completion)))?;
        Ok(JoinHandle::new(id, slot))
    }

    /// Spawns without a join slot (no allocation): for the worker's connection coroutines,
    /// which report their own outcome. A panic is still caught at the root (and printed by the
    /// panic hook).
    pub(crate) fn spawn_detached<F>(&self, budget: Budget, f: F) -> io::Result<TaskId>
    where
        F: FnOnce() + 'static,
    {
        self.spawn_root(budget, move |y| task::run_root::<F, ()>(y, f, None))
    }

    fn spawn_root(&self, budget: Budget, root: impl FnOnce(&Y) + 'static) -> io::Result<TaskId> {
        if self.free_slots(budget) == 0 {
            return Err(self.limits.exhausted(budget));
        }
        // The pool holds a stack for every slot of every budget; it can only run dry while a
        // dropped coroutine's stack is on its way back (a destructor spawning mid-unwind).
        let Some(stack) = self.pool.take()? else {
            return Err(self.limits.exhausted(budget));
        };
        let co: Co = Coroutine::with_stack(stack, move |y: &Y, _first: Wake| root(y));
        let mut state = self.state.borrow_mut();
        state.live[budget.index()] += 1;
        let generation = state.generation();
        let index = state.tasks.insert(Task {
            co: Some(co),
            yielder: ptr::null(),
            generation,
            epoch: 0,
            state: TaskState::Queued,
            has_timer: false,
            cancel: None,
            cancel_delivered: false,
            cancel_timer: 0,
            scopes: Vec::new(),
            label: String::new(),
            budget,
        });
        let id = TaskId {
            index: index as u32,
            generation,
        };
        state.ready.push_back((id, Wake::Event));
        Ok(id)
    }

    /// Called by a coroutine's root before anything else.
    pub(crate) fn set_yielder(&self, y: &Y) {
        self.yielder.set(y);
    }

    pub(crate) fn current(&self) -> Option<TaskId> {
        self.current.get()
    }

    /// Whether the current task is being unwound because it was dropped (corosensei's forced
    /// unwind: its private payload must never be swallowed by a `catch_unwind`).
    pub(crate) fn is_aborting(&self) -> bool {
        self.current.get().is_some() && self.aborting.get() == self.current.get()
    }

    /// Resumes the next ready coroutine until it parks or finishes. Returns false when the
    /// ready queue is empty.
    #[inline]
    fn run_next(&self) -> bool {
        let (id, wake, mut co, yielder) = {
            let mut state = self.state.borrow_mut();
            let Some((id, wake)) = state.ready.pop_front() else {
                return false;
            };
            let Some(task) = state.task(id).filter(|t| t.state == TaskState::Queued) else {
                return true; // dropped since it was queued
            };
            task.state = TaskState::Running;
            let co = task
                .co
                .take()
                .expect("invariant: a queued task owns its coroutine");
            if !task.label.is_empty() {
                fault::set_label(task.label.as_bytes());
            }
            (id, wake, co, task.yielder)
        };
        self.current.set(Some(id));
        self.yielder.set(yielder);
        let result = co.resume(wake);
        self.current.set(None);
        fault::clear_label(); // also covers a label set while it ran

        match result {
            CoroutineResult::Yield(()) => {
                let mut state = self.state.borrow_mut();
                if let Some(task) = state.task(id) {
                    task.co = Some(co);
                    task.yielder = self.yielder.get();
                    return true;
                }
                drop(state);
                self.drop_coroutine(id, co, self.yielder.get());
            }
            CoroutineResult::Return(()) => {
                let removed = self.state.borrow_mut().remove_task(id.index as usize);
                drop(removed);
                drop(co.into_stack()); // back to the pool
            }
        }
        true
    }

    /// Drops a coroutine outside any borrow, as the current task, so code running during its
    /// unwind (destructors) sees the right task and cannot park for real.
    fn drop_coroutine(&self, id: TaskId, co: Co, yielder: *const Y) {
        let saved = (self.current.get(), self.yielder.get(), self.aborting.get());
        self.current.set(Some(id));
        self.yielder.set(yielder);
        self.aborting.set(Some(id));
        drop(co);
        self.current.set(saved.0);
        self.yielder.set(saved.1);
        self.aborting.set(saved.2);
    }

    pub(crate) fn abort(&self, id: TaskId) {
        if self.current.get() == Some(id) {
            self.cancel(id, CancelReason::Shutdown); // a task cannot drop its own stack
            return;
        }
        let taken = {
            let mut state = self.state.borrow_mut();
            match state.task(id) {
                Some(task) if task.state != TaskState::Running => state
                    .remove_task(id.index as usize)
                    .and_then(|task| task.co.map(|co| (co, task.yielder))),
                _ => None,
            }
        };
        if let Some((co, yielder)) = taken {
            self.drop_coroutine(id, co, yielder);
        }
    }

    pub(super) fn abort_all(&self) -> usize {
        let ids: Vec<TaskId> = {
            let state = self.state.borrow();
            state
                .tasks
                .iter()
                .map(|(i, t)| TaskId {
                    index: i as u32,
                    generation: t.generation,
                })
                .collect()
        };
        for &id in &ids {
            self.abort(id);
        }
        ids.len()
    }

    pub(crate) fn cancel(&self, id: TaskId, reason: CancelReason) {
        self.state.borrow_mut().cancel(id, reason);
    }

    /// Arms (or with `None` disarms) a deadline at which the current task is cancelled.
    pub(crate) fn set_cancel_deadline(&self, at: Option<(Instant, CancelReason)>) {
        let Some(id) = self.current.get() else { return };
        let mut state = self.state.borrow_mut();
        let seq = match at {
            Some((at, reason)) => state.timers.push(at, TimerKind::Cancel(id, reason)),
            None => 0,
        };
        if let Some(task) = state.task(id) {
            task.cancel_timer = seq;
        }
    }

    /// Clears the current task's cancellation and returns its reason (so the connection code
    /// can still write a 504).
    pub(crate) fn take_cancel(&self) -> Option<CancelReason> {
        let id = self.current.get()?;
        let mut state = self.state.borrow_mut();
        let task = state.task(id)?;
        task.cancel_delivered = false;
        task.cancel.take()
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        let Some(id) = self.current.get() else {
            return false;
        };
        self.state
            .borrow_mut()
            .task(id)
            .is_some_and(|t| t.cancel.is_some())
    }

    pub(crate) fn set_label(&self, parts: &[&str]) {
        let Some(id) = self.current.get() else { return };
        let mut state = self.state.borrow_mut();
        if let Some(task) = state.task(id) {
            task.label.clear();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    task.label.push(' ');
                }
                task.label.push_str(part);
            }
            fault::set_label(task.label.as_bytes());
        }
    }

    /// Opens a `timeout` scope ending at `at` for the current task; returns its id.
    pub(crate) fn push_scope(&self, at: Instant) -> Option<u64> {
        let id = self.current.get()?;
        let scope = self.next_scope.get() + 1;
        self.next_scope.set(scope);
        self.state.borrow_mut().task(id)?.scopes.push((scope, at));
        Some(scope)
    }

    pub(crate) fn pop_scope(&self, scope: u64) {
        let Some(id) = self.current.get() else { return };
        if let Some(task) = self.state.borrow_mut().task(id) {
            task.scopes.retain(|s| s.0 != scope);
        }
    }

    /// The waiter the current task's next park will use (for registrations that must happen
    /// before parking and may fail, like submitting an offload job).
    pub(crate) fn next_waiter(&self) -> Option<Waiter> {
        let id = self.current.get()?;
        let epoch = self.state.borrow_mut().task(id)?.epoch.wrapping_add(1);
        Some(Waiter { id, epoch })
    }

    #[inline]
    fn suspend(&self) -> Wake {
        let y = self.yielder.get();
        // SAFETY: `yielder` is the running coroutine's `Yielder`, which lives on that
        // coroutine's stack for as long as the coroutine exists. The scheduler sets it before
        // each resume (from the task) and the root sets it on the first; only the running
        // coroutine calls `suspend`, through `park`/`yield_now`.
        unsafe { &*y }.suspend(())
    }

    /// Parks the current coroutine until woken, its `deadline` passes or it is cancelled.
    /// `register` records the waiter where the awaited event will find it. A `fallible` park
    /// reports cancellation as an error once; otherwise (and the next time) the coroutine
    /// unwinds with a cancellation payload. An expired enclosing `timeout` scope always unwinds.
    #[inline]
    pub(crate) fn park(
        &self,
        deadline: Option<Instant>,
        fallible: bool,
        register: impl FnOnce(&mut SchedState, Waiter),
    ) -> Result<(), ParkError> {
        let id = self
            .current
            .get()
            .expect("invariant: park is called by a coroutine");
        if self.aborting.get() == Some(id) {
            // Its stack is being unwound: switching out makes corosensei re-raise the unwind.
            self.suspend();
            return Err(ParkError::Cancelled(CancelReason::Shutdown));
        }
        {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            let task = state
                .task(id)
                .expect("invariant: the running task is in the slab");
            let scope_deadline = task.check_cancel(fallible)?;
            task.epoch = task.epoch.wrapping_add(1);
            task.state = TaskState::Parked;
            let w = Waiter {
                id,
                epoch: task.epoch,
            };
            let at = match (deadline, scope_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            task.has_timer = at.is_some();
            if let Some(at) = at {
                state.timers.push(at, TimerKind::Park(w));
            }
            register(state, w);
        }
        match self.suspend() {
            Wake::Event => Ok(()),
            Wake::Deadline => {
                let mut state = self.state.borrow_mut();
                let task = state
                    .task(id)
                    .expect("invariant: the running task is in the slab");
                let now = Instant::now();
                if task.scopes.iter().any(|s| s.1 <= now) {
                    unwind_expired_scope(&task.scopes);
                }
                Err(ParkError::TimedOut)
            }
            Wake::Cancel => {
                let mut state = self.state.borrow_mut();
                let task = state
                    .task(id)
                    .expect("invariant: the running task is in the slab");
                let reason = task.cancel.unwrap_or(CancelReason::Shutdown);
                if !fallible {
                    panic::resume_unwind(Box::new(CancelUnwind(reason)));
                }
                task.cancel_delivered = true;
                Err(ParkError::Cancelled(reason))
            }
        }
    }

    /// Lets the other ready coroutines run, then continues. Unwinds if cancelled or if an
    /// enclosing `timeout` expired.
    #[inline]
    pub(crate) fn yield_now(&self) {
        let id = self
            .current
            .get()
            .expect("invariant: yield_now is called by a coroutine");
        if self.aborting.get() == Some(id) {
            self.suspend();
            return;
        }
        {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            let task = state
                .task(id)
                .expect("invariant: the running task is in the slab");
            task.check_cancel(false)
                .expect("invariant: an infallible check unwinds instead of failing");
            task.state = TaskState::Queued;
            state.ready.push_back((id, Wake::Event));
        }
        self.suspend();
    }

    /// Wakes `w` (from a primitive such as a channel or a semaphore). Returns whether it was
    /// still waiting.
    #[inline]
    pub(crate) fn wake(&self, w: Waiter) -> bool {
        self.state.borrow_mut().wake(w, Wake::Event)
    }

    pub(crate) fn register_io(&self, source: &mut impl Source) -> io::Result<IoToken> {
        let mut state = self.state.borrow_mut();
        let token = state.io.insert();
        if let Err(e) = self.registry.register(
            source,
            token.to_mio(),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            state.io.remove(token);
            return Err(e);
        }
        Ok(token)
    }

    pub(crate) fn deregister_io(&self, source: &mut impl Source, token: IoToken) {
        let _ = self.registry.deregister(source);
        self.state.borrow_mut().io.remove(token);
    }

    /// Parks the current coroutine until `token`'s fd may be ready in direction `dir`. A token
    /// that names no registration fails at once instead of parking on whatever took its slot.
    #[inline]
    pub(crate) fn wait_io(
        &self,
        token: IoToken,
        dir: Dir,
        deadline: Option<Instant>,
    ) -> Result<(), ParkError> {
        if !self.state.borrow().io.contains(token) {
            return Err(ParkError::NotRegistered);
        }
        self.park(deadline, true, |state, w| {
            state.io.set_waiter(token, dir, w);
        })
    }

    /// Whether a read on `token`'s fd may find bytes; false once a read emptied the kernel's
    /// buffer and no readable event came since (then the read would fail with `EAGAIN`).
    #[inline]
    pub(crate) fn read_ready(&self, token: IoToken) -> bool {
        self.state.borrow().io.read_ready(token)
    }

    /// Records that a read on `token`'s fd took everything the kernel had.
    #[inline]
    pub(crate) fn clear_read_ready(&self, token: IoToken) {
        self.state.borrow_mut().io.clear_read_ready(token);
    }

    /// Turns the loop from outside any coroutine until `done()` (for joins and receives made
    /// from the root context). Panics if called from inside a turn.
    pub(crate) fn turn_until(&self, mut done: impl FnMut() -> bool) -> io::Result<()> {
        while !done() {
            self.turn(None)?;
        }
        Ok(())
    }

    pub(super) fn turn(&self, max_wait: Option<Duration>) -> io::Result<()> {
        assert!(
            !self.in_turn.get() && self.current.get().is_none(),
            "the runtime loop was re-entered (turn/join from inside the scheduler)"
        );
        self.in_turn.set(true);
        // Reset even if a panic escapes (it would be a runtime bug, but keep the flag honest).
        struct Reset<'a>(&'a Cell<bool>);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _reset = Reset(&self.in_turn);
        self.turn_inner(max_wait)
    }

    /// Poll (without blocking if coroutines are ready), fire due timers, then run the ready
    /// coroutines. Running last means a caller checking a condition after `turn` sees the
    /// effect of everything that became ready.
    fn turn_inner(&self, max_wait: Option<Duration>) -> io::Result<()> {
        let timeout = {
            let state = self.state.borrow();
            if !state.ready.is_empty() {
                Some(Duration::ZERO)
            } else {
                let until_timer = state
                    .timers
                    .next_at()
                    .map(|at| at.saturating_duration_since(Instant::now()));
                match (until_timer, max_wait) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        };
        self.poll_events(timeout)?;
        let now = Instant::now();
        self.state.borrow_mut().fire_timers(now);
        for _ in 0..BUDGET {
            if !self.run_next() {
                break;
            }
        }
        if now.duration_since(self.last_trim.get()) >= TRIM_EVERY {
            self.pool.trim(TRIM_MAX);
            self.last_trim.set(now);
        }
        Ok(())
    }

    fn poll_events(&self, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = self.events.borrow_mut();
        match self.poll.borrow_mut().poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut state = self.state.borrow_mut();
        for event in events.iter() {
            if event.token() == WAKER_TOKEN {
                for w in self.offload.take_done() {
                    state.wake(w, Wake::Event);
                }
                continue;
            }
            let failed = event.is_error();
            state.dispatch_io(
                IoToken::from_mio(event.token()),
                failed || event.is_readable() || event.is_read_closed(),
                failed || event.is_writable() || event.is_write_closed(),
                failed || event.is_read_closed(),
            );
        }
        Ok(())
    }
}
