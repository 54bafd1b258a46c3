//! Error text for failed system calls: what was being done, on what, and why, in words.
//!
//! `io::Error`'s own text is `No such file or directory (os error 2)`, and a bare errno says
//! nothing about which of the many start-up steps failed. Start-up errors read instead
//! `pidfile /run/app.pid: create: no such file or directory`: the option and its value, the
//! operation, the reason. Each layer adds what it knows with [`with_context`]; the kind is kept,
//! so callers can still match on it.

use std::fmt;
use std::io;

use nix::errno::Errno;

/// The reason of `error` in words: the system's description of its errno, lower-cased
/// (`address already in use`), or the message of an error that already carries one.
pub(crate) fn describe(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => {
            let text = Errno::from_raw(code).desc();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                None => format!("errno {code}"),
            }
        }
        None => error.to_string(),
    }
}

/// `error` with `what` in front (`bind`, `socket 127.0.0.1:80: bind`), of the same kind.
pub(crate) fn with_context(error: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {}", describe(&error)))
}

/// A closure for `map_err` that puts `what` in front of an error.
pub(crate) fn context<W: fmt::Display>(what: W) -> impl FnOnce(io::Error) -> io::Error {
    move |error| with_context(error, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_errors_read_as_lower_case_words_without_the_number() {
        let error = io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(describe(&error), "address already in use");
        let error = with_context(error, "socket :80: bind");
        assert_eq!(
            error.to_string(),
            "socket :80: bind: address already in use"
        );
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn contexts_nest_from_the_inside_out() {
        let inner = with_context(io::Error::from_raw_os_error(libc::ENOENT), "create");
        let outer = context("pidfile /x/y.pid")(inner);
        assert_eq!(
            outer.to_string(),
            "pidfile /x/y.pid: create: no such file or directory"
        );
        assert_eq!(outer.kind(), io::ErrorKind::NotFound);
    }
}
