//! Fuzz entry points: each one runs a parser on arbitrary bytes and asserts the properties
//! that must hold for every input (no panic, split-point independence, round trips).
//!
//! Compiled for the fuzz crate (`cfg(fuzzing)`) and for unit tests, which replay the corpus
//! and the committed crash inputs through the same checks. No I/O.
#![cfg_attr(not(fuzzing), allow(unreachable_pub))]
