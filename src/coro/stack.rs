//! The per-runtime stack pool: fixed slots carved from one reservation (`sys::stack`), handed
//! out as [`PooledStack`]s (corosensei's `Stack`) and taken back when a stack is dropped.
//!
//! Owns slot bookkeeping (free list, lazy preparation, trimming of idle stacks). It never maps
//! memory per coroutine and never returns pages to the kernel on the hot path: trimming runs
//! from the loop at most once a second, only on stacks beyond the warm set.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use corosensei::stack::{Stack, StackPointer};

use crate::sys::fault::{self, RegionGuard};
use crate::sys::stack::{GuardMode, Reservation};

/// Guard region below each stack. 64 KiB rather than one page so that frames of C code built
/// without stack probes cannot jump over it; it costs address space only.
pub(crate) const GUARD_BYTES: usize = 64 * 1024;

/// Idle stacks kept warm (not trimmed): the most recently used ones, on top of the free list.
const KEEP_WARM: usize = 64;

struct Slots {
    /// Declared first so the fault handler forgets the range before it is unmapped.
    _region: RegionGuard,
    reservation: Reservation,
    /// Free slots as (index, may hold resident pages); the top (end) is the most recently
    /// used, hence warmest, stack. Trimming clears the flag in place.
    free: RefCell<Vec<(u32, bool)>>,
    /// Slots `0..prepared` have had their guard made.
    prepared: Cell<usize>,
}

/// A pool of `capacity` stacks of one size. Cheap to clone (shared by reference count: stacks
/// hold the pool, so the reservation outlives every stack).
#[derive(Clone)]
pub(crate) struct StackPool {
    slots: Rc<Slots>,
}

impl std::fmt::Debug for StackPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackPool")
            .field("capacity", &self.capacity())
            .field("in_use", &self.in_use())
            .field("stack_size", &self.stack_size())
            .finish()
    }
}

impl StackPool {
    /// Reserves address space for `capacity` stacks of `stack_size` usable bytes each.
    pub(crate) fn new(capacity: usize, stack_size: usize) -> io::Result<StackPool> {
        let reservation = Reservation::new(capacity, stack_size, GUARD_BYTES)?;
        let region = fault::register_stacks(
            reservation.start(),
            reservation.len(),
            reservation.slot_size(),
            reservation.guard(),
        )?;
        Ok(StackPool {
            slots: Rc::new(Slots {
                free: RefCell::new(Vec::with_capacity(capacity)),
                prepared: Cell::new(0),
                reservation,
                _region: region,
            }),
        })
    }

    /// A stack, or `None` when all `capacity` are in use.
    #[inline]
    pub(crate) fn take(&self) -> io::Result<Option<PooledStack>> {
        let s = &self.slots;
        let slot = match s.free.borrow_mut().pop() {
            Some((slot, _)) => slot as usize,
            None => {
                let next = s.prepared.get();
                if next >= s.reservation.slots() {
                    return Ok(None);
                }
                s.reservation.prepare_slot(next)?;
                s.prepared.set(next + 1);
                next
            }
        };
        let (lo, hi) = s.reservation.slot_range(slot);
        Ok(Some(PooledStack {
            pool: self.slots.clone(),
            slot: slot as u32,
            limit: StackPointer::new(lo).expect("invariant: mapped addresses are non-zero"),
            base: StackPointer::new(hi).expect("invariant: mapped addresses are non-zero"),
        }))
    }

    /// Returns the pages of up to `max` idle stacks beyond the warm set to the kernel (about
    /// 5 µs each, so the caller bounds the work per loop turn). Returns how many were trimmed.
    pub(crate) fn trim(&self, max: usize) -> usize {
        let s = &self.slots;
        let mut free = s.free.borrow_mut();
        let cold = free.len().saturating_sub(KEEP_WARM);
        let mut trimmed = 0;
        for (slot, dirty) in &mut free[..cold] {
            if trimmed == max {
                break;
            }
            if *dirty && s.reservation.release_slot(*slot as usize).is_ok() {
                *dirty = false;
                trimmed += 1;
            }
        }
        trimmed
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.reservation.slots()
    }

    pub(crate) fn in_use(&self) -> usize {
        self.slots.prepared.get() - self.slots.free.borrow().len()
    }

    /// Usable bytes of each stack (the guard excluded).
    pub(crate) fn stack_size(&self) -> usize {
        self.slots.reservation.slot_size() - self.slots.reservation.guard()
    }

    pub(crate) fn guard_mode(&self) -> GuardMode {
        self.slots.reservation.mode()
    }

    /// How far below `addr` the stack that holds `addr` was ever written (see
    /// [`Reservation::deepest_write`]); `None` if no stack of this pool holds it.
    #[cfg(test)]
    pub(crate) fn written_below(&self, addr: usize) -> Option<usize> {
        let reservation = &self.slots.reservation;
        let deepest = reservation
            .deepest_write(reservation.slot_of(addr)?)
            .ok()??;
        Some(addr.saturating_sub(deepest))
    }

    /// Resident pages of the stack that holds address `addr` (see
    /// [`Reservation::resident_pages`]); `None` if no stack of this pool holds it.
    #[cfg(test)]
    pub(crate) fn resident_pages_at(&self, addr: usize) -> Option<io::Result<usize>> {
        let reservation = &self.slots.reservation;
        Some(reservation.resident_pages(reservation.slot_of(addr)?))
    }
}

/// One stack slot lent to a coroutine; goes back to the pool's free list when dropped (after
/// the coroutine completed, or after it was unwound by a drop).
pub(crate) struct PooledStack {
    pool: Rc<Slots>,
    slot: u32,
    base: StackPointer,
    limit: StackPointer,
}

impl Drop for PooledStack {
    #[inline]
    fn drop(&mut self) {
        self.pool.free.borrow_mut().push((self.slot, true));
    }
}

// SAFETY: `limit..base` is one slot of the reservation: at least 64 KiB usable, page aligned
// (so 16-byte aligned), with a guard region at its low end (installed by `prepare_slot` before
// the slot is first lent). The slot is lent to one coroutine at a time and the reservation
// lives as long as any PooledStack (reference count).
unsafe impl Stack for PooledStack {
    fn base(&self) -> StackPointer {
        self.base
    }

    fn limit(&self) -> StackPointer {
        self.limit
    }
}

impl std::fmt::Debug for PooledStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PooledStack(slot {})", self.slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_reused_last_in_first_out() {
        let pool = StackPool::new(4, 64 * 1024).expect("pool");
        let a = pool.take().expect("take").expect("free slot");
        let a_base = a.base();
        let b = pool.take().expect("take").expect("free slot");
        assert_eq!(pool.in_use(), 2);
        drop(b);
        drop(a);
        let again = pool.take().expect("take").expect("free slot");
        assert_eq!(again.base(), a_base, "the warmest stack comes back first");
        assert!(pool.stack_size() >= 64 * 1024);
    }

    #[test]
    fn the_pool_refuses_beyond_capacity() {
        let pool = StackPool::new(2, 64 * 1024).expect("pool");
        let _a = pool.take().expect("take").expect("slot");
        let _b = pool.take().expect("take").expect("slot");
        assert!(pool.take().expect("take").is_none());
    }

    #[test]
    fn only_cold_stacks_are_trimmed() {
        let pool = StackPool::new(KEEP_WARM + 3, 64 * 1024).expect("pool");
        let all: Vec<_> = (0..KEEP_WARM + 3)
            .map(|_| pool.take().expect("take").expect("slot"))
            .collect();
        drop(all);
        assert_eq!(pool.trim(2), 2, "bounded");
        assert_eq!(pool.trim(10), 1);
        assert_eq!(pool.trim(10), 0, "already clean");
    }
}
