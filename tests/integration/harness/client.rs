//! Raw clients for tests: bytes over real sockets, in the style of hyper's tests.
//!
//! [`Conn`] writes whatever bytes a test gives it (valid or not) and reads HTTP/1.x responses
//! back, framed by `Content-Length`, chunked encoding or EOF. [`uwsgi_packet`] builds a uwsgi
//! request the way nginx does. Every read has a timeout, so a silent server fails the test
//! instead of hanging it.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use super::DEADLINE;

/// Which protocol a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    Uwsgi,
    Http,
}

/// Where a listener is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A listener as announced in the ready line: `uwsgi://127.0.0.1:3031`, `http:///run/a.sock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) proto: Proto,
    pub(crate) addr: Addr,
}

impl Target {
    pub(crate) fn parse(text: &str) -> Option<Target> {
        let (proto, rest) = text.split_once("://")?;
        let proto = match proto {
            "uwsgi" => Proto::Uwsgi,
            "http" => Proto::Http,
            _ => return None,
        };
        let addr = if rest.starts_with('/') {
            Addr::Unix(PathBuf::from(rest))
        } else {
            Addr::Tcp(rest.parse().ok()?)
        };
        Some(Target { proto, addr })
    }

    /// Opens a connection with read and write timeouts of [`DEADLINE`].
    pub(crate) fn connect(&self) -> Conn {
        self.try_connect()
            .unwrap_or_else(|e| panic!("connect to {self}: {e}"))
    }

    pub(crate) fn try_connect(&self) -> io::Result<Conn> {
        let stream = match &self.addr {
            Addr::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, DEADLINE)?;
                s.set_read_timeout(Some(DEADLINE))?;
                s.set_write_timeout(Some(DEADLINE))?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Addr::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(DEADLINE))?;
                s.set_write_timeout(Some(DEADLINE))?;
                Stream::Unix(s)
            }
        };
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Uwsgi => "uwsgi",
            Proto::Http => "http",
        };
        match &self.addr {
            Addr::Tcp(addr) => write!(f, "{proto}://{addr}"),
            Addr::Unix(path) => write!(f, "{proto}://{}", path.display()),
        }
    }
}

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    reader: BufReader<Stream>,
}

impl Conn {
    /// Writes raw bytes.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.reader
            .get_mut()
            .write_all(bytes)
            .expect("write request bytes");
        self
    }

    /// A second handle on the same socket (to write from one thread and read from another).
    pub(crate) fn try_clone(&self) -> Conn {
        let stream = match self.reader.get_ref() {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone().expect("clone tcp stream")),
            Stream::Unix(s) => Stream::Unix(s.try_clone().expect("clone unix stream")),
        };
        Conn {
            reader: BufReader::new(stream),
        }
    }

    /// Half-closes the connection (no more request bytes).
    pub(crate) fn shutdown_write(&mut self) {
        let _ = match self.reader.get_ref() {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    /// Reads one response to a non-HEAD request.
    pub(crate) fn read_response(&mut self) -> Response {
        self.try_read_response(false)
            .unwrap_or_else(|e| panic!("reading response: {e}"))
    }

    /// Reads one response to a HEAD request (headers only, whatever they announce).
    pub(crate) fn read_head_response(&mut self) -> Response {
        self.try_read_response(true)
            .unwrap_or_else(|e| panic!("reading HEAD response: {e}"))
    }

    /// Reads one response; `Err(UnexpectedEof)` when the server closed before any byte.
    pub(crate) fn try_read_response(&mut self, head_only: bool) -> io::Result<Response> {
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut parts = status_line.trim_end().splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or_default().to_string();
        let headers = self.read_header_lines()?;
        let mut response = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
        };
        let bodiless = head_only || status == 204 || status == 304 || (100..200).contains(&status);
        if bodiless {
            return Ok(response);
        }
        if response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            response.body = self.read_chunked()?;
        } else if let Some(len) = response.header("content-length") {
            let len: usize = len.trim().parse().map_err(|_| bad("bad content-length"))?;
            response.body = vec![0; len];
            self.reader.read_exact(&mut response.body)?;
        } else {
            self.reader.read_to_end(&mut response.body)?;
        }
        Ok(response)
    }

    /// Reads what has come, at most `buf.len()` bytes (0: the server closed).
    pub(crate) fn read_some(&mut self, buf: &mut [u8]) -> usize {
        self.reader.read(buf).expect("read response bytes")
    }

    /// Reads until the server closes the connection.
    pub(crate) fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).expect("read to EOF");
        rest
    }

    /// True when the server closed the connection (EOF, or a reset) with nothing more to read.
    pub(crate) fn is_closed_by_peer(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }

    fn read_header_lines(&mut self) -> io::Result<Vec<(String, String)>> {
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(bad("EOF inside the response head"));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                return Ok(headers);
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((name.to_string(), value.trim().to_string()));
        }
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let mut size_line = String::new();
            self.reader.read_line(&mut size_line)?;
            let size_text = size_line.trim_end().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                self.read_header_lines()?; // trailers
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            self.reader.read_exact(&mut crlf)?;
        }
    }
}

fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// A parsed HTTP/1.x response.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) version: String,
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one complete HTTP request and reads its response.
pub(crate) fn http_request(target: &Target, raw: &[u8]) -> Response {
    target.connect().send(raw).read_response()
}

/// `GET path HTTP/1.1` with `Connection: close`.
pub(crate) fn http_get(target: &Target, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    http_request(target, raw.as_bytes())
}

/// [`http_get`] that may fail: an error when nothing answers now (the server is starting,
/// reloading or gone), for polling.
pub(crate) fn try_http_get(target: &Target, path: &str) -> io::Result<Response> {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    target
        .try_connect()
        .and_then(|mut conn| conn.send(raw.as_bytes()).try_read_response(false))
}

/// Builds a uwsgi request packet (modifier1 0) from CGI vars and a body.
pub(crate) fn uwsgi_packet(vars: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let raw: Vec<(&[u8], &[u8])> = vars
        .iter()
        .map(|(key, value)| (key.as_bytes(), value.as_bytes()))
        .collect();
    uwsgi_packet_raw(&raw, body)
}

/// [`uwsgi_packet`] from raw var bytes: nginx sends `PATH_INFO` decoded, so `%ff` arrives as a
/// byte that is not UTF-8.
pub(crate) fn uwsgi_packet_raw(vars: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (key, value) in vars {
        for part in [*key, *value] {
            let len = u16::try_from(part.len()).expect("uwsgi var longer than 65535");
            block.extend_from_slice(&len.to_le_bytes());
            block.extend_from_slice(part);
        }
    }
    let size = u16::try_from(block.len()).expect("uwsgi vars block longer than 65535");
    let mut packet = vec![0u8];
    packet.extend_from_slice(&size.to_le_bytes());
    packet.push(0);
    packet.extend_from_slice(&block);
    packet.extend_from_slice(body);
    packet
}

/// The vars nginx's stock `uwsgi_params` sends for `METHOD uri` with `body`, including the
/// empty `CONTENT_TYPE`/`CONTENT_LENGTH` it sends for a bodyless request.
pub(crate) fn nginx_vars(method: &str, uri: &str, body: &[u8]) -> Vec<(String, String)> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let length = if body.is_empty() {
        String::new()
    } else {
        body.len().to_string()
    };
    [
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", method),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", length.as_str()),
        ("REQUEST_URI", uri),
        ("PATH_INFO", path),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "40000"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "localhost"),
        ("HTTP_HOST", "localhost"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Sends one uwsgi request and reads the raw-HTTP response the server writes back.
pub(crate) fn uwsgi_request(target: &Target, vars: &[(String, String)], body: &[u8]) -> Response {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    target
        .connect()
        .send(&uwsgi_packet(&vars, body))
        .read_response()
}

#[test]
fn uwsgi_packet_matches_the_worked_example() {
    // uwsgi-compat.md §2.1: one var REQUEST_METHOD=GET, no body.
    let packet = uwsgi_packet(&[("REQUEST_METHOD", "GET")], b"");
    let mut expected = vec![0x00, 0x15, 0x00, 0x00, 0x0e, 0x00];
    expected.extend_from_slice(b"REQUEST_METHOD");
    expected.extend_from_slice(&[0x03, 0x00]);
    expected.extend_from_slice(b"GET");
    assert_eq!(packet, expected);
}

#[test]
fn responses_are_read_by_length_chunks_and_eof() {
    use std::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = Target {
        proto: Proto::Http,
        addr: Addr::Tcp(listener.local_addr().expect("local addr")),
    };
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
              HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n\
              HTTP/1.0 404 Not Found\r\n\r\nrest",
        )
        .expect("write");
    });
    let mut conn = target.connect();
    let first = conn.read_response();
    assert_eq!((first.status, first.text().as_str()), (200, "hello"));
    let second = conn.read_response();
    assert_eq!((second.status, second.text().as_str()), (201, "abcde"));
    let third = conn.read_response();
    assert_eq!((third.status, third.reason.as_str()), (404, "Not Found"));
    assert_eq!(third.text(), "rest");
    server.join().expect("server thread");
}
