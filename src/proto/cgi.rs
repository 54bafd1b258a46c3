//! CGI/uwsgi-style vars derived from an HTTP request head, so handlers see one model whether
//! the request came over `http-socket` or from nginx over `socket`.
//!
//! Mirrors what nginx's stock `uwsgi_params` would send for the same request. No I/O: the
//! connection facts (addresses, ports, TLS) come from the caller.

use super::Vars;
use super::http1::{BodyFraming, RequestHead};

/// Facts about the connection that the head does not carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConnInfo<'a> {
    /// The peer address (`REMOTE_ADDR`), e.g. `127.0.0.1`; empty on a unix socket.
    pub(crate) remote_addr: &'a str,
    /// The peer port (`REMOTE_PORT`); empty on a unix socket.
    pub(crate) remote_port: &'a str,
    /// The server's name when the request has no usable `Host` (`SERVER_NAME`).
    pub(crate) server_name: &'a str,
    /// The port the request arrived on (`SERVER_PORT`).
    pub(crate) server_port: &'a str,
    /// Whether the connection is TLS (`HTTPS=on`, `REQUEST_SCHEME=https`).
    pub(crate) https: bool,
}

/// Builds the vars for an HTTP request:
///
/// * `REQUEST_METHOD`, `REQUEST_URI` (the raw target), `QUERY_STRING` (raw), `SERVER_PROTOCOL`;
/// * `PATH_INFO`: the raw path percent-decoded, as uWSGI's HTTP router does (no dot-segment
///   normalisation; `%2F` becomes `/`; a malformed `%` escape is kept as is); `SCRIPT_NAME` empty;
/// * `CONTENT_TYPE`, `CONTENT_LENGTH` from the headers, empty when absent (as nginx sends them);
/// * `SERVER_NAME` from the request's host without its port, else `conn.server_name`;
///   `SERVER_PORT`, `REMOTE_ADDR`, `REMOTE_PORT`, `REQUEST_SCHEME`, and `HTTPS=on` for TLS. The
///   host is the target's authority for an absolute-form target (RFC 9112 §3.2.2: `Host` is
///   then ignored, and `HTTP_HOST` is the authority too), else `Host`;
/// * every header as `HTTP_` + its name uppercased with `-` as `_`, repeated ones joined with
///   `, ` (`; ` for Cookie), like nginx. Headers with `_` in the name are left out, as nginx does
///   by default, so `X_Forwarded_For` cannot pose as `X-Forwarded-For`.
#[cfg(any(test, fuzzing))]
pub(crate) fn vars_from_head(head: &RequestHead, conn: &ConnInfo<'_>) -> Vars {
    let mut vars = Vars::default();
    fill_vars_from_head(&mut vars, head, conn);
    vars
}

/// [`vars_from_head`] into `vars` (emptied first; its room is reused, so a worker that keeps
/// one `Vars` builds them without allocating).
pub(crate) fn fill_vars_from_head(vars: &mut Vars, head: &RequestHead, conn: &ConnInfo<'_>) {
    vars.clear();
    let scheme = if conn.https { "https" } else { "http" };
    let content_length: &[u8] = match head.framing() {
        // A chunked body's length is only known at its end.
        BodyFraming::Chunked => b"",
        _ => head.header("content-length").unwrap_or(b""),
    };
    vars.push("QUERY_STRING", head.query());
    vars.push("REQUEST_METHOD", head.method());
    vars.push("CONTENT_TYPE", head.header("content-type").unwrap_or(b""));
    vars.push("CONTENT_LENGTH", content_length);
    vars.push("REQUEST_URI", head.target());
    vars.push_with(
        |key| key.extend_from_slice(b"PATH_INFO"),
        |value| percent_decode_into(value, head.path().as_bytes()),
    );
    vars.push("SCRIPT_NAME", "");
    vars.push("SERVER_PROTOCOL", head.version().as_str());
    vars.push("REQUEST_SCHEME", scheme);
    if conn.https {
        vars.push("HTTPS", "on");
    }
    vars.push("REMOTE_ADDR", conn.remote_addr);
    vars.push("REMOTE_PORT", conn.remote_port);
    vars.push("SERVER_PORT", conn.server_port);
    let server_name = head
        .host()
        .map(host_without_port)
        .filter(|h| !h.is_empty())
        .unwrap_or(conn.server_name.as_bytes());
    vars.push("SERVER_NAME", server_name);
    push_header_vars(vars, head);
}

/// Adds the `HTTP_*` vars, joining repeated headers in first-seen order.
fn push_header_vars(vars: &mut Vars, head: &RequestHead) {
    let authority = head.authority();
    for (i, (name, _)) in head.headers().enumerate() {
        let seen_before = || {
            head.headers()
                .take(i)
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if name.contains('_') || seen_before() {
            continue;
        }
        let separator: &[u8] = if name.eq_ignore_ascii_case("cookie") {
            b"; "
        } else {
            b", "
        };
        let is_host = name.eq_ignore_ascii_case("host");
        vars.push_with(
            |key| {
                key.extend_from_slice(b"HTTP_");
                key.extend(name.bytes().map(|b| {
                    if b == b'-' {
                        b'_'
                    } else {
                        b.to_ascii_uppercase()
                    }
                }));
            },
            |value| match authority {
                Some(authority) if is_host => value.extend_from_slice(authority.as_bytes()),
                _ => {
                    let start = value.len();
                    for (_, v) in
                        (head.headers().skip(i)).filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    {
                        if value.len() > start {
                            value.extend_from_slice(separator);
                        }
                        value.extend_from_slice(v);
                    }
                }
            },
        );
    }
    if let Some(authority) = authority
        && head.header("host").is_none()
    {
        // HTTP/1.0 may leave `Host` out; the target still names the host.
        vars.push("HTTP_HOST", authority);
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
fn host_without_port(host: &[u8]) -> &[u8] {
    if host.starts_with(b"[") {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

/// Decodes the `%XX` escapes of `raw` at the end of `out`; anything else, including a malformed
/// escape, is copied as is.
pub(crate) fn percent_decode_into(out: &mut Vec<u8>, raw: &[u8]) {
    let mut i = 0;
    while i < raw.len() {
        let escaped = match (raw[i], raw.get(i + 1), raw.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex_value(h).zip(hex_value(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(raw[i]);
                i += 1;
            }
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Limits;
    use crate::proto::http1::parse_request_head;

    fn vars(wire: &[u8], conn: &ConnInfo<'_>) -> Vars {
        let (head, _) = parse_request_head(wire, &Limits::default())
            .expect("valid")
            .expect("complete");
        vars_from_head(&head, conn)
    }

    fn get<'a>(vars: &'a Vars, key: &str) -> Option<&'a str> {
        vars.get(key)
            .map(|v| std::str::from_utf8(v).expect("utf-8"))
    }

    #[test]
    fn get_with_query_gives_nginx_style_vars() {
        let conn = ConnInfo {
            remote_addr: "10.0.0.1",
            remote_port: "5555",
            server_name: "fallback",
            server_port: "8080",
            https: false,
        };
        let v = vars(
            b"GET /caf%C3%A9/a%2Fb?x=%20 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: t\r\n\r\n",
            &conn,
        );
        assert_eq!(get(&v, "REQUEST_METHOD"), Some("GET"));
        assert_eq!(get(&v, "REQUEST_URI"), Some("/caf%C3%A9/a%2Fb?x=%20"));
        assert_eq!(get(&v, "PATH_INFO"), Some("/café/a/b"));
        assert_eq!(get(&v, "QUERY_STRING"), Some("x=%20"));
        assert_eq!(get(&v, "SERVER_PROTOCOL"), Some("HTTP/1.1"));
        assert_eq!(get(&v, "CONTENT_TYPE"), Some(""));
        assert_eq!(get(&v, "CONTENT_LENGTH"), Some(""));
        assert_eq!(get(&v, "SERVER_NAME"), Some("example.com"));
        assert_eq!(get(&v, "SERVER_PORT"), Some("8080"));
        assert_eq!(get(&v, "REMOTE_ADDR"), Some("10.0.0.1"));
        assert_eq!(get(&v, "REQUEST_SCHEME"), Some("http"));
        assert_eq!(get(&v, "HTTPS"), None);
        assert_eq!(get(&v, "HTTP_HOST"), Some("example.com:8080"));
        assert_eq!(get(&v, "HTTP_USER_AGENT"), Some("t"));
    }

    #[test]
    fn post_vars_carry_type_and_length() {
        let v = vars(
            b"POST /f HTTP/1.0\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n",
            &ConnInfo {
                server_name: "srv",
                https: true,
                ..ConnInfo::default()
            },
        );
        assert_eq!(get(&v, "CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get(&v, "CONTENT_LENGTH"), Some("3"));
        assert_eq!(get(&v, "HTTP_CONTENT_LENGTH"), Some("3"));
        assert_eq!(get(&v, "SERVER_PROTOCOL"), Some("HTTP/1.0"));
        assert_eq!(get(&v, "SERVER_NAME"), Some("srv"));
        assert_eq!(get(&v, "HTTPS"), Some("on"));
        assert_eq!(get(&v, "REQUEST_SCHEME"), Some("https"));
    }

    #[test]
    fn repeated_headers_are_joined_and_underscored_names_dropped() {
        let v = vars(
            b"GET / HTTP/1.1\r\nHost: a\r\nAccept: x\r\nCookie: a=1\r\nX_Evil: 1\r\naccept: y\r\nCookie: b=2\r\n\r\n",
            &ConnInfo::default(),
        );
        assert_eq!(get(&v, "HTTP_ACCEPT"), Some("x, y"));
        assert_eq!(get(&v, "HTTP_COOKIE"), Some("a=1; b=2"));
        assert_eq!(get(&v, "HTTP_X_EVIL"), None);
        assert_eq!(v.count("HTTP_ACCEPT"), 1);
    }

    #[test]
    fn an_absolute_form_target_names_the_host_whatever_host_says() {
        let v = vars(
            b"GET http://target.test:8080/p?q=1 HTTP/1.1\r\nHost: other.test\r\n\r\n",
            &ConnInfo::default(),
        );
        assert_eq!(get(&v, "SERVER_NAME"), Some("target.test"));
        assert_eq!(get(&v, "HTTP_HOST"), Some("target.test:8080"));
        assert_eq!(v.count("HTTP_HOST"), 1);
        assert_eq!(get(&v, "PATH_INFO"), Some("/p"));
        assert_eq!(get(&v, "QUERY_STRING"), Some("q=1"));
        let v = vars(
            b"GET http://[::1]:81 HTTP/1.0\r\n\r\n",
            &ConnInfo::default(),
        );
        assert_eq!(get(&v, "SERVER_NAME"), Some("[::1]"));
        assert_eq!(get(&v, "HTTP_HOST"), Some("[::1]:81"));
        assert_eq!(get(&v, "PATH_INFO"), Some("/"));
    }

    #[test]
    fn host_ports_are_stripped_from_server_name() {
        assert_eq!(host_without_port(b"[::1]:80"), b"[::1]");
        assert_eq!(host_without_port(b"[::1]"), b"[::1]");
        assert_eq!(host_without_port(b"a.b"), b"a.b");
    }

    #[test]
    fn http_vars_have_the_names_nginx_sends_over_uwsgi() {
        use crate::proto::uwsgi::{Packet, parse_packet};
        let wire = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/uwsgi/001-nginx-get.bin"
        ));
        let Ok(Some((Packet::Request(req), _))) = parse_packet(wire, &Limits::default()) else {
            panic!("corpus packet parses");
        };
        let from_http = vars(
            b"GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
            &ConnInfo {
                remote_addr: "127.0.0.1",
                remote_port: "51234",
                server_name: "localhost",
                server_port: "8080",
                https: false,
            },
        );
        for (key, value) in req.vars().iter() {
            if key == b"DOCUMENT_ROOT" {
                continue; // a file-serving notion nginx has and we do not
            }
            assert_eq!(
                from_http.get(key),
                Some(value),
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }

    fn percent_decode(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        percent_decode_into(&mut out, raw);
        out
    }

    #[test]
    fn malformed_escapes_are_kept() {
        assert_eq!(percent_decode(b"/a%zz%4"), b"/a%zz%4");
        assert_eq!(percent_decode(b"%41%4a"), b"AJ");
    }
}
