//! Logger setup: one line per event on stderr, which `daemonize`/`logto` point at a file.
//!
//! Lines look like `2026-11-23T17:45:01.123Z info master[4121] worker exited id=3 cause=signal:KILL`:
//! a UTC timestamp, the level, the process role and pid, then a lowercase message with
//! `key=value` pairs. Log files are reopened by re-pointing fd 2 (see `sys`), so the logger
//! itself always writes to stderr and never needs to know about files.
//!
//! The level comes from `RUST_LOG` (env_logger syntax, default `info`). This module imports
//! nothing from the crate.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

/// Role value for the master process (worker ids start at 1).
const MASTER: u32 = 0;
/// Role value before the master has started (one-shot commands).
const COMMAND: u32 = u32::MAX;

static ROLE: AtomicU32 = AtomicU32::new(COMMAND);

/// The `log` target of request-log lines: written as they are, without the server-line prefix.
pub(crate) const REQUEST_TARGET: &str = "rcontainer::request";

/// Installs the logger once; later calls are no-ops (a re-exec'd master calls it again).
pub(crate) fn init() {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(log::LevelFilter::Info)
        .parse_env("RUST_LOG")
        .target(env_logger::Target::Stderr)
        .format(|buf, record| {
            if record.target() == REQUEST_TARGET {
                return writeln!(buf, "{}", record.args());
            }
            let level = record.level().as_str().to_ascii_lowercase();
            let timestamp = buf.timestamp_millis();
            let pid = std::process::id();
            match ROLE.load(Ordering::Relaxed) {
                COMMAND => writeln!(
                    buf,
                    "{timestamp} {level} rcontainer[{pid}] {}",
                    record.args()
                ),
                MASTER => writeln!(buf, "{timestamp} {level} master[{pid}] {}", record.args()),
                id => writeln!(
                    buf,
                    "{timestamp} {level} worker{id}[{pid}] {}",
                    record.args()
                ),
            }
        });
    // A second init (tests, re-exec) keeps the first logger: that is fine.
    let _ = builder.try_init();
}

/// Marks this process as the master in every following line.
pub(crate) fn set_role_master() {
    ROLE.store(MASTER, Ordering::Relaxed);
}

/// Marks this process as worker `id` (1-based) in every following line.
pub(crate) fn set_role_worker(id: u32) {
    ROLE.store(id, Ordering::Relaxed);
}
