//! The uwsgi binary protocol (DESIGN.md §7, reference/uwsgi-compat.md §2): packet header,
//! vars block, ping/pong, and the raw HTTP response head written back on uwsgi sockets.
//!
//! Wire format: `modifier1: u8, datasize: u16 LE, modifier2: u8`, then `datasize` bytes of
//! `u16le len + key, u16le len + value` pairs, then `CONTENT_LENGTH` body bytes with no framing.
//! Pure code over `&[u8]`: no I/O, no logging.

#[cfg(any(test, fuzzing))]
use super::http1::BodyFraming;
use super::http1::response::{self, InvalidHeader};
use super::{Limits, ParseError, Vars};

/// The packet type in a uwsgi header's first byte (the uWSGI docs' table, Protocol.rst).
///
/// rcontainer serves [`Modifier1::Request`] and answers [`Modifier1::Ping`]; the other names
/// exist so logs and tests can say what a peer sent.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Modifier1 {
    /// A WSGI-style HTTP request: CGI vars, then the body. The only value nginx sends.
    Request = 0,
    /// A PSGI (Perl) request.
    Psgi = 5,
    /// A Lua WSAPI request.
    Lua = 6,
    /// A Rack (Ruby) request.
    Rack = 7,
    /// A JVM request.
    Jvm = 8,
    /// A CGI request.
    Cgi = 9,
    /// A management request (modifier2 is the flag).
    Management = 10,
    /// A PHP request.
    Php = 14,
    /// A Mono request.
    Mono = 15,
    /// A spooler request.
    Spooler = 17,
    /// Raw code evaluation (legacy).
    Eval = 22,
    /// WSGI with SCRIPT_NAME stripped from PATH_INFO.
    WsgiStripScriptName = 30,
    /// `'H'`: what the bytes `HTTP` look like when read as a uwsgi header.
    RawHttpResponse = 72,
    /// Remote logging.
    RemoteLogging = 96,
    /// Brutal reload request.
    BrutalReload = 97,
    /// Graceful reload request.
    GracefulReload = 98,
    /// Ping (modifier2 0) and pong (modifier2 1).
    Ping = 100,
    /// Echo.
    Echo = 101,
    /// uwsgi signal (modifier2 is the signal number).
    Signal = 110,
    /// Cache operation.
    Cache = 111,
    /// Emperor config push.
    EmperorConfig = 115,
    /// RPC.
    Rpc = 173,
    /// Close mark for persistent connections.
    PersistentClose = 200,
    /// Subscription packet.
    Subscription = 224,
    /// Generic response.
    Response = 255,
}

impl Modifier1 {
    /// Every named value, for tests and logs.
    pub(crate) const ALL: [Modifier1; 25] = [
        Modifier1::Request,
        Modifier1::Psgi,
        Modifier1::Lua,
        Modifier1::Rack,
        Modifier1::Jvm,
        Modifier1::Cgi,
        Modifier1::Management,
        Modifier1::Php,
        Modifier1::Mono,
        Modifier1::Spooler,
        Modifier1::Eval,
        Modifier1::WsgiStripScriptName,
        Modifier1::RawHttpResponse,
        Modifier1::RemoteLogging,
        Modifier1::BrutalReload,
        Modifier1::GracefulReload,
        Modifier1::Ping,
        Modifier1::Echo,
        Modifier1::Signal,
        Modifier1::Cache,
        Modifier1::EmperorConfig,
        Modifier1::Rpc,
        Modifier1::PersistentClose,
        Modifier1::Subscription,
        Modifier1::Response,
    ];
}

impl TryFrom<u8> for Modifier1 {
    /// The unknown byte.
    type Error = u8;

    fn try_from(byte: u8) -> Result<Self, u8> {
        Modifier1::ALL
            .into_iter()
            .find(|m| *m as u8 == byte)
            .ok_or(byte)
    }
}

/// The modifier2 of a pong, the answer to a ping.
pub(crate) const MODIFIER2_PONG: u8 = 1;

/// The 4-byte packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PacketHeader {
    /// The packet type; see [`Modifier1`].
    pub(crate) modifier1: u8,
    /// The length of the vars block only (the body is not counted).
    pub(crate) datasize: u16,
    /// The sub-type, 0 for requests.
    pub(crate) modifier2: u8,
}

/// The header's size on the wire.
pub(crate) const HEADER_LEN: usize = 4;

impl PacketHeader {
    /// Reads a header from its 4 wire bytes.
    pub(crate) fn decode(bytes: [u8; HEADER_LEN]) -> Self {
        PacketHeader {
            modifier1: bytes[0],
            datasize: u16::from_le_bytes([bytes[1], bytes[2]]),
            modifier2: bytes[3],
        }
    }

    #[cfg(any(test, fuzzing))]
    /// The 4 wire bytes, exactly as nginx writes them.
    pub(crate) fn encode(self) -> [u8; HEADER_LEN] {
        let [lo, hi] = self.datasize.to_le_bytes();
        [self.modifier1, lo, hi, self.modifier2]
    }
}

/// The pong packet that answers a ping: `64 00 00 01`.
pub(crate) const PONG: [u8; HEADER_LEN] = [Modifier1::Ping as u8, 0, 0, MODIFIER2_PONG];

/// A parsed uwsgi packet.
#[cfg(any(test, fuzzing))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Packet {
    /// modifier1 0: a request. Its body (`content_length` bytes) follows on the stream.
    Request(Request),
    /// modifier1 100: answer with [`PONG`] and close.
    Ping,
}

/// A uwsgi request: the vars, and the body length they declare.
#[cfg(any(test, fuzzing))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    modifier2: u8,
    vars: Vars,
    content_length: u64,
}

#[cfg(any(test, fuzzing))]
impl Request {
    /// The CGI vars in wire order, `UWSGI_*` ones included (they only sit there: nothing
    /// acts on them except [`Request::scheme`] reading `UWSGI_SCHEME`).
    pub(crate) fn vars(&self) -> &Vars {
        &self.vars
    }

    #[cfg(any(test, fuzzing))]
    /// The header's modifier2 (0 from nginx).
    pub(crate) fn modifier2(&self) -> u8 {
        self.modifier2
    }

    #[cfg(any(test, fuzzing))]
    /// The body length from `CONTENT_LENGTH` (empty or absent = 0). `HTTP_TRANSFER_ENCODING`
    /// plays no part: nginx has already de-chunked the body and sent its length.
    pub(crate) fn content_length(&self) -> u64 {
        self.content_length
    }

    /// The body's framing, for a [`super::http1::BodyDecoder`].
    pub(crate) fn body_framing(&self) -> BodyFraming {
        BodyFraming::from_length(self.content_length)
    }

    /// The URL scheme (see [`scheme_of`]).
    pub(crate) fn scheme(&self) -> &str {
        scheme_of(&self.vars)
    }
}

/// The URL scheme of a request's vars: a non-empty `UWSGI_SCHEME`, else `REQUEST_SCHEME`, else
/// `https` when `HTTPS` is `on`/`1`, else `http`. Non-UTF-8 values are skipped.
pub(crate) fn scheme_of(vars: &Vars) -> &str {
    for key in ["UWSGI_SCHEME", "REQUEST_SCHEME"] {
        if let Some(s) = vars.get(key).and_then(|v| std::str::from_utf8(v).ok())
            && !s.is_empty()
        {
            return s;
        }
    }
    match vars.get("HTTPS") {
        Some(v) if v.eq_ignore_ascii_case(b"on") || v == b"1" => "https",
        _ => "http",
    }
}

#[cfg(any(test, fuzzing))]
/// Parses one packet from the start of `buf`, with vars of its own (tests, fuzzing, the
/// corpus; the worker reuses its vars with [`packet_ready`] and [`parse_request_into`]).
///
/// Returns `Ok(None)` until the header and the whole vars block are there, then the packet and
/// the bytes it used (header + vars; the body is not included: `buf[consumed..]` is its start).
///
/// # Errors
/// Those of [`packet_ready`] and [`parse_request_into`].
pub(crate) fn parse_packet(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(Packet, usize)>, ParseError> {
    let Some((kind, consumed)) = packet_ready(buf, limits)? else {
        return Ok(None);
    };
    if kind == Modifier1::Ping {
        return Ok(Some((Packet::Ping, consumed)));
    }
    let mut vars = Vars::default();
    let content_length = parse_request_into(buf, limits, &mut vars)?;
    let request = Request {
        modifier2: buf[3],
        vars,
        content_length,
    };
    Ok(Some((Packet::Request(request), consumed)))
}

/// Whether a whole packet (header and vars block) is at the start of `buf`: `Ok(None)` until
/// it is, then its kind (a request or a ping) and its length. Decided from the 4-byte header
/// alone, so it costs nothing to ask again after every read.
///
/// # Errors
/// HTTP on a uwsgi socket, an unsupported modifier1, a vars block over `buffer-size` (431).
pub(crate) fn packet_ready(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(Modifier1, usize)>, ParseError> {
    let Some(&header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    if looks_like_http(header) {
        return Err(ParseError::HttpOnUwsgiSocket);
    }
    let header = PacketHeader::decode(header);
    let datasize = usize::from(header.datasize);
    let kind = match Modifier1::try_from(header.modifier1) {
        Ok(kind @ (Modifier1::Request | Modifier1::Ping)) => kind,
        _ => return Err(ParseError::UnsupportedModifier(header.modifier1)),
    };
    if datasize > limits.buffer_size {
        return Err(ParseError::VarsTooLarge);
    }
    let consumed = HEADER_LEN + datasize;
    Ok((buf.len() >= consumed).then_some((kind, consumed)))
}

/// Parses the vars of the request packet [`packet_ready`] found at the start of `buf` into
/// `vars` (emptied first, its room reused); returns the body length they declare.
///
/// # Errors
/// Malformed vars, an empty key, a bad or duplicate `CONTENT_LENGTH`, a repeated
/// `CONTENT_TYPE` or `HTTP_CONTENT_TYPE` (400), a body over `limit-post` (413), a CONNECT (501).
pub(crate) fn parse_request_into(
    buf: &[u8],
    limits: &Limits,
    vars: &mut Vars,
) -> Result<u64, ParseError> {
    let header = PacketHeader::decode(
        *buf.first_chunk::<HEADER_LEN>()
            .expect("invariant: packet_ready saw the whole packet"),
    );
    let block = &buf[HEADER_LEN..HEADER_LEN + usize::from(header.datasize)];
    parse_vars(block, vars)?;
    check_request_vars(vars)?;
    let content_length = content_length(vars)?;
    if limits.is_body_too_large(content_length) {
        return Err(ParseError::BodyTooLarge);
    }
    Ok(content_length)
}

/// Whether a header's 4 bytes are the start of an HTTP request line (`GET `, `POST`, `HEAD`,
/// `DELE`, `OPTI`...): an uppercase letter, then uppercase letters or a space. No served
/// modifier1 is a letter, so this never hides a real packet.
fn looks_like_http(header: [u8; HEADER_LEN]) -> bool {
    header[0].is_ascii_uppercase()
        && header[1..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b' ')
}

/// Splits a vars block into its pairs, into `vars`.
fn parse_vars(mut block: &[u8], vars: &mut Vars) -> Result<(), ParseError> {
    vars.clear();
    while !block.is_empty() {
        let (key, rest) = split_item(block)?;
        if key.is_empty() {
            return Err(ParseError::EmptyVarKey);
        }
        let (value, rest) = split_item(rest)?;
        vars.push(key, value);
        block = rest;
    }
    Ok(())
}

/// Takes one `u16le len + bytes` item off the front of `bytes`.
fn split_item(bytes: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    let (len, rest) = bytes
        .split_first_chunk::<2>()
        .ok_or(ParseError::MalformedVars)?;
    let len = usize::from(u16::from_le_bytes(*len));
    if rest.len() < len {
        return Err(ParseError::MalformedVars);
    }
    Ok(rest.split_at(len))
}

/// The same rules as on HTTP: a CONNECT is not served (501), and a body with two content types
/// (two `CONTENT_TYPE` vars, or the client's two `Content-Type` headers as `HTTP_CONTENT_TYPE`)
/// is refused rather than read one way by one reader and another way by the next.
fn check_request_vars(vars: &Vars) -> Result<(), ParseError> {
    if vars.get("REQUEST_METHOD") == Some(b"CONNECT") {
        return Err(ParseError::ConnectNotSupported);
    }
    if vars.count("CONTENT_TYPE") > 1 || vars.count("HTTP_CONTENT_TYPE") > 1 {
        return Err(ParseError::DuplicateContentType);
    }
    Ok(())
}

/// The body length a request declares: empty or absent `CONTENT_LENGTH` = 0.
///
/// Stricter than uWSGI (which reads digits up to the first non-digit): anything but plain
/// decimal digits is refused, and so is a second `CONTENT_LENGTH`, which nginx never sends.
fn content_length(vars: &Vars) -> Result<u64, ParseError> {
    if vars.count("CONTENT_LENGTH") > 1 {
        return Err(ParseError::DuplicateContentLength);
    }
    match vars.get("CONTENT_LENGTH") {
        None | Some(b"") => Ok(0),
        Some(digits) => parse_decimal(digits).ok_or(ParseError::InvalidContentLength),
    }
}

/// Parses a non-empty run of ASCII digits into a u64; `None` on any other byte or overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(any(test, fuzzing))]
/// Builds a packet from a modifier pair and vars: the inverse of [`parse_packet`] (tests, the
/// integration harness, the fuzz round trip). `None` if a key, a value or the whole block does
/// not fit its u16 length.
pub(crate) fn encode_packet<K, V>(
    modifier1: Modifier1,
    modifier2: u8,
    vars: impl IntoIterator<Item = (K, V)>,
) -> Option<Vec<u8>>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut out = vec![0; HEADER_LEN];
    for (key, value) in vars {
        for item in [key.as_ref(), value.as_ref()] {
            let len = u16::try_from(item.len()).ok()?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(item);
        }
    }
    let header = PacketHeader {
        modifier1: modifier1 as u8,
        datasize: u16::try_from(out.len() - HEADER_LEN).ok()?,
        modifier2,
    };
    out[..HEADER_LEN].copy_from_slice(&header.encode());
    Some(out)
}

/// Writes the response head for a uwsgi socket: `HTTP/1.1 <code> <reason>`, the handler's
/// headers, `Content-Length` when known, and the empty line.
///
/// Never chunked (nginx's uwsgi module cannot de-chunk): with `content_length = None` the body
/// is close-delimited, so the worker closes after it. The handler's own `Content-Length`,
/// `Transfer-Encoding`, `Connection` and `Keep-Alive` headers are dropped: framing is ours.
/// 1xx, 204 and 304 answers get no `Content-Length`.
///
/// # Errors
/// [`InvalidHeader`] if a header name is not a token or a value holds CR, LF or NUL; `out` is
/// then left as it was.
pub(crate) fn write_response_head<N, V>(
    out: &mut Vec<u8>,
    status: u16,
    headers: impl IntoIterator<Item = (N, V)>,
    content_length: Option<u64>,
) -> Result<(), InvalidHeader>
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let start = out.len();
    response::write_status_line(out, status);
    if let Err(e) = response::write_fields(out, headers) {
        out.truncate(start);
        return Err(e);
    }
    if let Some(len) = content_length
        && response::status_allows_body(status)
    {
        response::write_content_length(out, len);
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<(Packet, usize)>, ParseError> {
        parse_packet(buf, &Limits::default())
    }

    fn request(buf: &[u8]) -> Request {
        match parse(buf) {
            Ok(Some((Packet::Request(r), n))) => {
                assert_eq!(n, buf.len());
                r
            }
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn modifier1_round_trips_through_its_byte() {
        for m in Modifier1::ALL {
            assert_eq!(Modifier1::try_from(m as u8), Ok(m));
        }
        assert_eq!(Modifier1::try_from(1), Err(1));
        assert_eq!(Modifier1::try_from(71), Err(71));
        assert_eq!(Modifier1::Ping as u8, 100);
        assert_eq!(Modifier1::Request as u8, 0);
    }

    #[test]
    fn header_round_trips_little_endian() {
        let header = PacketHeader {
            modifier1: 0,
            datasize: 0x1234,
            modifier2: 7,
        };
        assert_eq!(header.encode(), [0, 0x34, 0x12, 7]);
        assert_eq!(PacketHeader::decode(header.encode()), header);
    }

    #[test]
    fn reference_worked_example_parses() {
        // uwsgi-compat.md §2.1: one var REQUEST_METHOD=GET, no body.
        let mut wire = vec![0x00, 0x15, 0x00, 0x00, 0x0e, 0x00];
        wire.extend_from_slice(b"REQUEST_METHOD");
        wire.extend_from_slice(&[0x03, 0x00]);
        wire.extend_from_slice(b"GET");
        let req = request(&wire);
        assert_eq!(req.vars().get("REQUEST_METHOD"), Some(&b"GET"[..]));
        assert_eq!(req.content_length(), 0);
        let encoded = encode_packet(Modifier1::Request, 0, [("REQUEST_METHOD", "GET")]);
        assert_eq!(encoded, Some(wire));
    }

    #[test]
    fn incomplete_packet_needs_more() {
        let wire = encode_packet(Modifier1::Request, 0, [("A", "b")]).expect("fits");
        for end in 0..wire.len() {
            assert_eq!(parse(&wire[..end]), Ok(None), "prefix {end}");
        }
    }

    #[test]
    fn empty_values_and_empty_content_length_are_accepted() {
        let wire = encode_packet(
            Modifier1::Request,
            0,
            [
                ("CONTENT_TYPE", ""),
                ("CONTENT_LENGTH", ""),
                ("QUERY_STRING", ""),
            ],
        )
        .expect("fits");
        let req = request(&wire);
        assert_eq!(req.content_length(), 0);
        assert_eq!(req.vars().get("CONTENT_TYPE"), Some(&b""[..]));
    }

    #[test]
    fn body_bytes_after_the_vars_are_not_consumed() {
        let mut wire =
            encode_packet(Modifier1::Request, 0, [("CONTENT_LENGTH", "5")]).expect("fits");
        let vars_len = wire.len();
        wire.extend_from_slice(b"hello");
        match parse(&wire) {
            Ok(Some((Packet::Request(r), n))) => {
                assert_eq!(n, vars_len);
                assert_eq!(r.content_length(), 5);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zero_length_key_is_rejected() {
        let wire = encode_packet(Modifier1::Request, 0, [("", "x")]).expect("fits");
        assert_eq!(parse(&wire), Err(ParseError::EmptyVarKey));
    }

    #[test]
    fn value_running_past_the_block_is_malformed() {
        let mut wire = encode_packet(Modifier1::Request, 0, [("A", "bc")]).expect("fits");
        wire[HEADER_LEN + 3] = 3; // value length 3, only 2 bytes in the block
        assert_eq!(parse(&wire), Err(ParseError::MalformedVars));
        let dangling = [0, 1, 0, 0, 7]; // one byte where a u16 length should be
        assert_eq!(parse(&dangling), Err(ParseError::MalformedVars));
    }

    #[test]
    fn vars_block_over_buffer_size_gets_431_from_the_header_alone() {
        let limits = Limits {
            buffer_size: 4096,
            ..Limits::default()
        };
        let header = PacketHeader {
            modifier1: 0,
            datasize: 9614,
            modifier2: 0,
        };
        let err = parse_packet(&header.encode(), &limits).unwrap_err();
        assert_eq!(err, ParseError::VarsTooLarge);
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn bad_content_length_gets_400() {
        for bad in ["abc", "-1", " 5", "5 ", "1e3", "18446744073709551616", "+5"] {
            let wire =
                encode_packet(Modifier1::Request, 0, [("CONTENT_LENGTH", bad)]).expect("fits");
            assert_eq!(parse(&wire), Err(ParseError::InvalidContentLength), "{bad}");
        }
        let twice = encode_packet(
            Modifier1::Request,
            0,
            [("CONTENT_LENGTH", "1"), ("CONTENT_LENGTH", "1")],
        )
        .expect("fits");
        assert_eq!(parse(&twice), Err(ParseError::DuplicateContentLength));
    }

    #[test]
    fn connect_and_repeated_content_types_are_refused_as_on_http() {
        let connect = encode_packet(Modifier1::Request, 0, [("REQUEST_METHOD", "CONNECT")]);
        let err = parse(&connect.expect("fits")).unwrap_err();
        assert_eq!((err, err.status()), (ParseError::ConnectNotSupported, 501));
        for key in ["CONTENT_TYPE", "HTTP_CONTENT_TYPE"] {
            let twice = encode_packet(Modifier1::Request, 0, [(key, "a/b"), (key, "c/d")]);
            assert_eq!(
                parse(&twice.expect("fits")),
                Err(ParseError::DuplicateContentType),
                "{key}"
            );
        }
        let nginx = encode_packet(
            Modifier1::Request,
            0,
            [("CONTENT_TYPE", "a/b"), ("HTTP_CONTENT_TYPE", "a/b")],
        );
        assert!(matches!(parse(&nginx.expect("fits")), Ok(Some(_))));
    }

    #[test]
    fn content_length_over_limit_post_gets_413() {
        let limits = Limits {
            limit_post: Some(10),
            ..Limits::default()
        };
        let wire = encode_packet(Modifier1::Request, 0, [("CONTENT_LENGTH", "11")]).expect("fits");
        assert_eq!(parse_packet(&wire, &limits), Err(ParseError::BodyTooLarge));
        let wire = encode_packet(Modifier1::Request, 0, [("CONTENT_LENGTH", "10")]).expect("fits");
        assert!(matches!(parse_packet(&wire, &limits), Ok(Some(_))));
    }

    #[test]
    fn transfer_encoding_var_does_not_frame_the_body() {
        let wire = encode_packet(
            Modifier1::Request,
            0,
            [
                ("HTTP_TRANSFER_ENCODING", "chunked"),
                ("CONTENT_LENGTH", "12"),
            ],
        )
        .expect("fits");
        assert_eq!(request(&wire).content_length(), 12);
    }

    #[test]
    fn ping_is_recognised_and_pong_is_64_00_00_01() {
        assert_eq!(parse(&[100, 0, 0, 0]), Ok(Some((Packet::Ping, 4))));
        assert_eq!(PONG, [0x64, 0, 0, 1]);
    }

    #[test]
    fn other_modifiers_are_unsupported() {
        for m in [1u8, 5, 10, 30, 173, 255] {
            assert_eq!(
                parse(&[m, 0, 0, 0]),
                Err(ParseError::UnsupportedModifier(m))
            );
        }
    }

    #[test]
    fn http_sent_to_a_uwsgi_socket_is_detected() {
        for start in [
            "GET / HTTP/1.1",
            "POST /x",
            "HEAD /",
            "PUT /",
            "DELETE /",
            "OPTIONS *",
        ] {
            assert_eq!(
                parse(start.as_bytes()),
                Err(ParseError::HttpOnUwsgiSocket),
                "{start}"
            );
        }
    }

    #[test]
    fn uwsgi_vars_other_than_scheme_change_nothing_and_scheme_is_honoured() {
        let wire = encode_packet(
            Modifier1::Request,
            0,
            [
                ("UWSGI_SCRIPT", "evil:app"),
                ("UWSGI_CHDIR", "/"),
                ("REQUEST_SCHEME", "http"),
                ("UWSGI_SCHEME", "https"),
            ],
        )
        .expect("fits");
        let req = request(&wire);
        assert_eq!(req.scheme(), "https");
        assert_eq!(req.content_length(), 0);
        let plain = encode_packet(Modifier1::Request, 0, [("HTTPS", "on")]).expect("fits");
        assert_eq!(request(&plain).scheme(), "https");
        let none = encode_packet(Modifier1::Request, 0, [("A", "")]).expect("fits");
        assert_eq!(request(&none).scheme(), "http");
    }

    #[test]
    fn encoder_refuses_values_over_u16() {
        let big = vec![b'x'; 70_000];
        assert_eq!(
            encode_packet(Modifier1::Request, 0, [(&b"K"[..], &big[..])]),
            None
        );
    }

    #[test]
    fn response_head_has_content_length_and_is_never_chunked() {
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            200,
            [
                ("Content-Type", "text/plain"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "99"),
            ],
            Some(5),
        )
        .expect("valid headers");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
        );
        let mut out = Vec::new();
        write_response_head(&mut out, 404, [("X-A", "b")], None).expect("valid headers");
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\nX-A: b\r\n\r\n");
    }

    #[test]
    fn response_head_refuses_header_injection() {
        let mut out = b"keep".to_vec();
        let err = write_response_head(&mut out, 200, [("X-A", "b\r\nSet-Cookie: x")], None);
        assert!(err.is_err());
        assert_eq!(out, b"keep");
    }
}
