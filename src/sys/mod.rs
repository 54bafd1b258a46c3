//! The only place (besides `coro`) with unsafe code: thin libc wrappers.
#![allow(unsafe_code)]

pub(crate) mod fault;
pub(crate) mod stack;
