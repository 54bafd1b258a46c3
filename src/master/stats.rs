//! The instance stats server: uwsgitop-compatible JSON, written to whoever connects, then
//! closed.
//!
//! Field names and units follow uWSGI's (reference `uwsgi-compat.md` §4): `rss`/`vsz`/`tx` in
//! bytes, `avg_rt`/`running_time` in microseconds, `last_spawn` in epoch seconds. With
//! `stats-http` the request is read and an HTTP/1.0 response wraps the JSON, or, for
//! `GET /metrics`, the same figures in the Prometheus text format ([`metrics`]).
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
use crate::scoreboard::{Scoreboard, WorkerSnapshot, WorkerStatus};
use crate::sys::prometheus::{Kind, MetricsText, PerItem};
use crate::sys::stats_server::{self, Format, Incident};
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

/// What a stats client asked for: the JSON document or the Prometheus [`metrics`].
pub(crate) fn answer(
    format: Format,
    config: &Config,
    listeners: &[Listener],
    scoreboard: &Scoreboard,
    live_slots: &[crate::scoreboard::SlotId],
) -> Vec<u8> {
    match format {
        Format::Json => document(config, listeners, scoreboard, live_slots).into_bytes(),
        Format::Prometheus => metrics(config, listeners, scoreboard, live_slots),
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
    let workers: Vec<Value> = worker_snapshots(scoreboard, live_slots)
        .iter()
        .map(worker_json)
        .collect();
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

/// The live workers, by id as uWSGI lists them; a replacement and the worker it replaces
/// share an id (the older slot first).
fn worker_snapshots(
    scoreboard: &Scoreboard,
    live_slots: &[crate::scoreboard::SlotId],
) -> Vec<WorkerSnapshot> {
    let mut snapshots: Vec<WorkerSnapshot> = live_slots
        .iter()
        .filter_map(|&slot| scoreboard.snapshot(slot))
        .collect();
    snapshots.sort_by_key(|w| (w.id, w.slot));
    snapshots
}

/// The stats of an instance in the Prometheus text format (`GET /metrics` with `stats-http`).
pub(crate) fn metrics(
    config: &Config,
    listeners: &[Listener],
    scoreboard: &Scoreboard,
    live_slots: &[crate::scoreboard::SlotId],
) -> Vec<u8> {
    let sockets: Vec<SocketQueue> = listeners
        .iter()
        .map(|l| {
            let (queue, max_queue) = crate::sys::fd::listen_queue(l).unzip();
            SocketQueue {
                name: l.local_addr().to_string(),
                queue,
                max_queue,
            }
        })
        .collect();
    let workers = one_per_worker(worker_snapshots(scoreboard, live_slots));
    render_metrics(config.processes, &sockets, &workers)
}

/// The accept queue of one listening socket (`None` where Linux does not report it: a unix
/// socket).
#[derive(Debug)]
struct SocketQueue {
    name: String,
    queue: Option<u32>,
    max_queue: Option<u32>,
}

/// One snapshot per worker id (sorted by id), so that no two samples share their labels:
/// while a replacement boots next to the worker it replaces, the one not on its way out.
fn one_per_worker(snapshots: Vec<WorkerSnapshot>) -> Vec<WorkerSnapshot> {
    let leaving =
        |w: &WorkerSnapshot| matches!(w.status, WorkerStatus::Draining | WorkerStatus::Dead);
    let mut kept: Vec<WorkerSnapshot> = Vec::with_capacity(snapshots.len());
    for w in snapshots {
        match kept.last_mut() {
            Some(last) if last.id == w.id => {
                if leaving(last) || !leaving(&w) {
                    *last = w;
                }
            }
            _ => kept.push(w),
        }
    }
    kept
}

/// Every per-worker family but `rcontainer_worker_info`, labelled `worker="ID"`.
const WORKER_METRICS: [PerItem<WorkerSnapshot>; 11] = [
    (
        "rcontainer_worker_requests_total",
        Kind::Counter,
        "Requests a worker answered (counted per slot: it survives respawns).",
        |w| w.requests as f64,
    ),
    (
        "rcontainer_worker_exceptions_total",
        Kind::Counter,
        "Requests of a worker whose handler failed (a panic, an exception, no answer).",
        |w| w.exceptions as f64,
    ),
    (
        "rcontainer_worker_harakiri_total",
        Kind::Counter,
        "Requests of a worker cancelled by harakiri.",
        |w| w.harakiri_count as f64,
    ),
    (
        "rcontainer_worker_write_errors_total",
        Kind::Counter,
        "Answers of a worker cut short because the client went away.",
        |w| w.write_errors as f64,
    ),
    (
        "rcontainer_worker_transmitted_bytes_total",
        Kind::Counter,
        "Bytes a worker wrote to its clients.",
        |w| w.tx as f64,
    ),
    (
        "rcontainer_worker_respawns_total",
        Kind::Counter,
        "Times a worker was spawned again after its first spawn.",
        |w| w.respawn_count as f64,
    ),
    (
        "rcontainer_worker_rss_bytes",
        Kind::Gauge,
        "A worker's resident memory, as last sampled by the master (0 if never).",
        |w| w.rss as f64,
    ),
    (
        "rcontainer_worker_avg_response_time_seconds",
        Kind::Gauge,
        "A worker's running average response time (the stats JSON's avg_rt).",
        |w| w.avg_rt_us as f64 / 1e6,
    ),
    (
        "rcontainer_worker_busy_cores",
        Kind::Gauge,
        "Cores of a worker running a request now.",
        |w| w.cores.iter().filter(|c| c.in_request).count() as f64,
    ),
    (
        "rcontainer_worker_accepting",
        Kind::Gauge,
        "1 while a worker is in its accept loop, else 0.",
        |w| f64::from(u8::from(w.is_accepting())),
    ),
    (
        "rcontainer_worker_start_time_seconds",
        Kind::Gauge,
        "Unix time of a worker's last spawn (0 if never).",
        |w| w.last_spawn_secs as f64,
    ),
];

/// The text of [`metrics`] from what was read (apart, for the unit tests).
fn render_metrics(
    processes: usize,
    sockets: &[SocketQueue],
    workers: &[WorkerSnapshot],
) -> Vec<u8> {
    let mut m = MetricsText::new();
    m.build_info();
    m.family(
        "rcontainer_workers",
        Kind::Gauge,
        "Workers configured (processes).",
    )
    .sample(&[], processes as f64);
    m.family(
        "rcontainer_listen_queue",
        Kind::Gauge,
        "Connections waiting in a listening socket's accept queue (TCP sockets only).",
    );
    for s in sockets {
        if let Some(queue) = s.queue {
            m.sample(&[("socket", &s.name)], f64::from(queue));
        }
    }
    m.family(
        "rcontainer_listen_queue_max",
        Kind::Gauge,
        "The accept queue a listening socket may hold (its backlog; TCP sockets only).",
    );
    for s in sockets {
        if let Some(max) = s.max_queue {
            m.sample(&[("socket", &s.name)], f64::from(max));
        }
    }
    let ids: Vec<String> = workers.iter().map(|w| w.id.0.to_string()).collect();
    m.family(
        "rcontainer_worker_info",
        Kind::Gauge,
        "A worker's process id and uWSGI status (idle, busy, pause) as labels (always 1).",
    );
    for (w, id) in workers.iter().zip(&ids) {
        let pid = w.pid.to_string();
        m.sample(
            &[("worker", id), ("pid", &pid), ("status", w.stats_status())],
            1.0,
        );
    }
    let by_id = ids.iter().map(String::as_str).zip(workers);
    m.families_per_item(&WORKER_METRICS, "worker", by_id);
    m.into_bytes()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::scoreboard::{SlotId, WorkerId};

    /// Workers 1 (two requests, one running on core 1) and 2 (idle), spawned at `1_700_000_000`.
    fn two_workers() -> Vec<WorkerSnapshot> {
        let board = Scoreboard::new(4, 2).expect("scoreboard");
        for (slot, worker, pid) in [(1, 1, 101), (2, 2, 102)] {
            board.record_spawn(
                SlotId(slot),
                WorkerId(worker),
                pid,
                Duration::from_secs(1_700_000_000),
            );
            let slot = board.slot(SlotId(slot)).expect("slot");
            slot.set_status(WorkerStatus::Accepting);
        }
        let first = board.slot(SlotId(1)).expect("slot");
        for _ in 0..2 {
            first.begin_request(0, "GET", "/");
            first.end_request(0, 10, Duration::from_micros(2000));
        }
        first.begin_request(1, "GET", "/slow");
        worker_snapshots(&board, &[SlotId(2), SlotId(1)])
    }

    fn render(workers: &[WorkerSnapshot]) -> String {
        let sockets = [
            SocketQueue {
                name: "127.0.0.1:8000".into(),
                queue: Some(3),
                max_queue: Some(100),
            },
            SocketQueue {
                name: "/run/app.sock".into(),
                queue: None,
                max_queue: None,
            },
        ];
        String::from_utf8(render_metrics(2, &sockets, workers)).expect("UTF-8")
    }

    #[test]
    fn every_family_has_help_and_type_lines_and_one_sample_per_worker() {
        let text = render(&two_workers());
        for (name, _, _, _) in WORKER_METRICS {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}:\n{text}"
            );
            for worker in ["1", "2"] {
                let prefix = format!("{name}{{worker=\"{worker}\"}} ");
                assert_eq!(
                    text.lines().filter(|l| l.starts_with(&prefix)).count(),
                    1,
                    "{prefix}:\n{text}"
                );
            }
        }
        assert!(text.contains("rcontainer_worker_requests_total{worker=\"1\"} 2\n"));
        assert!(text.contains("rcontainer_worker_requests_total{worker=\"2\"} 0\n"));
        assert!(text.contains("rcontainer_worker_busy_cores{worker=\"1\"} 1\n"));
        assert!(
            text.contains("rcontainer_worker_avg_response_time_seconds{worker=\"1\"} 0.0015\n")
        );
        assert!(text.contains("rcontainer_worker_accepting{worker=\"2\"} 1\n"));
        assert!(
            text.contains("rcontainer_worker_info{worker=\"1\",pid=\"101\",status=\"busy\"} 1\n")
        );
        assert!(text.contains("rcontainer_worker_start_time_seconds{worker=\"2\"} 1700000000\n"));
        assert!(text.contains(&format!(
            "rcontainer_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("rcontainer_workers 2\n"));
    }

    #[test]
    fn the_listen_queue_is_given_per_tcp_socket_and_left_out_where_unknown() {
        let text = render(&[]);
        assert!(text.contains("rcontainer_listen_queue{socket=\"127.0.0.1:8000\"} 3\n"));
        assert!(text.contains("rcontainer_listen_queue_max{socket=\"127.0.0.1:8000\"} 100\n"));
        assert!(!text.contains("/run/app.sock"), "{text}");
        assert!(text.contains("# TYPE rcontainer_listen_queue gauge\n"));
    }

    #[test]
    fn a_replacement_and_the_worker_it_replaces_give_one_sample_the_replacements() {
        let mut workers = two_workers();
        let mut replacement = workers[0].clone();
        replacement.slot = SlotId(3);
        replacement.pid = 201;
        replacement.status = WorkerStatus::Booting;
        workers[0].status = WorkerStatus::Draining;
        workers.insert(1, replacement);
        let kept = one_per_worker(workers);
        let pids: Vec<i32> = kept.iter().map(|w| w.pid).collect();
        assert_eq!(pids, [201, 102]);
        let text = render(&kept);
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("rcontainer_worker_requests_total{worker=\"1\"}"))
                .count(),
            1
        );
    }
}
