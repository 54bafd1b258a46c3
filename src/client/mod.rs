//! `rcontainer::client`: a small HTTP/1.1 client for handlers.
//!
//! Requests go out on [`rt::TcpStream`](crate::rt::TcpStream), so waiting for an upstream parks
//! the calling coroutine and the worker serves other requests meanwhile; outside a coroutine
//! (a test, a plain thread) the same calls simply block. A handler can call a slow upstream API
//! in plain blocking style and one worker still serves thousands of such requests at once.
//!
//! - **Methods and bodies**: any method; request bodies are sent with `Content-Length`.
//!   Responses framed by `Content-Length`, `chunked`, or the end of the connection are read
//!   whole into memory (bounded by [`Client::max_body`], 64 MiB by default).
//! - **Timeouts**: one deadline per request ([`Client::timeout`], 30 s by default) covers DNS,
//!   connect, send and the whole response. An expired one is [`ErrorKind::Timeout`]. The
//!   request's own `harakiri` deadline still applies on top.
//! - **Keep-alive**: connections are kept per worker (a thread-local pool by host and port) and
//!   reused; a pooled connection the upstream closed is detected and an idempotent request is
//!   retried once on a fresh one.
//! - **Redirects are not followed** unless asked for with [`Client::redirects`].
//! - **HTTPS** (`rustls`, no OpenSSL): the certificate chain and the host name are always
//!   verified, against the system's CA store (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set) plus
//!   the INI option `client-ca-file` (a PEM bundle of private CAs) in a worker. SNI is sent for
//!   host names. The handshake counts inside the request's time limit, and TLS connections are
//!   pooled and reused like plain ones. A refused certificate is [`ErrorKind::Tls`] with a
//!   message naming the upstream and the reason:
//!   `https://api.internal:443: certificate rejected: unknown issuer (no trusted CA signed it)`,
//!   `... name mismatch (certificate is for other.example)`, `... expired (not valid after ...)`.
//! - **DNS**: IP literals connect directly; host names are resolved on the offload pool (never
//!   on the worker thread).
//! - **Small while waiting**: a request waiting for its upstream is parked on its coroutine's
//!   stack, and every stack page a coroutine touches stays resident as long as its pooled stack
//!   lives, so thousands of waiting requests cost their deepest frames in memory. The frames a
//!   wait goes through stay small: the big or rare parts (TLS handshake, pool bookkeeping,
//!   errors, the head parser's field array) sit in functions of their own that are never
//!   inlined into them; a response head is first read into 512 bytes and the request is
//!   encoded into exactly its size.
//!
//! ```no_run
//! use std::time::Duration;
//! use rcontainer::client::{self, Client};
//!
//! // One-off GET with the defaults.
//! let page = client::get("https://www.example.com/search?q=rust")?;
//! assert!(page.is_success());
//!
//! // A configured client: clone it freely (it holds no connections; the pool is per worker).
//! let api = Client::new().timeout(Duration::from_millis(500));
//! let created = api
//!     .post("http://127.0.0.1:9000/items")
//!     .header("Content-Type", "application/json")
//!     .body(r#"{"name":"x"}"#)
//!     .send()?;
//! println!("{} {}", created.status(), created.text());
//! # Ok::<(), rcontainer::client::Error>(())
//! ```
//!
//! This module depends only on the coroutine runtime and the pure protocol code; it knows
//! nothing about the worker, requests being served, or configuration (the worker hands it the
//! CA bundle's path at start).

// | file          | owns                                                                      |
// |---------------|---------------------------------------------------------------------------|
// | `mod.rs`      | the API: `Client`, `ClientRequest`, `ClientResponse`, `Error`; redirects   |
// | `conn.rs`     | a connection (plain or TLS), connecting within the deadline               |
// | `tls.rs`      | trusted CAs, the `rustls` configuration, the TLS session, its errors      |
// | `exchange.rs` | one request/response on a connection (the wire format is `proto`'s)       |
// | `pool.rs`     | the per-worker keep-alive pool                                            |
// | `url.rs`      | `http://` and `https://` URLs                                             |

mod conn;
mod exchange;
mod pool;
mod tls;
mod url;

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::coro;
use crate::proto::http1::client::{
    OutgoingRequest, RequestError, ResponseError, encode_request, find_header,
};

use exchange::Failure;
pub(crate) use tls::{configure as configure_tls, read_ca_file};
use url::Scheme;
pub(crate) use url::Url;

/// The default per-request time limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The default limit on a response body held in memory.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

/// GETs `url` with a default [`Client`].
///
/// ```no_run
/// let r = rcontainer::client::get("http://127.0.0.1:9000/")?;
/// println!("{}: {}", r.status(), r.text());
/// # Ok::<(), rcontainer::client::Error>(())
/// ```
pub fn get(url: &str) -> Result<ClientResponse, Error> {
    Client::new().get(url).send()
}

/// POSTs `body` as `content_type` to `url` with a default [`Client`].
///
/// ```no_run
/// let r = rcontainer::client::post("http://127.0.0.1:9000/log", "text/plain", "hello")?;
/// assert_eq!(r.status(), 204);
/// # Ok::<(), rcontainer::client::Error>(())
/// ```
pub fn post(
    url: &str,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> Result<ClientResponse, Error> {
    Client::new()
        .post(url)
        .header("Content-Type", content_type)
        .body(body)
        .send()
}

/// Settings shared by requests: time limit, body limit, redirects, default headers.
///
/// Cheap to clone and to build per request; connections live in the worker's pool, not here.
///
/// ```
/// use std::time::Duration;
/// let client = rcontainer::client::Client::new()
///     .timeout(Duration::from_secs(2))
///     .redirects(3)
///     .default_header("X-Api-Key", "secret");
/// # let _ = client;
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    max_body: usize,
    redirects: u32,
    keep_alive: bool,
    headers: Vec<(String, String)>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client with a 30 s time limit per request, a 64 MiB body limit, keep-alive on and
    /// redirects off.
    pub fn new() -> Client {
        Client {
            timeout: Some(DEFAULT_TIMEOUT),
            connect_timeout: None,
            max_body: DEFAULT_MAX_BODY,
            redirects: 0,
            keep_alive: true,
            headers: Vec::new(),
        }
    }

    /// Limits each request (DNS, connect, TLS handshake, send, whole response) to `limit`.
    pub fn timeout(mut self, limit: Duration) -> Client {
        self.timeout = Some(limit);
        self
    }

    /// Removes the per-request time limit (the request's `harakiri` still applies).
    pub fn no_timeout(mut self) -> Client {
        self.timeout = None;
        self
    }

    /// Limits connecting to `limit`, and for `https` the TLS handshake to `limit` again (both
    /// within the request's time limit).
    pub fn connect_timeout(mut self, limit: Duration) -> Client {
        self.connect_timeout = Some(limit);
        self
    }

    /// Refuses response bodies over `bytes` ([`ErrorKind::BodyTooLarge`]).
    pub fn max_body(mut self, bytes: usize) -> Client {
        self.max_body = bytes;
        self
    }

    /// Follows up to `max` redirects (301, 302, 303, 307, 308 with a `Location`). Off (0) by
    /// default. A 303, and a 301/302 answering a POST, continue as a GET without a body.
    pub fn redirects(mut self, max: u32) -> Client {
        self.redirects = max;
        self
    }

    /// Whether connections are kept for reuse (on by default). Off sends `Connection: close`.
    pub fn keep_alive(mut self, on: bool) -> Client {
        self.keep_alive = on;
        self
    }

    /// Adds a header sent with every request of this client.
    pub fn default_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Client {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Starts a GET of `url`.
    pub fn get(&self, url: &str) -> ClientRequest {
        self.request("GET", url)
    }

    /// Starts a POST to `url`.
    pub fn post(&self, url: &str) -> ClientRequest {
        self.request("POST", url)
    }

    /// Starts a request with any `method` (`PUT`, `DELETE`, `HEAD`, ...).
    pub fn request(&self, method: &str, url: &str) -> ClientRequest {
        ClientRequest {
            client: self.clone(),
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// A request being built: add headers and a body, then [`send`](ClientRequest::send) it.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    client: Client,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl ClientRequest {
    /// Adds a header (repeat for several values). `Content-Length`, `Transfer-Encoding` and
    /// `Connection` are the client's to set and are ignored here; a `Host` replaces the URL's.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> ClientRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body (sent with `Content-Length`).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> ClientRequest {
        self.body = body.into();
        self
    }

    /// Sets an `application/x-www-form-urlencoded` body from `fields`.
    ///
    /// ```no_run
    /// # use rcontainer::client::Client;
    /// let r = Client::new()
    ///     .post("http://127.0.0.1:9000/login")
    ///     .form(&[("user", "ann"), ("note", "a b&c")])
    ///     .send()?;
    /// # Ok::<(), rcontainer::client::Error>(())
    /// ```
    pub fn form(self, fields: &[(&str, &str)]) -> ClientRequest {
        let body = encode_form(fields);
        self.header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    }

    /// Overrides the client's time limit for this request.
    pub fn timeout(mut self, limit: Duration) -> ClientRequest {
        self.client.timeout = Some(limit);
        self
    }

    /// Sends the request and reads the whole response.
    ///
    /// # Errors
    /// A bad URL, DNS or connect failure, a refused certificate or failed TLS handshake, the
    /// time limit, an I/O error, a malformed response, a body over the limit, or too many
    /// redirects: see [`ErrorKind`].
    /// An HTTP error status is *not* an error: check [`ClientResponse::status`].
    pub fn send(self) -> Result<ClientResponse, Error> {
        let deadline = self.client.timeout.map(|limit| Instant::now() + limit);
        let mut url = Url::parse(&self.url)?;
        let mut method = self.method.to_ascii_uppercase();
        let mut body = self.body;
        let mut headers = self.client.headers.clone();
        headers.extend(self.headers);
        let mut redirects_left = self.client.redirects;
        loop {
            let response =
                exchange_on_pool(&self.client, &method, &url, &headers, &body, deadline)?;
            let follow = matches!(response.status, 301 | 302 | 303 | 307 | 308);
            if !follow || self.client.redirects == 0 {
                return Ok(response);
            }
            let Some(location) = find_header(&response.headers, "location") else {
                return Ok(response);
            };
            if redirects_left == 0 {
                return Err(too_many_redirects(self.client.redirects, &self.url));
            }
            url = url.join(location)?;
            redirects_left -= 1;
            if response.status == 303 || (matches!(response.status, 301 | 302) && method == "POST")
            {
                method = "GET".to_string();
                body.clear();
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
            }
        }
    }
}

#[cold]
#[inline(never)]
fn too_many_redirects(max: u32, url: &str) -> Error {
    Error::new(
        ErrorKind::TooManyRedirects,
        format!("more than {max} redirects from {url}"),
    )
}

/// One exchange, on a pooled connection when there is one. A pooled connection that turns out
/// closed is retried once on a fresh connection if the method is idempotent. Not inlined into
/// `send` (small while waiting, see the module docs).
#[inline(never)]
fn exchange_on_pool(
    client: &Client,
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body: &[u8],
    deadline: Option<Instant>,
) -> Result<ClientResponse, Error> {
    let request = encode_request(&OutgoingRequest {
        method,
        target: &url.target,
        host: &url.host_header(),
        headers,
        body,
        keep_alive: client.keep_alive,
    })?;
    let in_coroutine = coro::current().is_some();
    let idempotent = matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    );
    let tls = (url.scheme == Scheme::Https).then(tls::shared);
    let key = pool::Key {
        scheme: url.scheme,
        host: url.host.clone(),
        port: url.port,
        tls: tls.as_ref().map_or(0, |tls| tls.id),
    };
    let mut pooled = if client.keep_alive {
        pool::take(&key, in_coroutine)
    } else {
        None
    };
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(conn) => conn,
            None => conn::connect(url, tls.as_deref(), deadline, client.connect_timeout)?,
        };
        match exchange::round_trip(
            &mut conn,
            &request,
            deadline,
            method == "HEAD",
            client.max_body,
        ) {
            Ok(incoming) => {
                if client.keep_alive && incoming.reusable {
                    pool::put(&key, conn, in_coroutine);
                }
                return Ok(ClientResponse {
                    status: incoming.status,
                    headers: incoming.headers,
                    body: incoming.body,
                });
            }
            Err(Failure {
                nothing_received: true,
                ..
            }) if reused && idempotent => continue, // stale keep-alive connection
            Err(failure) => return Err(failure.error),
        }
    }
}

/// A response read whole: status, headers and body.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl ClientResponse {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Every header as `(name, value)`, in the order received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 becomes U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body, taken out.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URL could not be parsed.
    InvalidUrl,
    /// The URL's scheme is neither `http` nor `https` (`ftp://`, `ws://`, ...).
    UnsupportedScheme,
    /// A bad method or header in the request (a header value with CR/LF, for instance).
    InvalidRequest,
    /// DNS failed, or no address accepted the connection (the upstream is down).
    Connect,
    /// The TLS handshake failed: the upstream's certificate was refused (unknown issuer, name
    /// mismatch, expired, ...) or it broke the protocol. The message names the upstream and
    /// the reason.
    Tls,
    /// The time limit passed (or the request's `harakiri` deadline did).
    Timeout,
    /// The connection failed while sending or receiving.
    Io,
    /// The upstream's answer is not valid HTTP/1.x.
    InvalidResponse,
    /// The response body is over [`Client::max_body`].
    BodyTooLarge,
    /// More redirects than [`Client::redirects`] allows.
    TooManyRedirects,
}

/// Why a request failed. Converts into `std::io::Error` for `?` in io-returning code.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<io::Error>,
}

impl Error {
    fn new(kind: ErrorKind, message: String) -> Error {
        Error {
            kind,
            message,
            source: None,
        }
    }

    fn invalid_url(url: &str, why: &str) -> Error {
        Error::new(ErrorKind::InvalidUrl, format!("invalid URL {url:?}: {why}"))
    }

    fn unsupported_scheme(url: &str) -> Error {
        Error::new(
            ErrorKind::UnsupportedScheme,
            format!("{url}: unsupported scheme (only http:// and https:// URLs are)"),
        )
    }

    fn tls(message: String) -> Error {
        Error::new(ErrorKind::Tls, message)
    }

    fn invalid_response(why: &str) -> Error {
        Error::new(ErrorKind::InvalidResponse, why.to_string())
    }

    fn io(what: &str, e: io::Error) -> Error {
        let kind = if e.kind() == io::ErrorKind::TimedOut {
            ErrorKind::Timeout
        } else {
            ErrorKind::Io
        };
        Error {
            kind,
            message: format!("{what}: {e}"),
            source: Some(e),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        let kind = match error.kind {
            ErrorKind::InvalidUrl | ErrorKind::UnsupportedScheme | ErrorKind::InvalidRequest => {
                io::ErrorKind::InvalidInput
            }
            ErrorKind::Connect => io::ErrorKind::ConnectionRefused,
            ErrorKind::Tls => io::ErrorKind::InvalidData,
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::InvalidResponse | ErrorKind::BodyTooLarge | ErrorKind::TooManyRedirects => {
                io::ErrorKind::InvalidData
            }
            ErrorKind::Io => error
                .source
                .as_ref()
                .map_or(io::ErrorKind::Other, io::Error::kind),
        };
        io::Error::new(kind, error)
    }
}

impl From<RequestError> for Error {
    fn from(error: RequestError) -> Error {
        Error::new(ErrorKind::InvalidRequest, error.to_string())
    }
}

impl From<ResponseError> for Error {
    fn from(error: ResponseError) -> Error {
        Error::invalid_response(&error.to_string())
    }
}

/// Encodes `fields` as `application/x-www-form-urlencoded`.
pub(crate) fn encode_form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes `text` for a query string or form body (space becomes `+`).
///
/// ```
/// assert_eq!(rcontainer::client::encode_component("a b&c/é"), "a+b%26c%2F%C3%A9");
/// ```
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests;
