//! `ParseError`: every reason a peer's bytes are refused, with the status to answer.
//!
//! One variant per cause so the worker can log precisely; `status()` folds them into the few
//! statuses DESIGN.md §7 allows (400, 413, 414, 431, 501). No I/O.

use std::fmt;

/// Why a request (uwsgi packet, HTTP head or body) was refused.
///
/// `Display` is the short reason for logs; its wording is not stable, match on the variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    // --- uwsgi ---
    /// The first bytes on a uwsgi socket look like an HTTP request line (`GET /...`): a client
    /// or proxy speaks HTTP to a `socket =` listener. 400 (or just close).
    HttpOnUwsgiSocket,
    /// A uwsgi packet with a modifier1 we do not serve (only 0 = request and 100 = ping are).
    /// uWSGI logs and closes; so should the worker. `status()` says 501 for completeness.
    UnsupportedModifier(u8),
    /// The uwsgi vars block is bigger than `buffer-size`. 431.
    VarsTooLarge,
    /// A key or value runs past the end of the uwsgi vars block, or bytes are left over. 400.
    MalformedVars,
    /// A uwsgi var with a zero-length key (uWSGI rejects these too). 400.
    EmptyVarKey,

    // --- HTTP request head ---
    /// The request head is bigger than `buffer-size`. 431.
    HeadTooLarge,
    /// The request-target is longer than `max_uri` (or the request line never ends). 414.
    UriTooLong,
    /// More header fields than the parser holds (`http1::MAX_HEADERS`). 431.
    TooManyHeaders,
    /// A bad method token, request-target or separator in the request line. 400.
    InvalidRequestLine,
    /// A request-target in none of the forms RFC 9112 §3.2 allows for its method, with a
    /// `#fragment` (never part of a request-target), or an absolute-form whose authority is not
    /// a valid host and port (or carries userinfo, RFC 9110 §4.2.4). 400.
    InvalidTarget,
    /// A CONNECT request (HTTP or uwsgi): rcontainer is no tunnelling proxy. 501, then close.
    ConnectNotSupported,
    /// An HTTP version other than 1.0 and 1.1. 400.
    UnsupportedVersion,
    /// A header name that is not a token, including an obs-fold continuation line. 400.
    InvalidHeaderName,
    /// A header value with a control character. 400.
    InvalidHeaderValue,
    /// A bare CR, or a line break where none may be. 400.
    InvalidLineEnding,
    /// An HTTP/1.1 request without a `Host` header (RFC 9112 §3.2). 400.
    MissingHost,
    /// More than one `Host` header. 400.
    DuplicateHost,
    /// A `Host` value with characters no host or port can have. 400.
    InvalidHost,
    /// More than one `Content-Type` header (or uwsgi `CONTENT_TYPE`/`HTTP_CONTENT_TYPE` var):
    /// which one the body is would depend on who reads it. 400.
    DuplicateContentType,

    // --- body framing (RFC 9112 §6) ---
    /// `Content-Length` (header or uwsgi var) that is not a plain decimal number that fits a u64. 400.
    InvalidContentLength,
    /// More than one `Content-Length` header (or uwsgi var). 400.
    DuplicateContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: the classic smuggling vector. 400.
    ContentLengthWithTransferEncoding,
    /// `Transfer-Encoding` whose final coding is not `chunked`, or chunked twice, or a malformed
    /// coding list: the body length cannot be known (RFC 9112 §6.3). 400.
    InvalidTransferEncoding,
    /// `Transfer-Encoding` on an HTTP/1.0 request: faulty framing by RFC 9112 §6.1. 400.
    TransferEncodingOnHttp10,
    /// A transfer coding we do not implement before the final `chunked` (`gzip, chunked`). 501.
    UnsupportedTransferCoding,
    /// The body is longer than `limit-post` (declared or, for chunked, received so far). 413.
    BodyTooLarge,

    // --- chunked body ---
    /// A chunk-size line that is not hex digits, optional whitespace and extensions. 400.
    InvalidChunkSize,
    /// A chunk size that does not fit a u64. 400.
    ChunkSizeOverflow,
    /// A chunk line (size, data end, trailer) not ended by CRLF: bare LF or bare CR. 400.
    InvalidChunkLineEnding,
    /// Chunk extensions longer than `http1::MAX_CHUNK_EXTENSION` on one line. 400.
    ChunkExtensionTooLong,
    /// The trailer section is larger than `http1::MAX_TRAILER_BYTES`. 431.
    TrailersTooLarge,
    /// A malformed trailer field line. 400.
    InvalidTrailer,
}

impl ParseError {
    /// The HTTP status to answer with: 400, 413, 414, 431 or 501.
    pub(crate) fn status(self) -> u16 {
        use ParseError::*;
        match self {
            VarsTooLarge | HeadTooLarge | TooManyHeaders | TrailersTooLarge => 431,
            UriTooLong => 414,
            BodyTooLarge => 413,
            UnsupportedModifier(_) | UnsupportedTransferCoding | ConnectNotSupported => 501,
            HttpOnUwsgiSocket
            | MalformedVars
            | EmptyVarKey
            | InvalidRequestLine
            | InvalidTarget
            | UnsupportedVersion
            | InvalidHeaderName
            | InvalidHeaderValue
            | InvalidLineEnding
            | MissingHost
            | DuplicateHost
            | InvalidHost
            | DuplicateContentType
            | InvalidContentLength
            | DuplicateContentLength
            | ContentLengthWithTransferEncoding
            | InvalidTransferEncoding
            | TransferEncodingOnHttp10
            | InvalidChunkSize
            | ChunkSizeOverflow
            | InvalidChunkLineEnding
            | ChunkExtensionTooLong
            | InvalidTrailer => 400,
        }
    }

    /// A short lowercase reason for the log line (`request refused reason=...`).
    pub(crate) fn reason(self) -> &'static str {
        use ParseError::*;
        match self {
            HttpOnUwsgiSocket => "http request on uwsgi socket",
            UnsupportedModifier(_) => "unsupported uwsgi modifier1",
            VarsTooLarge => "uwsgi vars block larger than buffer-size",
            MalformedVars => "malformed uwsgi vars block",
            EmptyVarKey => "uwsgi var with empty key",
            HeadTooLarge => "request head larger than buffer-size",
            UriTooLong => "request-target too long",
            TooManyHeaders => "too many header fields",
            InvalidRequestLine => "invalid request line",
            InvalidTarget => "invalid request-target",
            ConnectNotSupported => "connect not supported",
            UnsupportedVersion => "unsupported http version",
            InvalidHeaderName => "invalid header name",
            InvalidHeaderValue => "invalid header value",
            InvalidLineEnding => "invalid line ending",
            MissingHost => "http/1.1 request without host",
            DuplicateHost => "duplicate host header",
            InvalidHost => "invalid host header",
            DuplicateContentType => "duplicate content-type",
            InvalidContentLength => "invalid content-length",
            DuplicateContentLength => "duplicate content-length",
            ContentLengthWithTransferEncoding => "both content-length and transfer-encoding",
            InvalidTransferEncoding => "transfer-encoding not ending in chunked",
            TransferEncodingOnHttp10 => "transfer-encoding on http/1.0",
            UnsupportedTransferCoding => "unsupported transfer coding",
            BodyTooLarge => "body larger than limit-post",
            InvalidChunkSize => "invalid chunk size",
            ChunkSizeOverflow => "chunk size overflow",
            InvalidChunkLineEnding => "chunk line not ended by crlf",
            ChunkExtensionTooLong => "chunk extension too long",
            TrailersTooLarge => "trailer section too large",
            InvalidTrailer => "invalid trailer field",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnsupportedModifier(m) => write!(f, "{} {m}", self.reason()),
            _ => f.write_str(self.reason()),
        }
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_one_design_allows() {
        let all = [
            ParseError::HttpOnUwsgiSocket,
            ParseError::UnsupportedModifier(7),
            ParseError::VarsTooLarge,
            ParseError::UriTooLong,
            ParseError::BodyTooLarge,
            ParseError::UnsupportedTransferCoding,
            ParseError::ConnectNotSupported,
            ParseError::DuplicateContentType,
            ParseError::InvalidChunkSize,
        ];
        for e in all {
            assert!([400, 413, 414, 431, 501].contains(&e.status()), "{e:?}");
        }
    }

    #[test]
    fn display_names_the_modifier() {
        assert_eq!(
            ParseError::UnsupportedModifier(22).to_string(),
            "unsupported uwsgi modifier1 22"
        );
    }
}
