//! HTTP/1.1 request heads: the request line and header fields (via `httparse`), size limits,
//! and the checks that decide the body framing (RFC 9112 §6) and keep-alive.
//!
//! Line endings: CRLF, or a bare LF as `httparse` accepts it (RFC 9112 §2.2 allows a recipient
//! to); a bare CR is refused. obs-fold lines are refused. No I/O.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use super::body::BodyFraming;
use super::response::is_tchar;
use crate::proto::uwsgi::parse_decimal;
use crate::proto::{Limits, ParseError, Span};

/// The most header fields one head may have; more is 431. A stack array of this many
/// `httparse::Header`s (left uninitialized) is used on each parse attempt, so there is no
/// allocation per attempt.
pub(crate) const MAX_HEADERS: usize = 100;

/// The HTTP version of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Version {
    /// HTTP/1.0: close after each response unless `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: persistent unless `Connection: close`.
    #[default]
    Http11,
}

impl Version {
    /// `HTTP/1.0` or `HTTP/1.1`, as in `SERVER_PROTOCOL`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Where the parts of a parsed request head are: ranges into its bytes, and what its fields
/// decide. Owned and reusable: a connection keeps one and parses every head into it
/// ([`parse_request_head_into`]), so a head costs no allocation once it has held as many
/// fields as the largest head seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeadSpans {
    method: Span,
    target: Span,
    version: Version,
    headers: Vec<(Span, Span)>,
    framing: BodyFraming,
    keep_alive: bool,
    expects_continue: bool,
    len: usize,
}

impl HeadSpans {
    /// The request's version.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// See [`RequestHead::keep_alive`].
    pub(crate) fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether the head parsed from `buf` is a HEAD request.
    pub(crate) fn is_head(&self, buf: &[u8]) -> bool {
        self.method.of(buf) == b"HEAD"
    }

    /// Becomes a copy of `other`, in the room it already has (`clone_from` of a derived
    /// `Clone` would allocate a new list).
    pub(crate) fn copy_from(&mut self, other: &HeadSpans) {
        self.headers.clear();
        self.headers.extend_from_slice(&other.headers);
        let HeadSpans {
            method,
            target,
            version,
            headers: _,
            framing,
            keep_alive,
            expects_continue,
            len,
        } = other;
        (self.method, self.target, self.version) = (*method, *target, *version);
        (self.framing, self.keep_alive) = (*framing, *keep_alive);
        (self.expects_continue, self.len) = (*expects_continue, *len);
    }
}

/// A parsed request head: its bytes (borrowed where they were read) and its [`HeadSpans`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RequestHead<'b> {
    buf: &'b [u8],
    spans: Cow<'b, HeadSpans>,
    /// The method and the target as text (checked once, read many times).
    method: &'b str,
    target: &'b str,
}

impl<'b> RequestHead<'b> {
    /// The head that [`parse_request_head_into`] found at the start of `buf` into `spans`.
    pub(crate) fn new(buf: &'b [u8], spans: &'b HeadSpans) -> RequestHead<'b> {
        RequestHead::with_spans(&buf[..spans.len], Cow::Borrowed(spans))
    }

    /// [`new`](Self::new) for a head already known to be UTF-8 (`text` is its bytes): nothing
    /// is checked again.
    pub(crate) fn from_text(text: &'b str, spans: &'b HeadSpans) -> RequestHead<'b> {
        let part = |span: Span| &text[span.start..span.end];
        RequestHead {
            buf: &text.as_bytes()[..spans.len],
            method: part(spans.method),
            target: part(spans.target),
            spans: Cow::Borrowed(spans),
        }
    }

    fn with_spans(buf: &'b [u8], spans: Cow<'b, HeadSpans>) -> RequestHead<'b> {
        // httparse only returns a method made of token bytes (ASCII), and a target it has
        // checked to be UTF-8.
        let text = |span: Span| {
            std::str::from_utf8(span.of(buf)).expect("invariant: httparse checked the text")
        };
        let (method, target) = (text(spans.method), text(spans.target));
        RequestHead {
            buf,
            spans,
            method,
            target,
        }
    }
}

impl<'b> RequestHead<'b> {
    /// The head's bytes, as they were read.
    pub(crate) fn bytes(&self) -> &'b [u8] {
        self.buf
    }

    /// The method token, e.g. `GET` (case-sensitive, as RFC 9110 says).
    pub(crate) fn method(&self) -> &'b str {
        self.method
    }

    /// The raw request-target as sent (`REQUEST_URI`), e.g. `/a%20b?x=1`.
    pub(crate) fn target(&self) -> &'b str {
        self.target
    }

    /// The raw path of the target, without the query; for an absolute-form target, without the
    /// scheme and authority (`/` if it has no path); `*` for `OPTIONS *`.
    pub(crate) fn path(&self) -> &str {
        let target = self.target();
        let without_query = target.split_once('?').map_or(target, |(p, _)| p);
        match split_absolute_form(without_query) {
            Some((_, _, "")) => "/",
            Some((_, _, path)) => path,
            None => without_query,
        }
    }

    /// The authority (`host[:port]`) of an absolute-form target, `None` for the other forms.
    /// RFC 9112 §3.2.2: when it is there, it is the request's host, whatever `Host` says.
    pub(crate) fn authority(&self) -> Option<&str> {
        let target = self.target();
        let without_query = target.split_once('?').map_or(target, |(p, _)| p);
        split_absolute_form(without_query).map(|(_, authority, _)| authority)
    }

    /// The request's host as sent: the target's authority for an absolute-form target, else the
    /// first `Host` value (`None` when there is neither, as HTTP/1.0 allows).
    pub(crate) fn host(&self) -> Option<&[u8]> {
        self.authority()
            .map(str::as_bytes)
            .or_else(|| self.header("host"))
    }

    /// The raw query after the first `?`, empty if none (`QUERY_STRING`).
    pub(crate) fn query(&self) -> &str {
        self.target().split_once('?').map_or("", |(_, q)| q)
    }

    /// The request's version.
    pub(crate) fn version(&self) -> Version {
        self.spans.version
    }

    /// The header fields in wire order; names as sent (case kept), values without the
    /// surrounding whitespace.
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.spans.headers.iter().map(|&(name, value)| {
            // httparse only accepts names made of token bytes, which are ASCII.
            let name = std::str::from_utf8(name.of(self.buf)).expect("invariant: name is a token");
            (name, value.of(self.buf))
        })
    }

    /// The value of the first header named `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// How the body is framed (already checked against `limit-post` when declared).
    pub(crate) fn framing(&self) -> BodyFraming {
        self.spans.framing
    }

    /// Whether the client allows the connection to stay open after this exchange: HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn keep_alive(&self) -> bool {
        self.spans.keep_alive
    }

    /// Whether an HTTP/1.1 client sent `Expect: 100-continue` for a body: the worker writes
    /// [`super::CONTINUE_100`] before it first reads body bytes from the socket (it may skip it
    /// if body bytes already arrived). HTTP/1.0 requests never expect it (RFC 9110 §10.1.1);
    /// other expectations are ignored.
    pub(crate) fn expects_continue(&self) -> bool {
        self.spans.expects_continue
    }

    /// Whether this is a HEAD request.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn is_head(&self) -> bool {
        self.method() == "HEAD"
    }

    /// The size of the head on the wire.
    pub(crate) fn len(&self) -> usize {
        self.spans.len
    }
}

#[cfg(any(test, fuzzing))]
/// Parses one request head from the start of `buf`, with [`HeadSpans`] of its own (tests,
/// fuzzing, the corpus; the worker reuses its spans with [`parse_request_head_into`]).
///
/// Returns `Ok(None)` while the head is incomplete, then the head and its length; the body (or
/// the next pipelined request) starts at `buf[consumed..]`. See [`parse_request_head_into`]
/// for the errors.
pub(crate) fn parse_request_head<'b>(
    buf: &'b [u8],
    limits: &Limits,
) -> Result<Option<(RequestHead<'b>, usize)>, ParseError> {
    let mut spans = HeadSpans::default();
    let Some(len) = parse_request_head_into(buf, limits, &mut spans)? else {
        return Ok(None);
    };
    Ok(Some((
        RequestHead::with_spans(&buf[..len], Cow::Owned(spans)),
        len,
    )))
}

/// Parses one request head from the start of `buf` into `spans` (left as they were unless the
/// head is complete); [`RequestHead::new`] then reads it.
///
/// Returns `Ok(None)` while the head is incomplete, then its length; the body (or the next
/// pipelined request) starts at `buf[len..]`. Only the first `buffer-size` bytes are ever
/// looked at, so the answer does not depend on how the bytes were split into reads.
///
/// # Errors
/// 431 for a head over `buffer-size` or too many headers; 414 for a target over `max_uri` (or
/// a request line that does not end within `buffer-size`); 413 for a `Content-Length` over
/// `limit-post`; 501 for a transfer coding other than chunked; 400 for everything else
/// malformed, including every smuggling pattern of RFC 9112 §6 and a missing `Host`.
pub(crate) fn parse_request_head_into(
    buf: &[u8],
    limits: &Limits,
    spans: &mut HeadSpans,
) -> Result<Option<usize>, ParseError> {
    let window = &buf[..buf.len().min(limits.buffer_size)];
    // Most heads have a few fields: parsed with room for FEW_HEADERS on the stack (1 KiB, left
    // uninitialized: httparse writes the fields it finds). A head with more is parsed again
    // with room for them all, on the heap: a request's coroutine stays shallow.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; FEW_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(window, &mut fields) {
        Err(httparse::Error::TooManyHeaders) => {
            parse_many_headers(window, buf.len(), limits, spans)
        }
        result => finish_head(req, result, window, buf.len(), limits, spans),
    }
}

/// The most header fields a head is first parsed with (on the stack).
const FEW_HEADERS: usize = 32;

/// [`parse_request_head_into`] for a head with more than [`FEW_HEADERS`] fields.
#[cold]
#[inline(never)]
fn parse_many_headers(
    window: &[u8],
    buf_len: usize,
    limits: &Limits,
    spans: &mut HeadSpans,
) -> Result<Option<usize>, ParseError> {
    let mut fields = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let result = req.parse(window);
    finish_head(req, result, window, buf_len, limits, spans)
}

/// The checks and spans of a head httparse parsed (or failed to).
fn finish_head(
    req: httparse::Request<'_, '_>,
    result: httparse::Result<usize>,
    window: &[u8],
    buf_len: usize,
    limits: &Limits,
    spans: &mut HeadSpans,
) -> Result<Option<usize>, ParseError> {
    let len = match result {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf_len < limits.buffer_size => return Ok(None),
        Ok(httparse::Status::Partial) => {
            return Err(if request_line_ended(window) {
                ParseError::HeadTooLarge
            } else {
                ParseError::UriTooLong
            });
        }
        Err(e) => return Err(map_httparse_error(e)),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(ParseError::InvalidRequestLine);
    };
    let version = match version {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(ParseError::UnsupportedVersion),
    };
    if target.len() > limits.max_uri {
        return Err(ParseError::UriTooLong);
    }
    check_target(method, target)?;
    let checks = check_fields(req.headers, version, limits)?;

    let head_bytes = &window[..len];
    let span = |s: &[u8]| {
        // Every slice httparse returns points into `head_bytes`.
        let start = s.as_ptr() as usize - head_bytes.as_ptr() as usize;
        Span {
            start,
            end: start + s.len(),
        }
    };
    spans.headers.clear();
    spans
        .headers
        .extend((req.headers.iter()).map(|h| (span(h.name.as_bytes()), span(h.value))));
    spans.method = span(method.as_bytes());
    spans.target = span(target.as_bytes());
    spans.version = version;
    spans.framing = checks.framing;
    spans.keep_alive = checks.keep_alive;
    spans.expects_continue = checks.expects_continue && checks.framing != BodyFraming::Empty;
    spans.len = len;
    Ok(Some(len))
}

/// Whether the request line (after any leading empty lines) has its line end in `window`.
fn request_line_ended(window: &[u8]) -> bool {
    let start = window
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(window.len());
    window[start..].contains(&b'\n')
}

fn map_httparse_error(e: httparse::Error) -> ParseError {
    match e {
        httparse::Error::HeaderName => ParseError::InvalidHeaderName,
        httparse::Error::HeaderValue => ParseError::InvalidHeaderValue,
        httparse::Error::NewLine => ParseError::InvalidLineEnding,
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        httparse::Error::Version => ParseError::UnsupportedVersion,
        httparse::Error::Token | httparse::Error::Status => ParseError::InvalidRequestLine,
    }
}

/// The request-target forms of RFC 9112 §3.2: origin (`/path`), absolute (`http://h/p`) and
/// asterisk (`*`, OPTIONS only). CONNECT (authority-form) is refused as not implemented. No
/// form may carry a `#fragment` (it is never sent, RFC 9112 §3.2), and an absolute-form target
/// must have a valid authority: it decides the request's host.
fn check_target(method: &str, target: &str) -> Result<(), ParseError> {
    if method == "CONNECT" {
        return Err(ParseError::ConnectNotSupported);
    }
    let ok = if target.contains('#') {
        false
    } else if target == "*" {
        method == "OPTIONS"
    } else if target.starts_with('/') {
        true
    } else {
        let without_query = target.split_once('?').map_or(target, |(p, _)| p);
        split_absolute_form(without_query)
            .is_some_and(|(_, authority, _)| is_valid_authority(authority))
    };
    if ok {
        Ok(())
    } else {
        Err(ParseError::InvalidTarget)
    }
}

/// `scheme://authority/path` (query already removed) as `(scheme, authority, path)`; the path
/// keeps its `/` and may be empty. `None` when the target is not in absolute form.
fn split_absolute_form(target: &str) -> Option<(&str, &str, &str)> {
    if target.starts_with('/') {
        return None;
    }
    let (scheme, rest) = target.split_once("://")?;
    let mut bytes = scheme.bytes();
    let scheme_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Some((scheme, authority, path))
}

/// `host [":" port]` of RFC 3986 §3.2 with a non-empty host: a reg-name (unreserved,
/// sub-delims, `%XX`), or an IP literal in brackets; the port is digits. No userinfo: RFC 9110
/// §4.2.4 says to treat it as an error in an `http(s)` URI.
fn is_valid_authority(authority: &str) -> bool {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(literal) => match literal.split_once(']') {
            Some((inside, after)) => (is_ip_literal(inside.as_bytes()), after),
            None => return false,
        },
        None => {
            // A reg-name has no `:`, so the first one starts the port.
            let end = authority.find(':').unwrap_or(authority.len());
            let host = &authority.as_bytes()[..end];
            (!host.is_empty() && is_reg_name(host), &authority[end..])
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// What may sit between the brackets of an IP literal: an IPv6 address (hex digits, `:`, a
/// dotted IPv4 tail) or an IPvFuture (`v1.x`: unreserved, sub-delims, `:`).
fn is_ip_literal(inside: &[u8]) -> bool {
    !inside.is_empty()
        && inside
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b":.-_~!$&'()*+,;=".contains(&b))
}

/// RFC 3986 reg-name: unreserved, sub-delims and well-formed `%XX` escapes.
fn is_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                let hex = host.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) => i += 1,
            _ => return false,
        }
    }
    true
}

/// What the header fields decide.
struct FieldChecks {
    framing: BodyFraming,
    keep_alive: bool,
    expects_continue: bool,
}

fn check_fields(
    fields: &[httparse::Header<'_>],
    version: Version,
    limits: &Limits,
) -> Result<FieldChecks, ParseError> {
    let mut hosts = 0usize;
    let mut content_types = 0usize;
    let mut content_length: Option<&[u8]> = None;
    let mut transfer_encoding = false;
    let mut chunked_last = false;
    let mut chunked_seen = false;
    let mut unknown_coding = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expects_continue = false;

    for field in fields {
        let name = field.name;
        let value = field.value;
        // Told apart by length first: most fields are none of these.
        if !matches!(name.len(), 4 | 6 | 10 | 12 | 14 | 17) {
            continue;
        }
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if !is_valid_host(value) {
                return Err(ParseError::InvalidHost);
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            content_types += 1;
            if content_types > 1 {
                return Err(ParseError::DuplicateContentType);
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(ParseError::DuplicateContentLength);
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for coding in list_elements(value) {
                if chunked_seen {
                    // Anything after chunked (including chunked again) leaves the length
                    // undeterminable, or applies chunked twice.
                    return Err(ParseError::InvalidTransferEncoding);
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked_seen = true;
                } else if coding.iter().all(|&b| is_tchar(b)) {
                    unknown_coding = true;
                } else {
                    return Err(ParseError::InvalidTransferEncoding);
                }
            }
            chunked_last = chunked_seen;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in list_elements(value) {
                conn_close |= option.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expects_continue |= trim_ows(value).eq_ignore_ascii_case(b"100-continue");
        }
    }

    match (version, hosts) {
        (_, 2..) => return Err(ParseError::DuplicateHost),
        (Version::Http11, 0) => return Err(ParseError::MissingHost),
        _ => {}
    }

    let framing = if transfer_encoding {
        if content_length.is_some() {
            return Err(ParseError::ContentLengthWithTransferEncoding);
        }
        if version == Version::Http10 {
            return Err(ParseError::TransferEncodingOnHttp10);
        }
        if !chunked_last {
            return Err(ParseError::InvalidTransferEncoding);
        }
        if unknown_coding {
            return Err(ParseError::UnsupportedTransferCoding);
        }
        BodyFraming::Chunked
    } else if let Some(value) = content_length {
        let len = parse_decimal(value).ok_or(ParseError::InvalidContentLength)?;
        if limits.is_body_too_large(len) {
            return Err(ParseError::BodyTooLarge);
        }
        BodyFraming::from_length(len)
    } else {
        BodyFraming::Empty
    };

    let keep_alive = match version {
        Version::Http11 => !conn_close,
        Version::Http10 => conn_keep_alive && !conn_close,
    };
    Ok(FieldChecks {
        framing,
        keep_alive,
        expects_continue: expects_continue && version == Version::Http11,
    })
}

/// The non-empty elements of a comma-separated list value (RFC 9110 §5.6.1), trimmed.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// A `Host` value made of the bytes a host (reg-name, IPv4, `[IPv6]`) and port can hold
/// (RFC 3986 §3.2.2). Empty is allowed (RFC 9112 §3.2, for targets without an authority).
fn is_valid_host(value: &[u8]) -> bool {
    value.iter().all(|&b| HOST_BYTES[usize::from(b)])
}

/// The bytes [`is_valid_host`] takes (a table: one load per byte).
static HOST_BYTES: [bool; 256] = {
    let mut ok = [false; 256];
    let mut b = 0;
    while b < 256 {
        ok[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~%!$&'()*+,;=:[]";
    let mut i = 0;
    while i < others.len() {
        ok[others[i] as usize] = true;
        i += 1;
    }
    ok
};

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<(RequestHead<'_>, usize)>, ParseError> {
        parse_request_head(buf, &Limits::default())
    }

    fn head(buf: &[u8]) -> RequestHead<'_> {
        match parse(buf) {
            Ok(Some((head, n))) => {
                assert_eq!(n, head.len());
                head
            }
            other => panic!("not a head: {other:?}"),
        }
    }

    fn status(buf: &[u8]) -> u16 {
        match parse(buf) {
            Err(e) => e.status(),
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn simple_get_parses_into_parts() {
        let h = head(b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), "/a/b?x=1&y");
        assert_eq!(h.path(), "/a/b");
        assert_eq!(h.query(), "x=1&y");
        assert_eq!(h.version(), Version::Http11);
        assert_eq!(h.header("host"), Some(&b"example.com"[..]));
        assert_eq!(h.headers().count(), 2);
        assert_eq!(h.framing(), BodyFraming::Empty);
        assert!(h.keep_alive());
        assert!(!h.expects_continue());
    }

    #[test]
    fn incomplete_head_needs_more_at_every_split() {
        let wire = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        let end = wire.len() - 3;
        for i in 0..end {
            assert_eq!(parse(&wire[..i]), Ok(None), "prefix {i}");
        }
        let (h, n) = parse(wire).expect("valid").expect("complete");
        assert_eq!(n, end);
        assert_eq!(h.framing(), BodyFraming::Length(3));
    }

    #[test]
    fn pipelined_requests_parse_one_at_a_time() {
        let wire = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        let (first, n) = parse(wire).expect("valid").expect("complete");
        assert_eq!(first.target(), "/1");
        let (second, m) = parse(&wire[n..]).expect("valid").expect("complete");
        assert_eq!(second.target(), "/2");
        assert_eq!(n + m, wire.len());
    }

    #[test]
    fn http11_without_host_gets_400() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(ParseError::MissingHost)
        );
        assert!(parse(b"GET / HTTP/1.0\r\n\r\n").expect("valid").is_some());
    }

    #[test]
    fn two_hosts_get_400() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(ParseError::DuplicateHost)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            Err(ParseError::InvalidHost)
        );
    }

    #[test]
    fn content_length_with_transfer_encoding_gets_400() {
        let wire = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            parse(wire),
            Err(ParseError::ContentLengthWithTransferEncoding)
        );
    }

    #[test]
    fn duplicate_or_bad_content_length_gets_400() {
        for wire in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\n",
        ] {
            assert_eq!(parse(wire), Err(ParseError::DuplicateContentLength));
        }
        for value in [
            "3, 3",
            "-1",
            "+3",
            "0x10",
            "",
            "99999999999999999999",
            "1 2",
        ] {
            let wire = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(
                parse(wire.as_bytes()),
                Err(ParseError::InvalidContentLength),
                "{value:?}"
            );
        }
    }

    #[test]
    fn transfer_encoding_must_end_in_chunked() {
        let te = |v: &str| {
            let wire = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n");
            parse(wire.as_bytes()).map(|r| r.map(|(h, _)| h.framing()))
        };
        assert_eq!(te("chunked"), Ok(Some(BodyFraming::Chunked)));
        assert_eq!(te("Chunked "), Ok(Some(BodyFraming::Chunked)));
        assert_eq!(te("gzip"), Err(ParseError::InvalidTransferEncoding));
        assert_eq!(
            te("chunked, gzip"),
            Err(ParseError::InvalidTransferEncoding)
        );
        assert_eq!(
            te("chunked, chunked"),
            Err(ParseError::InvalidTransferEncoding)
        );
        assert_eq!(te(""), Err(ParseError::InvalidTransferEncoding));
        assert_eq!(
            te("gzip, chunked"),
            Err(ParseError::UnsupportedTransferCoding)
        );
        assert_eq!(te("chunked;x=1"), Err(ParseError::InvalidTransferEncoding));
        let split = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(split), Err(ParseError::UnsupportedTransferCoding));
        let split = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n";
        assert_eq!(parse(split), Err(ParseError::InvalidTransferEncoding));
    }

    #[test]
    fn transfer_encoding_on_http10_gets_400() {
        let wire = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(wire), Err(ParseError::TransferEncodingOnHttp10));
    }

    #[test]
    fn obs_fold_gets_400() {
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
            400
        );
    }

    #[test]
    fn bare_cr_gets_400_and_bare_lf_is_accepted() {
        assert_eq!(status(b"GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), 400);
        let h = head(b"GET / HTTP/1.1\nHost: a\n\n");
        assert_eq!(h.header("Host"), Some(&b"a"[..]));
    }

    #[test]
    fn invalid_header_name_gets_400() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n"),
            Err(ParseError::InvalidHeaderName)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-Y : x\r\n\r\n"),
            Err(ParseError::InvalidHeaderName)
        );
    }

    #[test]
    fn head_over_buffer_size_gets_431() {
        let limits = Limits {
            buffer_size: 64,
            ..Limits::default()
        };
        let wire = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(100)
        );
        let err = parse_request_head(wire.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.status(), 431);
        // Still incomplete and under the limit: wait.
        assert_eq!(
            parse_request_head(&wire.as_bytes()[..63], &limits),
            Ok(None)
        );
    }

    #[test]
    fn too_many_headers_gets_431() {
        let mut wire = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..MAX_HEADERS {
            wire.push_str(&format!("X-{i}: v\r\n"));
        }
        wire.push_str("\r\n");
        assert_eq!(parse(wire.as_bytes()), Err(ParseError::TooManyHeaders));
    }

    #[test]
    fn long_uri_gets_414() {
        let wire = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        assert_eq!(parse(wire.as_bytes()), Err(ParseError::UriTooLong));
        let limits = Limits {
            buffer_size: 1000,
            ..Limits::default()
        };
        // A request line that never ends within buffer-size is a URI too long, not a head.
        assert_eq!(
            parse_request_head(wire.as_bytes(), &limits),
            Err(ParseError::UriTooLong)
        );
    }

    #[test]
    fn content_length_over_limit_post_gets_413() {
        let limits = Limits {
            limit_post: Some(100),
            ..Limits::default()
        };
        let wire = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n";
        assert_eq!(
            parse_request_head(wire, &limits),
            Err(ParseError::BodyTooLarge)
        );
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let ka = |wire: &[u8]| head(wire).keep_alive();
        assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, Close\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn expect_100_continue_is_detected_for_http11_bodies_only() {
        let h =
            head(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
        assert!(h.expects_continue());
        let h = head(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        assert!(!h.expects_continue());
        let h = head(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
        assert!(!h.expects_continue());
    }

    #[test]
    fn target_forms_are_checked() {
        let h = head(b"GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(h.path(), "/p");
        assert_eq!(h.query(), "q=1");
        let h = head(b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(h.path(), "/");
        let h = head(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.path(), "*");
        assert_eq!(
            parse(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(ParseError::InvalidTarget)
        );
        assert_eq!(
            parse(b"GET index.html HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(ParseError::InvalidTarget)
        );
    }

    #[test]
    fn connect_is_not_implemented() {
        let err = parse(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n").unwrap_err();
        assert_eq!((err, err.status()), (ParseError::ConnectNotSupported, 501));
    }

    #[test]
    fn fragments_are_never_part_of_a_target() {
        for target in ["/p#f", "/p?x=1#f", "http://a.test/p#f", "/#"] {
            let wire = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                parse(wire.as_bytes()),
                Err(ParseError::InvalidTarget),
                "{target}"
            );
        }
    }

    #[test]
    fn an_absolute_form_target_needs_a_valid_authority_and_names_the_host() {
        let h = head(b"GET http://target.test:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(h.authority(), Some("target.test:8080"));
        assert_eq!(h.host(), Some(&b"target.test:8080"[..]));
        assert_eq!(h.path(), "/p");
        let h = head(b"GET http://[::1]:80?q HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            (h.authority(), h.path(), h.query()),
            (Some("[::1]:80"), "/", "q")
        );
        let h = head(b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((h.authority(), h.host()), (None, Some(&b"a"[..])));
        for target in [
            "s://]ufd/:",
            "http:///p",
            "http://user@a.test/",
            "http://a.test:8x/",
            "http://[::1/",
            "http://[]/",
            "http://a%zz/",
            "http://a\"b/",
            "http://[::1]x/",
        ] {
            let wire = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                parse(wire.as_bytes()),
                Err(ParseError::InvalidTarget),
                "{target}"
            );
        }
        for target in [
            "http://a.test:/",
            "https://xn--bcher-kva.example",
            "http://a%41b/",
        ] {
            let wire = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert!(matches!(parse(wire.as_bytes()), Ok(Some(_))), "{target}");
        }
    }

    #[test]
    fn a_repeated_content_type_gets_400() {
        let wire = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: a/b\r\ncontent-type: a/b\r\n\r\n";
        assert_eq!(parse(wire), Err(ParseError::DuplicateContentType));
        let h = head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: a/b\r\n\r\n");
        assert_eq!(h.header("content-type"), Some(&b"a/b"[..]));
    }

    #[test]
    fn other_versions_get_400() {
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let h = head(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.method(), "GET");
    }
}
