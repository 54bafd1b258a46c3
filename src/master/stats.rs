//! The stats server: uwsgitop-compatible JSON, written to whoever connects, then closed.
//!
//! Field names and units follow uWSGI's (reference `uwsgi-compat.md` §4): `rss`/`vsz`/`tx` in
//! bytes, `avg_rt`/`running_time` in microseconds, `last_spawn` in epoch seconds. With
//! `stats-http` the request is read (and ignored) and an HTTP/1.0 response wraps the JSON.
//!
//! The master serves it from its own loop, so nothing here may wait: every client socket is
//! non-blocking and registered in the master's poll; its answer is written as the socket
//! takes it; a client gets [`CLIENT_DEADLINE`] in all, and at most [`MAX_CLIENTS`] are served
//! at once (the others wait in the listen backlog). Supervision never waits on a client.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use serde_json::{Value, json};
use slab::Slab;

use crate::config::Config;
use crate::net::addr::SocketSpec;
use crate::net::listener::{self, Listener, LocalAddr, UnixOptions};
use crate::scoreboard::{Scoreboard, WorkerSnapshot};

/// Longest a stats client may take, from its connection to the last byte of its answer.
pub(crate) const CLIENT_DEADLINE: Duration = Duration::from_secs(3);
/// Clients served at once; more connections wait in the listen backlog until one is done.
pub(crate) const MAX_CLIENTS: usize = 32;
/// The most of an HTTP request read before answering (the request itself is ignored).
const MAX_REQUEST: usize = 8 * 1024;
/// The head of a `stats-http` answer.
const HTTP_HEAD: &[u8] =
    b"HTTP/1.0 200 OK\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n\
    Content-Type: application/json\r\n\r\n";

/// The stats listener (`stats = addr`).
#[derive(Debug)]
pub(crate) enum StatsListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl StatsListener {
    /// Binds `spec` like every listening socket of the instance (`net::listener`): the same
    /// backlog, unix-socket mode and owner, and a unix path holding anything but a stale socket
    /// is refused, never removed.
    pub(crate) fn bind(
        spec: &SocketSpec,
        backlog: u32,
        unix: UnixOptions,
    ) -> io::Result<StatsListener> {
        let what = format!("stats {spec}");
        let (fd, local) = listener::bind_socket(spec, &what, backlog, unix)?;
        Ok(StatsListener::from_fd(fd, &local))
    }

    /// Takes over the stats socket of the previous master image.
    pub(crate) fn adopt(fd: OwnedFd, spec: &SocketSpec) -> io::Result<StatsListener> {
        let local = listener::adopt_socket(&fd, &format!("stats {spec}: adopt"))?;
        Ok(StatsListener::from_fd(fd, &local))
    }

    fn from_fd(fd: OwnedFd, local: &LocalAddr) -> StatsListener {
        match local {
            LocalAddr::Tcp(_) => StatsListener::Tcp(TcpListener::from(fd)),
            LocalAddr::Unix(_) => StatsListener::Unix(UnixListener::from(fd)),
        }
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
    fn advance(&mut self, document: &mut dyn FnMut() -> Vec<u8>) -> Progress {
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
            self.request = None;
            self.answer = [HTTP_HEAD, &document()].concat();
        }
        while self.sent < self.answer.len() {
            match self.stream.write(&self.answer[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::info!("stats client went away: {e}");
                    return Progress::Done;
                }
            }
        }
        self.stream.shutdown_write();
        Progress::Done
    }
}

/// The stats listener and the clients being answered, polled by the master's loop: the
/// listener under its own token, each client under `first_client_token + n`.
#[derive(Debug)]
pub(crate) struct StatsServer {
    listener: StatsListener,
    listener_token: Token,
    first_client_token: usize,
    http: bool,
    clients: Slab<Client>,
    /// Connections may be waiting that were not accepted because [`MAX_CLIENTS`] were busy.
    backlogged: bool,
}

impl StatsServer {
    /// Registers `listener` in `registry` under `listener_token`; clients get tokens from
    /// `first_client_token` on.
    pub(crate) fn new(
        mut listener: StatsListener,
        http: bool,
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
            clients: Slab::new(),
            backlogged: false,
        })
    }

    /// The listening socket (to hand over across a re-exec).
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

    /// Handles a readiness event of `token`; `document` builds the JSON (called at most once
    /// per event, and only when a client needs it).
    pub(crate) fn ready(
        &mut self,
        registry: &Registry,
        token: Token,
        document: impl FnMut() -> String,
    ) {
        let mut cached: Option<Vec<u8>> = None;
        let mut document = document;
        let mut build = || {
            cached
                .get_or_insert_with(|| document().into_bytes())
                .clone()
        };
        if token == self.listener_token {
            self.accept_pending(registry, &mut build);
        } else if let Some(key) = self.client_key(token) {
            if self.clients[key].advance(&mut build) == Progress::Done {
                self.close(registry, key);
            }
            self.accept_pending(registry, &mut build);
        }
    }

    /// Closes clients past their deadline; accepts what waited for room. Call once per tick.
    pub(crate) fn expire(
        &mut self,
        registry: &Registry,
        now: Instant,
        document: impl FnMut() -> String,
    ) {
        let late: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| now >= c.deadline)
            .map(|(key, _)| key)
            .collect();
        for key in late {
            log::info!(
                "stats client closed: no answer taken within {}s",
                CLIENT_DEADLINE.as_secs()
            );
            self.close(registry, key);
        }
        if self.backlogged {
            let mut document = document;
            let mut build = || document().into_bytes();
            self.accept_pending(registry, &mut build);
        }
    }

    /// Every descriptor this server holds (a forked worker closes them).
    pub(crate) fn raw_fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.clients.iter().map(|(_, c)| c.stream.as_raw_fd()))
            .collect()
    }

    /// Accepts while there is room, answering each client as far as its socket allows.
    fn accept_pending(&mut self, registry: &Registry, document: &mut dyn FnMut() -> Vec<u8>) {
        self.backlogged = false;
        while self.clients.len() < MAX_CLIENTS {
            let stream = match self.listener.accept() {
                Ok(Some(stream)) => stream,
                Ok(None) => return,
                Err(e) => {
                    log::warn!("stats accept failed: {e}");
                    return;
                }
            };
            let (request, answer) = if self.http {
                (Some(Vec::new()), Vec::new())
            } else {
                (None, document())
            };
            let mut client = Client {
                stream,
                request,
                answer,
                sent: 0,
                deadline: Instant::now() + CLIENT_DEADLINE,
            };
            if client.advance(document) == Progress::Done {
                continue;
            }
            let entry = self.clients.vacant_entry();
            let token = Token(self.first_client_token + entry.key());
            let fd = client.stream.as_raw_fd();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = registry.register(&mut SourceFd(&fd), token, interest) {
                log::warn!("stats client dropped: cannot poll it: {e}");
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

/// The stats document of an instance.
pub(crate) fn document(
    config: &Config,
    listeners: &[Listener],
    scoreboard: &Scoreboard,
    live_slots: &[crate::scoreboard::SlotId],
) -> String {
    let mut listen_queue = 0;
    let sockets: Vec<Value> = listeners
        .iter()
        .map(|l| {
            // What waits in the kernel for a worker to accept: the first sign of overload.
            let (queue, max_queue) = crate::sys::fd::listen_queue(l)
                .unwrap_or((0, u32::try_from(config.listen).unwrap_or(u32::MAX)));
            listen_queue = listen_queue.max(queue);
            json!({
                "name": l.local_addr().to_string(),
                "proto": l.protocol().scheme(),
                "queue": queue,
                "max_queue": max_queue,
                "shared": 0,
                "can_offload": 0,
            })
        })
        .collect();
    let mut snapshots: Vec<WorkerSnapshot> = live_slots
        .iter()
        .filter_map(|&slot| scoreboard.snapshot(slot))
        .collect();
    // By id, as uWSGI lists them; a replacement and the worker it replaces share an id.
    snapshots.sort_by_key(|w| (w.id, w.slot));
    let workers: Vec<Value> = snapshots.iter().map(worker_json).collect();
    let doc = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "listen_queue": listen_queue,
        "listen_queue_errors": 0,
        "signal_queue": 0,
        "load": 0,
        "pid": std::process::id(),
        "uid": nix::unistd::getuid().as_raw(),
        "gid": nix::unistd::getgid().as_raw(),
        "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        "locks": [],
        "sockets": sockets,
        "workers": workers,
    });
    if config.stats_minified {
        doc.to_string()
    } else {
        serde_json::to_string_pretty(&doc).expect("invariant: a JSON value always serializes")
    }
}

fn worker_json(w: &WorkerSnapshot) -> Value {
    let cores: Vec<Value> = w
        .cores
        .iter()
        .map(|core| {
            let (vars, req_info) = match core.method_and_uri() {
                Some((method, uri)) if core.in_request => (
                    json!([
                        format!("REQUEST_METHOD={method}"),
                        format!("REQUEST_URI={uri}"),
                        ""
                    ]),
                    json!({ "request_start": core.request_start_unix_ms / 1000 }),
                ),
                _ => (json!([]), json!({})),
            };
            json!({
                "id": core.id,
                "requests": core.requests,
                "static_requests": 0,
                "routed_requests": 0,
                "offloaded_requests": 0,
                "write_errors": 0,
                "read_errors": 0,
                "in_request": u8::from(core.in_request),
                "vars": vars,
                "req_info": req_info,
            })
        })
        .collect();
    json!({
        "id": w.id.0,
        "pid": w.pid,
        "accepting": u8::from(w.is_accepting()),
        "requests": w.requests,
        "delta_requests": w.delta_requests,
        "exceptions": w.exceptions,
        "harakiri_count": w.harakiri_count,
        "write_errors": w.write_errors,
        "signals": 0,
        "signal_queue": 0,
        "status": w.stats_status(),
        "rss": w.rss,
        "vsz": w.vsz,
        "running_time": w.running_time_us,
        "last_spawn": w.last_spawn_secs,
        "respawn_count": w.respawn_count,
        "tx": w.tx,
        "avg_rt": w.avg_rt_us,
        "apps": [{
            "id": 0, "modifier1": 0, "mountpoint": "", "startup_time": 0,
            "requests": w.requests, "exceptions": w.exceptions, "chdir": "",
        }],
        "cores": cores,
    })
}
