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
use super::exchange::{self, AnswerHead, Framing, Next, ParsedRequest};
use crate::api::RequestParts;
use crate::proto::http1::BodyEncoding;
use crate::proto::http1::response::{InvalidHeader, ResponseFraming};
use crate::proto::uwsgi::{self, Packet};
use crate::proto::{ParseError, Vars, http1};

/// Serves the one request of a uwsgi connection.
pub(crate) fn serve(mut conn: Conn, shared: &Shared, guard: &ConnGuard<'_>) {
    let request = match read_packet(&mut conn, shared) {
        Ok(Some(Packet::Request(request))) => request,
        Ok(Some(Packet::Ping)) => {
            let _ = conn.send(&uwsgi::PONG);
            conn.close_gracefully();
            return;
        }
        Ok(None) => return,
        Err(error) => {
            refuse(conn, error);
            return;
        }
    };
    guard.set_idle(false);
    let framing = UwsgiFraming {
        is_head: request.vars().get("REQUEST_METHOD") == Some(b"HEAD"),
    };
    let request = parse_request(request);
    match exchange::serve_request(&mut conn, shared, request, &framing) {
        Next::Reuse | Next::Close => conn.close_gracefully(),
        Next::Abandon => {}
    }
}

/// Reads until a whole packet (header + vars) is buffered; `Ok(None)` when the peer closed,
/// went silent first, or did not complete the packet within `http-header-timeout`.
fn read_packet(conn: &mut Conn, shared: &Shared) -> Result<Option<Packet>, ParseError> {
    let mut deadline = None;
    loop {
        // Parsing an incomplete packet stops at its 4-byte header: no cost to retry.
        if let Some((packet, consumed)) = uwsgi::parse_packet(conn.input.pending(), &shared.limits)?
        {
            conn.input.consume(consumed);
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
fn refuse(mut conn: Conn, error: ParseError) {
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

/// The request of a packet, as the lifecycle and the handler see it: the vars as nginx sent
/// them, the request line and the headers rebuilt from them.
fn parse_request(request: uwsgi::Request) -> ParsedRequest {
    let body = request.body_framing();
    let scheme = request.scheme().to_string();
    let vars = request.into_vars();
    let var = |name| exchange::var_text(&vars, name);
    let path = exchange::path_text(&vars);
    let query = var("QUERY_STRING").into_owned();
    let uri = match var("REQUEST_URI") {
        uri if !uri.is_empty() => uri.into_owned(),
        _ if query.is_empty() => path.clone(),
        _ => format!("{path}?{query}"),
    };
    let protocol = match var("SERVER_PROTOCOL") {
        p if p.is_empty() => "HTTP/1.0".to_string(),
        p => p.into_owned(),
    };
    ParsedRequest {
        parts: RequestParts {
            method: var("REQUEST_METHOD").into_owned(),
            uri,
            path,
            query,
            protocol,
            scheme,
            headers: headers_from_vars(&vars),
            remote_addr: remote_addr(&vars),
            vars,
        },
        body,
        expects_continue: false,
    }
}

/// The client's address from `REMOTE_ADDR` and `REMOTE_PORT` (IPv4 or IPv6), if both parse.
fn remote_addr(vars: &Vars) -> Option<SocketAddr> {
    let text = |name| std::str::from_utf8(vars.get(name)?).ok();
    let ip: IpAddr = text("REMOTE_ADDR")?.parse().ok()?;
    let port: u16 = text("REMOTE_PORT")?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// uwsgi framing, as nginx reads it: a raw HTTP/1.1 head, never chunked (a body of unknown
/// length ends when we close), and the connection always closes after the answer.
struct UwsgiFraming {
    is_head: bool,
}

impl Framing for UwsgiFraming {
    // nginx sends the whole body at once, and a reset would turn our answer into its 502:
    // drain much more than on HTTP before giving up.
    const MAX_DRAIN: u64 = 64 << 20;

    fn write_head(
        &self,
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

/// Request headers rebuilt from the CGI vars: `HTTP_USER_AGENT` is `user-agent`; the body's
/// `CONTENT_TYPE`/`CONTENT_LENGTH` count as headers when nginx did not also send them as
/// `HTTP_*`.
fn headers_from_vars(vars: &Vars) -> Vec<(String, String)> {
    let text = |bytes| String::from_utf8_lossy(bytes).into_owned();
    let mut headers: Vec<(String, String)> = vars
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(b"HTTP_")?;
            let name = name
                .iter()
                .map(|&b| {
                    if b == b'_' {
                        b'-'
                    } else {
                        b.to_ascii_lowercase()
                    }
                })
                .collect::<Vec<u8>>();
            let name = String::from_utf8(name)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            Some((name, text(v)))
        })
        .collect();
    for (var, header) in [
        ("CONTENT_TYPE", "content-type"),
        ("CONTENT_LENGTH", "content-length"),
    ] {
        let present = headers.iter().any(|(n, _)| n == header);
        if let Some((_, value)) = vars
            .iter()
            .find(|(k, v)| *k == var.as_bytes() && !v.is_empty())
            && !present
        {
            headers.push((header.to_string(), text(value)));
        }
    }
    headers
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
        let headers = headers_from_vars(&vars);
        assert_eq!(
            headers,
            vec![
                ("user-agent".to_string(), "curl".to_string()),
                ("x-forwarded-for".to_string(), "1.2.3.4".to_string()),
                ("content-type".to_string(), "text/plain".to_string()),
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
