//! Process exit codes, in one place (DESIGN.md §9).
//!
//! Only `main` (through [`crate::run`]) and the `_exit` of a forked child turn these into a real
//! process exit; library code returns them.

/// Everything went as asked.
pub(crate) const OK: u8 = 0;
/// Bad configuration or command line: nothing was started.
pub(crate) const CONFIG: u8 = 1;
/// A runtime failure after start-up (or a mode this build does not have).
pub(crate) const RUNTIME: u8 = 2;
/// A worker failed right after boot: respawning it would only loop.
pub(crate) const WORKER_BOOT: u8 = 3;
