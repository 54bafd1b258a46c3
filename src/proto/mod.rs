//! Pure protocol code over byte slices: the uwsgi binary protocol and HTTP/1.1.
//!
//! This module owns the wire formats and nothing else. It does no I/O: no sockets, no logging,
//! no coroutines, no clocks. Every parser takes `&[u8]` and answers in the same three ways:
//!
//! * `Ok(None)`: the bytes so far are a valid prefix; read more and call again with the whole
//!   buffer (parsers are restartable, so the split points of the reads never matter);
//! * `Ok(Some((value, consumed)))`: a complete value, built from `buf[..consumed]`; whatever
//!   follows belongs to the body or to the next pipelined request;
//! * `Err(ParseError)`: the peer sent something we refuse; [`ParseError::status`] is the HTTP
//!   status to answer with (or a hint to just close, on a uwsgi socket).
//!
//! How a connection loop drives it:
//!
//! * **uwsgi socket**: [`uwsgi::parse_packet`] until it returns a packet; a ping is answered with
//!   [`uwsgi::PONG`]; a request carries its [`Vars`] and a `CONTENT_LENGTH` that frames the body
//!   (feed a [`http1::BodyDecoder`] built from `request.body_framing()`); the answer head
//!   comes from [`uwsgi::write_response_head`] (never chunked), then the connection is closed.
//! * **HTTP socket**: [`http1::parse_request_head`], then [`http1::BodyDecoder`] for the body
//!   (after writing [`http1::CONTINUE_100`] when the head asks for it), [`cgi::vars_from_head`] for
//!   the handler's CGI view, and [`http1::decide_framing`] + [`http1::write_response_head`] (+
//!   [`http1::ChunkHeader`]) for the answer. Keep-alive and pipelining follow from the head's
//!   `keep_alive()` and from the `consumed` counts.
//! * **any error**: [`http1::write_error_response`] with `err.status()` (on a uwsgi socket, for
//!   `HttpOnUwsgiSocket` and `UnsupportedModifier`, log and close instead, as uWSGI does).
//! * **HTTP client** (`rcontainer::client`, the other role): [`http1::client::encode_request`],
//!   then [`http1::client::parse_response_head`] and [`http1::client::response_framing`], and a
//!   [`http1::BodyDecoder`] for a framed response body.
//!
//! `proto` imports nothing else from the crate. The bench and fuzz crates include this directory
//! with `#[path]`, so a stray `use crate::...` breaks their build on purpose.

pub(crate) mod cgi;
pub(crate) mod date;
mod error;
pub(crate) mod http1;
mod limits;
pub(crate) mod uwsgi;
mod vars;

#[cfg(test)]
mod corpus;
#[cfg(any(fuzzing, test))]
pub(crate) mod fuzzing;

pub(crate) use error::ParseError;
pub(crate) use limits::Limits;
pub(crate) use vars::Vars;

/// A byte range into a buffer the owner keeps: lets a parsed message live in one allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn of(self, buf: &[u8]) -> &[u8] {
        &buf[self.start..self.end]
    }
}
