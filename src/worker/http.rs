//! HTTP/1.1 connections (`http-socket`): keep-alive, pipelining, request bodies by length or
//! chunks, `Expect: 100-continue`, and framing of the answer by length, chunks or close.
//!
//! A request head is read without a core and must be complete within `http-header-timeout`
//! of its first byte (408 and close); it is scanned for its end as it arrives and parsed only
//! when it may be complete ([`HeadScan`]). The core is taken for the app and the answer only.

use std::cell::{Cell, Ref, RefCell};
use std::io;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use super::Shared;
use super::conn::{BATCH_LIMIT, Conn, ConnGuard};
use super::exchange::{self, AnswerHead, BodySpec, Next, Protocol};
use crate::api::{Field, PeerText, RequestData, range_within};
use crate::coro::Addr;
use crate::proto::ParseError;
use crate::proto::cgi::{self, ConnInfo};
use crate::proto::http1::response::{InvalidHeader, ResponseFraming};
use crate::proto::http1::{self, HeadSpans, RequestHead, ResponseContext};

/// Serves requests on `conn` until the client closes, an error, or the worker drains.
///
/// Answers to pipelined requests that arrived in one read go out together: an answer is sent
/// when the next request is not complete in the buffer yet (before waiting for it), or once
/// [`BATCH_LIMIT`] bytes wait.
pub(crate) fn serve(mut conn: Conn<'_>, shared: &Shared, guard: &ConnGuard<'_>) {
    // Written out once per connection, for the vars of each request.
    let peer = conn.peer_text();
    let remote_addr = match conn.peer {
        Addr::Tcp(addr) => Some(addr),
        Addr::Unix(_) => None,
    };
    // A new connection is busy until its first request is answered: a client that just
    // connected has a request on its way, and a drain must not drop it.
    let mut first = true;
    loop {
        guard.set_idle(!first);
        let len = match read_head(&mut conn, shared) {
            Ok(Some(len)) => len,
            Ok(None) => return,
            Err(Refused(status)) => return refuse(conn, status),
        };
        guard.set_idle(false);
        first = false;
        let mut request = HttpRequest {
            len,
            framing: ResponseContext {
                version: conn.head.version(),
                is_head: conn.head.is_head(conn.input.pending()),
                keep_alive: conn.head.keep_alive(),
            },
            peer: &peer,
            remote_addr,
        };
        match exchange::serve_request(&mut conn, shared, &mut request) {
            Next::Reuse if conn.unsent() < BATCH_LIMIT => continue,
            Next::Reuse => {
                if let Err(e) = conn.flush() {
                    super::conn::note_write_error(shared, &conn, &e);
                    return;
                }
            }
            Next::Close | Next::Refused(_) => {
                conn.close_gracefully();
                return;
            }
            Next::Abandon => return,
        }
    }
}

/// The `Date` of this worker's answers, written out once a second (not once per answer).
#[derive(Debug, Default)]
pub(crate) struct HttpDate {
    secs: Cell<u64>,
    text: RefCell<String>,
}

impl HttpDate {
    /// The current time as an HTTP date.
    pub(crate) fn now(&self) -> Ref<'_, String> {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != self.secs.get() || self.text.borrow().is_empty() {
            let mut text = self.text.borrow_mut();
            text.clear();
            crate::proto::date::write_http_date(&mut text, secs);
            self.secs.set(secs);
        }
        self.text.borrow()
    }
}

/// Answers a request refused before the app saw it, and closes. Its own frame, like every rare
/// path of [`serve`]: the connection's frame is part of every parked request's stack.
#[cold]
#[inline(never)]
fn refuse(mut conn: Conn<'_>, status: u16) {
    let mut out = Vec::new();
    http1::write_error_response(&mut out, status);
    if conn.send(&out).is_ok() {
        conn.close_gracefully();
    }
}

/// A request refused before the app saw it, with the status to answer.
struct Refused(u16);

/// Reads until a whole head is buffered, parsed into `conn.head`; returns its length.
/// `Ok(None)`: the client closed, or went idle past `socket-timeout` between requests, or a
/// drain closed the idle connection: nothing to answer. A head begun but not complete within
/// `http-header-timeout` (or stalled past `socket-timeout`) is a 408.
/// Its own frame (the parser's field array with it): gone while the request is served.
#[inline(never)]
fn read_head(conn: &mut Conn<'_>, shared: &Shared) -> Result<Option<usize>, Refused> {
    let mut scan = HeadScan::default();
    // Counted from the head's first byte: before it, only `socket-timeout` bounds the wait.
    let mut deadline = None;
    let mut begun = false;
    loop {
        if !begun && !conn.input.is_empty() {
            begun = true;
            deadline = shared
                .header_timeout
                .and_then(|limit| Instant::now().checked_add(limit));
        }
        if scan.parse_due(conn.input.pending(), shared.limits.buffer_size) {
            match http1::parse_request_head_into(
                conn.input.pending(),
                &shared.limits,
                &mut conn.head,
            ) {
                Ok(Some(len)) => return Ok(Some(len)),
                Ok(None) => {}
                Err(error) => return Err(refused_head(&conn.peer, error)),
            }
        }
        // Waiting for more: what was answered goes out first (`fill` sends it).
        match conn.fill_before(deadline) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut && !conn.input.is_empty() => {
                return Err(head_timed_out(&conn.peer, deadline));
            }
            // Closed, reset, idle keep-alive timeout, or cancelled by a drain.
            Err(_) => return Ok(None),
        }
    }
}

#[cold]
#[inline(never)]
fn refused_head(peer: &Addr, error: ParseError) -> Refused {
    exchange::log_refused(peer, error);
    Refused(error.status())
}

#[cold]
#[inline(never)]
fn head_timed_out(peer: &Addr, deadline: Option<Instant>) -> Refused {
    let limit = match deadline {
        Some(at) if Instant::now() >= at => "http-header-timeout",
        _ => "socket-timeout",
    };
    log::info!("request head timed out peer={peer} limit={limit} status=408");
    Refused(408)
}

/// Where the search for the end of a request head stands, so that a head arriving in many
/// small reads is scanned once and parsed a few times, not parsed again from its start after
/// every read (a 60 KB head sent byte by byte would cost 60,000 parses).
#[derive(Debug, Default)]
struct HeadScan {
    /// Leading bytes of the pending input already searched.
    scanned: usize,
    /// The end of the request line was seen (and the parser ran on it).
    line_ended: bool,
}

impl HeadScan {
    /// Whether the parser should look at `pending` now: at its first bytes and at the end of
    /// the request line (so another protocol or a bad request line is refused at once), when
    /// an empty line may end the head (`\r\n\r\n`, or with bare LFs, which httparse takes
    /// too), and once `limit` bytes are buffered (too large). Otherwise the head is surely
    /// incomplete and only the new bytes were looked at.
    fn parse_due(&mut self, pending: &[u8], limit: usize) -> bool {
        if pending.len() <= self.scanned {
            return false;
        }
        let first = self.scanned == 0;
        // Two bytes back: an empty line may straddle the previous read and this one.
        let fresh = &pending[self.scanned.saturating_sub(2)..];
        self.scanned = pending.len();
        let line_end = !self.line_ended && fresh.contains(&b'\n');
        self.line_ended |= line_end;
        first || line_end || holds_empty_line(fresh) || pending.len() >= limit
    }
}

/// Whether `bytes` hold a line break followed by an empty line (`\n\n` or `\n\r\n`).
fn holds_empty_line(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

/// A complete request head in the connection's buffer, and what its answer's framing needs.
struct HttpRequest<'p> {
    /// The head's length in the buffer.
    len: usize,
    framing: ResponseContext,
    peer: &'p PeerText,
    remote_addr: Option<SocketAddr>,
}

impl Protocol for HttpRequest<'_> {
    // Unread request body beyond this is not drained: the connection closes after the answer.
    const MAX_DRAIN: u64 = 1 << 20;

    /// The head itself as the request's text (its fields and headers are ranges of it), the
    /// CGI vars derived from it when something asks for them.
    fn fill(
        &mut self,
        conn: &mut Conn<'_>,
        _shared: &Shared,
        data: &mut RequestData,
    ) -> Result<BodySpec, ParseError> {
        let bytes = &conn.input.pending()[..self.len];
        // One check of the whole head: then every field is text as it is.
        let head = match std::str::from_utf8(bytes) {
            Ok(text) => {
                let head = RequestHead::from_text(text, &conn.head);
                data.text.start_with_head(text);
                fill_from_head_text(data, &head, &conn.head);
                head
            }
            Err(_) => {
                let head = RequestHead::new(bytes, &conn.head);
                fill_replacing_bytes(data, &head, self.peer);
                head
            }
        };
        data.peer = *self.peer;
        data.remote_addr = self.remote_addr;
        let body = BodySpec {
            framing: head.framing(),
            expects_continue: head.expects_continue(),
        };
        conn.input.consume(self.len);
        Ok(body)
    }

    /// HTTP/1.x framing: what the request's version and method allow, keep-alive when the
    /// client asked for it and the request left the connection reusable, and `Date` (unless
    /// the handler set one).
    fn write_head(
        &self,
        shared: &Shared,
        out: &mut Vec<u8>,
        head: &AnswerHead<'_>,
    ) -> Result<ResponseFraming, InvalidHeader> {
        let ctx = ResponseContext {
            keep_alive: self.framing.keep_alive && head.reusable,
            ..self.framing
        };
        let framing = http1::decide_framing(ctx, head.status, head.body_len);
        let has_date = head
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("date"));
        let date = (!has_date).then(|| shared.date.now());
        http1::write_response_head(
            out,
            self.framing.version,
            head.status,
            date.as_ref().map(|d| d.as_bytes()),
            head.fields(),
            &framing,
        )?;
        Ok(framing)
    }
}

/// The fields of a request whose head (UTF-8) starts its text: ranges of it where the head
/// has them as they are, written after it otherwise (a decoded path, the protocol).
fn fill_from_head_text(data: &mut RequestData, head: &RequestHead<'_>, spans: &HeadSpans) {
    let bytes = head.bytes();
    let at = |part: &[u8]| range_within(bytes, part).expect("invariant: a part of the head");
    let text = &mut data.text;
    text.set_range(Field::Method, at(head.method().as_bytes()));
    text.set_range(Field::Uri, at(head.target().as_bytes()));
    text.set_range(Field::Query, at(head.query().as_bytes()));
    let path = head.path().as_bytes();
    match range_within(bytes, path) {
        Some(range) if !path.contains(&b'%') => text.set_range(Field::Path, range),
        _ => text.set_decoded_path(path),
    }
    // An absolute-form target's authority is the request's host (RFC 9112 §3.2.2).
    let authority = head.authority().map(|a| at(a.as_bytes()));
    for (name, value) in head.headers() {
        let value = match &authority {
            Some(authority) if name.eq_ignore_ascii_case("host") => authority.clone(),
            _ => at(value),
        };
        text.push_header_range(at(name.as_bytes()), value);
    }
    text.set_str(Field::Protocol, head.version().as_str());
    text.set_str(Field::Scheme, "http");
    data.derive_vars_from(head, spans);
}

/// The fields of a request whose head is not UTF-8: each written in with the bytes that are
/// not replaced, and the vars (bytes as sent) made at once from the head.
#[cold]
fn fill_replacing_bytes(data: &mut RequestData, head: &RequestHead<'_>, peer: &PeerText) {
    cgi::fill_vars_from_head(
        data.vars_mut(),
        head,
        &ConnInfo {
            remote_addr: peer.addr(),
            remote_port: peer.port(),
            ..ConnInfo::default()
        },
    );
    let text = &mut data.text;
    text.set(Field::Method, head.method().as_bytes());
    text.set(Field::Uri, head.target().as_bytes());
    text.set_decoded_path(head.path().as_bytes());
    text.set(Field::Query, head.query().as_bytes());
    text.set_str(Field::Protocol, head.version().as_str());
    text.set_str(Field::Scheme, "http");
    let authority = head.authority();
    for (name, value) in head.headers() {
        let value = match authority {
            Some(authority) if name.eq_ignore_ascii_case("host") => authority.as_bytes(),
            _ => value,
        };
        text.push_header(name.as_bytes(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Limits;

    /// Feeds `head` to a [`HeadScan`] in reads of `step` bytes, parsing when it says so, as
    /// `read_head` does; returns how many parses it took and the length parsed.
    fn scan_in_reads(head: &[u8], step: usize) -> (usize, Option<usize>) {
        let limits = Limits::default();
        let mut scan = HeadScan::default();
        let mut parses = 0;
        for end in (step..head.len() + step).step_by(step) {
            let pending = &head[..end.min(head.len())];
            if scan.parse_due(pending, limits.buffer_size) {
                parses += 1;
                if let Some((_, used)) =
                    http1::parse_request_head(pending, &limits).expect("a valid head")
                {
                    return (parses, Some(used));
                }
            }
        }
        (parses, None)
    }

    fn big_head() -> Vec<u8> {
        let mut head = b"GET /big HTTP/1.1\r\nHost: t\r\n".to_vec();
        for i in 0..60 {
            head.extend(format!("X-Fill-{i:02}: {}\r\n", "v".repeat(990)).bytes());
        }
        head.extend(b"\r\n");
        head
    }

    #[test]
    fn a_60_kb_head_arriving_byte_by_byte_is_parsed_three_times_not_sixty_thousand() {
        let head = big_head();
        assert!(head.len() > 60_000);
        let (parses, parsed) = scan_in_reads(&head, 1);
        assert_eq!(parsed, Some(head.len()), "complete at its last byte");
        assert_eq!(
            parses, 3,
            "first byte, end of the request line, end of the head"
        );
    }

    #[test]
    fn the_end_of_a_head_is_found_wherever_the_reads_split_it() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: t\n\n",
            b"GET / HTTP/1.1\r\nHost: t\n\r\n",
        ] {
            for step in 1..=head.len() {
                let (_, parsed) = scan_in_reads(head, step);
                assert_eq!(parsed, Some(head.len()), "{head:?} in reads of {step}");
            }
        }
    }

    #[test]
    fn a_bad_first_read_is_parsed_at_once() {
        let mut scan = HeadScan::default();
        assert!(
            scan.parse_due(b"\x16\x03\x01", 65535),
            "TLS on an HTTP port"
        );
        assert!(!scan.parse_due(b"\x16\x03\x01\x02", 65535));
    }

    #[test]
    fn a_head_reaching_buffer_size_is_parsed_to_be_refused() {
        let mut scan = HeadScan::default();
        let head = [b'a'; 600];
        assert!(scan.parse_due(&head[..100], 512));
        assert!(!scan.parse_due(&head[..300], 512));
        assert!(scan.parse_due(&head[..600], 512));
    }
}
