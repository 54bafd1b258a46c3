//! The transport of a stats server: a TCP or unix listening socket whose every client is
//! written one document (optionally after reading its HTTP request, `stats-http`) and then
//! closed. The instance master (`stats`) and the emperor (`emperor-stats`) both serve their
//! JSON through it; what the document holds and how a socket is bound stay with them. Over
//! HTTP the request's path picks the document's [`Format`]: `/metrics` is the Prometheus text
//! format (`sys::prometheus`), any other path the JSON.
//!
//! It runs inside its owner's `mio` loop, so nothing here may wait: every client socket is
//! non-blocking and registered in the owner's poll; its answer is written as the socket takes
//! it; a client gets [`CLIENT_DEADLINE`] in all, and at most [`MAX_CLIENTS`] are served at
//! once (the others wait in the listen backlog, accepted as room frees up). What goes wrong
//! with a client is reported to the owner ([`Incident`]), which says it in its own words.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use slab::Slab;

/// Longest a stats client may take, from its connection to the last byte of its answer.
pub(crate) const CLIENT_DEADLINE: Duration = Duration::from_secs(3);
/// Clients served at once; more connections wait in the listen backlog until one is done.
pub(crate) const MAX_CLIENTS: usize = 32;
/// The most of an HTTP request read before answering (only its path is looked at).
const MAX_REQUEST: usize = 8 * 1024;
/// The path that asks for the Prometheus text format.
const METRICS_PATH: &str = "/metrics";

/// Which document a client asked for; the owner writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The owner's JSON: every plain client, and HTTP clients of any path but `/metrics`.
    Json,
    /// The Prometheus text exposition format (`sys::prometheus`): `GET /metrics` over HTTP.
    Prometheus,
}

impl Format {
    /// What an HTTP `request` (as read so far) asks for: its request line's path, without
    /// the query string, is `/metrics` or not. Anything unreadable gets the JSON, as before.
    fn of_request(request: &[u8]) -> Format {
        let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
        let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let target = words.nth(1).unwrap_or_default();
        let path = target.split(|&b| b == b'?').next().unwrap_or_default();
        if path == METRICS_PATH.as_bytes() {
            Format::Prometheus
        } else {
            Format::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Prometheus => crate::sys::prometheus::CONTENT_TYPE,
        }
    }
}

/// A `stats-http` answer: its HTTP/1.0 head, then `body`.
fn http_answer(format: Format, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "HTTP/1.0 200 OK\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n\
         Content-Type: {}\r\n\r\n",
        format.content_type()
    );
    [head.as_bytes(), body].concat()
}

/// A bound stats socket, TCP or unix.
#[derive(Debug)]
pub(crate) enum StatsListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl StatsListener {
    /// A listening socket bound elsewhere: a unix socket if `unix`, else TCP; non-blocking.
    pub(crate) fn from_fd(fd: OwnedFd, unix: bool) -> StatsListener {
        if unix {
            StatsListener::Unix(UnixListener::from(fd))
        } else {
            StatsListener::Tcp(TcpListener::from(fd))
        }
    }

    /// Whether it is a unix socket.
    pub(crate) fn is_unix(&self) -> bool {
        matches!(self, StatsListener::Unix(_))
    }

    /// The address it is bound to, for the log.
    pub(crate) fn describe(&self) -> String {
        match self {
            StatsListener::Tcp(l) => l.local_addr().map_or("?".into(), |a| a.to_string()),
            StatsListener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_else(|| "?".into()),
        }
    }

    /// The unix socket's path; `None` for TCP.
    pub(crate) fn unix_path(&self) -> Option<PathBuf> {
        match self {
            StatsListener::Tcp(_) => None,
            StatsListener::Unix(l) => l.local_addr().ok()?.as_pathname().map(Into::into),
        }
    }

    /// The next pending connection, non-blocking; `Ok(None)` when there is none.
    fn accept(&self) -> io::Result<Option<ClientStream>> {
        let accepted = match self {
            StatsListener::Tcp(l) => l.accept().map(|(s, _)| ClientStream::Tcp(s)),
            StatsListener::Unix(l) => l.accept().map(|(s, _)| ClientStream::Unix(s)),
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        // An accepted socket does not inherit O_NONBLOCK from the listener.
        match &stream {
            ClientStream::Tcp(s) => s.set_nonblocking(true)?,
            ClientStream::Unix(s) => s.set_nonblocking(true)?,
        }
        Ok(Some(stream))
    }
}

impl AsRawFd for StatsListener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            StatsListener::Tcp(l) => l.as_raw_fd(),
            StatsListener::Unix(l) => l.as_raw_fd(),
        }
    }
}

crate::sys::fd_event_source!(StatsListener, |listener| listener.as_raw_fd());

/// An accepted stats connection, non-blocking.
#[derive(Debug)]
enum ClientStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Tcp(s) => s.read(buf),
            ClientStream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Tcp(s) => s.write(buf),
            ClientStream::Unix(s) => s.write(buf),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            ClientStream::Tcp(s) => s.shutdown(Shutdown::Write),
            ClientStream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl AsRawFd for ClientStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            ClientStream::Tcp(s) => s.as_raw_fd(),
            ClientStream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// Something that went wrong with the listener or a client, for the owner to log (or not).
#[derive(Debug)]
pub(crate) enum Incident<'a> {
    /// `accept` failed; what waits is accepted on the next turn.
    AcceptFailed(&'a io::Error),
    /// A client could not be polled and was dropped.
    CannotPoll(&'a io::Error),
    /// Writing to a client failed (it went away); it is closed.
    WriteFailed(&'a io::Error),
    /// A client was still being answered at its deadline; it is closed.
    Late,
}

/// One stats client: reading its HTTP request (`stats-http`), then writing its answer.
#[derive(Debug)]
struct Client {
    stream: ClientStream,
    /// The HTTP request read so far; `None` once the answer is being written.
    request: Option<Vec<u8>>,
    answer: Vec<u8>,
    sent: usize,
    deadline: Instant,
}

/// What a client still needs after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Waiting for the socket (its request, or room to write).
    Waiting,
    /// Answered in full, or gone: close it.
    Done,
}

impl Client {
    /// Reads the request (HTTP) until its blank line, its end or [`MAX_REQUEST`] bytes; then
    /// writes as much of the answer as the socket takes.
    fn advance(
        &mut self,
        document: &mut dyn FnMut(Format) -> Vec<u8>,
        report: fn(Incident<'_>),
    ) -> Progress {
        if let Some(request) = &mut self.request {
            let mut buf = [0u8; 2048];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        request.extend_from_slice(&buf[..n]);
                        if request.windows(4).any(|w| w == b"\r\n\r\n")
                            || request.len() >= MAX_REQUEST
                        {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Waiting,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Progress::Done,
                }
            }
            let format = Format::of_request(request);
            self.request = None;
            self.answer = http_answer(format, &document(format));
        }
        while self.sent < self.answer.len() {
            match self.stream.write(&self.answer[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    report(Incident::WriteFailed(&e));
                    return Progress::Done;
                }
            }
        }
        self.stream.shutdown_write();
        Progress::Done
    }
}

/// The stats listener and the clients being answered, polled by the owner's loop: the
/// listener under its own token, each client under `first_client_token + n`.
#[derive(Debug)]
pub(crate) struct StatsServer {
    listener: StatsListener,
    listener_token: Token,
    first_client_token: usize,
    /// `stats-http`: read each client's request, wrap the answer in an HTTP/1.0 response.
    http: bool,
    report: fn(Incident<'_>),
    clients: Slab<Client>,
    /// Connections may be waiting that were not accepted because [`MAX_CLIENTS`] were busy.
    backlogged: bool,
}

impl StatsServer {
    /// Registers `listener` in `registry` under `listener_token`; clients get tokens from
    /// `first_client_token` on. `report` hears of every [`Incident`].
    pub(crate) fn new(
        mut listener: StatsListener,
        http: bool,
        report: fn(Incident<'_>),
        registry: &Registry,
        listener_token: Token,
        first_client_token: usize,
    ) -> io::Result<StatsServer> {
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        Ok(StatsServer {
            listener,
            listener_token,
            first_client_token,
            http,
            report,
            clients: Slab::new(),
            backlogged: false,
        })
    }

    /// The listening socket (to hand over to the next image).
    pub(crate) fn listener(&self) -> &StatsListener {
        &self.listener
    }

    /// Whether `token` is one of this server's (the listener's or a client's).
    pub(crate) fn owns(&self, token: Token) -> bool {
        token == self.listener_token || self.client_key(token).is_some()
    }

    fn client_key(&self, token: Token) -> Option<usize> {
        let key = token.0.checked_sub(self.first_client_token)?;
        self.clients.contains(key).then_some(key)
    }

    /// Handles a readiness event of `token`; `document` builds the answer in the format asked
    /// for (called at most once per format and event, and only when a client needs it).
    pub(crate) fn ready(
        &mut self,
        registry: &Registry,
        token: Token,
        document: impl FnMut(Format) -> Vec<u8>,
    ) {
        let mut json: Option<Vec<u8>> = None;
        let mut metrics: Option<Vec<u8>> = None;
        let mut document = document;
        let mut build = |format: Format| {
            let cached = match format {
                Format::Json => &mut json,
                Format::Prometheus => &mut metrics,
            };
            cached.get_or_insert_with(|| document(format)).clone()
        };
        if token == self.listener_token {
            self.accept_pending(registry, &mut build);
        } else if let Some(key) = self.client_key(token) {
            if self.clients[key].advance(&mut build, self.report) == Progress::Done {
                self.close(registry, key);
            }
            self.accept_pending(registry, &mut build);
        }
    }

    /// Closes clients past their deadline at `now`; accepts what waited for room (`document`
    /// builds their answer). Call once per turn of the loop.
    pub(crate) fn expire(
        &mut self,
        registry: &Registry,
        now: Instant,
        document: impl FnMut(Format) -> Vec<u8>,
    ) {
        let late: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| now >= c.deadline)
            .map(|(key, _)| key)
            .collect();
        for key in late {
            (self.report)(Incident::Late);
            self.close(registry, key);
        }
        if self.backlogged {
            let mut document = document;
            self.accept_pending(registry, &mut document);
        }
    }

    /// The earliest client deadline, if a client is being answered.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.clients.iter().map(|(_, c)| c.deadline).min()
    }

    /// Every descriptor this server holds (a forked child closes them).
    pub(crate) fn raw_fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.clients.iter().map(|(_, c)| c.stream.as_raw_fd()))
            .collect()
    }

    /// Accepts while there is room, answering each client as far as its socket allows.
    fn accept_pending(&mut self, registry: &Registry, document: &mut dyn FnMut(Format) -> Vec<u8>) {
        self.backlogged = false;
        while self.clients.len() < MAX_CLIENTS {
            let stream = match self.listener.accept() {
                Ok(Some(stream)) => stream,
                Ok(None) => return,
                Err(e) => {
                    (self.report)(Incident::AcceptFailed(&e));
                    return;
                }
            };
            let (request, answer) = if self.http {
                (Some(Vec::new()), Vec::new())
            } else {
                (None, document(Format::Json))
            };
            let mut client = Client {
                stream,
                request,
                answer,
                sent: 0,
                deadline: Instant::now() + CLIENT_DEADLINE,
            };
            if client.advance(document, self.report) == Progress::Done {
                continue;
            }
            let entry = self.clients.vacant_entry();
            let token = Token(self.first_client_token + entry.key());
            let fd = client.stream.as_raw_fd();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = registry.register(&mut SourceFd(&fd), token, interest) {
                (self.report)(Incident::CannotPoll(&e));
                continue;
            }
            entry.insert(client);
        }
        self.backlogged = true;
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        let client = self.clients.remove(key);
        let _ = registry.deregister(&mut SourceFd(&client.stream.as_raw_fd()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::tempdir::TempDir;

    /// Reads what `client` has now (non-blocking); `true` at the end of its answer.
    fn read_available(client: &mut UnixStream, got: &mut usize) -> bool {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match client.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => *got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    #[test]
    fn the_request_path_picks_the_format() {
        let metrics = Format::Prometheus;
        assert_eq!(
            Format::of_request(b"GET /metrics HTTP/1.1\r\n\r\n"),
            metrics
        );
        assert_eq!(
            Format::of_request(b"GET /metrics?x=1 HTTP/1.0\r\n"),
            metrics
        );
        assert_eq!(Format::of_request(b"GET / HTTP/1.0\r\n\r\n"), Format::Json);
        assert_eq!(
            Format::of_request(b"GET /metricsx HTTP/1.0\r\n"),
            Format::Json
        );
        assert_eq!(
            Format::of_request(b"GET /stats/metrics HTTP/1.0\r\n"),
            Format::Json
        );
        assert_eq!(Format::of_request(b""), Format::Json);
        assert_eq!(Format::of_request(b"\xff\xfe garbage"), Format::Json);
    }

    #[test]
    fn an_http_client_gets_the_format_its_path_asks_for_with_its_content_type() {
        let dir = TempDir::new("stats-server-format");
        let path = dir.join("stats.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let poll = mio::Poll::new().expect("poll");
        let mut server = StatsServer::new(
            StatsListener::Unix(listener),
            true,
            |_| {},
            poll.registry(),
            Token(0),
            1,
        )
        .expect("server");
        for (request, format, body) in [
            ("GET /metrics HTTP/1.0", Format::Prometheus, "m 1\n"),
            ("GET / HTTP/1.0", Format::Json, "{}"),
        ] {
            let mut client = UnixStream::connect(&path).expect("connect");
            client
                .write_all(format!("{request}\r\n\r\n").as_bytes())
                .expect("send");
            let mut asked = Vec::new();
            server.ready(poll.registry(), Token(0), |f| {
                asked.push(f);
                match f {
                    Format::Prometheus => b"m 1\n".to_vec(),
                    Format::Json => b"{}".to_vec(),
                }
            });
            assert_eq!(asked, [format]);
            let mut text = String::new();
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            client.read_to_string(&mut text).expect("read");
            let (head, got) = text.split_once("\r\n\r\n").expect("an HTTP answer");
            assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
            let content_type = format!("\r\nContent-Type: {}", format.content_type());
            assert!(head.contains(&content_type), "{head}");
            assert_eq!(got, body);
        }
        assert_eq!(
            Format::Prometheus.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }

    #[test]
    fn a_connection_left_in_the_backlog_is_answered_once_a_busy_client_is_done() {
        let dir = TempDir::new("stats-server-backlog");
        let path = dir.join("stats.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let poll = mio::Poll::new().expect("poll");
        let first_client = 1;
        let mut server = StatsServer::new(
            StatsListener::Unix(listener),
            false,
            |_| {},
            poll.registry(),
            Token(0),
            first_client,
        )
        .expect("server");
        // Far more than a socket buffer holds: a client that does not read stays busy.
        let document = vec![b'x'; 4 << 20];
        let mut clients: Vec<UnixStream> = (0..=MAX_CLIENTS)
            .map(|_| UnixStream::connect(&path).expect("connect"))
            .collect();
        server.ready(poll.registry(), Token(0), |_| document.clone());
        assert_eq!(server.clients.len(), MAX_CLIENTS, "the last one waits");

        // The first client reads its whole answer; the server writes on as it is polled.
        let first = &mut clients[0];
        first.set_nonblocking(true).expect("non-blocking");
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !read_available(first, &mut got) {
            assert!(
                Instant::now() < deadline,
                "the answer ends (got {got} bytes)"
            );
            server.ready(poll.registry(), Token(first_client), |_| document.clone());
            std::thread::yield_now();
        }
        assert_eq!(got, document.len());

        // Its slot went to the connection that waited, which is being answered now.
        assert_eq!(server.clients.len(), MAX_CLIENTS);
        let last = clients.last_mut().expect("the last client");
        last.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut byte = [0u8];
        assert_eq!(last.read(&mut byte).expect("an answer"), 1);
        assert_eq!(byte[0], b'x');
    }
}
