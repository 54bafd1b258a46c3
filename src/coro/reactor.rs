//! The I/O registrations of a runtime: one slot per fd registered with mio, holding who waits
//! to read and who waits to write, named by an [`IoToken`] (slot index and generation, packed
//! into the mio `Token` the kernel hands back with each event).
//!
//! Owns only the slot table and the token packing; registering with mio, polling and waking
//! are the scheduler's (`sched.rs`). Every lookup checks the generation, so a token kept past
//! its deregistration never reaches the fd that took its slot. Generations are unique in the
//! process, not only in one runtime: a socket that outlives its runtime (a test's, a pooled
//! client connection) is not mistaken for a registration of the next one.

use std::sync::atomic::{AtomicU32, Ordering};

use mio::Token;
use slab::Slab;

use super::sched::Waiter;

// A token packs two u32s into the usize of `mio::Token`.
const _: () = assert!(usize::BITS >= 64, "IoToken needs a 64-bit usize");

/// Names one registration: its slot, and which use of that slot (slots are reused).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct IoToken {
    index: u32,
    generation: u32,
}

impl IoToken {
    /// The token mio reports events with: generation in the high half, slot in the low half.
    #[inline]
    pub(crate) fn to_mio(self) -> Token {
        Token(((self.generation as usize) << 32) | self.index as usize)
    }

    /// The registration an event's token names (it may since have gone: see [`IoSlots`]).
    #[inline]
    pub(crate) fn from_mio(token: Token) -> IoToken {
        IoToken {
            index: (token.0 & 0xffff_ffff) as u32,
            generation: (token.0 >> 32) as u32,
        }
    }
}

/// Direction of an I/O wait.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dir {
    Read,
    Write,
}

/// One registered fd: who waits to read, who waits to write, and whether a read may find
/// bytes.
struct IoSlot {
    reader: Option<Waiter>,
    writer: Option<Waiter>,
    /// False once a read came back short (it took everything the kernel had) or would have
    /// blocked; true again at the fd's next readable event. Edge-triggered readiness reports
    /// every arrival after that read, so while it is false a read would only fail with
    /// `EAGAIN`: the reader parks at once instead of making that syscall.
    read_ready: bool,
    /// The peer closed its side or the socket failed: every read returns at once from now on
    /// (end of stream, or the error), and no event may ever come again to say so.
    read_closed: bool,
    generation: u32,
}

/// The generation of the next registration, shared by every runtime of the process (one
/// relaxed increment per registration, next to an `epoll_ctl`).
static NEXT_GENERATION: AtomicU32 = AtomicU32::new(1);

/// The registered fds of one runtime.
pub(crate) struct IoSlots {
    slots: Slab<IoSlot>,
}

impl IoSlots {
    pub(crate) fn new() -> IoSlots {
        IoSlots { slots: Slab::new() }
    }

    /// Takes a slot for a new registration.
    pub(crate) fn insert(&mut self) -> IoToken {
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        let index = self.slots.insert(IoSlot {
            reader: None,
            writer: None,
            // Unknown until the first read: try it.
            read_ready: true,
            read_closed: false,
            generation,
        });
        IoToken {
            index: u32::try_from(index).expect("invariant: fewer than 2^32 registered fds"),
            generation,
        }
    }

    /// Frees `token`'s slot; a stale token frees nothing.
    pub(crate) fn remove(&mut self, token: IoToken) {
        if self.get_mut(token).is_some() {
            self.slots.remove(token.index as usize);
        }
    }

    /// Whether `token` still names a registration.
    #[inline]
    pub(crate) fn contains(&self, token: IoToken) -> bool {
        self.slots
            .get(token.index as usize)
            .is_some_and(|s| s.generation == token.generation)
    }

    /// Records `w` as the waiter of `token` in direction `dir` (replacing an earlier one).
    /// Returns false for a stale token.
    #[inline]
    pub(crate) fn set_waiter(&mut self, token: IoToken, dir: Dir, w: Waiter) -> bool {
        let Some(slot) = self.get_mut(token) else {
            return false;
        };
        match dir {
            Dir::Read => slot.reader = Some(w),
            Dir::Write => slot.writer = Some(w),
        }
        true
    }

    /// Takes the waiters an event on `token` concerns: the reader if `readable`, the writer
    /// if `writable`. `read_closed`: the event says the peer closed or the socket failed.
    /// Nothing for a stale token.
    #[inline]
    pub(crate) fn take_ready(
        &mut self,
        token: IoToken,
        readable: bool,
        writable: bool,
        read_closed: bool,
    ) -> [Option<Waiter>; 2] {
        let Some(slot) = self.get_mut(token) else {
            return [None, None];
        };
        slot.read_ready |= readable;
        slot.read_closed |= read_closed;
        let reader = if readable { slot.reader.take() } else { None };
        let writer = if writable { slot.writer.take() } else { None };
        [reader, writer]
    }

    /// Whether a read on `token`'s fd may find bytes (see [`IoSlot::read_ready`]); true for
    /// a stale token, so that its read fails the usual way.
    #[inline]
    pub(crate) fn read_ready(&self, token: IoToken) -> bool {
        self.slots
            .get(token.index as usize)
            .filter(|s| s.generation == token.generation)
            .is_none_or(|s| s.read_ready || s.read_closed)
    }

    /// Records that a read on `token`'s fd emptied the kernel's buffer.
    #[inline]
    pub(crate) fn clear_read_ready(&mut self, token: IoToken) {
        if let Some(slot) = self.get_mut(token) {
            slot.read_ready = false;
        }
    }

    #[inline]
    fn get_mut(&mut self, token: IoToken) -> Option<&mut IoSlot> {
        self.slots
            .get_mut(token.index as usize)
            .filter(|s| s.generation == token.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_survives_the_trip_through_mio() {
        let token = IoToken {
            index: 0xdead_beef,
            generation: 0xffff_fffe,
        };
        assert_eq!(IoToken::from_mio(token.to_mio()), token);
    }

    #[test]
    fn a_slot_of_another_runtime_does_not_answer_to_the_token() {
        let mut earlier = IoSlots::new();
        let token = earlier.insert();
        drop(earlier);
        let mut next = IoSlots::new();
        let fresh = next.insert();
        assert_eq!(fresh.index, token.index, "the same slot of a new table");
        assert!(!next.contains(token));
    }

    #[test]
    fn a_drained_fd_is_ready_again_at_its_next_readable_event() {
        let mut slots = IoSlots::new();
        let token = slots.insert();
        assert!(slots.read_ready(token), "unknown at first: try the read");
        slots.clear_read_ready(token);
        assert!(!slots.read_ready(token));
        let _ = slots.take_ready(token, false, true, false);
        assert!(
            !slots.read_ready(token),
            "a writable event says nothing of reads"
        );
        let _ = slots.take_ready(token, true, false, false);
        assert!(slots.read_ready(token));
    }

    #[test]
    fn a_closed_fd_stays_ready_whatever_reads_came_back_short() {
        let mut slots = IoSlots::new();
        let token = slots.insert();
        // The last bytes and the FIN came in one event: the read that takes the bytes is
        // short, and no event will ever announce the end of the stream it leaves behind.
        let _ = slots.take_ready(token, true, false, true);
        slots.clear_read_ready(token);
        assert!(slots.read_ready(token));
    }

    #[test]
    fn a_reused_slot_does_not_answer_to_the_old_token() {
        let mut slots = IoSlots::new();
        let old = slots.insert();
        slots.remove(old);
        let new = slots.insert();
        assert_eq!(new.index, old.index, "the slab reuses the slot");
        assert!(!slots.contains(old));
        assert!(slots.contains(new));
        slots.remove(old); // stale: frees nothing
        assert!(slots.contains(new));
    }
}
