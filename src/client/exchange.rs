//! One request/response exchange on a connection: encode the request, write it, read the
//! response head (`httparse`) and its body (`proto::http1::BodyDecoder` for length and chunked
//! framing, or up to the end of the stream), all within one deadline.

use std::io;
use std::time::Instant;

use crate::coro::CoStream;
use crate::proto::http1::response::{is_valid_field_name, is_valid_field_value};
use crate::proto::http1::{BodyDecoder, BodyFraming};

use super::{Error, ErrorKind, Url};

/// The most header fields a response may have.
const MAX_RESPONSE_HEADERS: usize = 100;

/// The most bytes a response head may take.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How much is read from the socket at a time for a head: small, because a worker may have a
/// thousand exchanges in flight and each holds its buffer while it waits.
const HEAD_CHUNK: usize = 4 * 1024;

/// The most read at a time for a body (less when the body is known to be smaller).
const BODY_CHUNK: usize = 64 * 1024;

/// What came back.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// The connection may carry another request: the body was framed and read to its end,
    /// nothing followed it, and neither side asked to close.
    pub(crate) reusable: bool,
}

/// Why an exchange failed, and whether it is safe to try it again on a new connection.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    /// No byte of a response arrived: a reused connection that the upstream had closed fails
    /// this way, and an idempotent request can go again on a fresh connection.
    pub(crate) nothing_received: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure {
            error,
            nothing_received: false,
        }
    }
}

/// Encodes the request head and body. Headers the client owns (`Content-Length`,
/// `Transfer-Encoding`, `Connection`) are dropped from `headers`; a `Host` there replaces the
/// URL's.
pub(crate) fn encode_request(
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
) -> Result<Vec<u8>, Error> {
    if !is_valid_field_name(method.as_bytes()) {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!("invalid method {method:?}"),
        ));
    }
    if let Some((name, _)) = headers.iter().find(|(name, value)| {
        !is_valid_field_name(name.as_bytes()) || !is_valid_field_value(value.as_bytes())
    }) {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!("invalid header {name:?} (not a token, or CR/LF/NUL in the value)"),
        ));
    }
    let has = |wanted: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(wanted));
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(format!("{method} {} HTTP/1.1\r\n", url.target).as_bytes());
    if !has("host") {
        out.extend_from_slice(format!("Host: {}\r\n", url.host_header()).as_bytes());
    }
    if !has("user-agent") {
        out.extend_from_slice(
            concat!("User-Agent: rcontainer/", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes(),
        );
    }
    if !has("accept") {
        out.extend_from_slice(b"Accept: */*\r\n");
    }
    for (name, value) in headers {
        let owned = ["content-length", "transfer-encoding", "connection"];
        if owned.iter().any(|o| name.eq_ignore_ascii_case(o)) {
            continue;
        }
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    let may_have_body = !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE");
    if !body.is_empty() || may_have_body {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(out)
}

/// Writes `request` and reads the response to it, all before `deadline`.
pub(crate) fn round_trip(
    stream: &mut CoStream,
    request: &[u8],
    deadline: Option<Instant>,
    is_head: bool,
    max_body: usize,
) -> Result<Incoming, Failure> {
    let write = remaining(deadline).and_then(|limit| {
        stream.set_write_timeout(limit);
        stream.write_all(request)
    });
    if let Err(e) = write {
        return Err(Failure {
            error: Error::io("sending the request", e),
            nothing_received: true,
        });
    }
    let mut buf = Vec::new();
    let mut nothing_yet = true;
    let (status, headers, head_len, keep_alive_head) = loop {
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(Error::invalid_response("response head over 64 KiB").into());
        }
        match read_more(stream, &mut buf, HEAD_CHUNK, deadline) {
            Ok(0) => {
                return Err(Failure {
                    error: Error::invalid_response(if nothing_yet {
                        "connection closed before a response"
                    } else {
                        "connection closed inside the response head"
                    }),
                    nothing_received: nothing_yet,
                });
            }
            Ok(_) => nothing_yet = false,
            Err(e) => {
                return Err(Failure {
                    // A reset before any byte is what a stale keep-alive connection gives.
                    nothing_received: nothing_yet && e.kind() != io::ErrorKind::TimedOut,
                    error: Error::io("reading the response", e),
                });
            }
        }
        // 1xx interim responses (100 Continue, 103 Early Hints) are skipped.
        while let Some(head) = parse_head(&buf)? {
            if (100..200).contains(&head.0) && head.0 != 101 {
                buf.drain(..head.2);
                continue;
            }
            break;
        }
        if let Some(head) = parse_head(&buf)? {
            break head;
        }
    };
    let framing = body_framing(status, &headers, is_head)?;
    if let Framing::Framed(BodyFraming::Length(n)) = framing
        && n > max_body as u64
    {
        return Err(Error::new(
            ErrorKind::BodyTooLarge,
            format!("response body of {n} bytes is over the limit of {max_body}"),
        )
        .into());
    }
    buf.drain(..head_len);
    let (body, clean_end) = match framing {
        Framing::Framed(framing) => read_framed(stream, buf, framing, deadline, max_body)?,
        Framing::UntilClose => (read_to_close(stream, buf, deadline, max_body)?, false),
    };
    Ok(Incoming {
        status,
        headers,
        body,
        reusable: clean_end && keep_alive_head,
    })
}

type Head = (u16, Vec<(String, String)>, usize, bool);

/// Parses a complete response head at the front of `buf`: status, headers, its length and
/// whether the upstream is willing to keep the connection.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::invalid_response(&format!("bad response head: {e}"))),
    };
    let status = response
        .code
        .ok_or_else(|| Error::invalid_response("no status code"))?;
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let connection = header(&headers, "connection").map(str::to_ascii_lowercase);
    let keep_alive = match response.version {
        Some(1) => !connection.as_deref().is_some_and(|c| c.contains("close")),
        _ => connection
            .as_deref()
            .is_some_and(|c| c.contains("keep-alive")),
    };
    Ok(Some((status, headers, len, keep_alive)))
}

enum Framing {
    Framed(BodyFraming),
    /// No length and not chunked: the body ends when the upstream closes.
    UntilClose,
}

fn body_framing(
    status: u16,
    headers: &[(String, String)],
    is_head: bool,
) -> Result<Framing, Error> {
    if is_head || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Framing::Framed(BodyFraming::Empty));
    }
    if let Some(te) = header(headers, "transfer-encoding") {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        return if last.eq_ignore_ascii_case("chunked") {
            Ok(Framing::Framed(BodyFraming::Chunked))
        } else {
            Ok(Framing::UntilClose)
        };
    }
    match header(headers, "content-length") {
        Some(len) => len
            .trim()
            .parse::<u64>()
            .map(|n| Framing::Framed(BodyFraming::from_length(n)))
            .map_err(|_| Error::invalid_response(&format!("bad Content-Length {len:?}"))),
        None => Ok(Framing::UntilClose),
    }
}

/// Reads a framed body; returns it and whether it ended cleanly with no stray bytes after it.
fn read_framed(
    stream: &mut CoStream,
    mut pending: Vec<u8>,
    framing: BodyFraming,
    deadline: Option<Instant>,
    max_body: usize,
) -> Result<(Vec<u8>, bool), Error> {
    let mut decoder = BodyDecoder::new(framing, Some(max_body as u64));
    let (mut body, mut chunk) = match framing {
        BodyFraming::Length(n) => {
            let n = usize::try_from(n).unwrap_or(max_body).min(max_body);
            (Vec::with_capacity(n), n.clamp(HEAD_CHUNK, BODY_CHUNK))
        }
        _ => (Vec::new(), HEAD_CHUNK),
    };
    loop {
        while !pending.is_empty() && !decoder.is_done() {
            let decoded = decoder
                .decode(&pending)
                .map_err(|e| Error::invalid_response(&format!("bad response body: {e}")))?;
            body.extend_from_slice(&pending[decoded.data.clone()]);
            if body.len() > max_body {
                return Err(Error::new(
                    ErrorKind::BodyTooLarge,
                    format!("response body over the limit of {max_body} bytes"),
                ));
            }
            pending.drain(..decoded.consumed);
            if decoded.consumed == 0 {
                break;
            }
        }
        if decoder.is_done() {
            return Ok((body, pending.is_empty()));
        }
        let n = read_more(stream, &mut pending, chunk, deadline)
            .map_err(|e| Error::io("reading the response body", e))?;
        if n == 0 {
            return Err(Error::invalid_response(
                "connection closed inside the response body",
            ));
        }
        // A body that keeps coming is read in bigger steps.
        chunk = (chunk * 2).min(BODY_CHUNK);
    }
}

fn read_to_close(
    stream: &mut CoStream,
    mut body: Vec<u8>,
    deadline: Option<Instant>,
    max_body: usize,
) -> Result<Vec<u8>, Error> {
    loop {
        if body.len() > max_body {
            return Err(Error::new(
                ErrorKind::BodyTooLarge,
                format!("response body over the limit of {max_body} bytes"),
            ));
        }
        let n = read_more(stream, &mut body, BODY_CHUNK, deadline)
            .map_err(|e| Error::io("reading the response body", e))?;
        if n == 0 {
            return Ok(body);
        }
    }
}

/// Appends what the next read (of at most `chunk` bytes) gives to `buf`, waiting no later
/// than `deadline`.
fn read_more(
    stream: &mut CoStream,
    buf: &mut Vec<u8>,
    chunk: usize,
    deadline: Option<Instant>,
) -> io::Result<usize> {
    stream.set_read_timeout(remaining(deadline)?);
    let start = buf.len();
    buf.resize(start + chunk, 0);
    let read = stream.read(&mut buf[start..]);
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

/// The time left before `deadline` (`None`: no limit); `TimedOut` once it has passed.
pub(crate) fn remaining(deadline: Option<Instant>) -> io::Result<Option<std::time::Duration>> {
    match deadline {
        None => Ok(None),
        Some(at) => match at.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request timeout passed",
            )),
        },
    }
}

pub(crate) fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_host_length_and_the_callers_headers() {
        let url = Url::parse("http://h:81/p?q").unwrap();
        let headers = vec![
            ("X-A".to_string(), "1".to_string()),
            ("Content-Length".to_string(), "99".to_string()),
        ];
        let bytes = encode_request("POST", &url, &headers, b"hi", true).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("POST /p?q HTTP/1.1\r\nHost: h:81\r\n"),
            "{text}"
        );
        assert!(text.contains("X-A: 1\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(!text.contains("99"));
        assert!(text.ends_with("\r\n\r\nhi"));
        let get = encode_request("GET", &url, &[], b"", false).unwrap();
        let get = String::from_utf8(get).unwrap();
        assert!(get.contains("Connection: close\r\n"));
        assert!(!get.contains("Content-Length"));
    }

    #[test]
    fn header_injection_is_refused() {
        let url = Url::parse("http://h/").unwrap();
        let bad = vec![("X".to_string(), "a\r\nEvil: 1".to_string())];
        let err = encode_request("GET", &url, &bad, b"", true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(encode_request("G T", &url, &[], b"", true).is_err());
    }

    #[test]
    fn heads_give_status_headers_and_keep_alive() {
        let (status, headers, len, keep) =
            parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc")
                .unwrap()
                .unwrap();
        assert_eq!((status, len, keep), (404, 45, true));
        assert_eq!(header(&headers, "content-length"), Some("3"));
        let (_, _, _, keep) = parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!keep);
        let (_, _, _, keep) = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(!keep);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n").unwrap().is_none());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn framing_follows_status_method_and_headers() {
        let h = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        assert!(matches!(
            body_framing(200, &h("Transfer-Encoding", "gzip, chunked"), false),
            Ok(Framing::Framed(BodyFraming::Chunked))
        ));
        assert!(matches!(
            body_framing(200, &h("Content-Length", "5"), false),
            Ok(Framing::Framed(BodyFraming::Length(5)))
        ));
        assert!(matches!(
            body_framing(200, &h("Content-Length", "5"), true),
            Ok(Framing::Framed(BodyFraming::Empty))
        ));
        assert!(matches!(
            body_framing(304, &[], false),
            Ok(Framing::Framed(BodyFraming::Empty))
        ));
        assert!(matches!(
            body_framing(200, &[], false),
            Ok(Framing::UntilClose)
        ));
        assert!(body_framing(200, &h("Content-Length", "x"), false).is_err());
    }
}
