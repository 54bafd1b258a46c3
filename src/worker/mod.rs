//! A worker process: one thread, one coroutine runtime, every configured listener.
//!
//! Three budgets keep slow clients and busy handlers from starving each other:
//! - **Connections** (`worker-connections`): an acceptor coroutine per listener takes a
//!   connection slot before it accepts. When every slot is taken the acceptors park, the
//!   listeners are no longer polled, and the kernel's backlog holds new clients (never a spin).
//!   The runtime reserves a coroutine for every slot, so an accepted connection always gets
//!   one: it is never accepted and then reset.
//! - **Cores** (`async`): each connection runs on its own coroutine ([`conn`]), speaking the
//!   listener's protocol ([`http`] or [`uwsgi`]). It reads a request head (or uwsgi packet)
//!   without a core, takes one once the head is complete, right before the app runs, and gives
//!   it back once the answer is sent (that lifecycle, the same for both protocols, is
//!   [`exchange`]'s). Idle keep-alive connections and clients still sending their heads hold
//!   none; a head must be complete within `http-header-timeout` of its first byte and a body
//!   must keep to `body-min-rate` ([`body`]), both answered 408.
//! - **Tasks** (`spawn-limit`): what handlers start with `rt::spawn`, a budget of the runtime
//!   of its own.
//!
//! The loop turns the runtime and, between turns, looks at the signal flags: TERM drains
//! (stop accepting, close idle keep-alive connections, let requests in flight finish within
//! `worker-reload-mercy`), INT and QUIT exit at once, USR1 reopens the log files, HUP is
//! ignored. A worker whose master died (its parent is no longer the master that forked it:
//! the TERM came from `PR_SET_PDEATHSIG`) closes every listener at once, so the port is free
//! for a new instance, serves nothing queued, and drains what is in flight the same way.
//!
//! It must not know about other workers or the master's decisions: it serves until told to
//! stop and returns an exit code.

mod body;
mod conn;
mod exchange;
mod http;
mod pool;
#[cfg(feature = "python")]
mod python;
mod reqlog;
mod uwsgi;

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::api::{AppRegistry, RouteSettings, Router};
use crate::config::Config;
use crate::config::value::AllowedPeer;
use crate::coro::{
    self, Addr, CancelReason, CoListener, CoStream, JoinHandle, Permit, Runtime, RuntimeConfig,
    Semaphore,
};
use crate::exit;
use crate::net::listener::{Listener, Protocol};
use crate::proto::Limits;
use crate::scoreboard::{WorkerSlot, WorkerStatus};
use crate::sys::signal::{Signal, SignalSource};
use body::BodyPace;
use conn::Cores;

/// The apps a worker serves, as the master hands them through without looking inside.
pub(crate) use crate::api::AppRegistry as Apps;
pub(crate) use conn::ConnTable;

/// Longest the loop sleeps between checks of the signal flags when nothing happens.
const IDLE_TURN: Duration = Duration::from_millis(500);
/// While draining: how long an idle keep-alive connection may still bring a request.
const IDLE_GRACE: Duration = Duration::from_secs(1);
/// `worker-connections = 0` and `spawn-limit = 0`: this many per core, and at least the floor.
const AUTO_PER_CORE: usize = 4;
const AUTO_FLOOR: usize = 1024;

/// What a worker needs to serve.
#[derive(Debug)]
pub(crate) struct WorkerSpec<'a> {
    /// 1-based worker id.
    pub(crate) id: u32,
    pub(crate) config: &'a Config,
    /// The listening sockets, owned: a worker whose master died closes every copy it has.
    pub(crate) listeners: Vec<Listener>,
    pub(crate) apps: &'a AppRegistry,
    /// This worker's scoreboard slot (absent when run without a master, in tests).
    pub(crate) slot: Option<WorkerSlot>,
}

/// Everything the connection coroutines of one worker share (one thread: `Rc`, `Cell`).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) worker_id: u32,
    pub(crate) router: Router,
    pub(crate) limits: Limits,
    /// `socket-timeout`: idle read/write timeout on client sockets.
    pub(crate) socket_timeout: Option<Duration>,
    /// `http-header-timeout`: a whole request head (or uwsgi packet) from its first byte.
    pub(crate) header_timeout: Option<Duration>,
    /// `socket-timeout` and `body-min-rate`: how slowly a request body may come.
    pub(crate) body_pace: BodyPace,
    /// The `async` cores: held from a complete request head to the end of its answer.
    pub(crate) cores: Cores,
    /// `harakiri`: per-request deadline.
    pub(crate) harakiri: Option<Duration>,
    pub(crate) allow_from: Vec<AllowedPeer>,
    pub(crate) request_log: reqlog::RequestLog,
    /// Set once the worker drains: connections close after their current request.
    pub(crate) draining: Cell<bool>,
    /// Acceptors still serving the connections queued when the drain began.
    pub(crate) sweepers: Cell<usize>,
    pub(crate) conns: RefCell<ConnTable>,
    /// Requests this worker has answered (the request log's `req: N`).
    pub(crate) requests: Cell<u64>,
    pub(crate) slot: Option<WorkerSlot>,
    /// Buffers and request storage, lent to connections while they use them.
    pub(crate) pools: pool::Pools,
    pub(crate) date: http::HttpDate,
}

impl Shared {
    /// Publishes that `core` started `method uri` (stats, USR2, the watchdog's report).
    pub(crate) fn begin_request(&self, core: usize, method: &str, uri: &str) {
        if let Some(slot) = &self.slot {
            slot.begin_request(core, method, uri);
        }
    }

    /// Publishes that `core` finished a request of `tx` bytes in `duration`.
    pub(crate) fn end_request(&self, core: usize, tx: u64, duration: Duration) {
        if let Some(slot) = &self.slot {
            slot.end_request(core, tx, duration);
        }
    }

    /// Counts a request answered by the handler (or by a 500/504 in its place).
    pub(crate) fn count_request(&self) {
        self.requests.set(self.requests.get() + 1);
    }

    pub(crate) fn count_exception(&self) {
        if let Some(slot) = &self.slot {
            slot.count_exception();
        }
    }

    pub(crate) fn count_harakiri(&self) {
        if let Some(slot) = &self.slot {
            slot.count_harakiri();
        }
    }

    /// Counts an answer cut short because the client went away (stats `write_errors`).
    pub(crate) fn count_write_error(&self) {
        if let Some(slot) = &self.slot {
            slot.count_write_error();
        }
    }
}

/// What the signals received so far ask of the worker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Stop {
    #[default]
    No,
    /// TERM: drain, then exit.
    Drain,
    /// INT or QUIT: exit now.
    Now,
}

impl Stop {
    /// Folds newly received signals into the current decision (never downgrades).
    fn after(self, signals: &[Signal]) -> Stop {
        signals.iter().fold(self, |stop, signal| match signal {
            Signal::Int | Signal::Quit => Stop::Now,
            Signal::Term if stop == Stop::No => Stop::Drain,
            _ => stop,
        })
    }
}

/// Runs worker `spec.id` until it is told to stop; returns the process exit code.
pub(crate) fn run(spec: WorkerSpec<'_>) -> u8 {
    crate::log::set_role_worker(spec.id);
    #[cfg(feature = "python")]
    if let Some(app) = spec.config.python.as_ref().map(python::app_spec) {
        return python::run(spec, app);
    }
    match serve(spec) {
        Ok(code) => code,
        Err(e) => {
            log::error!("worker failed to start: {e}");
            exit::WORKER_BOOT
        }
    }
}

fn serve(spec: WorkerSpec<'_>) -> io::Result<u8> {
    let config = spec.config;
    let listeners = spec.listeners;
    // The master that forked this worker; a TERM after it died comes from PR_SET_PDEATHSIG.
    let master = parent_pid();
    let mut signals = SignalSource::install_worker()?;
    // The CAs the handlers' https:// requests trust: the system store and client-ca-file.
    crate::client::configure_tls(config.client_ca_file.as_deref())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("client-ca-file: {e}")))?;
    let router = Router::new(spec.apps, &route_settings(config))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let cores = config.async_cores;
    let connections = auto_budget(config.worker_connections, cores);
    let tasks = auto_budget(config.spawn_limit, cores);
    let mut runtime = Runtime::new(RuntimeConfig {
        stack_size: config.stack_size,
        // A coroutine for every connection slot and every acceptor: what is accepted always
        // gets its coroutine, whatever the handlers spawn (that is `max_tasks`).
        max_coroutines: connections + listeners.len(),
        max_tasks: tasks,
        offload_threads: config.offload_threads,
    })?;
    let socket_timeout = non_zero(config.socket_timeout);
    let shared = Rc::new(Shared {
        worker_id: spec.id,
        router,
        limits: Limits {
            buffer_size: config.buffer_size as usize,
            limit_post: (config.limit_post > 0).then_some(config.limit_post),
            ..Limits::default()
        },
        socket_timeout,
        header_timeout: non_zero(config.http_header_timeout),
        body_pace: BodyPace {
            grace: socket_timeout,
            min_rate: (config.body_min_rate > 0).then_some(config.body_min_rate),
        },
        cores: Cores::new(cores),
        harakiri: non_zero(config.harakiri),
        allow_from: config.uwsgi_allow_from.clone(),
        request_log: reqlog::RequestLog::from_config(config),
        draining: Cell::new(false),
        sweepers: Cell::new(0),
        conns: RefCell::new(ConnTable::default()),
        requests: Cell::new(0),
        slot: spec.slot.clone(),
        pools: pool::Pools::new(cores),
        date: http::HttpDate::default(),
    });
    let connection_slots = Rc::new(Semaphore::new(connections));
    let mut acceptors = start_acceptors(&runtime, &listeners, &shared, &connection_slots)?;
    let slot = spec.slot.clone();
    if let Some(slot) = &slot {
        slot.heartbeat();
        slot.set_status(WorkerStatus::Accepting);
    }
    log::info!(
        "worker ready id={} pid={} cores={cores} connections={connections} tasks={tasks} {}",
        spec.id,
        std::process::id(),
        runtime.stack_summary()
    );

    // A signal interrupts the poll, so the flags are looked at as soon as one arrives.
    let mut stop = Stop::No;
    let mut paused = false;
    while stop == Stop::No {
        runtime.turn(Some(IDLE_TURN))?;
        let received = signals.drain()?;
        reopen_logs_on_usr1(&shared, &received);
        stop = stop.after(&received);
        let Some(slot) = &slot else {
            continue;
        };
        slot.heartbeat();
        if slot.pause_requested() != paused {
            paused = !paused;
            if paused {
                acceptors.drain(..).for_each(|a| a.abort());
                slot.set_status(WorkerStatus::Paused);
                log::info!("worker paused id={}", spec.id);
            } else {
                acceptors = start_acceptors(&runtime, &listeners, &shared, &connection_slots)?;
                slot.set_status(WorkerStatus::Accepting);
                log::info!("worker resumed id={}", spec.id);
            }
        }
    }
    if stop == Stop::Now {
        log::info!("worker exiting now id={}", spec.id);
        return Ok(exit::OK);
    }
    // The acceptors hold copies of their own; the port stays open through them (and the
    // master's) until they stop.
    drop(listeners);
    drain(
        &mut runtime,
        &shared,
        acceptors,
        master,
        config.worker_reload_mercy,
        &mut signals,
    )
}

/// USR1, forwarded by the master once it reopened its own log: this worker opens its log files
/// again by name (after a rotation its descriptors still point at the moved files).
fn reopen_logs_on_usr1(shared: &Shared, received: &[Signal]) {
    if received.contains(&Signal::Usr1) {
        shared.request_log.reopen();
        log::info!("worker reopened logs id={}", shared.worker_id);
    }
}

/// `0` means automatic: [`AUTO_PER_CORE`] per core, at least [`AUTO_FLOOR`].
fn auto_budget(configured: usize, cores: usize) -> usize {
    match configured {
        0 => cores.saturating_mul(AUTO_PER_CORE).max(AUTO_FLOOR),
        n => n,
    }
}

fn parent_pid() -> i32 {
    nix::unistd::getppid().as_raw()
}

/// What the router and the configured apps need from the configuration.
/// Builds the routes a worker would build, so that what they need (`fetch-url` for `fetch`, a
/// readable `static-map` directory) is checked before anything starts.
pub(crate) fn check_routes(config: &Config, apps: &Apps) -> Result<(), String> {
    Router::new(apps, &route_settings(config)).map(drop)
}

fn route_settings(config: &Config) -> RouteSettings {
    RouteSettings {
        module: config.module.clone(),
        mounts: (config.mounts.iter())
            .map(|m| (m.prefix.clone(), m.target.clone()))
            .collect(),
        static_maps: (config.static_maps.iter())
            .map(|m| (m.prefix.clone(), m.target.clone().into()))
            .collect(),
        options: config.app_options.clone(),
    }
}

/// Stops accepting, closes idle connections and lets the requests in flight finish until
/// `mercy` runs out; what is left then is dropped (its sockets close).
///
/// The acceptors first serve what already waits in the kernel's backlog, unless the master
/// (pid `master`) is gone: then nobody will ever accept on these sockets again, so the
/// acceptors are dropped at once and with them the worker's last listener fds, which frees the
/// port for whoever starts next. That is checked again at every turn, for a master that dies
/// while the worker drains.
fn drain(
    runtime: &mut Runtime,
    shared: &Shared,
    acceptors: Vec<JoinHandle<()>>,
    master: i32,
    mercy: Duration,
    signals: &mut SignalSource,
) -> io::Result<u8> {
    let in_flight = shared.conns.borrow().len();
    let mut acceptors = acceptors;
    let orphaned = || parent_pid() != master;
    if orphaned() {
        close_listeners(shared, &mut acceptors, master);
    }
    log::info!(
        "worker draining id={} connections={in_flight}",
        shared.worker_id
    );
    shared.draining.set(true);
    // Acceptors stop waiting for new connections and sweep what is already queued.
    for acceptor in &acceptors {
        acceptor.cancel(CancelReason::Shutdown);
    }
    let start = Instant::now();
    let deadline = start + mercy;
    // Keep-alive connections get a moment to send the request they may have on the way (it
    // is answered with `Connection: close`); closing them at once would race with it and the
    // client would see a reset. Idle ones are closed after that.
    let idle_deadline = start + IDLE_GRACE.min(mercy);
    let mut idle_closed = false;
    let mut stop = Stop::Drain;
    let busy = || !shared.conns.borrow().is_empty() || shared.sweepers.get() > 0;
    while busy() && stop != Stop::Now {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if !acceptors.is_empty() && orphaned() {
            close_listeners(shared, &mut acceptors, master);
        }
        if !idle_closed && now >= idle_deadline {
            for task in shared.conns.borrow().idle_tasks() {
                coro::cancel(task, CancelReason::Shutdown);
            }
            idle_closed = true;
        }
        let next = if idle_closed { deadline } else { idle_deadline };
        runtime.turn(Some((next - now).min(IDLE_TURN)))?;
        let received = signals.drain()?;
        reopen_logs_on_usr1(shared, &received);
        stop = stop.after(&received);
        if let Some(slot) = &shared.slot {
            slot.heartbeat();
        }
    }
    let left = shared.conns.borrow().len();
    if left > 0 {
        // Dropping the runtime unwinds what is left: destructors run, sockets close.
        log::warn!(
            "worker stops with requests in flight id={} dropped={left} mercy={}s",
            shared.worker_id,
            mercy.as_secs()
        );
    }
    log::info!("worker drained id={}", shared.worker_id);
    Ok(exit::OK)
}

/// The master is gone: drops the acceptors (and so the worker's last fds of the listening
/// sockets) without serving their backlog.
fn close_listeners(shared: &Shared, acceptors: &mut Vec<JoinHandle<()>>, master: i32) {
    for acceptor in acceptors.drain(..) {
        acceptor.abort();
    }
    log::warn!(
        "worker orphaned id={}: master pid={master} is gone; listeners closed, finishing \
         connections={} within worker-reload-mercy",
        shared.worker_id,
        shared.conns.borrow().len()
    );
}

/// One acceptor coroutine per listener.
fn start_acceptors(
    runtime: &Runtime,
    listeners: &[Listener],
    shared: &Rc<Shared>,
    slots: &Rc<Semaphore>,
) -> io::Result<Vec<JoinHandle<()>>> {
    listeners
        .iter()
        .map(|listener| {
            let co_listener = CoListener::from_fd(listener.try_clone_fd()?)?;
            let protocol = listener.protocol();
            let shared = Rc::clone(shared);
            let slots = Rc::clone(slots);
            runtime.spawn(move || accept_loop(co_listener, protocol, shared, slots))
        })
        .collect()
}

/// Accepts on one listener while a connection slot is free; each connection runs on its own
/// coroutine holding the slot until it closes. When the worker drains, the acceptor is
/// cancelled and then [`sweep_backlog`]s: what already waits in the kernel is still served.
fn accept_loop(listener: CoListener, protocol: Protocol, shared: Rc<Shared>, slots: Rc<Semaphore>) {
    loop {
        // Parks while every slot is taken: the listener is then not polled at all.
        let Ok(slot) = slots.acquire() else {
            break; // cancelled: the worker drains
        };
        match listener.accept() {
            Ok((stream, peer)) => start_connection(stream, peer, protocol, &shared, slot),
            Err(_) if shared.draining.get() => break,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning on the error.
                log::warn!("accept failed: {e}");
                coro::sleep(Duration::from_millis(100));
            }
        }
    }
    if shared.draining.get() {
        coro::take_cancel();
        sweep_backlog(&listener, protocol, &shared, &slots);
    }
}

/// Serves the connections already queued on `listener` when the worker started draining:
/// they were accepted by the kernel, and a shutdown must not reset them. Stops at the first
/// accept that would wait.
fn sweep_backlog(
    listener: &CoListener,
    protocol: Protocol,
    shared: &Rc<Shared>,
    slots: &Semaphore,
) {
    // Counted while it runs, even when it is dropped midway (the master died meanwhile).
    struct Sweeping<'s>(&'s Shared);
    impl Drop for Sweeping<'_> {
        fn drop(&mut self) {
            self.0.sweepers.set(self.0.sweepers.get() - 1);
        }
    }
    shared.sweepers.set(shared.sweepers.get() + 1);
    let _sweeping = Sweeping(shared);
    loop {
        // Waits for a slot (connections closing free them): the queued client waits anyway.
        let Ok(slot) = slots.acquire() else {
            break;
        };
        match coro::timeout(Duration::ZERO, || listener.accept()) {
            Ok(Ok((stream, peer))) => start_connection(stream, peer, protocol, shared, slot),
            _ => break, // nothing queued any more
        }
    }
}

/// Runs an accepted connection on its own coroutine, holding its connection `slot` until it
/// closes. The coroutine comes from the budget reserved for connection slots.
fn start_connection(
    stream: CoStream,
    peer: Addr,
    protocol: Protocol,
    shared: &Rc<Shared>,
    slot: Permit,
) {
    if protocol == Protocol::Uwsgi && !conn::peer_allowed(&peer, &shared.allow_from) {
        log::warn!("uwsgi connection refused peer={peer} (not in uwsgi-allow-from)");
        return;
    }
    let shared = Rc::clone(shared);
    let spawned = coro::spawn_owned(move || {
        let _slot = slot;
        conn::serve_connection(stream, peer, protocol, &shared);
    });
    if let Err(e) = spawned {
        log::error!("cannot start a coroutine for a connection: {e}");
    }
}

fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_budgets_are_four_per_core_and_at_least_1024() {
        assert_eq!(auto_budget(0, 100), 1024);
        assert_eq!(auto_budget(0, 1000), 4000);
        assert_eq!(auto_budget(0, usize::MAX), usize::MAX);
        assert_eq!(
            auto_budget(7, 1000),
            7,
            "a configured budget is taken as it is"
        );
    }

    #[test]
    fn term_drains_and_int_or_quit_exit_now_whatever_came_before() {
        assert_eq!(Stop::No.after(&[]), Stop::No);
        assert_eq!(Stop::No.after(&[Signal::Usr1, Signal::Tstp]), Stop::No);
        assert_eq!(Stop::No.after(&[Signal::Term]), Stop::Drain);
        assert_eq!(Stop::No.after(&[Signal::Term, Signal::Int]), Stop::Now);
        assert_eq!(Stop::Drain.after(&[Signal::Quit]), Stop::Now);
        assert_eq!(Stop::Now.after(&[Signal::Term]), Stop::Now);
        assert_eq!(Stop::Drain.after(&[Signal::Term]), Stop::Drain);
    }
}
