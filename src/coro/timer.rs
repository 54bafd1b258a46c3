//! The timer heap of a runtime: deadlines in order (ties by arrival), each carrying what the
//! scheduler does when it passes (`sched::TimerKind`: wake a park, cancel a request).
//!
//! Owns only the heap and its sequence numbers. Deletion is lazy: an entry whose park woke
//! early stays until it is due (firing it is then a no-op the scheduler recognises) or until
//! [`Timers::compact`] drops it. The scheduler says which entries went stale; this module never
//! looks inside an entry's kind.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

/// Stale entries tolerated before compacting is worth its O(n).
const COMPACT_AFTER: usize = 1024;

/// One deadline: when, in which order it was armed (its id), and what it is for.
pub(crate) struct Timer<K> {
    pub(crate) at: Instant,
    pub(crate) seq: u64,
    pub(crate) kind: K,
}

impl<K> PartialEq for Timer<K> {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl<K> Eq for Timer<K> {}
impl<K> PartialOrd for Timer<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Timer<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The pending deadlines of one runtime, earliest first.
pub(crate) struct Timers<K> {
    heap: BinaryHeap<Reverse<Timer<K>>>,
    /// Entries the scheduler reported stale since the last compaction.
    stale: usize,
    next_seq: u64,
}

impl<K> Timers<K> {
    pub(crate) fn new() -> Timers<K> {
        Timers {
            heap: BinaryHeap::new(),
            stale: 0,
            next_seq: 0,
        }
    }

    /// Arms a deadline; returns its sequence number (never 0, unique in this heap).
    #[inline]
    pub(crate) fn push(&mut self, at: Instant, kind: K) -> u64 {
        self.next_seq += 1;
        self.heap.push(Reverse(Timer {
            at,
            seq: self.next_seq,
            kind,
        }));
        self.next_seq
    }

    /// The earliest deadline, if any.
    #[inline]
    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(t)| t.at)
    }

    /// Takes the earliest entry if it is due at `now`.
    #[inline]
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer<K>> {
        if self.heap.peek().is_some_and(|Reverse(t)| t.at <= now) {
            self.heap.pop().map(|Reverse(t)| t)
        } else {
            None
        }
    }

    /// Counts one entry that will fire for nothing (its park woke early).
    #[inline]
    pub(crate) fn note_stale(&mut self) {
        self.stale += 1;
    }

    /// Whether stale entries are the majority (and numerous): then `compact` keeps the heap
    /// O(live timers).
    #[inline]
    pub(crate) fn wants_compaction(&self) -> bool {
        self.stale > COMPACT_AFTER && self.stale * 2 > self.heap.len()
    }

    /// Keeps only the entries `live` accepts.
    pub(crate) fn compact(&mut self, mut live: impl FnMut(&Timer<K>) -> bool) {
        self.heap.retain(|Reverse(t)| live(t));
        self.stale = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_order_by_deadline_then_arrival() {
        let at = Instant::now();
        let mut timers = Timers::new();
        timers.push(at + Duration::from_millis(2), "late");
        timers.push(at, "first");
        timers.push(at, "second");
        let order: Vec<&str> = std::iter::from_fn(|| timers.pop_due(at + Duration::from_secs(1)))
            .map(|t| t.kind)
            .collect();
        assert_eq!(order, ["first", "second", "late"]);
    }

    #[test]
    fn only_due_timers_are_taken() {
        let now = Instant::now();
        let mut timers = Timers::new();
        let soon = timers.push(now, ());
        timers.push(now + Duration::from_secs(60), ());
        assert_eq!(timers.pop_due(now).map(|t| t.seq), Some(soon));
        assert!(timers.pop_due(now).is_none(), "the other one is not due");
        assert_eq!(timers.next_at(), Some(now + Duration::from_secs(60)));
    }

    #[test]
    fn compaction_waits_for_a_stale_majority_and_keeps_the_live_entries() {
        let now = Instant::now();
        let mut timers = Timers::new();
        for n in 0..3000u32 {
            timers.push(now, n);
        }
        for _ in 0..1400 {
            timers.note_stale();
        }
        assert!(!timers.wants_compaction(), "1400 of 3000 is not a majority");
        for _ in 0..200 {
            timers.note_stale();
        }
        assert!(timers.wants_compaction());
        timers.compact(|t| t.kind % 2 == 0);
        assert_eq!(timers.len(), 1500);
        assert!(!timers.wants_compaction(), "the stale count starts over");
    }
}
