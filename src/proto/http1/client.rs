//! HTTP/1.1 client side: request encoding, response-head parsing and response framing.
//!
//! The counterpart of [`request`](super::request) and [`response`](super::response) for
//! `rcontainer::client` (as hyper's `role.rs` serves both roles): the client owns the
//! connections and the reading, this file only turns values into bytes and bytes into values.
//! No I/O.

use std::fmt;

use super::body::BodyFraming;
use super::response::{is_valid_field_name, is_valid_field_value};

/// The most header fields a response may have.
pub(crate) const MAX_RESPONSE_HEADERS: usize = 100;

/// The most bytes a response head may take (interim `1xx` heads before it included).
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// The `User-Agent` sent when the caller gives none.
pub(crate) const USER_AGENT: &str = concat!("rcontainer/", env!("CARGO_PKG_VERSION"));

/// Headers the client owns on the wire: a caller's are dropped.
const CLIENT_OWNED: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

/// A request to encode.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutgoingRequest<'a> {
    /// The method, as sent (already upper case).
    pub(crate) method: &'a str,
    /// The request target: path and query (origin-form).
    pub(crate) target: &'a str,
    /// The `Host` value used when `headers` has none.
    pub(crate) host: &'a str,
    /// The caller's headers, in order (repeated names allowed).
    pub(crate) headers: &'a [(String, String)],
    pub(crate) body: &'a [u8],
    /// `false` adds `Connection: close`.
    pub(crate) keep_alive: bool,
}

/// Why a request cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// The method is not a token.
    InvalidMethod(String),
    /// A header name that is not a token, or a value with CR, LF, NUL or another control.
    InvalidHeader(String),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::InvalidMethod(method) => write!(f, "invalid method {method:?}"),
            RequestError::InvalidHeader(name) => write!(
                f,
                "invalid header {name:?} (not a token, or CR/LF/NUL in the value)"
            ),
        }
    }
}

/// Encodes the request head and body. `Content-Length`, `Transfer-Encoding` and `Connection`
/// in the caller's headers are dropped (the client frames the body itself); a `Host`,
/// `User-Agent` or `Accept` there replaces the default one.
pub(crate) fn encode_request(request: &OutgoingRequest<'_>) -> Result<Vec<u8>, RequestError> {
    let OutgoingRequest {
        method,
        target,
        host,
        headers,
        body,
        keep_alive,
    } = *request;
    if !is_valid_field_name(method.as_bytes()) {
        return Err(RequestError::InvalidMethod(method.to_string()));
    }
    if let Some((name, _)) = headers.iter().find(|(name, value)| {
        !is_valid_field_name(name.as_bytes()) || !is_valid_field_value(value.as_bytes())
    }) {
        return Err(RequestError::InvalidHeader(name.clone()));
    }
    let has = |wanted: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(wanted));
    let length = body.len().to_string();
    let may_have_body = !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE");
    let head = |line: &mut dyn FnMut(&[&str])| {
        line(&[method, " ", target, " HTTP/1.1"]);
        if !has("host") {
            line(&["Host: ", host]);
        }
        if !has("user-agent") {
            line(&["User-Agent: ", USER_AGENT]);
        }
        if !has("accept") {
            line(&["Accept: */*"]);
        }
        for (name, value) in headers {
            if !CLIENT_OWNED.iter().any(|o| name.eq_ignore_ascii_case(o)) {
                line(&[name, ": ", value]);
            }
        }
        if !keep_alive {
            line(&["Connection: close"]);
        }
        if !body.is_empty() || may_have_body {
            line(&["Content-Length: ", &length]);
        }
        line(&[]);
    };
    // Sized exactly: the bytes are held until the response is read, while the request waits
    // for its upstream.
    let mut len = body.len();
    head(&mut |parts| len += parts.iter().map(|p| p.len()).sum::<usize>() + 2);
    let mut out = Vec::with_capacity(len);
    head(&mut |parts| {
        parts
            .iter()
            .for_each(|p| out.extend_from_slice(p.as_bytes()));
        out.extend_from_slice(b"\r\n");
    });
    out.extend_from_slice(body);
    debug_assert_eq!(out.len(), len, "the length pass and the writing pass agree");
    Ok(out)
}

/// A final (non-`1xx`) response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    /// Every header as `(name, value)` in the order received (values decoded lossily).
    pub(crate) headers: Vec<(String, String)>,
    /// Whether the upstream is willing to keep the connection (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`).
    pub(crate) keep_alive: bool,
}

impl ResponseHead {
    /// The first header named `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// Why a response is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ResponseError {
    /// Not a valid HTTP/1.x response head (or more than [`MAX_RESPONSE_HEADERS`] fields).
    MalformedHead(httparse::Error),
    /// The head is still incomplete after [`MAX_RESPONSE_HEAD`] bytes.
    HeadTooLarge,
    /// A `Content-Length` that is not a decimal number.
    InvalidContentLength(String),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::MalformedHead(e) => write!(f, "bad response head: {e}"),
            ResponseError::HeadTooLarge => {
                write!(f, "response head over {} KiB", MAX_RESPONSE_HEAD / 1024)
            }
            ResponseError::InvalidContentLength(value) => {
                write!(f, "bad Content-Length {value:?}")
            }
        }
    }
}

/// Parses the final response head at the front of `buf`, skipping interim `1xx` responses
/// (`100 Continue`, `103 Early Hints`; not `101`, which ends HTTP/1 on the connection).
/// `consumed` counts the interim heads too: the body starts at `buf[consumed..]`.
pub(crate) fn parse_response_head(
    buf: &[u8],
) -> Result<Option<(ResponseHead, usize)>, ResponseError> {
    let mut start = 0;
    loop {
        let Some((head, len)) = parse_one_head(&buf[start..])? else {
            return if buf.len() > MAX_RESPONSE_HEAD {
                Err(ResponseError::HeadTooLarge)
            } else {
                Ok(None)
            };
        };
        start += len;
        if start > MAX_RESPONSE_HEAD {
            return Err(ResponseError::HeadTooLarge);
        }
        if !(100..200).contains(&head.status) || head.status == 101 {
            return Ok(Some((head, start)));
        }
    }
}

fn parse_one_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, ResponseError> {
    // The field array is on the heap, for the length of the parse: on the stack its 3.2 KiB
    // would sit at the deepest point of a handler's upstream call, and every page a coroutine
    // touches stays resident for as long as its pooled stack lives.
    let mut fields = vec![httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::MalformedHead(e)),
    };
    // A complete parse always has a code: httparse fails the status line otherwise.
    let status = response.code.unwrap_or(0);
    let mut headers = Vec::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        headers.push((field.name.to_string(), field_text(field.value)));
    }
    let connection = find_header(&headers, "connection").map(str::to_ascii_lowercase);
    let keep_alive = match response.version {
        Some(1) => !connection.as_deref().is_some_and(|c| c.contains("close")),
        _ => (connection.as_deref()).is_some_and(|c| c.contains("keep-alive")),
    };
    let head = ResponseHead {
        status,
        headers,
        keep_alive,
    };
    Ok(Some((head, len)))
}

/// A field value as text, invalid UTF-8 replaced (rare: off the common path's frame).
fn field_text(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => text.to_string(),
        Err(_) => lossy_text(value),
    }
}

#[cold]
#[inline(never)]
fn lossy_text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseFraming {
    /// By length, chunked, or empty: the connection may carry another request afterwards.
    Framed(BodyFraming),
    /// No length and not chunked: the body ends when the upstream closes.
    UntilClose,
}

/// The framing of the body that follows `head`, the answer to a `HEAD` request or not
/// (RFC 9112 §6.3: `1xx`, `204`, `304` and answers to `HEAD` have none; a final `chunked`
/// coding wins over a length; any other coding runs to the close).
pub(crate) fn response_framing(
    head: &ResponseHead,
    answers_head: bool,
) -> Result<ResponseFraming, ResponseError> {
    let status = head.status;
    if answers_head || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(ResponseFraming::Framed(BodyFraming::Empty));
    }
    if let Some(te) = head.header("transfer-encoding") {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            ResponseFraming::Framed(BodyFraming::Chunked)
        } else {
            ResponseFraming::UntilClose
        });
    }
    match head.header("content-length") {
        Some(len) => (len.trim().parse::<u64>())
            .map(|n| ResponseFraming::Framed(BodyFraming::from_length(n)))
            .map_err(|_| ResponseError::InvalidContentLength(len.to_string())),
        None => Ok(ResponseFraming::UntilClose),
    }
}

/// The first header named `name` (case-insensitive) in `headers`.
pub(crate) fn find_header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    (headers.iter())
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(method: &'a str, headers: &'a [(String, String)]) -> OutgoingRequest<'a> {
        OutgoingRequest {
            method,
            target: "/p?q",
            host: "h:81",
            headers,
            body: b"",
            keep_alive: true,
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        (list.iter())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn requests_carry_host_length_and_the_callers_headers() {
        let headers = pairs(&[("X-A", "1"), ("Content-Length", "99")]);
        let post = OutgoingRequest {
            body: b"hi",
            ..request("POST", &headers)
        };
        let text = String::from_utf8(encode_request(&post).unwrap()).unwrap();
        assert!(
            text.starts_with("POST /p?q HTTP/1.1\r\nHost: h:81\r\n"),
            "{text}"
        );
        assert!(text.contains(&format!("User-Agent: {USER_AGENT}\r\n")));
        assert!(text.contains("X-A: 1\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(!text.contains("99"));
        assert!(text.ends_with("\r\n\r\nhi"));
        let get = OutgoingRequest {
            keep_alive: false,
            ..request("GET", &[])
        };
        let get = String::from_utf8(encode_request(&get).unwrap()).unwrap();
        assert!(get.contains("Connection: close\r\n"));
        assert!(!get.contains("Content-Length"));
        // An empty POST still says its length, so the upstream does not wait for a body.
        let empty_post = String::from_utf8(encode_request(&request("POST", &[])).unwrap());
        assert!(empty_post.unwrap().contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn the_callers_host_user_agent_and_accept_replace_the_defaults() {
        let headers = pairs(&[("host", "api"), ("User-Agent", "me"), ("Accept", "x/y")]);
        let text = String::from_utf8(encode_request(&request("GET", &headers)).unwrap()).unwrap();
        assert_eq!(
            text,
            "GET /p?q HTTP/1.1\r\nhost: api\r\nUser-Agent: me\r\nAccept: x/y\r\n\r\n"
        );
    }

    #[test]
    fn header_injection_and_bad_methods_are_refused() {
        let bad = pairs(&[("X", "a\r\nEvil: 1")]);
        assert_eq!(
            encode_request(&request("GET", &bad)),
            Err(RequestError::InvalidHeader("X".to_string()))
        );
        let bad_name = pairs(&[("X Y", "1")]);
        assert!(encode_request(&request("GET", &bad_name)).is_err());
        assert_eq!(
            encode_request(&request("G T", &[])),
            Err(RequestError::InvalidMethod("G T".to_string()))
        );
    }

    #[test]
    fn heads_give_status_headers_length_and_keep_alive() {
        let (head, len) =
            parse_response_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc")
                .unwrap()
                .unwrap();
        assert_eq!((head.status, len, head.keep_alive), (404, 45, true));
        assert_eq!(head.header("content-length"), Some("3"));
        let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        assert!(!parse_response_head(close).unwrap().unwrap().0.keep_alive);
        let old = b"HTTP/1.0 200 OK\r\n\r\n";
        assert!(!parse_response_head(old).unwrap().unwrap().0.keep_alive);
        let old_kept = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n";
        assert!(parse_response_head(old_kept).unwrap().unwrap().0.keep_alive);
    }

    #[test]
    fn a_partial_head_needs_more_and_garbage_is_refused() {
        assert_eq!(parse_response_head(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert_eq!(parse_response_head(b""), Ok(None));
        assert!(matches!(
            parse_response_head(b"garbage\r\n\r\n"),
            Err(ResponseError::MalformedHead(_))
        ));
        let endless = [
            b"HTTP/1.1 200 OK\r\n".as_slice(),
            &[b'x'; MAX_RESPONSE_HEAD],
        ]
        .concat();
        assert!(parse_response_head(&endless).is_err());
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_RESPONSE_HEADERS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(parse_response_head(&many).is_err());
    }

    #[test]
    fn a_head_with_the_most_fields_parses_and_invalid_utf8_values_are_replaced() {
        let mut head = b"HTTP/1.1 200 OK\r\nX-Bytes: a\xffb\r\n".to_vec();
        for i in 1..MAX_RESPONSE_HEADERS {
            head.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let (parsed, used) = parse_response_head(&head).unwrap().unwrap();
        assert_eq!(
            (parsed.headers.len(), used),
            (MAX_RESPONSE_HEADERS, head.len())
        );
        assert_eq!(parsed.header("x-bytes"), Some("a\u{fffd}b"));
        assert_eq!(parsed.header("X-99"), Some("99"));
    }

    #[test]
    fn interim_responses_are_skipped_but_counted_in_consumed() {
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                      HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (head, consumed) = parse_response_head(bytes).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(&bytes[consumed..], b"ok");
        // Only the interim head so far: need more.
        assert_eq!(
            parse_response_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2"),
            Ok(None)
        );
        let switching = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert_eq!(
            parse_response_head(switching).unwrap().unwrap().0.status,
            101
        );
    }

    fn head_with(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            status,
            headers: pairs(headers),
            keep_alive: true,
        }
    }

    #[test]
    fn framing_follows_status_method_and_headers() {
        let framed = |f| Ok(ResponseFraming::Framed(f));
        let chunked = head_with(200, &[("Transfer-Encoding", "gzip, chunked")]);
        assert_eq!(
            response_framing(&chunked, false),
            framed(BodyFraming::Chunked)
        );
        let both = head_with(
            200,
            &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
        );
        assert_eq!(response_framing(&both, false), framed(BodyFraming::Chunked));
        let gzip = head_with(200, &[("Transfer-Encoding", "gzip")]);
        assert_eq!(
            response_framing(&gzip, false),
            Ok(ResponseFraming::UntilClose)
        );
        let five = head_with(200, &[("Content-Length", " 5 ")]);
        assert_eq!(
            response_framing(&five, false),
            framed(BodyFraming::Length(5))
        );
        assert_eq!(response_framing(&five, true), framed(BodyFraming::Empty));
        let zero = head_with(200, &[("Content-Length", "0")]);
        assert_eq!(response_framing(&zero, false), framed(BodyFraming::Empty));
        for status in [204, 304] {
            assert_eq!(
                response_framing(&head_with(status, &[("Content-Length", "5")]), false),
                framed(BodyFraming::Empty)
            );
        }
        assert_eq!(
            response_framing(&head_with(200, &[]), false),
            Ok(ResponseFraming::UntilClose)
        );
        assert_eq!(
            response_framing(&head_with(200, &[("Content-Length", "x")]), false),
            Err(ResponseError::InvalidContentLength("x".to_string()))
        );
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_takes_the_first() {
        let headers = pairs(&[("Set-Cookie", "a"), ("set-cookie", "b")]);
        assert_eq!(find_header(&headers, "SET-COOKIE"), Some("a"));
        assert_eq!(find_header(&headers, "x"), None);
    }
}
