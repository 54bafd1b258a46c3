//! The stats server: uwsgitop-compatible JSON, written to whoever connects, then closed.
//!
//! Field names and units follow uWSGI's (reference `uwsgi-compat.md` §4): `rss`/`vsz`/`tx` in
//! bytes, `avg_rt`/`running_time` in microseconds, `last_spawn` in epoch seconds. With
//! `stats-http` the request is read (and ignored) and an HTTP/1.0 response wraps the JSON.
//!
//! The master serves it from its loop; a client that does not read gets [`WRITE_TIMEOUT`] at
//! most, so supervision is never held up for long.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::Config;
use crate::net::addr::{Host, SocketSpec};
use crate::net::listener::Listener;
use crate::scoreboard::{Scoreboard, WorkerSnapshot};

/// Longest a stats client may take to read its answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The stats listener (`stats = addr`).
#[derive(Debug)]
pub(crate) enum StatsListener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

impl StatsListener {
    /// Binds `spec` non-blocking.
    pub(crate) fn bind(spec: &SocketSpec) -> io::Result<StatsListener> {
        let context = |e: io::Error| io::Error::new(e.kind(), format!("stats {spec}: {e}"));
        match spec {
            SocketSpec::Tcp { host, port } => {
                let ip = match host {
                    Host::Any => std::net::IpAddr::from([0, 0, 0, 0]),
                    Host::Ip(ip) => *ip,
                    Host::Name(name) => {
                        std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), *port))
                            .map_err(context)?
                            .next()
                            .ok_or_else(|| context(io::Error::other("no address")))?
                            .ip()
                    }
                };
                let listener = TcpListener::bind((ip, *port)).map_err(context)?;
                listener.set_nonblocking(true).map_err(context)?;
                Ok(StatsListener::Tcp(mio::net::TcpListener::from_std(
                    listener,
                )))
            }
            SocketSpec::Unix(path) => {
                let _ = std::fs::remove_file(path);
                let listener = UnixListener::bind(path).map_err(context)?;
                listener.set_nonblocking(true).map_err(context)?;
                Ok(StatsListener::Unix(mio::net::UnixListener::from_std(
                    listener,
                )))
            }
            SocketSpec::Fd(_) => Err(context(io::Error::new(
                io::ErrorKind::InvalidInput,
                "stats cannot use an inherited fd",
            ))),
        }
    }

    /// Takes over the stats socket of the previous master image.
    pub(crate) fn adopt(fd: OwnedFd, spec: &SocketSpec) -> io::Result<StatsListener> {
        if matches!(spec, SocketSpec::Unix(_)) {
            let listener = UnixListener::from(fd);
            listener.set_nonblocking(true)?;
            Ok(StatsListener::Unix(mio::net::UnixListener::from_std(
                listener,
            )))
        } else {
            let listener = TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            Ok(StatsListener::Tcp(mio::net::TcpListener::from_std(
                listener,
            )))
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

    /// Answers every pending connection with `document` (built once per batch).
    pub(crate) fn serve_pending(&self, http: bool, document: impl Fn() -> String) {
        let mut body: Option<String> = None;
        loop {
            let accepted: io::Result<Box<dyn StatsStream>> = match self {
                StatsListener::Tcp(l) => l
                    .accept()
                    .map(|(s, _)| Box::new(into_std_tcp(s)) as Box<dyn StatsStream>),
                StatsListener::Unix(l) => l
                    .accept()
                    .map(|(s, _)| Box::new(into_std_unix(s)) as Box<dyn StatsStream>),
            };
            let mut stream = match accepted {
                Ok(stream) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("stats accept failed: {e}");
                    return;
                }
            };
            let body = body.get_or_insert_with(&document);
            if let Err(e) = answer(&mut *stream, http, body) {
                log::info!("stats client went away: {e}");
            }
        }
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

impl mio::event::Source for StatsListener {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            StatsListener::Tcp(l) => l.register(r, t, i),
            StatsListener::Unix(l) => l.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            StatsListener::Tcp(l) => l.reregister(r, t, i),
            StatsListener::Unix(l) => l.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        match self {
            StatsListener::Tcp(l) => l.deregister(r),
            StatsListener::Unix(l) => l.deregister(r),
        }
    }
}

trait StatsStream: Read + Write {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()>;
}

impl StatsStream for TcpStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_nonblocking(false)?;
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl StatsStream for UnixStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_nonblocking(false)?;
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

fn into_std_tcp(stream: mio::net::TcpStream) -> TcpStream {
    TcpStream::from(stream)
}

fn into_std_unix(stream: mio::net::UnixStream) -> UnixStream {
    UnixStream::from(stream)
}

fn answer(stream: &mut dyn StatsStream, http: bool, body: &str) -> io::Result<()> {
    stream.set_timeouts(WRITE_TIMEOUT)?;
    if http {
        // Any request will do: read what the client sent, without parsing it.
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request)?;
        stream.write_all(
            b"HTTP/1.0 200 OK\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n\
              Content-Type: application/json\r\n\r\n",
        )?;
    }
    stream.write_all(body.as_bytes())?;
    stream.flush()
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
