//! Raw memory for coroutine stacks: one address-space reservation per runtime, carved into
//! fixed-size slots, each with a guard region at its low end.
//!
//! Owns the `mmap`/`munmap`/`madvise`/`mprotect` calls and the reading of the kernel's mapping
//! limit. Knows nothing about coroutines, pools or scheduling (that is `coro::stack`).
//!
//! Layout of slot `i` (stacks grow down, from `hi` towards the guard):
//!
//! ```text
//! base + i*slot_size                                          base + (i+1)*slot_size
//! | guard (never accessible) | usable stack ........................................ |
//! ```
//!
//! Two ways to make the guard, chosen once per process:
//! - [`GuardMode::Madvise`] (Linux >= 6.13, `MADV_GUARD_INSTALL`): the whole reservation is one
//!   read-write `MAP_NORESERVE` mapping and guards are page-table markers, so the process has
//!   **one** VMA for all stacks whatever their number.
//! - [`GuardMode::Mprotect`] (fallback): the reservation is `PROT_NONE` and each slot's usable
//!   part is made read-write on first use, costing 2 VMAs per slot ever used; the caller must
//!   check that against `vm.max_map_count`.

use std::io;
use std::ptr;
use std::sync::OnceLock;

/// `MADV_GUARD_INSTALL` from `<linux/mman.h>` (Linux 6.13); the libc crate does not have it yet.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// How guard regions are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardMode {
    /// Page-table guard markers inside one mapping: 1 VMA in total.
    Madvise,
    /// `PROT_NONE` holes between read-write parts: 2 VMAs per slot in use.
    Mprotect,
}

impl GuardMode {
    /// Kernel mappings each slot in use adds to the process.
    pub(crate) fn vmas_per_slot(self) -> usize {
        match self {
            GuardMode::Madvise => 0,
            GuardMode::Mprotect => 2,
        }
    }
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n)
            .ok()
            .filter(|n| n.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// Which guard mode this kernel supports (probed once with a throwaway mapping).
pub(crate) fn guard_mode() -> GuardMode {
    static MODE: OnceLock<GuardMode> = OnceLock::new();
    *MODE.get_or_init(|| {
        // Lets a test child process exercise the fallback used on kernels before 6.13.
        #[cfg(test)]
        if std::env::var_os("RCONTAINER_TEST_MPROTECT_GUARDS").is_some() {
            return GuardMode::Mprotect;
        }
        let page = page_size();
        let Ok(map) = map_anonymous(2 * page, libc::PROT_READ | libc::PROT_WRITE) else {
            return GuardMode::Mprotect;
        };
        // SAFETY: `map` is a fresh private mapping of 2 pages that nothing else references.
        let rc = unsafe { libc::madvise(map.cast(), page, MADV_GUARD_INSTALL) };
        // SAFETY: unmapping the mapping made above, which nothing references.
        unsafe { libc::munmap(map.cast(), 2 * page) };
        if rc == 0 {
            GuardMode::Madvise
        } else {
            GuardMode::Mprotect
        }
    })
}

fn map_anonymous(len: usize, prot: libc::c_int) -> io::Result<*mut u8> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: an anonymous mapping at an address chosen by the kernel aliases nothing.
    let p = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p.cast())
    }
}

/// `vm.max_map_count`, the kernel's limit on mappings per process.
pub(crate) fn max_map_count() -> io::Result<usize> {
    let text = std::fs::read_to_string("/proc/sys/vm/max_map_count")?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("vm.max_map_count: {e}")))
}

/// Number of mappings the process has now (lines of `/proc/self/maps`).
pub(crate) fn map_count() -> io::Result<usize> {
    Ok(std::fs::read("/proc/self/maps")?
        .iter()
        .filter(|&&b| b == b'\n')
        .count())
}

/// One reservation of `slots` stack slots. Unmapped on drop: every stack carved from it must be
/// gone by then (the pool guarantees it by reference counting).
#[derive(Debug)]
pub(crate) struct Reservation {
    base: *mut u8,
    len: usize,
    slot_size: usize,
    guard: usize,
    mode: GuardMode,
}

impl Reservation {
    /// Reserves address space for `slots` stacks of `usable` bytes, each below a `guard`-byte
    /// guard region (both rounded up to pages). Nothing is committed: RSS grows only with the
    /// pages that stacks touch.
    pub(crate) fn new(slots: usize, usable: usize, guard: usize) -> io::Result<Self> {
        let page = page_size();
        let round = |n: usize| n.div_ceil(page) * page;
        let (usable, guard) = (round(usable.max(page)), round(guard.max(page)));
        let slot_size = usable + guard;
        let len = slot_size.checked_mul(slots.max(1)).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "stack reservation size overflows",
            )
        })?;
        let mode = guard_mode();
        let prot = match mode {
            GuardMode::Madvise => libc::PROT_READ | libc::PROT_WRITE,
            GuardMode::Mprotect => libc::PROT_NONE,
        };
        let base = map_anonymous(len, prot)?;
        Ok(Reservation {
            base,
            len,
            slot_size,
            guard,
            mode,
        })
    }

    /// Makes slot `i` usable: installs its guard or opens its stack part. Done once per slot.
    pub(crate) fn prepare_slot(&self, i: usize) -> io::Result<()> {
        let (lo, _) = self.slot_range(i);
        // SAFETY: `lo .. lo + slot_size` lies inside our own reservation (slot_range checks `i`)
        // and no stack lives in this slot yet.
        let rc = unsafe {
            match self.mode {
                GuardMode::Madvise => libc::madvise(lo as *mut _, self.guard, MADV_GUARD_INSTALL),
                GuardMode::Mprotect => libc::mprotect(
                    (lo + self.guard) as *mut _,
                    self.slot_size - self.guard,
                    libc::PROT_READ | libc::PROT_WRITE,
                ),
            }
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Gives the pages of slot `i`'s usable part back to the kernel (`MADV_DONTNEED`). The slot
    /// stays usable; its next use sees zero pages. About 5 µs: never on the hot path.
    pub(crate) fn release_slot(&self, i: usize) -> io::Result<()> {
        let (lo, _) = self.slot_range(i);
        // SAFETY: the range is the usable part of a slot of our reservation and the caller
        // guarantees no coroutine is running on it (it is in the free list).
        let rc = unsafe {
            libc::madvise(
                (lo + self.guard) as *mut _,
                self.slot_size - self.guard,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// How many pages of slot `i`'s usable part are resident (`mincore`): how deep the stacks
    /// lent from it reached since it was last released, as every page a stack touches stays.
    /// For the tests that bound what a parked coroutine costs.
    #[cfg(test)]
    pub(crate) fn resident_pages(&self, i: usize) -> io::Result<usize> {
        Ok(self.residency(i)?.into_iter().filter(|&r| r).count())
    }

    /// The lowest address of slot `i`'s usable part that holds a non-zero byte: how deep its
    /// stacks wrote since the slot was prepared or released (its pages start out zero). Only
    /// resident pages are read, so looking maps no page in.
    #[cfg(test)]
    pub(crate) fn deepest_write(&self, i: usize) -> io::Result<Option<usize>> {
        let page = page_size();
        let start = self.slot_range(i).0 + self.guard;
        for (n, resident) in self.residency(i)?.into_iter().enumerate() {
            if !resident {
                continue;
            }
            let at = start + n * page;
            // SAFETY: a resident page of the usable part of one of our slots is readable; the
            // caller runs on this stack, so nothing writes it meanwhile.
            let bytes = unsafe { std::slice::from_raw_parts(at as *const u8, page) };
            if let Some(offset) = bytes.iter().position(|&b| b != 0) {
                return Ok(Some(at + offset));
            }
        }
        Ok(None)
    }

    /// Whether each page of slot `i`'s usable part is resident (`mincore`), lowest first.
    #[cfg(test)]
    fn residency(&self, i: usize) -> io::Result<Vec<bool>> {
        let (lo, hi) = self.slot_range(i);
        let start = lo + self.guard;
        let mut pages = vec![0u8; (hi - start) / page_size()];
        // SAFETY: `start .. hi` is page aligned and lies inside our own mapping; `pages` has
        // one byte per page of it, which is what mincore writes.
        let rc = unsafe { libc::mincore(start as *mut _, hi - start, pages.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(pages.iter().map(|&p| p & 1 != 0).collect())
    }

    /// The slot whose usable part holds address `addr`, if any.
    #[cfg(test)]
    pub(crate) fn slot_of(&self, addr: usize) -> Option<usize> {
        let offset = addr.checked_sub(self.base as usize)?;
        let slot = offset / self.slot_size;
        (slot < self.slots() && offset % self.slot_size >= self.guard).then_some(slot)
    }

    /// `(lowest address including the guard, highest address)` of slot `i`.
    pub(crate) fn slot_range(&self, i: usize) -> (usize, usize) {
        assert!(
            i < self.slots(),
            "invariant: stack slot index within the reservation"
        );
        let lo = self.base as usize + i * self.slot_size;
        (lo, lo + self.slot_size)
    }

    pub(crate) fn slots(&self) -> usize {
        self.len / self.slot_size
    }

    pub(crate) fn start(&self) -> usize {
        self.base as usize
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn slot_size(&self) -> usize {
        self.slot_size
    }

    pub(crate) fn guard(&self) -> usize {
        self.guard
    }

    pub(crate) fn mode(&self) -> GuardMode {
        self.mode
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`; the owner guarantees no stack in
        // it is still in use.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_page_rounded_and_disjoint() {
        let r = Reservation::new(3, 10_000, 1).expect("reserve");
        let page = page_size();
        assert_eq!(r.guard(), page);
        assert_eq!(r.slot_size() % page, 0);
        assert_eq!(r.slots(), 3);
        let (a_lo, a_hi) = r.slot_range(0);
        let (b_lo, _) = r.slot_range(1);
        assert_eq!(a_hi, b_lo);
        assert_eq!(a_hi - a_lo, r.slot_size());
        assert_eq!(r.slot_of(b_lo + r.guard()), Some(1));
        assert_eq!(r.slot_of(a_hi - 1), Some(0));
        assert_eq!(r.slot_of(b_lo), None, "a guard is no stack");
        assert_eq!(r.slot_of(a_lo - 1), None);
    }

    #[test]
    fn a_prepared_slot_is_writable_above_its_guard() {
        let r = Reservation::new(2, 64 * 1024, 4096).expect("reserve");
        r.prepare_slot(1).expect("prepare");
        let (lo, hi) = r.slot_range(1);
        // SAFETY: the usable part of a prepared slot is read-write memory we own.
        unsafe {
            ((hi - 8) as *mut u64).write(7);
            ((lo + r.guard()) as *mut u8).write(1);
            assert_eq!(((hi - 8) as *const u64).read(), 7);
        }
        assert_eq!(
            r.resident_pages(1).expect("mincore"),
            2,
            "the top and the bottom page"
        );
        assert_eq!(r.deepest_write(1).expect("mincore"), Some(lo + r.guard()));
        r.release_slot(1).expect("release");
        assert_eq!(r.resident_pages(1).expect("mincore"), 0);
        assert_eq!(r.deepest_write(1).expect("mincore"), None);
        // SAFETY: as above; after MADV_DONTNEED the page reads back as zero.
        assert_eq!(unsafe { ((hi - 8) as *const u64).read() }, 0);
    }

    #[test]
    fn madvise_guards_keep_one_mapping() {
        if guard_mode() != GuardMode::Madvise {
            return;
        }
        let before = map_count().expect("maps");
        let r = Reservation::new(64, 64 * 1024, 4096).expect("reserve");
        for i in 0..64 {
            r.prepare_slot(i).expect("prepare");
        }
        let after = map_count().expect("maps");
        // Other test threads may map memory meanwhile; 64 slots would add 128 with mprotect.
        assert!(after < before + 32, "maps went from {before} to {after}");
    }
}
