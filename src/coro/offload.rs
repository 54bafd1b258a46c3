//! The offload pool: a few OS threads (`offload-threads`) that run truly blocking work
//! (`getaddrinfo`, file I/O, CPU-heavy or foreign blocking code) while the calling coroutine is
//! parked; the finishing thread records the waiter and pokes the loop through a `mio::Waker`.
//!
//! Owns the job queue and the threads (started lazily, after fork, by the runtime that owns the
//! pool). Jobs are `Send + 'static` and own their data: a job never borrows a coroutine's stack,
//! which may be unwound and reused while the job still runs. A result nobody waits for any more
//! (the coroutine was cancelled) is dropped.

use std::collections::VecDeque;

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use super::sched::{self, Waiter};

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    done: Mutex<Vec<Waiter>>,
    waker: mio::Waker,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A job's panic is caught before it could poison anything; never give up on a poisoned lock.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pool of one runtime.
pub(crate) struct Offload {
    shared: Arc<Shared>,
    max_threads: usize,
}

impl Offload {
    pub(crate) fn new(max_threads: usize, waker: mio::Waker) -> Offload {
        Offload {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    idle: 0,
                    threads: 0,
                    closed: false,
                }),
                work: Condvar::new(),
                done: Mutex::new(Vec::new()),
                waker,
            }),
            max_threads,
        }
    }

    fn submit(&self, job: Job) -> io::Result<()> {
        let mut q = lock(&self.shared.queue);
        if q.idle == 0 && q.threads < self.max_threads {
            let shared = self.shared.clone();
            thread::Builder::new()
                .name(format!("offload-{}", q.threads + 1))
                .spawn(move || work(&shared))?;
            q.threads += 1;
        }
        q.jobs.push_back(job);
        drop(q);
        self.shared.work.notify_one();
        Ok(())
    }

    /// Waiters whose jobs finished since the last call (the loop wakes them).
    pub(crate) fn take_done(&self) -> Vec<Waiter> {
        std::mem::take(&mut *lock(&self.shared.done))
    }

    /// Stops the threads once their current job ends; queued jobs are dropped.
    pub(crate) fn close(&self) {
        let mut q = lock(&self.shared.queue);
        q.closed = true;
        q.jobs.clear();
        drop(q);
        self.shared.work.notify_all();
    }
}

fn work(shared: &Shared) {
    loop {
        let job = {
            let mut q = lock(&shared.queue);
            loop {
                if q.closed {
                    return;
                }
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                q.idle += 1;
                q = shared.work.wait(q).unwrap_or_else(PoisonError::into_inner);
                q.idle -= 1;
            }
        };
        job();
    }
}

/// Runs `f` on the offload pool and parks the current coroutine until it is done, so blocking
/// calls do not stall the worker. A panic in `f` is re-raised here. Outside a coroutine `f` runs
/// right here (plain blocking behaviour).
///
/// Fails only if the coroutine is cancelled while waiting (the result is then dropped when `f`
/// finishes) or if no pool thread can be started.
///
/// ```no_run
/// # use rcontainer::rt;
/// let text = rt::offload(|| std::fs::read_to_string("/etc/hostname"))??;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn offload<F, T>(f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let Some(rt) = sched::in_coroutine() else {
        return Ok(f());
    };
    let waiter = rt
        .next_waiter()
        .expect("invariant: a running coroutine has a task");
    let result = Arc::new(Mutex::new(None));
    let out = result.clone();
    let shared = rt.offload.shared.clone();
    rt.offload.submit(Box::new(move || {
        let r = panic::catch_unwind(AssertUnwindSafe(f));
        *lock(&out) = Some(r);
        lock(&shared.done).push(waiter);
        let _ = shared.waker.wake();
    }))?;
    // Only the job's completion registered `waiter`, so an `Event` wake means the result is in.
    rt.park(None, true, |_, _| {}).map_err(|e| e.into_io())?;
    match lock(&result).take() {
        Some(Ok(value)) => Ok(value),
        Some(Err(payload)) => panic::resume_unwind(payload),
        None => Err(io::Error::other(
            "invariant broken: offload woke without a result",
        )),
    }
}

// Only the Python bridge (feature `python`) waits on another thread of its own.
#[cfg(any(test, feature = "python"))]
/// The far end of a [`wait_remote`]: another thread holds it and hands the result back with
/// [`Completion::complete`], which wakes the parked coroutine through the runtime's waker.
/// Dropped without a result (that thread gave up or died), it wakes the coroutine too, which
/// then sees an error instead of waiting for ever.
pub(crate) struct Completion<T: Send + 'static> {
    slot: Arc<Mutex<Option<T>>>,
    shared: Arc<Shared>,
    waiter: Option<Waiter>,
}

#[cfg(any(test, feature = "python"))]
impl<T: Send + 'static> std::fmt::Debug for Completion<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion").finish_non_exhaustive()
    }
}

#[cfg(any(test, feature = "python"))]
impl<T: Send + 'static> Completion<T> {
    /// Hands `value` to the waiting coroutine and wakes it (a coroutine no longer waiting, as
    /// after a cancellation, drops it).
    pub(crate) fn complete(mut self, value: T) {
        *lock(&self.slot) = Some(value);
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            lock(&self.shared.done).push(waiter);
            let _ = self.shared.waker.wake();
        }
    }
}

#[cfg(any(test, feature = "python"))]
impl<T: Send + 'static> Drop for Completion<T> {
    fn drop(&mut self) {
        self.wake();
    }
}

#[cfg(any(test, feature = "python"))]
/// Parks the current coroutine until another thread completes the [`Completion`] that `start`
/// was given (`start` sends it there, e.g. through a channel). Fails if `start` fails, if the
/// coroutine is cancelled while waiting (the late result is dropped), if the completion is
/// dropped without a result, or outside a coroutine (nothing could wake this thread).
pub(crate) fn wait_remote<T, F>(start: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce(Completion<T>) -> io::Result<()>,
{
    let Some(rt) = sched::in_coroutine() else {
        return Err(io::Error::other("wait_remote outside a coroutine"));
    };
    let waiter = rt
        .next_waiter()
        .expect("invariant: a running coroutine has a task");
    let slot = Arc::new(Mutex::new(None));
    start(Completion {
        slot: slot.clone(),
        shared: rt.offload.shared.clone(),
        waiter: Some(waiter),
    })?;
    // Only the completion registered `waiter`, so an `Event` wake means it was completed or
    // dropped.
    rt.park(None, true, |_, _| {}).map_err(|e| e.into_io())?;
    lock(&slot).take().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the remote side dropped the request without an answer",
        )
    })
}
