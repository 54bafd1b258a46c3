//! What the worker lends to connections only while they need it, and takes back after: input
//! buffers (while a request head or body is being read), output buffers (while an answer is
//! being written) and [`RequestData`] (while a request is served). A warm worker serves a
//! request without a heap allocation, and a parked request or an idle keep-alive connection
//! holds no buffer it is not using.
//!
//! One thread: `RefCell`s. The most recently returned item is lent first (its memory is the
//! warmest). Each pool keeps at most its `keep` items free; more are dropped.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use crate::api::RequestData;

/// The first size of an input buffer: a request head rarely needs more. It doubles when a head
/// needs more room (bounded by `buffer-size`).
pub(crate) const INPUT_SIZE: usize = 4 * 1024;
/// The room an output buffer starts with: an answer's head and a small body.
const OUTPUT_SIZE: usize = 4 * 1024;

/// The pools of one worker.
#[derive(Debug)]
pub(crate) struct Pools {
    input: Pool<Vec<u8>>,
    output: Pool<Vec<u8>>,
    /// Boxed: lent and given back by pointer, not by moving the whole struct.
    requests: Pool<Box<RequestData>>,
}

impl Pools {
    /// Pools that keep up to `keep` free items each (the worker's `async` cores: as many
    /// requests as may be served at once).
    pub(crate) fn new(keep: usize) -> Pools {
        Pools {
            input: Pool::new(keep),
            output: Pool::new(keep),
            requests: Pool::new(keep),
        }
    }

    /// An input buffer of at least [`INPUT_SIZE`] bytes, zeroed once when it was made (a
    /// reused one holds old bytes: only what a read writes is ever looked at).
    pub(crate) fn take_input(&self) -> Vec<u8> {
        self.input.take_or(|| vec![0; INPUT_SIZE])
    }

    pub(crate) fn give_input(&self, buf: Vec<u8>) {
        self.input.give(buf);
    }

    /// An empty output buffer.
    pub(crate) fn take_output(&self) -> Vec<u8> {
        self.output.take_or(|| Vec::with_capacity(OUTPUT_SIZE))
    }

    pub(crate) fn give_output(&self, mut buf: Vec<u8>) {
        buf.clear();
        self.output.give(buf);
    }

    /// An empty [`RequestData`], given back when the guard drops.
    pub(crate) fn take_request(&self) -> Lent<'_, Box<RequestData>> {
        Lent {
            item: Some(self.requests.take_or(Box::default)),
            pool: &self.requests,
        }
    }
}

/// Free items of one kind.
#[derive(Debug)]
struct Pool<T> {
    free: RefCell<Vec<T>>,
    keep: usize,
}

impl<T> Pool<T> {
    fn new(keep: usize) -> Pool<T> {
        Pool {
            free: RefCell::new(Vec::new()),
            keep,
        }
    }

    fn take_or(&self, make: impl FnOnce() -> T) -> T {
        self.free.borrow_mut().pop().unwrap_or_else(make)
    }

    fn give(&self, item: T) {
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep {
            free.push(item);
        }
    }
}

/// An item lent by a pool, given back (cleared) when dropped.
#[derive(Debug)]
pub(crate) struct Lent<'p, T: Clear> {
    item: Option<T>,
    pool: &'p Pool<T>,
}

/// What a lent item does before it goes back.
pub(crate) trait Clear {
    fn clear(&mut self);
}

impl Clear for Box<RequestData> {
    fn clear(&mut self) {
        RequestData::clear(self);
    }
}

impl<T: Clear> Deref for Lent<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.item.as_ref().expect("invariant: lent until dropped")
    }
}

impl<T: Clear> DerefMut for Lent<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item.as_mut().expect("invariant: lent until dropped")
    }
}

impl<T: Clear> Drop for Lent<'_, T> {
    fn drop(&mut self) {
        if let Some(mut item) = self.item.take() {
            item.clear();
            self.pool.give(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_buffer_given_back_is_lent_first_and_extras_are_dropped() {
        let pools = Pools::new(1);
        let mut a = pools.take_input();
        a[0] = 7;
        let b = pools.take_input();
        assert!(a.len() >= INPUT_SIZE && b.len() >= INPUT_SIZE);
        pools.give_input(a);
        pools.give_input(b); // over `keep`: dropped
        assert_eq!(pools.take_input()[0], 7, "the one kept");
        assert_eq!(pools.input.free.borrow().len(), 0);
    }

    #[test]
    fn lent_request_data_comes_back_cleared() {
        let pools = Pools::new(4);
        {
            let mut data = pools.take_request();
            data.text.set(crate::api::Field::Method, b"GET");
        }
        assert_eq!(pools.take_request().method(), "");
    }
}
