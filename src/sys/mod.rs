//! The only place (besides `coro`) with unsafe code: thin libc wrappers.
#![allow(unsafe_code)]

pub(crate) mod clock;
pub(crate) mod daemon;
pub(crate) mod fault;
pub(crate) mod fd;
pub(crate) mod fifo;
pub(crate) mod memory;
pub(crate) mod notify;
pub(crate) mod pidfile;
pub(crate) mod privilege;
pub(crate) mod process;
#[cfg(test)]
pub(crate) mod rerun;
pub(crate) mod rlimit;
pub(crate) mod shm;
pub(crate) mod signal;
pub(crate) mod stack;
#[cfg(test)]
pub(crate) mod tempdir;
