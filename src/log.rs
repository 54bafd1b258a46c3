//! Logger setup: one line per event on stderr, which `daemonize`/`logto` point at a file.
//!
//! Lines look like `2026-11-23T17:45:01.123Z info master[4121] worker exited id=3 cause=signal:KILL`:
//! a UTC timestamp, the level, the process role and pid, then a lowercase message with
//! `key=value` pairs. Log files are reopened by re-pointing fd 2 (see `sys`), so the logger
//! itself always writes to stderr and never needs to know about files.
//!
//! A line is one line: control characters in a message (a peer's method or URI quoted in a
//! USR2 report, a path in a warning) are escaped by [`escape_controls`], so nobody can forge a
//! line by sending CR/LF. Request lines come escaped field by field (`worker::reqlog`).
//!
//! The level comes from `RUST_LOG` (env_logger syntax, default `info`). This module imports
//! nothing from the crate.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

/// Role value for the master process (worker ids start at 1).
const MASTER: u32 = 0;
/// Role value before the master has started (one-shot commands).
const COMMAND: u32 = u32::MAX;
/// Role value for an emperor.
const EMPEROR: u32 = u32::MAX - 1;

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
            let text = record.args().to_string();
            let message = escape_controls(&text);
            match ROLE.load(Ordering::Relaxed) {
                COMMAND => writeln!(buf, "{timestamp} {level} rcontainer[{pid}] {message}"),
                MASTER => writeln!(buf, "{timestamp} {level} master[{pid}] {message}"),
                EMPEROR => writeln!(buf, "{timestamp} {level} emperor[{pid}] {message}"),
                id => writeln!(buf, "{timestamp} {level} worker{id}[{pid}] {message}"),
            }
        });
    // A second init (tests, re-exec) keeps the first logger: that is fine.
    let _ = builder.try_init();
}

/// Marks this process as the master in every following line.
pub(crate) fn set_role_master() {
    ROLE.store(MASTER, Ordering::Relaxed);
}

/// Marks this process as an emperor in every following line.
pub(crate) fn set_role_emperor() {
    ROLE.store(EMPEROR, Ordering::Relaxed);
}

/// Marks this process as worker `id` (1-based) in every following line.
pub(crate) fn set_role_worker(id: u32) {
    ROLE.store(id, Ordering::Relaxed);
}

/// `text` with every control character written out: `\r`, `\n`, `\t`, and `\xNN` for the
/// other C0 controls, DEL and the C1 controls (U+0080 to U+009F). Borrowed when there is none
/// (the usual case). A backslash is left as it is: the point is that a line stays one line.
/// [`escape_controls`] as it is written out: `format!("{}", Escaped(text))` (no copy made).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0;
        if !text.chars().any(char::is_control) {
            return f.write_str(text);
        }
        for c in text.chars() {
            match c {
                '\r' => f.write_str("\\r")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() => write!(f, "\\x{:02x}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_writes_what_escape_controls_returns() {
        for text in ["plain", "a\r\nb", "tab\there", "nul\0\x7f", "é\u{85}x", ""] {
            assert_eq!(Escaped(text).to_string(), escape_controls(text));
        }
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(escape_controls("GET /a b é"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("GET\r\n[pid: 1] x\ty\x00\x1b[m\x7f\u{85}\\n"),
            "GET\\r\\n[pid: 1] x\\ty\\x00\\x1b[m\\x7f\\x85\\n"
        );
    }
}
