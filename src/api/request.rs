//! [`Request`]: what a handler sees of one request, whichever protocol carried it.

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;

use crate::proto::Vars;

/// The request body: read it like any `std::io::Read`.
///
/// Reading parks the handler's coroutine while bytes are in flight; the worker serves other
/// requests meanwhile. A body the handler does not read is drained (up to a bound) by the
/// worker before the response goes out, so a proxy in front never sees a reset.
pub struct Body<'a> {
    reader: Box<dyn Read + 'a>,
}

impl<'a> Body<'a> {
    /// A body read from `reader`.
    pub fn new(reader: impl Read + 'a) -> Body<'a> {
        Body {
            reader: Box::new(reader),
        }
    }

    /// A body with no bytes.
    pub fn empty() -> Body<'static> {
        Body::new(io::empty())
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Body { .. }")
    }
}

/// One request: method, target, headers, CGI-style vars, peer and body.
///
/// Over the uwsgi protocol the vars are what the proxy sent (`REQUEST_METHOD`, `PATH_INFO`,
/// `HTTP_*`, ...) and the headers are derived from the `HTTP_*` vars; over HTTP the headers
/// are what the client sent and the vars are derived from them, CGI style.
#[derive(Debug)]
pub struct Request<'a> {
    pub(crate) method: String,
    pub(crate) uri: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) protocol: String,
    pub(crate) scheme: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) vars: Vec<(String, String)>,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) script_name: String,
    pub(crate) worker_id: u32,
    pub(crate) body: Body<'a>,
}

/// What a protocol parsed of one request: every field of a [`Request`] that does not depend on
/// the route, the worker or the body. Owned, so it outlives the connection's read buffer.
#[derive(Debug, Default)]
pub(crate) struct RequestParts {
    pub(crate) method: String,
    /// The target as sent (`REQUEST_URI`).
    pub(crate) uri: String,
    /// The percent-decoded path with the mount point still in front (`PATH_INFO` as text).
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) protocol: String,
    pub(crate) scheme: String,
    pub(crate) headers: Vec<(String, String)>,
    /// The CGI vars as bytes: the request log and the router read them before the handler's
    /// text copy is made.
    pub(crate) vars: Vars,
    pub(crate) remote_addr: Option<SocketAddr>,
}

impl<'a> Request<'a> {
    /// The one way a request is built, by the worker and by [`Request::builder`]: `parts`
    /// routed to the app mounted at `script_name`, served by worker `worker_id`.
    pub(crate) fn new(
        parts: RequestParts,
        script_name: &str,
        worker_id: u32,
        body: Body<'a>,
    ) -> Request<'a> {
        let RequestParts {
            method,
            uri,
            mut path,
            query,
            protocol,
            scheme,
            headers,
            vars,
            remote_addr,
        } = parts;
        // The handler sees the path below its mount point (in place: no second copy).
        if path.starts_with(script_name) {
            path.drain(..script_name.len());
        }
        Request {
            method,
            uri,
            path,
            query,
            protocol,
            scheme,
            headers,
            vars: vars_to_strings(&vars),
            remote_addr,
            script_name: script_name.to_string(),
            worker_id,
            body,
        }
    }

    /// The method, such as `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent, with the query string: `/search?q=rust`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The percent-decoded path below the mount point, without the query: `/search`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string without `?` (empty when there is none).
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is a space).
    ///
    /// ```
    /// # let req = rcontainer::Request::builder("GET", "/s?q=rust+lang&n=2").build();
    /// assert_eq!(req.query_param("q").as_deref(), Some("rust lang"));
    /// assert_eq!(req.query_param("missing"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
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
        parse_form(&self.query)
    }

    /// The protocol version, such as `HTTP/1.1`.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// `http` or `https` (from the proxy's `REQUEST_SCHEME`/`HTTPS`/`UWSGI_SCHEME` vars).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The mount point this request was routed through (`""` for the default app).
    pub fn script_name(&self) -> &str {
        &self.script_name
    }

    /// Every header as `(name, value)`, in the order received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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
        self.headers
            .iter()
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
        &self.vars
    }

    /// The CGI/uwsgi variable `name` (exact case), such as `REMOTE_ADDR`.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The client's address, when known (the proxy's `REMOTE_ADDR`/`REMOTE_PORT` behind nginx).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
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
        RequestBuilder {
            parts: RequestParts {
                method: method.to_string(),
                uri: uri.to_string(),
                path: decode_path(path),
                query: query.to_string(),
                protocol: "HTTP/1.1".to_string(),
                scheme: "http".to_string(),
                ..RequestParts::default()
            },
            body: Body::empty(),
        }
    }
}

/// Builds a [`Request`] by hand (see [`Request::builder`]).
#[derive(Debug)]
pub struct RequestBuilder {
    parts: RequestParts,
    body: Body<'static>,
}

impl RequestBuilder {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.parts
            .headers
            .push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a CGI/uwsgi variable.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.parts.vars.push(name, value);
        self
    }

    /// Sets the body.
    pub fn body(mut self, reader: impl Read + 'static) -> Self {
        self.body = Body::new(reader);
        self
    }

    /// The request (served by no worker, routed to no mount point).
    pub fn build(self) -> Request<'static> {
        Request::new(self.parts, "", 0, self.body)
    }
}

/// The vars as text for the handler (bytes that are not UTF-8 are replaced: the API is text).
fn vars_to_strings(vars: &Vars) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
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
