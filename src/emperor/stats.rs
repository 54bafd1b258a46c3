//! `emperor-stats`: the emperor's stats JSON in uWSGI's emperor format (uwsgitop shows it),
//! written to whoever connects, then closed.
//!
//! The document (reference `uwsgi-compat.md` §4.6): `version, pid, uid, gid, cwd, emperor[],
//! emperor_tyrant, throttle_level, vassals[], blacklist[]`; each vassal `id, pid, born,
//! last_mod, last_heartbeat, loyal, ready, accepting, ..., respawns` plus rcontainer's own
//! `state, config_error, backoff_until, backoff_ms, path`. Built with serde_json, so it is
//! valid JSON whatever the file names or error texts hold (uWSGI's `attrs` is `{}`).
//!
//! Served from the emperor's loop, so nothing waits: clients are non-blocking, polled, given
//! [`CLIENT_DEADLINE`] in all, at most [`MAX_CLIENTS`] at once. The same transport as the
//! instance stats server (`master/stats.rs`), which the emperor may not import; the socket is
//! bound by the command line (`net`), handed over here as a descriptor.

use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use serde_json::{Value, json};
use slab::Slab;

/// Longest a stats client may take to read its answer.
pub(crate) const CLIENT_DEADLINE: Duration = Duration::from_secs(3);
/// Clients served at once; more wait in the listen backlog.
pub(crate) const MAX_CLIENTS: usize = 32;

/// The bound `emperor-stats` socket.
#[derive(Debug)]
pub(crate) enum StatsListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl StatsListener {
    /// A listening socket bound elsewhere: TCP or unix (`unix`), non-blocking.
    pub(crate) fn from_fd(fd: OwnedFd, unix: bool) -> StatsListener {
        if unix {
            StatsListener::Unix(UnixListener::from(fd))
        } else {
            StatsListener::Tcp(TcpListener::from(fd))
        }
    }

    /// The address, for the log.
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

    /// The unix socket's path (removed on exit).
    pub(crate) fn unix_path(&self) -> Option<std::path::PathBuf> {
        match self {
            StatsListener::Tcp(_) => None,
            StatsListener::Unix(l) => l.local_addr().ok()?.as_pathname().map(Into::into),
        }
    }

    fn accept(&self) -> io::Result<Option<Client>> {
        let accepted = match self {
            StatsListener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            StatsListener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        match &stream {
            Stream::Tcp(s) => s.set_nonblocking(true)?,
            Stream::Unix(s) => s.set_nonblocking(true)?,
        }
        Ok(Some(Client {
            stream,
            answer: Vec::new(),
            sent: 0,
            deadline: Instant::now() + CLIENT_DEADLINE,
        }))
    }

    /// The listening descriptor (an upgrade hands it to the next image).
    pub(crate) fn raw(&self) -> RawFd {
        match self {
            StatsListener::Tcp(l) => l.as_raw_fd(),
            StatsListener::Unix(l) => l.as_raw_fd(),
        }
    }

    /// The name it is handed over under to the next image of an emperor serving `spec`.
    pub(crate) fn handover_name(&self, spec: &str) -> String {
        handover_name(matches!(self, StatsListener::Unix(_)), spec)
    }
}

/// The hand-over name of the `emperor-stats` socket for `spec`, a unix socket or TCP:
/// `emperor-stats unix SPEC` or `emperor-stats tcp SPEC` (the next image adopts it only if its
/// configuration still names `spec`).
pub(crate) fn handover_name(unix: bool, spec: &str) -> String {
    let kind = if unix { "unix" } else { "tcp" };
    format!("emperor-stats {kind} {spec}")
}

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn raw(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

#[derive(Debug)]
struct Client {
    stream: Stream,
    answer: Vec<u8>,
    sent: usize,
    deadline: Instant,
}

impl Client {
    /// Writes as much as the socket takes; `true` when done (all written, or gone).
    fn advance(&mut self) -> bool {
        while self.sent < self.answer.len() {
            let written = match &mut self.stream {
                Stream::Tcp(s) => s.write(&self.answer[self.sent..]),
                Stream::Unix(s) => s.write(&self.answer[self.sent..]),
            };
            match written {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        let _ = match &self.stream {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
        true
    }
}

/// The listener and the clients being answered: the listener under `token`, client `n` under
/// `first_client + n`.
#[derive(Debug)]
pub(crate) struct StatsServer {
    listener: StatsListener,
    token: Token,
    first_client: usize,
    clients: Slab<Client>,
}

impl StatsServer {
    pub(crate) fn new(
        listener: StatsListener,
        registry: &Registry,
        token: Token,
        first_client: usize,
    ) -> io::Result<StatsServer> {
        registry.register(&mut SourceFd(&listener.raw()), token, Interest::READABLE)?;
        Ok(StatsServer {
            listener,
            token,
            first_client,
            clients: Slab::new(),
        })
    }

    pub(crate) fn listener(&self) -> &StatsListener {
        &self.listener
    }

    /// Whether `token` is the listener's or a client's.
    pub(crate) fn owns(&self, token: Token) -> bool {
        token == self.token || self.client_key(token).is_some()
    }

    /// Whether `token` is the listener's (a new client may be waiting).
    pub(crate) fn is_listener(&self, token: Token) -> bool {
        token == self.token
    }

    fn client_key(&self, token: Token) -> Option<usize> {
        let key = token.0.checked_sub(self.first_client)?;
        self.clients.contains(key).then_some(key)
    }

    /// `token` is ready: accept new clients (each gets `document()`), or go on writing.
    pub(crate) fn ready(
        &mut self,
        registry: &Registry,
        token: Token,
        document: impl Fn() -> Value,
    ) {
        if token == self.token {
            while self.clients.len() < MAX_CLIENTS {
                match self.listener.accept() {
                    Ok(Some(mut client)) => {
                        client.answer = serde_json::to_vec_pretty(&document())
                            .expect("invariant: a serde_json Value serializes");
                        if client.advance() {
                            continue;
                        }
                        let entry = self.clients.vacant_entry();
                        let client_token = Token(self.first_client + entry.key());
                        let raw = client.stream.raw();
                        if registry
                            .register(&mut SourceFd(&raw), client_token, Interest::WRITABLE)
                            .is_ok()
                        {
                            entry.insert(client);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("emperor stats: accept: {e}");
                        break;
                    }
                }
            }
            return;
        }
        if let Some(key) = self.client_key(token)
            && self.clients[key].advance()
        {
            self.close(registry, key);
        }
    }

    /// Closes clients past their deadline.
    pub(crate) fn expire(&mut self, registry: &Registry, now: Instant) {
        let late: Vec<usize> = (self.clients.iter())
            .filter(|(_, c)| c.deadline <= now)
            .map(|(key, _)| key)
            .collect();
        for key in late {
            self.close(registry, key);
        }
    }

    /// The earliest client deadline, if a client is being answered.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.clients.iter().map(|(_, c)| c.deadline).min()
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        let client = self.clients.remove(key);
        let _ = registry.deregister(&mut SourceFd(&client.stream.raw()));
    }
}

/// One vassal as stats show it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VassalStats {
    pub(crate) id: String,
    pub(crate) path: String,
    pub(crate) monitor: String,
    pub(crate) state: &'static str,
    pub(crate) pid: i32,
    pub(crate) born: u64,
    pub(crate) last_mod: i64,
    pub(crate) last_heartbeat: u64,
    pub(crate) loyal: u64,
    pub(crate) ready: bool,
    pub(crate) accepting: bool,
    /// Its process was started by a previous image of this emperor (before an upgrade).
    pub(crate) adopted: bool,
    pub(crate) first_run: u64,
    pub(crate) last_run: u64,
    pub(crate) respawns: u32,
    pub(crate) failures: u32,
    pub(crate) config_error: Option<String>,
    /// Unix seconds of the next respawn, 0 when not in back-off.
    pub(crate) backoff_until: u64,
    pub(crate) backoff_ms: u64,
}

/// The whole document.
pub(crate) fn document(pid: i32, monitors: &[String], vassals: &[VassalStats]) -> Value {
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let list: Vec<Value> = vassals
        .iter()
        .map(|v| {
            json!({
                "id": v.id,
                "pid": v.pid,
                "born": v.born,
                "last_mod": v.last_mod,
                "last_heartbeat": v.last_heartbeat,
                "loyal": v.loyal,
                "ready": u8::from(v.ready),
                "accepting": u8::from(v.accepting),
                "last_loyal": v.loyal,
                "last_ready": if v.ready { v.last_run } else { 0 },
                "last_accepting": if v.accepting { v.last_run } else { 0 },
                "first_run": v.first_run,
                "last_run": v.last_run,
                "cursed": 0,
                "zerg": 0,
                "on_demand": "",
                "suspended": 0,
                "adopted": u8::from(v.adopted),
                "uid": nix::unistd::getuid().as_raw(),
                "gid": nix::unistd::getgid().as_raw(),
                "monitor": v.monitor,
                "attrs": {},
                "respawns": v.respawns,
                "state": v.state,
                "path": v.path,
                "config_error": v.config_error,
                "backoff_until": v.backoff_until,
                "backoff_ms": v.backoff_ms,
            })
        })
        .collect();
    let blacklist: Vec<Value> = vassals
        .iter()
        .filter(|v| v.backoff_until != 0)
        .map(|v| {
            json!({
                "id": v.id,
                "throttle_level": v.backoff_ms,
                "attempt": v.failures,
                "first_attempt": v.first_run,
                "last_attempt": v.last_run,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": pid,
        "uid": nix::unistd::getuid().as_raw(),
        "gid": nix::unistd::getgid().as_raw(),
        "cwd": cwd,
        "emperor": monitors,
        "emperor_tyrant": 0,
        "throttle_level": 0,
        "vassals": list,
        "blacklist": blacklist,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_uwsgis_emperor_fields_and_stays_json_with_odd_text() {
        let vassal = VassalStats {
            id: "we\"ird\n.ini".into(),
            path: "/v/we\"ird\n.ini".into(),
            monitor: "/v".into(),
            state: "backoff",
            pid: 0,
            born: 1,
            last_mod: 2,
            last_heartbeat: 0,
            loyal: 0,
            ready: false,
            accepting: false,
            adopted: false,
            first_run: 1,
            last_run: 3,
            respawns: 2,
            failures: 2,
            config_error: Some("a.ini:1: prcesses: unknown option \"x\"".into()),
            backoff_until: 10,
            backoff_ms: 2000,
        };
        let doc = document(42, &["/v".into()], &[vassal]);
        let text = serde_json::to_string(&doc).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        for key in [
            "version",
            "pid",
            "emperor",
            "emperor_tyrant",
            "throttle_level",
            "vassals",
            "blacklist",
        ] {
            assert!(back.get(key).is_some(), "{key}");
        }
        let v = &back["vassals"][0];
        assert_eq!(v["id"], "we\"ird\n.ini");
        assert_eq!(v["attrs"], json!({}));
        assert_eq!(v["respawns"], 2);
        assert_eq!(back["blacklist"][0]["throttle_level"], 2000);
        assert!(v["config_error"].as_str().unwrap().contains("prcesses"));
    }
}
