//! [`Response`]: status, headers and a body of bytes or a stream.
//!
//! Built without a heap allocation when its parts are `'static`: headers are
//! `Cow<'static, str>` and the first few sit inline in the response ([`Headers`]), a body of
//! `&'static` bytes is sent where it is ([`ResponseBody::Bytes`] holds a `Cow`). Owned text
//! (`String`, `format!`) is moved in, never copied.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::ops::Deref;

/// What a handler answers: a status, headers and a body.
///
/// The worker frames it for the protocol: `Content-Length` when the body's length is known,
/// otherwise chunked (HTTP/1.1) or close-delimited (HTTP/1.0 and the uwsgi protocol, where
/// nginx cannot decode chunked responses). Handlers should not set `Content-Length`,
/// `Transfer-Encoding` or `Connection` themselves.
///
/// Names, values and bodies are `&'static` text or owned (`String`, `Vec<u8>`): a literal
/// costs no allocation, a `format!` is moved in. A borrowed `&str` that is not `'static` is
/// turned into an owned one first (`.to_string()`).
///
/// ```
/// use rcontainer::Response;
///
/// let r = Response::new(201).header("Location", "/items/7").body("created");
/// assert_eq!(r.status(), 201);
/// assert_eq!(r.header_value("location"), Some("/items/7"));
/// ```
#[derive(Debug)]
pub struct Response {
    status: u16,
    headers: Headers,
    body: ResponseBody,
}

/// One header of a [`Response`]: name and value.
pub type HeaderField = (Cow<'static, str>, Cow<'static, str>);

/// The body of a [`Response`].
pub enum ResponseBody {
    /// Bytes in memory, `'static` or owned (the length is known, so it goes out with
    /// `Content-Length`).
    Bytes(Cow<'static, [u8]>),
    /// A stream read to its end by the worker, with its length if known in advance.
    Stream {
        /// Where the bytes come from; reading may park the coroutine.
        reader: Box<dyn Read>,
        /// The exact number of bytes the reader yields, when known.
        len: Option<u64>,
    },
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            ResponseBody::Stream { len, .. } => write!(f, "Stream {{ len: {len:?} }}"),
        }
    }
}

/// What [`Response::body`] takes: text or bytes, `&'static` (sent where they are) or owned
/// (moved in).
pub trait IntoBytes {
    /// The bytes, borrowed for `'static` or owned.
    fn into_bytes(self) -> Cow<'static, [u8]>;
}

impl IntoBytes for &'static str {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}

impl IntoBytes for &'static [u8] {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        Cow::Borrowed(self)
    }
}

impl<const N: usize> IntoBytes for &'static [u8; N] {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        Cow::Borrowed(self)
    }
}

impl IntoBytes for String {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        Cow::Owned(self.into_bytes())
    }
}

impl IntoBytes for Vec<u8> {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        Cow::Owned(self)
    }
}

impl IntoBytes for Box<[u8]> {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        Cow::Owned(self.into_vec())
    }
}

impl IntoBytes for Cow<'static, [u8]> {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        self
    }
}

impl IntoBytes for Cow<'static, str> {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        match self {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        }
    }
}

/// How many headers a [`Headers`] holds before it moves them to the heap.
const INLINE_HEADERS: usize = 4;

/// The headers of a [`Response`], in order (a slice of [`HeaderField`]s). The first four are
/// kept inside the response: a response with up to four headers allocates nothing for them.
#[derive(Clone)]
pub struct Headers(HeaderStore);

#[derive(Clone)]
enum HeaderStore {
    Inline {
        len: usize,
        fields: [HeaderField; INLINE_HEADERS],
    },
    Heap(Vec<HeaderField>),
}

const NO_FIELD: HeaderField = (Cow::Borrowed(""), Cow::Borrowed(""));

impl Headers {
    /// No headers.
    pub const fn new() -> Headers {
        Headers(HeaderStore::Inline {
            len: 0,
            fields: [NO_FIELD; INLINE_HEADERS],
        })
    }

    /// Adds a header at the end.
    pub fn push(&mut self, field: HeaderField) {
        match &mut self.0 {
            HeaderStore::Inline { len, fields } if *len < INLINE_HEADERS => {
                fields[*len] = field;
                *len += 1;
            }
            HeaderStore::Inline { fields, .. } => {
                let mut heap = Vec::with_capacity(INLINE_HEADERS * 2);
                heap.extend(fields.iter_mut().map(std::mem::take));
                heap.push(field);
                self.0 = HeaderStore::Heap(heap);
            }
            HeaderStore::Heap(heap) => heap.push(field),
        }
    }

    /// Keeps only the headers `keep` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&HeaderField) -> bool) {
        match &mut self.0 {
            HeaderStore::Inline { len, fields } => {
                let mut kept = 0;
                for i in 0..*len {
                    if keep(&fields[i]) {
                        fields.swap(kept, i);
                        kept += 1;
                    }
                }
                for field in &mut fields[kept..*len] {
                    *field = NO_FIELD;
                }
                *len = kept;
            }
            HeaderStore::Heap(heap) => heap.retain(keep),
        }
    }
}

impl Default for Headers {
    fn default() -> Headers {
        Headers::new()
    }
}

impl Deref for Headers {
    type Target = [HeaderField];

    fn deref(&self) -> &[HeaderField] {
        match &self.0 {
            HeaderStore::Inline { len, fields } => &fields[..*len],
            HeaderStore::Heap(heap) => heap,
        }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Headers::new(),
            body: ResponseBody::Bytes(Cow::Borrowed(b"")),
        }
    }

    /// An empty `200 OK`.
    pub fn ok() -> Response {
        Response::new(200)
    }

    /// `200 OK` with a `text/plain; charset=utf-8` body.
    pub fn text(text: impl Into<Cow<'static, str>>) -> Response {
        Response::ok()
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(text.into())
    }

    /// `200 OK` with an `application/json` body (the text is sent as given).
    pub fn json(json: impl Into<Cow<'static, str>>) -> Response {
        Response::ok()
            .header("Content-Type", "application/json")
            .body(json.into())
    }

    /// `200 OK` with a JSON document serialized from `value`: build it with
    /// [`json!`](crate::json::json) from [`rcontainer::json`](crate::json) (no `serde_json`
    /// dependency of your own needed), or take it from [`Request::read_json`](crate::Request::read_json).
    ///
    /// ```
    /// use rcontainer::Response;
    /// use rcontainer::json::json;
    ///
    /// let r = Response::json_value(&json!({ "ok": true }));
    /// assert_eq!(r.header_value("content-type"), Some("application/json"));
    /// ```
    pub fn json_value(value: &serde_json::Value) -> Response {
        Response::json(value.to_string())
    }

    /// `200 OK` with `value` serialized as JSON (feature `serde`): any `serde::Serialize`,
    /// such as your own `#[derive(Serialize)]` types (with `serde`'s `derive` feature in your
    /// `Cargo.toml`). A value that cannot be serialized (a map with non-string keys, say) gives
    /// a `500`.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use rcontainer::Response;
    ///
    /// let counts = BTreeMap::from([("rust", 3), ("go", 1)]);
    /// let r = Response::json_of(&counts);
    /// assert_eq!(r.header_value("content-type"), Some("application/json"));
    /// # let (_, _, body) = r.into_parts();
    /// # assert!(matches!(body, rcontainer::ResponseBody::Bytes(b) if *b == *br#"{"go":1,"rust":3}"#));
    /// ```
    #[cfg(feature = "serde")]
    pub fn json_of<T: serde::Serialize + ?Sized>(value: &T) -> Response {
        match serde_json::to_string(value) {
            Ok(json) => Response::json(json),
            Err(_) => Response::error(500),
        }
    }

    /// `200 OK` with a `text/html; charset=utf-8` body.
    pub fn html(html: impl Into<Cow<'static, str>>) -> Response {
        Response::ok()
            .header("Content-Type", "text/html; charset=utf-8")
            .body(html.into())
    }

    /// `302 Found` to `location` (use [`with_status`](Self::with_status) for 301, 303, 307
    /// or 308).
    ///
    /// ```
    /// let r = rcontainer::Response::redirect("/login").with_status(303);
    /// assert_eq!((r.status(), r.header_value("location")), (303, Some("/login")));
    /// ```
    pub fn redirect(location: impl Into<Cow<'static, str>>) -> Response {
        Response::new(302).header("Location", location)
    }

    /// `404 Not Found` as a plain-text page.
    pub fn not_found() -> Response {
        Response::error(404)
    }

    /// A plain-text error page for `status`, such as `404 Not Found`.
    pub fn error(status: u16) -> Response {
        let text = format!("{status} {}\n", reason_phrase(status));
        Response::text(text).with_status(status)
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    /// Adds a header (repeat for several values).
    pub fn header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the `Content-Type` header, replacing any set before.
    pub fn content_type(mut self, content_type: impl Into<Cow<'static, str>>) -> Response {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        self.header("Content-Type", content_type)
    }

    /// Adds a `Set-Cookie` header: `cookie` is the whole value, attributes included.
    ///
    /// ```
    /// let r = rcontainer::Response::text("hi").set_cookie("sid=abc; Path=/; HttpOnly");
    /// assert_eq!(r.header_value("set-cookie"), Some("sid=abc; Path=/; HttpOnly"));
    /// ```
    pub fn set_cookie(self, cookie: impl Into<Cow<'static, str>>) -> Response {
        self.header("Set-Cookie", cookie)
    }

    /// Sets the body to bytes in memory: `&'static` text or bytes, or owned ones
    /// (`String`, `Vec<u8>`).
    pub fn body(mut self, body: impl IntoBytes) -> Response {
        self.body = ResponseBody::Bytes(body.into_bytes());
        self
    }

    /// Sets the body to a stream of `len` bytes if known, read to its end by the worker.
    ///
    /// Reads may park (read a socket, or `rt::offload` a file read): the worker sends each
    /// chunk as it comes, so a large body never sits in memory. With `Some(len)` it goes out
    /// with `Content-Length` and the reader must yield exactly `len` bytes.
    ///
    /// ```
    /// use std::io::Read;
    /// let r = rcontainer::Response::ok().stream(std::io::repeat(b'x').take(1 << 20), Some(1 << 20));
    /// # let _ = r;
    /// ```
    pub fn stream(mut self, reader: impl Read + 'static, len: Option<u64>) -> Response {
        self.body = ResponseBody::Stream {
            reader: Box::new(reader),
            len,
        };
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Every header as `(name, value)`, in order.
    pub fn headers(&self) -> &[HeaderField] {
        &self.headers
    }

    /// The first header named `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// The body.
    pub fn body_ref(&self) -> &ResponseBody {
        &self.body
    }

    /// Splits the response into its parts (for the worker, and for tests of handlers).
    pub fn into_parts(self) -> (u16, Headers, ResponseBody) {
        (self.status, self.headers, self.body)
    }
}

/// The reason phrase of `status` (`""` for codes without a common one).
///
/// ```
/// assert_eq!(rcontainer::reason_phrase(404), "Not Found");
/// ```
pub fn reason_phrase(status: u16) -> &'static str {
    crate::proto::http1::reason_phrase(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_past_the_inline_four_move_to_the_heap_in_order() {
        let mut r = Response::ok();
        for i in 0..7 {
            r = r.header(format!("X-{i}"), "v");
        }
        let names: Vec<&str> = r.headers().iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["X-0", "X-1", "X-2", "X-3", "X-4", "X-5", "X-6"]);
        let r = r.content_type("a/b");
        assert_eq!(r.headers().len(), 8);
        assert_eq!(r.header_value("x-6"), Some("v"));
    }

    #[test]
    fn content_type_replaces_the_one_set_before_inline_too() {
        let r = Response::text("x")
            .header("X-A", "1")
            .content_type("text/html");
        let fields: Vec<(&str, &str)> = r.headers().iter().map(|(n, v)| (&**n, &**v)).collect();
        assert_eq!(fields, [("X-A", "1"), ("Content-Type", "text/html")]);
    }

    #[test]
    fn static_text_and_bytes_are_borrowed_owned_ones_moved() {
        let (_, headers, body) = Response::text("hi").into_parts();
        assert!(matches!(headers[0].1, Cow::Borrowed(_)));
        assert!(matches!(body, ResponseBody::Bytes(Cow::Borrowed(b"hi"))));
        let (_, _, body) = Response::ok().body(vec![1u8, 2]).into_parts();
        assert!(matches!(body, ResponseBody::Bytes(Cow::Owned(v)) if v == [1, 2]));
    }

    #[test]
    fn error_pages_carry_status_and_reason() {
        let (status, headers, body) = Response::error(404).into_parts();
        assert_eq!(status, 404);
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "Content-Type" && v.starts_with("text/plain"))
        );
        match body {
            ResponseBody::Bytes(b) => assert_eq!(*b, *b"404 Not Found\n"),
            other => panic!("unexpected body {other:?}"),
        }
    }
}
