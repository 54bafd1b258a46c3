//! uwsgi-protocol connections (`socket`), as nginx's `uwsgi_pass` speaks it: one packet, its
//! body, one raw HTTP answer (never chunked), then `shutdown(SHUT_WR)` and close.
//!
//! The packet is read without a core and must be complete within `http-header-timeout` of its
//! first byte (nginx sends it at once; a peer that does not is closed without an answer). Its
//! header gives its length, so an incomplete packet costs no parsing. The core is taken for
//! the app and the answer only.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::Shared;
use super::conn::{Conn, ConnGuard};
use super::exchange::{self, AnswerHead, BodySpec, Next, Protocol};
use crate::api::{Field, RequestData, TextFields};
use crate::proto::http1::BodyEncoding;
use crate::proto::http1::response::{InvalidHeader, ResponseFraming};
use crate::proto::uwsgi::{self, Modifier1};
use crate::proto::{ParseError, Vars, http1};

/// Serves the one request of a uwsgi connection.
pub(crate) fn serve(mut conn: Conn<'_>, shared: &Shared, guard: &ConnGuard<'_>) {
    let len = match read_packet(&mut conn, shared) {
        Ok(Some((Modifier1::Ping, _))) => {
            let _ = conn.send(&uwsgi::PONG);
            conn.close_gracefully();
            return;
        }
        Ok(Some((_, len))) => len,
        Ok(None) => return,
        Err(error) => {
            refuse(conn, error);
            return;
        }
    };
    guard.set_idle(false);
    let mut request = UwsgiRequest {
        len,
        is_head: false,
    };
    match exchange::serve_request(&mut conn, shared, &mut request) {
        Next::Reuse | Next::Close => conn.close_gracefully(),
        Next::Refused(error) => refuse(conn, error),
        Next::Abandon => {}
    }
}

/// Reads until a whole packet (header + vars) is buffered; returns its kind and length.
/// `Ok(None)` when the peer closed, went silent first, or did not complete the packet within
/// `http-header-timeout`.
fn read_packet(
    conn: &mut Conn<'_>,
    shared: &Shared,
) -> Result<Option<(Modifier1, usize)>, ParseError> {
    let mut deadline = None;
    loop {
        // Decided from the 4-byte header: no cost to ask again after every read.
        if let Some(packet) = uwsgi::packet_ready(conn.input.pending(), &shared.limits)? {
            return Ok(Some(packet));
        }
        if deadline.is_none() && !conn.input.is_empty() {
            deadline = shared
                .header_timeout
                .and_then(|limit| Instant::now().checked_add(limit));
        }
        match conn.fill_before(deadline) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut && !conn.input.is_empty() => {
                log::info!(
                    "uwsgi packet incomplete in time peer={} (http-header-timeout, socket-timeout): closing",
                    conn.peer
                );
                return Ok(None);
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Answers a packet we refuse (or just closes, when there is nobody to answer to).
fn refuse(mut conn: Conn<'_>, error: ParseError) {
    match error {
        ParseError::HttpOnUwsgiSocket => log::warn!(
            "HTTP request on a uwsgi socket peer={}: point HTTP clients at an http-socket, \
             or nginx at this one with uwsgi_pass",
            conn.peer
        ),
        ParseError::UnsupportedModifier(m) => {
            log::warn!(
                "unsupported uwsgi modifier1={m} peer={}: closing",
                conn.peer
            );
            return;
        }
        ParseError::VarsTooLarge => log::warn!(
            "uwsgi vars block over buffer-size peer={}: raise buffer-size (max 65535)",
            conn.peer
        ),
        other => log::info!(
            "bad uwsgi request peer={} status={} reason={}",
            conn.peer,
            other.status(),
            other.reason()
        ),
    }
    let mut out = Vec::new();
    http1::write_error_response(&mut out, error.status());
    if conn.send(&out).is_ok() {
        conn.close_gracefully();
    }
}

/// A whole packet in the connection's buffer.
struct UwsgiRequest {
    /// The packet's length (header and vars) in the buffer.
    len: usize,
    /// A HEAD request: its answer has no body.
    is_head: bool,
}

impl Protocol for UwsgiRequest {
    // nginx sends the whole body at once, and a reset would turn our answer into its 502:
    // drain much more than on HTTP before giving up.
    const MAX_DRAIN: u64 = 64 << 20;

    /// The vars as nginx sent them, the request line and the headers rebuilt from them.
    fn fill(
        &mut self,
        conn: &mut Conn<'_>,
        shared: &Shared,
        data: &mut RequestData,
    ) -> Result<BodySpec, ParseError> {
        let content_length =
            uwsgi::parse_request_into(conn.input.pending(), &shared.limits, data.vars_mut())?;
        conn.input.consume(self.len);
        let (text, vars) = data.text_and_vars();
        let var = |name: &str| vars.get(name).unwrap_or(b"");
        let path = exchange::path_info(vars);
        let query = var("QUERY_STRING");
        text.set(Field::Method, var("REQUEST_METHOD"));
        text.set(Field::Path, path);
        text.set(Field::Query, query);
        match var("REQUEST_URI") {
            b"" if query.is_empty() => {
                text.set(Field::Uri, path);
            }
            b"" => text.set_joined(Field::Uri, &[path, b"?", query]),
            uri => {
                text.set(Field::Uri, uri);
            }
        }
        text.set(
            Field::Protocol,
            Some(var("SERVER_PROTOCOL"))
                .filter(|p| !p.is_empty())
                .unwrap_or(b"HTTP/1.0"),
        );
        text.set(Field::Scheme, uwsgi::scheme_of(vars).as_bytes());
        text.set(Field::RemoteAddr, var("REMOTE_ADDR"));
        headers_from_vars(vars, text);
        self.is_head = var("REQUEST_METHOD") == b"HEAD";
        let remote = remote_addr(vars);
        data.remote_addr = remote;
        Ok(BodySpec {
            framing: http1::BodyFraming::from_length(content_length),
            expects_continue: false,
        })
    }

    /// uwsgi framing, as nginx reads it: a raw HTTP/1.1 head, never chunked (a body of unknown
    /// length ends when we close), and the connection always closes after the answer. No
    /// `Date`: nginx sends its own.
    fn write_head(
        &self,
        _shared: &Shared,
        out: &mut Vec<u8>,
        head: &AnswerHead<'_>,
    ) -> Result<ResponseFraming, InvalidHeader> {
        uwsgi::write_response_head(out, head.status, head.fields(), head.body_len)?;
        Ok(ResponseFraming {
            encoding: (head.body_len).map_or(BodyEncoding::CloseDelimited, BodyEncoding::Length),
            send_body: !self.is_head && http1::response::status_allows_body(head.status),
            keep_alive: false,
        })
    }
}

/// The client's address from `REMOTE_ADDR` and `REMOTE_PORT` (IPv4 or IPv6), if both parse.
fn remote_addr(vars: &Vars) -> Option<SocketAddr> {
    let text = |name| std::str::from_utf8(vars.get(name)?).ok();
    let ip: IpAddr = text("REMOTE_ADDR")?.parse().ok()?;
    let port: u16 = text("REMOTE_PORT")?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Request headers rebuilt from the CGI vars: `HTTP_USER_AGENT` is `user-agent`; the body's
/// `CONTENT_TYPE`/`CONTENT_LENGTH` count as headers when nginx did not also send them as
/// `HTTP_*`.
fn headers_from_vars(vars: &Vars, text: &mut TextFields) {
    for (key, value) in vars.iter() {
        let Some(name) = key.strip_prefix(b"HTTP_") else {
            continue;
        };
        text.push_header_with(
            |out| {
                out.extend(name.iter().map(|&b| match b {
                    b'_' => '-',
                    // Not ASCII: replaced, as the text of a header always is.
                    b if !b.is_ascii() => char::REPLACEMENT_CHARACTER,
                    b => char::from(b.to_ascii_lowercase()),
                }));
            },
            value,
        );
    }
    for (var, header) in [
        ("CONTENT_TYPE", "content-type"),
        ("CONTENT_LENGTH", "content-length"),
    ] {
        if let Some(value) = vars.get(var).filter(|v| !v.is_empty())
            && text.header(header).is_none()
        {
            text.push_header(header.as_bytes(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars_of(pairs: &[(&str, &str)]) -> Vars {
        let mut vars = Vars::with_capacity(256, pairs.len());
        for (k, v) in pairs {
            vars.push(k, v);
        }
        vars
    }

    #[test]
    fn headers_are_rebuilt_from_http_vars_and_the_body_vars() {
        let vars = vars_of(&[
            ("HTTP_USER_AGENT", "curl"),
            ("HTTP_X_FORWARDED_FOR", "1.2.3.4"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", ""),
            ("REQUEST_METHOD", "POST"),
        ]);
        let mut text = TextFields::default();
        headers_from_vars(&vars, &mut text);
        assert_eq!(
            text.headers().collect::<Vec<_>>(),
            [
                ("user-agent", "curl"),
                ("x-forwarded-for", "1.2.3.4"),
                ("content-type", "text/plain"),
            ]
        );
    }

    #[test]
    fn the_client_address_is_taken_from_remote_addr_and_port_ipv6_too() {
        let addr = |ip, port| remote_addr(&vars_of(&[("REMOTE_ADDR", ip), ("REMOTE_PORT", port)]));
        assert_eq!(addr("10.0.0.7", "5000"), "10.0.0.7:5000".parse().ok());
        assert_eq!(addr("2001:db8::1", "443"), "[2001:db8::1]:443".parse().ok());
        assert_eq!(addr("10.0.0.7", ""), None, "no port");
        assert_eq!(addr("", "80"), None, "no address");
        assert_eq!(remote_addr(&vars_of(&[])), None);
    }
}
