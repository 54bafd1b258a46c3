//! Shared memory mapped before fork: the storage under the scoreboard.
//!
//! Owns one anonymous `MAP_SHARED` mapping per [`SharedMapping`]: created zero-filled by the
//! master, inherited by every child it forks, and seen by all of them at once. It does not know
//! what the words mean (that is `scoreboard`). It must not hold anything that is not valid
//! as shared, zeroed, plain data: the [`Shareable`] marker limits it to atomics.
//!
//! The mapping does not survive `exec`: after a re-exec the master builds a new one, and
//! children forked earlier keep the old one (only they still map it).

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU8, AtomicU32, AtomicU64};

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// Types that may live in memory shared between processes.
///
/// # Safety
///
/// An implementor must be valid when all its bytes are zero, contain no pointers or references
/// (the other process maps them at another address), have no `Drop`, and only be mutated
/// through atomics (several processes access it concurrently through `&T`).
pub(crate) unsafe trait Shareable: Sync {}

// SAFETY: each of these is an integer in an `UnsafeCell`, valid at zero, mutated only atomically.
unsafe impl Shareable for AtomicBool {}
// SAFETY: as above.
unsafe impl Shareable for AtomicU8 {}
// SAFETY: as above.
unsafe impl Shareable for AtomicU32 {}
// SAFETY: as above.
unsafe impl Shareable for AtomicI32 {}
// SAFETY: as above.
unsafe impl Shareable for AtomicU64 {}
// SAFETY: as above.
unsafe impl Shareable for AtomicI64 {}

/// `len` zero-initialised `T`s in an anonymous shared mapping; `Deref`s to `&[T]`.
///
/// ```ignore
/// let words = SharedMapping::<AtomicU64>::new_zeroed(1024)?; // before fork
/// words[3].fetch_add(1, Ordering::Relaxed);                  // in any process, after fork
/// ```
#[derive(Debug)]
pub(crate) struct SharedMapping<T: Shareable> {
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: the mapping is owned by this value, and `T: Sync` (a `Shareable` bound) makes `&[T]`
// usable from several threads; moving the owner to another thread moves nothing else.
unsafe impl<T: Shareable> Send for SharedMapping<T> {}
// SAFETY: only `&[T]` is ever handed out and `T: Sync`.
unsafe impl<T: Shareable> Sync for SharedMapping<T> {}

impl<T: Shareable> SharedMapping<T> {
    /// Maps `len` (at least 1) zeroed `T`s, shared with every child forked afterwards.
    pub(crate) fn new_zeroed(len: usize) -> io::Result<SharedMapping<T>> {
        let bytes = len
            .checked_mul(size_of::<T>())
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad mapping size"))?;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses aliases nothing.
        // The kernel zero-fills it and aligns it to a page, enough for any atomic.
        let raw = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        Ok(SharedMapping {
            ptr: raw.cast(),
            len,
        })
    }

    fn byte_len(&self) -> usize {
        self.len * size_of::<T>()
    }
}

impl<T: Shareable> std::ops::Deref for SharedMapping<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points to `len` initialised (zero is valid, `Shareable`) and aligned `T`s
        // that stay mapped until `drop`; only shared references are created, and every mutation
        // goes through atomics.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Shareable> Drop for SharedMapping<T> {
    /// Unmaps it in this process only; other processes keep their view.
    fn drop(&mut self) {
        // SAFETY: `ptr`/`byte_len` are exactly what mmap returned, and no reference into the
        // mapping outlives `self` (they borrow it).
        let _ = unsafe { munmap(self.ptr.cast(), self.byte_len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn new_mapping_is_zeroed_and_writable() {
        let words = SharedMapping::<AtomicU64>::new_zeroed(1000).expect("mmap");
        assert_eq!(words.len(), 1000);
        assert!(words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        words[999].store(7, Ordering::Relaxed);
        assert_eq!(words[999].fetch_add(1, Ordering::Relaxed), 7);
    }

    #[test]
    fn a_forked_child_writes_are_seen_by_the_parent_in_a_child_process() {
        use crate::sys::process::{ExitStatus, Forked, exit_now, fork, reap_children};
        crate::sys::rerun::in_child_process(
            "sys::shm::tests::a_forked_child_writes_are_seen_by_the_parent_in_a_child_process",
            || {
                let words = SharedMapping::<AtomicU64>::new_zeroed(16).expect("mmap");
                match fork().expect("fork") {
                    Forked::Child => {
                        words[5].store(42, Ordering::Release);
                        exit_now(0);
                    }
                    Forked::Parent(child) => {
                        let deadline =
                            std::time::Instant::now() + std::time::Duration::from_secs(10);
                        let mut reaped = Vec::new();
                        while reaped.is_empty() && std::time::Instant::now() < deadline {
                            reaped = reap_children();
                            std::thread::sleep(std::time::Duration::from_millis(5));
                        }
                        assert_eq!(reaped, [(child, ExitStatus::Exited(0))]);
                        assert_eq!(words[5].load(Ordering::Acquire), 42);
                    }
                }
            },
        );
    }

    #[test]
    fn empty_mapping_is_refused() {
        assert!(SharedMapping::<AtomicU64>::new_zeroed(0).is_err());
        assert!(SharedMapping::<AtomicU64>::new_zeroed(usize::MAX).is_err());
    }
}
