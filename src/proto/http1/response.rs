//! HTTP/1.1 response framing: status line, header fields, the framing decision (length,
//! chunked, close-delimited, none), keep-alive, the chunk encoder, `100 Continue`.
//!
//! Writes into a caller's `Vec<u8>`; the worker sends it. No I/O.

use std::fmt;

use super::request::Version;

/// The interim response for `Expect: 100-continue`, sent before reading the body.
pub(crate) const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The last chunk and the empty trailer section that end a chunked body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// What follows each chunk's data.
pub(crate) const CHUNK_END: &[u8] = b"\r\n";

/// The reason phrase for a status, `""` for codes without a common one (the status line is
/// then `HTTP/1.1 299 `, which RFC 9112 allows and nginx accepts).
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Whether a response with this status may carry a body (not 1xx, 204, 304).
pub(crate) fn status_allows_body(status: u16) -> bool {
    !(matches!(status, 100..=199 | 204 | 304))
}

/// A handler header that cannot go on the wire: its name is not a token, or its value holds
/// CR, LF or NUL (response splitting). Carries the header's position in the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InvalidHeader {
    /// Index of the offending header in the list given to the writer.
    pub(crate) index: usize,
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid response header #{}", self.index)
    }
}

impl std::error::Error for InvalidHeader {}

/// What the request tells about how to answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResponseContext {
    /// The request's version.
    pub(crate) version: Version,
    /// A HEAD request: same headers as GET, no body.
    pub(crate) is_head: bool,
    /// The request allows keep-alive (`RequestHead::keep_alive`) and the worker wants it too
    /// (false when shutting down, or when the handler asked for `Connection: close`).
    pub(crate) keep_alive: bool,
}

/// How the body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyEncoding {
    /// No body, no length header (1xx/204/304, or a HEAD whose length is unknown).
    None,
    /// `Content-Length: n`, then exactly n bytes (none for HEAD).
    Length(u64),
    /// `Transfer-Encoding: chunked`: [`ChunkHeader`] + data + [`CHUNK_END`] per chunk, then
    /// [`LAST_CHUNK`].
    Chunked,
    /// No length header: the body ends when the connection closes (HTTP/1.0 clients).
    CloseDelimited,
}

/// The framing decision for one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResponseFraming {
    /// The body's encoding, which also picks the framing header.
    pub(crate) encoding: BodyEncoding,
    /// Whether body bytes are written at all (false for HEAD and 1xx/204/304).
    pub(crate) send_body: bool,
    /// Whether the connection stays open for the next request.
    pub(crate) keep_alive: bool,
}

/// Decides the framing of a response: `Content-Length` when `body_len` is known, chunked for
/// an HTTP/1.1 client otherwise, close-delimited for an HTTP/1.0 client otherwise. HEAD gets the
/// headers GET would get and no body.
pub(crate) fn decide_framing(
    ctx: ResponseContext,
    status: u16,
    body_len: Option<u64>,
) -> ResponseFraming {
    if !status_allows_body(status) {
        return ResponseFraming {
            encoding: BodyEncoding::None,
            send_body: false,
            keep_alive: ctx.keep_alive,
        };
    }
    let encoding = match (body_len, ctx.version) {
        (Some(n), _) => BodyEncoding::Length(n),
        // Nothing follows a HEAD answer, so there is no need to delimit anything.
        (None, _) if ctx.is_head => BodyEncoding::None,
        (None, Version::Http11) => BodyEncoding::Chunked,
        (None, Version::Http10) => BodyEncoding::CloseDelimited,
    };
    ResponseFraming {
        encoding,
        send_body: !ctx.is_head,
        keep_alive: ctx.keep_alive && encoding != BodyEncoding::CloseDelimited,
    }
}

/// Writes the whole response head: `HTTP/1.1 <code> <reason>`, `Date` when given (the
/// server's own text, written as it is), the handler's headers, the framing header,
/// `Connection` as needed, and the empty line.
///
/// The handler's own `Content-Length`, `Transfer-Encoding`, `Connection` and `Keep-Alive` are
/// dropped: framing is decided by [`decide_framing`]. `Connection: close` is written when the
/// connection will close; `Connection: keep-alive` when an HTTP/1.0 client keeps it open.
///
/// # Errors
/// [`InvalidHeader`] for a name that is not a token or a value with CR, LF or NUL; `out` is
/// then left as it was.
pub(crate) fn write_response_head<N, V>(
    out: &mut Vec<u8>,
    version: Version,
    status: u16,
    date: Option<&[u8]>,
    headers: impl IntoIterator<Item = (N, V)>,
    framing: &ResponseFraming,
) -> Result<(), InvalidHeader>
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let start = out.len();
    write_status_line(out, status);
    if let Some(date) = date {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    if let Err(e) = write_fields(out, headers) {
        out.truncate(start);
        return Err(e);
    }
    match framing.encoding {
        BodyEncoding::Length(n) => write_content_length(out, n),
        BodyEncoding::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyEncoding::None | BodyEncoding::CloseDelimited => {}
    }
    match (framing.keep_alive, version) {
        (false, _) => out.extend_from_slice(b"Connection: close\r\n"),
        (true, Version::Http10) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        (true, Version::Http11) => {}
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Writes a complete answer for a refused request (a [`crate::proto::ParseError`]'s status),
/// on either kind of socket: a short `text/plain` body naming the status, `Content-Length`,
/// and `Connection: close` (after a parse error the stream cannot be trusted to be in sync).
pub(crate) fn write_error_response(out: &mut Vec<u8>, status: u16) {
    let mut body = Vec::with_capacity(48);
    push_decimal(&mut body, u64::from(status));
    body.push(b' ');
    body.extend_from_slice(reason_phrase(status).as_bytes());
    body.push(b'\n');
    write_status_line(out, status);
    out.extend_from_slice(b"Content-Type: text/plain\r\n");
    write_content_length(out, body.len() as u64);
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&body);
}

/// Writes `HTTP/1.1 <code> <reason>\r\n`. Always 1.1: a server answers with its own version,
/// whatever the client's (RFC 9110 §6.2).
pub(crate) fn write_status_line(out: &mut Vec<u8>, status: u16) {
    // The most common ones, whole.
    let line: &[u8] = match status {
        200 => b"HTTP/1.1 200 OK\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        _ => b"",
    };
    if !line.is_empty() {
        out.extend_from_slice(line);
        return;
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes `Content-Length: n\r\n`.
pub(crate) fn write_content_length(out: &mut Vec<u8>, len: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, len);
    out.extend_from_slice(b"\r\n");
}

/// Writes the handler's header fields, minus the framing ones; stops at the first invalid one.
pub(crate) fn write_fields<N, V>(
    out: &mut Vec<u8>,
    headers: impl IntoIterator<Item = (N, V)>,
) -> Result<(), InvalidHeader>
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    for (index, (name, value)) in headers.into_iter().enumerate() {
        let (name, value) = (name.as_ref(), value.as_ref());
        if !is_valid_field_name(name) || !is_valid_field_value(value) {
            return Err(InvalidHeader { index });
        }
        if is_framing_header(name) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// Headers the server owns on the wire.
fn is_framing_header(name: &[u8]) -> bool {
    // Told apart by length first: most names are none of these.
    let framing: &[u8] = match name.len() {
        10 if name[0].eq_ignore_ascii_case(&b'c') => b"connection",
        10 => b"keep-alive",
        14 => b"content-length",
        17 => b"transfer-encoding",
        _ => return false,
    };
    name.eq_ignore_ascii_case(framing)
}

/// Whether `name` is a non-empty token (RFC 9110 §5.6.2).
pub(crate) fn is_valid_field_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| is_tchar(b))
}

/// Whether `value` can be written as a field value: no CR, LF, NUL or other controls but HTAB.
pub(crate) fn is_valid_field_value(value: &[u8]) -> bool {
    let (words, rest) = value.as_chunks::<8>();
    let byte_ok = |b: &u8| BYTE_CLASS[usize::from(*b)] & FIELD_VALUE != 0;
    // Eight bytes at a time: a word without a control byte (below 0x20, or 0x7f) is fine as it
    // is; one with (a tab, or a bad byte) is looked at byte by byte.
    words
        .iter()
        .all(|word| !has_control_byte(u64::from_le_bytes(*word)) || word.iter().all(byte_ok))
        && rest.iter().all(byte_ok)
}

/// Whether a byte of `word` is below 0x20 or is 0x7f (bytes from 0x80 never count).
fn has_control_byte(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let del = word ^ (ONES * 0x7f);
    let is_del = del.wrapping_sub(ONES) & !del & HIGH;
    below_space | is_del != 0
}

/// A token character (RFC 9110 §5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
    BYTE_CLASS[usize::from(b)] & TCHAR != 0
}

const TCHAR: u8 = 1;
const FIELD_VALUE: u8 = 2;

/// What each byte may be: a token character, a field-value byte (a table: one load per byte).
static BYTE_CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        if byte.is_ascii_alphanumeric() {
            class[b] |= TCHAR;
        }
        if byte == b'\t' || (byte >= 0x20 && byte != 0x7f) {
            class[b] |= FIELD_VALUE;
        }
        b += 1;
    }
    let specials = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < specials.len() {
        class[specials[i] as usize] |= TCHAR;
        i += 1;
    }
    class
};

fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The size line of one chunk (`1a2b\r\n`), on the stack so the data itself is never copied:
/// write the header, the data, then [`CHUNK_END`] (a vectored write fits well).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    bytes: [u8; 18],
    start: u8,
}

impl ChunkHeader {
    /// The size line for `len` data bytes. `len` must not be 0: a zero-size chunk is the last
    /// chunk and would end the body; skip empty writes instead.
    pub(crate) fn new(len: usize) -> Self {
        debug_assert!(len > 0, "a zero-size chunk ends the body");
        let mut bytes = [0u8; 18];
        bytes[16] = b'\r';
        bytes[17] = b'\n';
        let mut i = 16;
        let mut n = len as u64;
        loop {
            i -= 1;
            bytes[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        ChunkHeader {
            bytes,
            start: i as u8,
        }
    }
}

impl AsRef<[u8]> for ChunkHeader {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[usize::from(self.start)..]
    }
}

/// Appends one chunk (size line, data, CRLF); an empty `data` writes nothing.
pub(crate) fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(ChunkHeader::new(data.len()).as_ref());
    out.extend_from_slice(data);
    out.extend_from_slice(CHUNK_END);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_written_whole_match_the_ones_put_together() {
        for status in [200, 204, 304, 404, 201, 500, 299] {
            let mut out = Vec::new();
            write_status_line(&mut out, status);
            let expected = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn field_values_are_checked_byte_for_byte_whatever_their_length() {
        for len in 0..20 {
            for at in 0..len {
                for (bad, ok) in [
                    (b'\r', false),
                    (b'\n', false),
                    (0, false),
                    (0x7f, false),
                    (0x1f, false),
                    (b'\t', true),
                    (0x80, true),
                    (0xff, true),
                    (b' ', true),
                ] {
                    let mut value = vec![b'a'; len];
                    value[at] = bad;
                    assert_eq!(
                        is_valid_field_value(&value),
                        ok,
                        "{bad:#x} at {at} of {len}"
                    );
                }
            }
        }
        assert!(is_valid_field_value(b"text/plain; charset=utf-8"));
    }

    const GET11: ResponseContext = ResponseContext {
        version: Version::Http11,
        is_head: false,
        keep_alive: true,
    };

    fn head(ctx: ResponseContext, status: u16, len: Option<u64>) -> (String, ResponseFraming) {
        let framing = decide_framing(ctx, status, len);
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            ctx.version,
            status,
            None,
            [("X-A", "1")],
            &framing,
        )
        .expect("valid headers");
        (String::from_utf8(out).expect("ascii"), framing)
    }

    #[test]
    fn known_length_gets_content_length_and_keeps_alive() {
        let (text, f) = head(GET11, 200, Some(12));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 12\r\n\r\n"
        );
        assert!(f.keep_alive && f.send_body);
    }

    #[test]
    fn unknown_length_is_chunked_for_http11() {
        let (text, f) = head(GET11, 200, None);
        assert!(text.contains("Transfer-Encoding: chunked\r\n"));
        assert_eq!(f.encoding, BodyEncoding::Chunked);
        assert!(f.keep_alive);
    }

    #[test]
    fn unknown_length_is_close_delimited_for_http10() {
        let ctx = ResponseContext {
            version: Version::Http10,
            ..GET11
        };
        let (text, f) = head(ctx, 200, None);
        assert_eq!(f.encoding, BodyEncoding::CloseDelimited);
        assert!(!f.keep_alive);
        assert!(text.ends_with("Connection: close\r\n\r\n"));
        assert!(!text.contains("chunked"));
    }

    #[test]
    fn http10_keep_alive_is_announced() {
        let ctx = ResponseContext {
            version: Version::Http10,
            ..GET11
        };
        let (text, f) = head(ctx, 200, Some(2));
        assert!(f.keep_alive);
        assert!(text.contains("Connection: keep-alive\r\n"));
    }

    #[test]
    fn closing_connection_says_so() {
        let ctx = ResponseContext {
            keep_alive: false,
            ..GET11
        };
        let (text, f) = head(ctx, 200, Some(2));
        assert!(!f.keep_alive);
        assert!(text.contains("Connection: close\r\n"));
    }

    #[test]
    fn head_gets_the_same_length_header_and_no_body() {
        let ctx = ResponseContext {
            is_head: true,
            ..GET11
        };
        let (text, f) = head(ctx, 200, Some(10));
        assert!(text.contains("Content-Length: 10\r\n"));
        assert!(!f.send_body);
        assert!(f.keep_alive);
        let (_, f) = head(ctx, 200, None);
        assert_eq!(f.encoding, BodyEncoding::None);
        assert!(f.keep_alive);
    }

    #[test]
    fn no_content_and_not_modified_have_no_length() {
        for status in [204, 304, 101] {
            let (text, f) = head(GET11, status, Some(5));
            assert!(!text.contains("Content-Length"), "{status}");
            assert!(!f.send_body);
        }
    }

    #[test]
    fn handler_framing_headers_are_replaced() {
        let framing = decide_framing(GET11, 200, Some(3));
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            Version::Http11,
            200,
            Some(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            [
                ("content-length", "99"),
                ("Connection", "upgrade"),
                ("X", "y"),
            ],
            &framing,
        )
        .expect("valid headers");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nX: y\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn header_with_crlf_is_refused() {
        let framing = decide_framing(GET11, 200, Some(0));
        let mut out = Vec::new();
        let err = write_response_head(
            &mut out,
            Version::Http11,
            200,
            None,
            [("Ok", "fine"), ("X", "a\nb")],
            &framing,
        );
        assert_eq!(err, Err(InvalidHeader { index: 1 }));
        assert!(out.is_empty());
        let bad_name = write_fields(&mut out, [("Bad Name", "v")]);
        assert_eq!(bad_name, Err(InvalidHeader { index: 0 }));
    }

    #[test]
    fn error_response_is_complete_and_closes() {
        let mut out = Vec::new();
        write_error_response(&mut out, 431);
        assert_eq!(
            out,
            &b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n\
               Content-Length: 36\r\nConnection: close\r\n\r\n\
               431 Request Header Fields Too Large\n"[..]
        );
    }

    #[test]
    fn unknown_status_has_an_empty_reason() {
        let mut out = Vec::new();
        write_status_line(&mut out, 299);
        assert_eq!(out, b"HTTP/1.1 299 \r\n");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    }

    #[test]
    fn chunks_are_hex_sized_and_empty_chunks_are_skipped() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello world, sixteen+");
        encode_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        assert_eq!(out, b"15\r\nhello world, sixteen+\r\n0\r\n\r\n");
        assert_eq!(
            ChunkHeader::new(usize::MAX).as_ref(),
            b"ffffffffffffffff\r\n"
        );
        assert_eq!(ChunkHeader::new(1).as_ref(), b"1\r\n");
    }

    #[test]
    fn continue_bytes_are_a_complete_interim_response() {
        assert_eq!(CONTINUE_100, b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}
