//! [`Request`]: what a handler sees of one request, whichever protocol carried it, and
//! [`RequestData`], where the worker keeps what a protocol parsed of it.
//!
//! A request costs no allocation once the worker is warm: the protocol writes the text fields
//! and headers into one reused buffer and the CGI vars into a reused [`Vars`], and the
//! [`Request`] borrows them. The owned `(String, String)` lists of [`Request::headers`] and
//! [`Request::vars`] are made the first time a handler asks for one.

use std::cell::{OnceCell, RefCell};
use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::ops::Range;

use crate::proto::Vars;
use crate::proto::cgi::{self, ConnInfo};
use crate::proto::http1::{HeadSpans, RequestHead};

/// The request body: read it like any `std::io::Read`.
///
/// Reading parks the handler's coroutine while bytes are in flight; the worker serves other
/// requests meanwhile. A body the handler does not read is drained (up to a bound) by the
/// worker before the response goes out, so a proxy in front never sees a reset.
pub struct Body<'a> {
    reader: BodySource<'a>,
}

enum BodySource<'a> {
    /// The worker's reader, on its own stack.
    Borrowed(&'a mut (dyn Read + 'a)),
    Owned(Box<dyn Read + 'a>),
}

impl<'a> Body<'a> {
    /// A body read from `reader`.
    pub fn new(reader: impl Read + 'a) -> Body<'a> {
        Body {
            reader: BodySource::Owned(Box::new(reader)),
        }
    }

    /// A body read from `reader`, which the caller keeps (no allocation).
    pub(crate) fn borrowed(reader: &'a mut (dyn Read + 'a)) -> Body<'a> {
        Body {
            reader: BodySource::Borrowed(reader),
        }
    }

    /// A body with no bytes.
    pub fn empty() -> Body<'static> {
        Body::new(io::empty())
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.reader {
            BodySource::Borrowed(reader) => reader.read(buf),
            BodySource::Owned(reader) => reader.read(buf),
        }
    }
}

impl fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Body { .. }")
    }
}

/// A range of [`TextFields`]' text.
pub(crate) type Text = Range<u32>;

/// What a protocol parsed of one request: every field of a [`Request`] that does not depend on
/// the route, the worker or the body. The worker reuses one for request after request
/// ([`clear`](Self::clear) keeps its room), so a request costs no allocation once warm.
///
/// Over HTTP the text is the request head itself (copied once, when it is UTF-8) and the CGI
/// vars are derived from it only when something asks for them ([`RequestData::vars`]): a
/// handler that reads the path and a header never pays for them.
#[derive(Debug, Default)]
pub(crate) struct RequestData {
    /// Method, target, path, query, protocol, scheme, the peer's address and the headers.
    pub(crate) text: TextFields,
    pub(crate) remote_addr: Option<SocketAddr>,
    /// An HTTP peer's address and port as text (`REMOTE_ADDR`, `REMOTE_PORT`).
    pub(crate) peer: PeerText,
    /// The CGI vars as bytes, once made.
    vars: OnceCell<Vars>,
    /// The room of earlier vars, for the next ones.
    spare_vars: RefCell<Vars>,
    /// Set when the vars are to be derived from an HTTP head: its bytes start the text.
    derive_from: Option<DeriveVars>,
    /// Where the parts of that head are (kept from request to request for its room).
    head_spans: HeadSpans,
    /// [`Request::headers`] and [`Request::vars`] as owned strings, made when first asked for.
    header_list: OnceCell<Vec<(String, String)>>,
    var_list: OnceCell<Vec<(String, String)>>,
}

/// How to derive the vars of an HTTP request: its head is `text[..head_len]` (parts in
/// `head_spans`), the peer is [`RequestData::peer`].
#[derive(Debug, Clone)]
struct DeriveVars {
    head_len: usize,
}

/// The text fields and the headers of a request, each a range of one buffer. Always valid
/// UTF-8: bytes that are not are replaced (U+FFFD) as they are written in.
#[derive(Debug, Default)]
pub(crate) struct TextFields {
    text: String,
    method: Text,
    /// The target as sent (`REQUEST_URI`).
    uri: Text,
    /// The percent-decoded path with the mount point still in front (`PATH_INFO` as text).
    path: Text,
    query: Text,
    protocol: Text,
    scheme: Text,
    /// The peer's address as text (`REMOTE_ADDR`), for the request log.
    remote_addr: Text,
    /// The path's bytes were not UTF-8 (the text has U+FFFD where they were).
    path_replaced: bool,
    headers: Vec<(Text, Text)>,
    /// Room for a percent-decoded path before it is written in.
    scratch: Vec<u8>,
}

/// The text fields of a request, to set with [`TextFields::set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Method,
    Uri,
    Path,
    Query,
    Protocol,
    Scheme,
    RemoteAddr,
}

const FIELDS: [Field; 7] = [
    Field::Method,
    Field::Uri,
    Field::Path,
    Field::Query,
    Field::Protocol,
    Field::Scheme,
    Field::RemoteAddr,
];

impl RequestData {
    /// Forgets the request it held, keeping the room for the next one.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        if let Some(mut vars) = self.vars.take() {
            vars.clear();
            *self.spare_vars.get_mut() = vars;
        }
        self.derive_from = None;
        self.remote_addr = None;
        self.peer = PeerText::default();
        self.header_list.take();
        self.var_list.take();
    }

    /// The CGI vars, to write (the protocol's own, as a uwsgi packet carries them).
    pub(crate) fn vars_mut(&mut self) -> &mut Vars {
        self.derive_from = None;
        if self.vars.get().is_none() {
            let _ = self.vars.set(self.spare_vars.take());
        }
        self.vars
            .get_mut()
            .expect("invariant: the vars were just set")
    }

    /// The text fields to write, beside the vars written with [`vars_mut`](Self::vars_mut)
    /// (a uwsgi request's fields come from its vars).
    pub(crate) fn text_and_vars(&mut self) -> (&mut TextFields, &Vars) {
        let vars = self
            .vars
            .get()
            .expect("invariant: vars_mut wrote the vars first");
        (&mut self.text, vars)
    }

    /// The request's text starts with its HTTP head `head` (see
    /// [`TextFields::start_with_head`]); the vars are derived from it when first asked for.
    pub(crate) fn derive_vars_from(&mut self, head: &RequestHead<'_>, spans: &HeadSpans) {
        self.head_spans.copy_from(spans);
        self.derive_from = Some(DeriveVars {
            head_len: head.len(),
        });
    }

    /// The CGI vars (derived from an HTTP head the first time they are asked for).
    pub(crate) fn vars(&self) -> &Vars {
        self.vars.get_or_init(|| {
            let mut vars = self.spare_vars.take();
            if let Some(derive) = &self.derive_from {
                let head = RequestHead::new(
                    &self.text.text.as_bytes()[..derive.head_len],
                    &self.head_spans,
                );
                let conn = ConnInfo {
                    remote_addr: self.peer.addr(),
                    remote_port: self.peer.port(),
                    ..ConnInfo::default()
                };
                cgi::fill_vars_from_head(&mut vars, &head, &conn);
            }
            vars
        })
    }

    pub(crate) fn method(&self) -> &str {
        self.text.get(&self.text.method)
    }

    pub(crate) fn uri(&self) -> &str {
        self.text.get(&self.text.uri)
    }

    pub(crate) fn path(&self) -> &str {
        self.text.get(&self.text.path)
    }

    /// The path requests are routed on: the decoded path's bytes (`PATH_INFO`), `/` when it
    /// is empty. Those of [`path`](Self::path), unless they were not UTF-8: then the vars'
    /// (routing never matches a replaced form).
    pub(crate) fn route_path(&self) -> &[u8] {
        let path = if self.text.path_replaced {
            self.vars().get("PATH_INFO").unwrap_or(b"")
        } else {
            self.path().as_bytes()
        };
        if path.is_empty() { b"/" } else { path }
    }

    pub(crate) fn query(&self) -> &str {
        self.text.get(&self.text.query)
    }

    pub(crate) fn protocol(&self) -> &str {
        self.text.get(&self.text.protocol)
    }

    pub(crate) fn scheme(&self) -> &str {
        self.text.get(&self.text.scheme)
    }

    /// The peer's address as text (`REMOTE_ADDR`), empty when unknown.
    pub(crate) fn remote_addr_text(&self) -> &str {
        match self.text.get(&self.text.remote_addr) {
            "" => self.peer.addr(),
            addr => addr,
        }
    }
}

impl TextFields {
    fn clear(&mut self) {
        self.text.clear();
        self.headers.clear();
        self.path_replaced = false;
        for field in FIELDS {
            *self.field_mut(field) = 0..0;
        }
    }

    /// Starts the (empty) text with a request head that is UTF-8, so that fields and headers
    /// can be its ranges ([`set_range`](Self::set_range)).
    pub(crate) fn start_with_head(&mut self, head: &str) {
        debug_assert!(self.text.is_empty(), "the head starts the text");
        self.text.push_str(head);
    }

    /// Sets a text field to a range of the text already written.
    pub(crate) fn set_range(&mut self, field: Field, range: Text) {
        debug_assert!(
            self.text
                .get(range.start as usize..range.end as usize)
                .is_some()
        );
        *self.field_mut(field) = range;
    }

    /// Adds a header whose name and value are ranges of the text already written.
    pub(crate) fn push_header_range(&mut self, name: Text, value: Text) {
        self.headers.push((name, value));
    }

    /// Sets a text field from bytes (replacing what is not UTF-8).
    pub(crate) fn set(&mut self, field: Field, value: &[u8]) -> Text {
        let (text, replaced) = self.push_checked(value);
        if field == Field::Path {
            self.path_replaced = replaced;
        }
        *self.field_mut(field) = text.clone();
        text
    }

    /// Sets a text field from text.
    pub(crate) fn set_str(&mut self, field: Field, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        *self.field_mut(field) = text_range(start, self.text.len());
    }

    /// Sets a text field from `parts`, written one after the other.
    pub(crate) fn set_joined(&mut self, field: Field, parts: &[&[u8]]) {
        let start = self.text.len();
        for part in parts {
            self.push(part);
        }
        *self.field_mut(field) = text_range(start, self.text.len());
    }

    /// Sets the path from its raw form, percent-decoded (`%2F` too, as `PATH_INFO` is).
    pub(crate) fn set_decoded_path(&mut self, raw: &[u8]) {
        let mut decoded = std::mem::take(&mut self.scratch);
        decoded.clear();
        cgi::percent_decode_into(&mut decoded, raw);
        self.set(Field::Path, &decoded);
        self.scratch = decoded;
    }

    /// Adds a header (name and value as sent; what is not UTF-8 is replaced).
    pub(crate) fn push_header(&mut self, name: &[u8], value: &[u8]) {
        let name = self.push(name);
        let value = self.push(value);
        self.headers.push((name, value));
    }

    /// Adds a header whose name `write_name` writes (a name derived from a var).
    pub(crate) fn push_header_with(&mut self, write_name: impl FnOnce(&mut String), value: &[u8]) {
        let start = self.text.len();
        write_name(&mut self.text);
        let name = text_range(start, self.text.len());
        let value = self.push(value);
        self.headers.push((name, value));
    }

    /// The first header named `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header, in order.
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        (self.headers.iter()).map(|(name, value)| (self.get(name), self.get(value)))
    }

    fn get(&self, text: &Text) -> &str {
        &self.text[text.start as usize..text.end as usize]
    }

    fn push(&mut self, bytes: &[u8]) -> Text {
        self.push_checked(bytes).0
    }

    /// [`push`](Self::push), saying whether bytes were replaced.
    fn push_checked(&mut self, bytes: &[u8]) -> (Text, bool) {
        let start = self.text.len();
        let replaced = match std::str::from_utf8(bytes) {
            Ok(text) => {
                self.text.push_str(text);
                false
            }
            Err(_) => {
                self.text.push_str(&String::from_utf8_lossy(bytes));
                true
            }
        };
        (text_range(start, self.text.len()), replaced)
    }

    fn field_mut(&mut self, field: Field) -> &mut Text {
        match field {
            Field::Method => &mut self.method,
            Field::Uri => &mut self.uri,
            Field::Path => &mut self.path,
            Field::Query => &mut self.query,
            Field::Protocol => &mut self.protocol,
            Field::Scheme => &mut self.scheme,
            Field::RemoteAddr => &mut self.remote_addr,
        }
    }
}

/// The range of `part` within `whole`, when `part` is a slice of it (a field of a head, found
/// where the parser found it).
pub(crate) fn range_within(whole: &[u8], part: &[u8]) -> Option<Text> {
    if part.is_empty() {
        return Some(0..0); // wherever an empty slice points
    }
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start + part.len();
    (end <= whole.len()).then(|| text_range(start, end))
}

fn text_range(start: usize, end: usize) -> Text {
    // A request's text is bounded by `buffer-size` (64 KiB) and `limit-post` is not in it.
    let at = |n: usize| u32::try_from(n).expect("invariant: a request's text is under 4 GiB");
    at(start)..at(end)
}

/// A peer's address and port written out, on the stack (`ffff:...` at most): made once per
/// connection, copied into each request (no allocation, no formatting per request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerText {
    buf: [u8; 48],
    len: u8,
    addr_len: u8,
}

impl Default for PeerText {
    fn default() -> PeerText {
        PeerText {
            buf: [0; 48],
            len: 0,
            addr_len: 0,
        }
    }
}

impl PeerText {
    /// `addr`'s IP address and port as text.
    pub(crate) fn of(addr: SocketAddr) -> PeerText {
        use std::fmt::Write as _;
        let mut text = PeerText::default();
        // 39 bytes for the longest IPv6 address, 5 for a port: always room.
        let _ = write!(text, "{}", addr.ip());
        text.addr_len = text.len;
        let _ = write!(text, "{}", addr.port());
        text
    }

    /// The address, such as `127.0.0.1` (empty when there is none).
    pub(crate) fn addr(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.addr_len)])
            .expect("invariant: written as text")
    }

    /// The port, such as `51234`.
    pub(crate) fn port(&self) -> &str {
        std::str::from_utf8(&self.buf[usize::from(self.addr_len)..usize::from(self.len)])
            .expect("invariant: written as text")
    }
}

impl fmt::Write for PeerText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let start = usize::from(self.len);
        let end = start + s.len();
        let room = self.buf.get_mut(start..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = u8::try_from(end).map_err(|_| fmt::Error)?;
        Ok(())
    }
}

/// One request: method, target, headers, CGI-style vars, peer and body.
///
/// Over the uwsgi protocol the vars are what the proxy sent (`REQUEST_METHOD`, `PATH_INFO`,
/// `HTTP_*`, ...) and the headers are derived from the `HTTP_*` vars; over HTTP the headers
/// are what the client sent and the vars are derived from them, CGI style.
#[derive(Debug)]
pub struct Request<'a> {
    data: DataRef<'a>,
    /// Where [`Request::path`] starts in the data's path: after the mount point.
    path_start: usize,
    script_name: &'a str,
    worker_id: u32,
    body: Body<'a>,
}

/// The worker's [`RequestData`], or a hand-built request's own.
#[derive(Debug)]
enum DataRef<'a> {
    Borrowed(&'a RequestData),
    Owned(Box<RequestData>),
}

impl std::ops::Deref for DataRef<'_> {
    type Target = RequestData;

    fn deref(&self) -> &RequestData {
        match self {
            DataRef::Borrowed(data) => data,
            DataRef::Owned(data) => data,
        }
    }
}

impl<'a> Request<'a> {
    /// The one way the worker builds a request: `data` routed to the app mounted at
    /// `script_name`, served by worker `worker_id`.
    pub(crate) fn new(
        data: &'a RequestData,
        script_name: &'a str,
        worker_id: u32,
        body: Body<'a>,
    ) -> Request<'a> {
        Request::with_data(DataRef::Borrowed(data), script_name, worker_id, body)
    }

    fn with_data(
        data: DataRef<'a>,
        script_name: &'a str,
        worker_id: u32,
        body: Body<'a>,
    ) -> Request<'a> {
        // The handler sees the path below its mount point.
        let path_start = if data.path().starts_with(script_name) {
            script_name.len()
        } else {
            0
        };
        Request {
            data,
            path_start,
            script_name,
            worker_id,
            body,
        }
    }

    /// The method, such as `GET`.
    pub fn method(&self) -> &str {
        self.data.method()
    }

    /// The request target as sent, with the query string: `/search?q=rust`.
    pub fn uri(&self) -> &str {
        self.data.uri()
    }

    /// The percent-decoded path below the mount point, without the query: `/search`.
    pub fn path(&self) -> &str {
        &self.data.path()[self.path_start..]
    }

    /// The raw query string without `?` (empty when there is none).
    pub fn query(&self) -> &str {
        self.data.query()
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is a space).
    ///
    /// ```
    /// # let req = rcontainer::Request::builder("GET", "/s?q=rust+lang&n=2").build();
    /// assert_eq!(req.query_param("q").as_deref(), Some("rust lang"));
    /// assert_eq!(req.query_param("missing"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        if self.query().is_empty() {
            return None;
        }
        self.query().split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_form(key) == name).then(|| decode_form(value))
        })
    }

    /// Every query parameter as `(name, value)`, percent-decoded, in order (repeats kept).
    ///
    /// ```
    /// # let req = rcontainer::Request::builder("GET", "/?tag=a&tag=b&n").build();
    /// assert_eq!(req.query_params(), [("tag".into(), "a".into()), ("tag".into(), "b".into()), ("n".into(), "".into())]);
    /// ```
    pub fn query_params(&self) -> Vec<(String, String)> {
        parse_form(self.query())
    }

    /// The protocol version, such as `HTTP/1.1`.
    pub fn protocol(&self) -> &str {
        self.data.protocol()
    }

    /// `http` or `https` (from the proxy's `REQUEST_SCHEME`/`HTTPS`/`UWSGI_SCHEME` vars).
    pub fn scheme(&self) -> &str {
        self.data.scheme()
    }

    /// The mount point this request was routed through (`""` for the default app).
    pub fn script_name(&self) -> &str {
        self.script_name
    }

    /// Every header as `(name, value)`, in the order received.
    pub fn headers(&self) -> &[(String, String)] {
        self.data.header_list.get_or_init(|| {
            (self.data.text.headers())
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        })
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.data.text.header(name)
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The declared body length (`Content-Length`), if any.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|len| len.trim().parse().ok())
    }

    /// The `Host` header (or the `SERVER_NAME` var behind a proxy that sends none).
    pub fn host(&self) -> Option<&str> {
        self.header("host").or_else(|| self.var("SERVER_NAME"))
    }

    /// Every cookie of the `Cookie` header(s) as `(name, value)`, in order.
    ///
    /// ```
    /// # let req = rcontainer::Request::builder("GET", "/").header("Cookie", "sid=abc; theme=dark").build();
    /// assert_eq!(req.cookie("theme").as_deref(), Some("dark"));
    /// assert_eq!(req.cookies().len(), 2);
    /// ```
    pub fn cookies(&self) -> Vec<(String, String)> {
        (self.data.text.headers())
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                Some((name.trim().to_string(), value.to_string()))
            })
            .filter(|(name, _)| !name.is_empty())
            .collect()
    }

    /// The value of cookie `name`, if the client sent it.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies()
            .into_iter()
            .find_map(|(n, v)| (n == name).then_some(v))
    }

    /// Every CGI/uwsgi variable as `(name, value)`.
    pub fn vars(&self) -> &[(String, String)] {
        self.data.var_list.get_or_init(|| {
            (self.data.vars().iter())
                .map(|(k, v)| {
                    let text = |b| String::from_utf8_lossy(b).into_owned();
                    (text(k), text(v))
                })
                .collect()
        })
    }

    /// Every CGI/uwsgi variable as the bytes that came in (a Python app's environ decodes them
    /// as latin-1, as PEP 3333 asks).
    #[cfg(feature = "python")]
    pub(crate) fn var_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.data.vars().iter()
    }

    /// The CGI/uwsgi variable `name` (exact case), such as `REMOTE_ADDR`.
    pub fn var(&self, name: &str) -> Option<&str> {
        match std::str::from_utf8(self.data.vars().get(name)?) {
            Ok(value) => Some(value),
            // Not UTF-8: the replaced text, from the list of all of them.
            Err(_) => (self.vars().iter())
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
        }
    }

    /// The client's address, when known (the proxy's `REMOTE_ADDR`/`REMOTE_PORT` behind nginx).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.data.remote_addr
    }

    /// The id (1-based) of the worker process serving this request; 0 outside a worker.
    pub fn worker_id(&self) -> u32 {
        self.worker_id
    }

    /// The body, to read from.
    pub fn body(&mut self) -> &mut Body<'a> {
        &mut self.body
    }

    /// Reads the whole body into memory, failing with `InvalidData` past `limit` bytes.
    pub fn read_body(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let read = (&mut self.body)
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)?;
        if read > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("request body over {limit} bytes"),
            ));
        }
        Ok(bytes)
    }

    /// Reads an `application/x-www-form-urlencoded` body (at most `limit` bytes) into
    /// `(name, value)` pairs, percent-decoded, in order.
    ///
    /// Fails with `InvalidInput` if the `Content-Type` is another one, and with `InvalidData`
    /// past `limit` bytes.
    ///
    /// ```
    /// let mut req = rcontainer::Request::builder("POST", "/login")
    ///     .header("Content-Type", "application/x-www-form-urlencoded")
    ///     .body(b"user=ann&note=a+b%26c".as_slice())
    ///     .build();
    /// let form = req.read_form(4096).unwrap();
    /// assert_eq!(form[1], ("note".to_string(), "a b&c".to_string()));
    /// ```
    pub fn read_form(&mut self, limit: usize) -> io::Result<Vec<(String, String)>> {
        let is_form = self.content_type().is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
        if !is_form {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the body is not application/x-www-form-urlencoded",
            ));
        }
        let body = self.read_body(limit)?;
        Ok(parse_form(&String::from_utf8_lossy(&body)))
    }

    /// Reads a JSON body (at most `limit` bytes) into a [`serde_json::Value`].
    ///
    /// Fails with `InvalidData` when the body is not JSON or is over `limit`.
    ///
    /// ```
    /// let mut req = rcontainer::Request::builder("POST", "/items")
    ///     .body(br#"{"name":"x","n":2}"#.as_slice())
    ///     .build();
    /// let doc = req.read_json(4096).unwrap();
    /// assert_eq!(doc["n"], 2);
    /// ```
    pub fn read_json(&mut self, limit: usize) -> io::Result<serde_json::Value> {
        let body = self.read_body(limit)?;
        serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Reads a JSON body (at most `limit` bytes) into any `serde` type (feature `serde`).
    ///
    /// Fails with `InvalidData` when the body does not parse as a `T` or is over `limit`.
    ///
    /// ```ignore
    /// #[derive(serde::Deserialize)]
    /// struct Item { name: String }
    /// let item: Item = req.read_json_as(64 * 1024)?;
    /// ```
    #[cfg(feature = "serde")]
    pub fn read_json_as<T: serde::de::DeserializeOwned>(&mut self, limit: usize) -> io::Result<T> {
        let body = self.read_body(limit)?;
        serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// A request built by hand, for testing handlers without a server.
    ///
    /// ```
    /// let mut req = rcontainer::Request::builder("POST", "/echo?x=1")
    ///     .header("Content-Type", "text/plain")
    ///     .body(b"hi".as_slice())
    ///     .build();
    /// assert_eq!(req.path(), "/echo");
    /// assert_eq!(req.read_body(10).unwrap(), b"hi");
    /// ```
    pub fn builder(method: &str, uri: &str) -> RequestBuilder {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let mut data = Box::<RequestData>::default();
        let text = &mut data.text;
        text.set(Field::Method, method.as_bytes());
        text.set(Field::Uri, uri.as_bytes());
        text.set(Field::Path, decode_path(path).as_bytes());
        text.set(Field::Query, query.as_bytes());
        text.set(Field::Protocol, b"HTTP/1.1");
        text.set(Field::Scheme, b"http");
        RequestBuilder {
            data,
            body: Body::empty(),
        }
    }
}

/// Builds a [`Request`] by hand (see [`Request::builder`]).
#[derive(Debug)]
pub struct RequestBuilder {
    data: Box<RequestData>,
    body: Body<'static>,
}

impl RequestBuilder {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.data
            .text
            .push_header(name.as_bytes(), value.as_bytes());
        self
    }

    /// Adds a CGI/uwsgi variable.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.data.vars_mut().push(name, value);
        self
    }

    /// Sets the body.
    pub fn body(mut self, reader: impl Read + 'static) -> Self {
        self.body = Body::new(reader);
        self
    }

    /// The request (served by no worker, routed to no mount point).
    pub fn build(self) -> Request<'static> {
        Request::with_data(DataRef::Owned(self.data), "", 0, self.body)
    }
}

/// Splits `a=1&b=x+y` into decoded `(name, value)` pairs (a name alone has an empty value).
pub(crate) fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_form(key), decode_form(value))
        })
        .collect()
}

/// Percent-decodes a path (`%2F` stays decoded as `/`, as nginx's `$document_uri` does).
/// Invalid escapes are kept as they are; invalid UTF-8 becomes U+FFFD.
pub(crate) fn decode_path(path: &str) -> String {
    percent_decode(path, false)
}

/// Decodes an `application/x-www-form-urlencoded` component: `+` is a space.
pub(crate) fn decode_form(text: &str) -> String {
    percent_decode(text, true)
}

fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_holds_the_longest_addresses() {
        // The longest an address prints (39 bytes), the longest port (5).
        let addr: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535"
            .parse()
            .unwrap();
        let text = PeerText::of(addr);
        assert_eq!(text.addr(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(text.port(), "65535");
        let v4 = PeerText::of("127.0.0.1:80".parse().unwrap());
        assert_eq!((v4.addr(), v4.port()), ("127.0.0.1", "80"));
        assert_eq!(PeerText::default().addr(), "");
    }

    #[test]
    fn percent_escapes_are_decoded_and_bad_ones_kept() {
        assert_eq!(decode_path("/a%20b/%2e%2E/c"), "/a b/../c");
        assert_eq!(decode_path("/100%"), "/100%");
        assert_eq!(decode_path("/%zz%4"), "/%zz%4");
        assert_eq!(decode_path("/a+b"), "/a+b");
        assert_eq!(decode_form("a+b%21"), "a b!");
        assert_eq!(decode_path("/%ff"), "/\u{fffd}");
    }

    #[test]
    fn query_params_are_found_by_decoded_name() {
        let req = Request::builder("GET", "/?a=1&b&c=x%20y&a=2").build();
        assert_eq!(req.query_param("a").as_deref(), Some("1"));
        assert_eq!(req.query_param("b").as_deref(), Some(""));
        assert_eq!(req.query_param("c").as_deref(), Some("x y"));
        assert_eq!(req.query_param("d"), None);
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let req = Request::builder("GET", "/").header("X-Thing", "1").build();
        assert_eq!(req.header("x-thing"), Some("1"));
        assert_eq!(req.header("x-other"), None);
    }

    #[test]
    fn read_body_refuses_more_than_the_limit() {
        let mut req = Request::builder("POST", "/")
            .body(&b"0123456789"[..])
            .build();
        assert_eq!(
            req.read_body(5).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let mut req = Request::builder("POST", "/").body(&b"01234"[..]).build();
        assert_eq!(req.read_body(5).unwrap(), b"01234");
    }

    #[test]
    fn cookies_are_split_trimmed_and_unquoted() {
        let req = Request::builder("GET", "/")
            .header("Cookie", "a=1; b=\"two\"")
            .header("cookie", "c=3;bad; =x")
            .build();
        assert_eq!(
            req.cookies(),
            [
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "two".to_string()),
                ("c".to_string(), "3".to_string())
            ]
        );
        assert_eq!(req.cookie("b").as_deref(), Some("two"));
        assert_eq!(req.cookie("z"), None);
    }

    #[test]
    fn form_bodies_need_the_form_content_type() {
        let mut req = Request::builder("POST", "/")
            .header(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(&b"x=1&y=%C3%A9"[..])
            .build();
        let form = req.read_form(100).unwrap();
        assert_eq!(form[1], ("y".to_string(), "é".to_string()));
        let mut req = Request::builder("POST", "/")
            .header("Content-Type", "text/plain")
            .body(&b"x=1"[..])
            .build();
        assert_eq!(
            req.read_form(100).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json_bodies_parse_into_serde_types() {
        let mut req = Request::builder("POST", "/").body(&b"[1,2,3]"[..]).build();
        let numbers: Vec<u32> = req.read_json_as(100).unwrap();
        assert_eq!(numbers, [1, 2, 3]);
    }

    #[test]
    fn bad_json_is_invalid_data() {
        let mut req = Request::builder("POST", "/").body(&b"{nope"[..]).build();
        assert_eq!(
            req.read_json(100).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
