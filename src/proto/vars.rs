//! `Vars`: the CGI-style request variables handlers see, whichever protocol carried them.
//!
//! A uwsgi packet carries them on the wire; for HTTP they are derived by `cgi`. Keys and values
//! are bytes (nginx sends ASCII, values can be anything: treat them as latin-1, as gunicorn
//! does). All of them live in one buffer with ranges into it. No I/O.

use std::fmt;

use super::Span;

/// An ordered list of `KEY = value` byte strings, duplicates allowed (first one wins on `get`).
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Vars {
    buf: Vec<u8>,
    entries: Vec<(Span, Span)>,
}

impl Vars {
    /// An empty list with room for `bytes` bytes of keys and values and `count` entries.
    #[cfg(test)]
    pub(crate) fn with_capacity(bytes: usize, count: usize) -> Self {
        Vars {
            buf: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(count),
        }
    }

    /// Appends one variable.
    pub(crate) fn push(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.push_with(
            |buf| buf.extend_from_slice(key.as_ref()),
            |buf| buf.extend_from_slice(value.as_ref()),
        );
    }

    /// Appends one variable whose key and value the two functions write at the end of the
    /// buffer they are given (derived names and values cost no buffer of their own).
    pub(crate) fn push_with(
        &mut self,
        write_key: impl FnOnce(&mut Vec<u8>),
        write_value: impl FnOnce(&mut Vec<u8>),
    ) {
        let key = self.append_with(write_key);
        let value = self.append_with(write_value);
        self.entries.push((key, value));
    }

    fn append_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Span {
        let start = self.buf.len();
        write(&mut self.buf);
        Span {
            start,
            end: self.buf.len(),
        }
    }

    /// Removes every variable, keeping the room they took (for the next request).
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.entries.clear();
    }

    /// The value of the first variable named `key` (exact, case-sensitive match).
    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> Option<&[u8]> {
        let key = key.as_ref();
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// How many variables are named `key`.
    pub(crate) fn count(&self, key: impl AsRef<[u8]>) -> usize {
        let key = key.as_ref();
        self.iter().filter(|(k, _)| *k == key).count()
    }

    /// All variables in wire order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.entries
            .iter()
            .map(|&(k, v)| (k.of(&self.buf), v.of(&self.buf)))
    }

    /// The number of variables.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_returns_the_first_of_duplicate_keys() {
        let mut vars = Vars::default();
        vars.push("A", "1");
        vars.push("B", "");
        vars.push("A", "2");
        assert_eq!(vars.get("A"), Some(&b"1"[..]));
        assert_eq!(vars.get("B"), Some(&b""[..]));
        assert_eq!(vars.get("C"), None);
        assert_eq!(vars.count("A"), 2);
        assert_eq!(vars.len(), 3);
    }
}
