//! Fuzz target: `proto::fuzzing::body_decoder` (see that function for the checked properties).
#![no_main]

// `proto` imports nothing else from the crate, so it is compiled here on its own: the fuzz
// build skips the rest of rcontainer (mio, nix, ...) and a stray `use crate::...` in proto
// fails loudly.
#[path = "../../src/proto/mod.rs"]
#[allow(dead_code, unused_imports)] // the binary uses a part of the module
mod proto;

libfuzzer_sys::fuzz_target!(|data: &[u8]| proto::fuzzing::body_decoder(data));
