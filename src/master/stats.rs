//! The instance stats server: uwsgitop-compatible JSON, written to whoever connects, then
//! closed.
//!
//! Field names and units follow uWSGI's (reference `uwsgi-compat.md` §4): `rss`/`vsz`/`tx` in
//! bytes, `avg_rt`/`running_time` in microseconds, `last_spawn` in epoch seconds. With
//! `stats-http` the request is read (and ignored) and an HTTP/1.0 response wraps the JSON.
//!
//! The transport (non-blocking clients in the master's own poll, each given
//! [`stats_server::CLIENT_DEADLINE`], at most [`stats_server::MAX_CLIENTS`] at once) is the
//! one the emperor's stats use too (`sys::stats_server`); here are how the master binds its
//! socket, what it logs of its clients, and its document.

use std::io;
use std::os::fd::OwnedFd;

use serde_json::{Value, json};

use crate::config::Config;
use crate::net::addr::SocketSpec;
use crate::net::listener::{self, Listener, LocalAddr, UnixOptions};
use crate::scoreboard::{Scoreboard, WorkerSnapshot};
use crate::sys::stats_server::{self, Incident};
pub(crate) use crate::sys::stats_server::{StatsListener, StatsServer};

/// Binds `spec` for `stats = addr` like every listening socket of the instance
/// (`net::listener`): the same backlog, unix-socket mode and owner, and a unix path holding
/// anything but a stale socket is refused, never removed.
pub(crate) fn bind_listener(
    spec: &SocketSpec,
    backlog: u32,
    unix: UnixOptions,
) -> io::Result<StatsListener> {
    let what = format!("stats {spec}");
    let (fd, local) = listener::bind_socket(spec, &what, backlog, unix)?;
    Ok(from_fd(fd, &local))
}

/// Takes over the stats socket of the previous master image.
pub(crate) fn adopt_listener(fd: OwnedFd, spec: &SocketSpec) -> io::Result<StatsListener> {
    let local = listener::adopt_socket(&fd, &format!("stats {spec}: adopt"))?;
    Ok(from_fd(fd, &local))
}

fn from_fd(fd: OwnedFd, local: &LocalAddr) -> StatsListener {
    StatsListener::from_fd(fd, matches!(local, LocalAddr::Unix(_)))
}

/// What the master logs of its stats clients.
pub(crate) fn log_incident(incident: Incident<'_>) {
    match incident {
        Incident::AcceptFailed(e) => log::warn!("stats accept failed: {e}"),
        Incident::CannotPoll(e) => log::warn!("stats client dropped: cannot poll it: {e}"),
        Incident::WriteFailed(e) => log::info!("stats client went away: {e}"),
        Incident::Late => log::info!(
            "stats client closed: no answer taken within {}s",
            stats_server::CLIENT_DEADLINE.as_secs()
        ),
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
