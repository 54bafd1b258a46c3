//! The coroutine runtime.
#![allow(unsafe_code)]
