//! Coroutine-aware synchronisation for coroutines of one worker: an unbounded [`channel`], a
//! [`Semaphore`] and a [`Mutex`] that park the caller instead of blocking the thread.
//!
//! These are single-threaded (`!Send`, `Rc` inside): they connect coroutines of the same
//! runtime. To talk to other threads use `offload`. Waiting parks are fallible: a cancelled
//! coroutine gets the cancellation error. Outside a coroutine, waiting turns the runtime loop
//! (root context) or fails with `WouldBlock` on a thread without a runtime.

use std::cell::{RefCell, RefMut};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::sched::{self, Waiter};
use super::time::deadline_after;

/// Waits (parking, or turning the loop from the root context) until `ready()` holds.
/// `register` records the waiter that the event will wake.
#[inline]
fn wait_until(
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> bool,
    register: impl Fn(Waiter),
) -> io::Result<()> {
    while !ready() {
        if let Some(rt) = sched::in_coroutine() {
            rt.park(deadline, true, |_, w| register(w))
                .map_err(|e| e.into_io())?;
        } else if let Some(rt) = sched::runtime() {
            let mut timed_out = false;
            rt.turn_until(|| {
                timed_out = deadline.is_some_and(|at| Instant::now() >= at);
                timed_out || ready()
            })?;
            if timed_out && !ready() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "operation timed out",
                ));
            }
        } else {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "no coroutine runtime on this thread",
            ));
        }
    }
    Ok(())
}

fn wake_one(waiters: &mut VecDeque<Waiter>) {
    let Some(rt) = sched::runtime() else { return };
    while let Some(w) = waiters.pop_front() {
        if rt.wake(w) {
            return;
        }
    }
}

struct Chan<T> {
    queue: VecDeque<T>,
    receiver: Option<Waiter>,
    senders: usize,
    receiver_alive: bool,
}

/// Creates an unbounded channel between coroutines of this worker.
///
/// ```no_run
/// # use rcontainer::rt;
/// let (tx, rx) = rt::channel();
/// rt::spawn(move || tx.send(42).ok());
/// assert_eq!(rx.recv()?, 42);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let chan = Rc::new(RefCell::new(Chan {
        queue: VecDeque::new(),
        receiver: None,
        senders: 1,
        receiver_alive: true,
    }));
    (Sender(chan.clone()), Receiver(chan))
}

/// The sending half of a [`channel`]; clone it for more senders.
pub struct Sender<T>(Rc<RefCell<Chan<T>>>);

/// The receiving half of a [`channel`].
pub struct Receiver<T>(Rc<RefCell<Chan<T>>>);

/// The receiver is gone; the value comes back.
#[derive(PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a channel whose receiver is gone")
    }
}

impl<T> std::error::Error for SendError<T> {}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sender(..)")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("queued", &self.0.borrow().queue.len())
            .finish()
    }
}

impl<T> Sender<T> {
    /// Queues `value` and wakes the receiver. Never parks.
    #[inline]
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut chan = self.0.borrow_mut();
        if !chan.receiver_alive {
            return Err(SendError(value));
        }
        chan.queue.push_back(value);
        let waiter = chan.receiver.take();
        drop(chan);
        if let (Some(w), Some(rt)) = (waiter, sched::runtime()) {
            rt.wake(w);
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.borrow_mut().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut chan = self.0.borrow_mut();
        chan.senders -= 1;
        let waiter = if chan.senders == 0 {
            chan.receiver.take()
        } else {
            None
        };
        drop(chan);
        if let (Some(w), Some(rt)) = (waiter, sched::runtime()) {
            rt.wake(w);
        }
    }
}

impl<T> Receiver<T> {
    /// Takes the next value, parking until one is sent. Fails with `BrokenPipe` once every
    /// sender is gone and the queue is empty.
    #[inline]
    pub fn recv(&self) -> io::Result<T> {
        self.recv_deadline(None)
    }

    /// Like [`recv`](Self::recv), failing with `TimedOut` after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> io::Result<T> {
        self.recv_deadline(Some(deadline_after(timeout)))
    }

    /// Takes the next value if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        self.0.borrow_mut().queue.pop_front()
    }

    #[inline]
    fn recv_deadline(&self, deadline: Option<Instant>) -> io::Result<T> {
        let chan = &self.0;
        wait_until(
            deadline,
            || {
                let c = chan.borrow();
                !c.queue.is_empty() || c.senders == 0
            },
            |w| chan.borrow_mut().receiver = Some(w),
        )?;
        self.try_recv()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "every sender is gone"))
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut chan = self.0.borrow_mut();
        chan.receiver_alive = false;
        let queued = std::mem::take(&mut chan.queue);
        drop(chan);
        drop(queued); // values' destructors run outside the borrow
    }
}

struct Sem {
    permits: usize,
    waiters: VecDeque<Waiter>,
}

/// A counting semaphore for coroutines: `acquire` parks while no permit is free. Cheap to clone
/// (clones share the permits). The worker uses one with `async` permits to accept only while a
/// core is free.
#[derive(Clone)]
pub struct Semaphore(Rc<RefCell<Sem>>);

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available", &self.available())
            .finish()
    }
}

/// A permit of a [`Semaphore`], given back when dropped.
pub struct Permit(Rc<RefCell<Sem>>);

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore(Rc::new(RefCell::new(Sem {
            permits,
            waiters: VecDeque::new(),
        })))
    }

    /// Takes a permit, parking until one is free (waiters are woken in arrival order, but a
    /// coroutine arriving just then may take the permit first).
    pub fn acquire(&self) -> io::Result<Permit> {
        let sem = &self.0;
        loop {
            if let Some(p) = self.try_acquire() {
                return Ok(p);
            }
            wait_until(
                None,
                || sem.borrow().permits > 0,
                |w| sem.borrow_mut().waiters.push_back(w),
            )?;
        }
    }

    /// Takes a permit if one is free.
    pub fn try_acquire(&self) -> Option<Permit> {
        let mut sem = self.0.borrow_mut();
        if sem.permits == 0 {
            return None;
        }
        sem.permits -= 1;
        Some(Permit(self.0.clone()))
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.0.borrow().permits
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut sem = self.0.borrow_mut();
        sem.permits += 1;
        wake_one(&mut sem.waiters);
    }
}

/// A mutual-exclusion lock for coroutines: `lock` parks while another coroutine holds it, so
/// the guard may be held across parks (which a `std::sync::Mutex` must never be).
pub struct Mutex<T> {
    value: RefCell<T>,
    sem: Semaphore,
}

impl<T> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("locked", &(self.sem.available() == 0))
            .finish()
    }
}

/// Access to the value of a locked [`Mutex`]; unlocks when dropped.
pub struct MutexGuard<'a, T> {
    // Declared first so the borrow ends before the permit wakes the next holder.
    value: RefMut<'a, T>,
    _permit: Permit,
}

impl<T> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MutexGuard")
    }
}

impl<T> Mutex<T> {
    /// A new, unlocked mutex.
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            value: RefCell::new(value),
            sem: Semaphore::new(1),
        }
    }

    /// Locks, parking while another coroutine holds the lock.
    pub fn lock(&self) -> io::Result<MutexGuard<'_, T>> {
        let permit = self.sem.acquire()?;
        Ok(MutexGuard {
            value: self.value.borrow_mut(),
            _permit: permit,
        })
    }

    /// Locks if nobody holds the lock.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let permit = self.sem.try_acquire()?;
        Some(MutexGuard {
            value: self.value.borrow_mut(),
            _permit: permit,
        })
    }

    /// The value, when the mutex is no longer shared.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}
