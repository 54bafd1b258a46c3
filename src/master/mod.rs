//! The master: binds the listeners once, forks the workers and supervises them.
//!
//! One thread and one `mio::Poll`: the signal pipe, the master FIFO and the stats listener
//! wake it; every [`TICK`] it also reaps children and runs the named checks (readiness,
//! replacements, mercy, watchdog, recycling, touch files). Signals, FIFO letters and touch files
//! become [`Action`]s ([`action`]); exits become [`Decision`]s ([`workers`]). The master never
//! runs a handler.
//!
//! A graceful reload re-executes the master in place: same pid, listening sockets handed over
//! through the environment (`RCONTAINER_FDS`), the INI and the binary read again. The new image
//! adopts the previous workers (`RCONTAINER_OLD_WORKERS`), starts its own, and tells each old
//! worker to drain only once its replacement accepts: no request is refused or dropped.

pub(crate) mod action;
mod stats;
mod touch;
pub(crate) mod workers;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::config::Config;
use crate::exit;
use crate::net::addr::SocketSpec;
use crate::net::listener::{Listener, Protocol, UnixOptions};
use crate::scoreboard::{Scoreboard, WorkerId, WorkerStatus};
use crate::sys::daemon::{self, DaemonReady};
use crate::sys::fd::{self, InheritedFd};
use crate::sys::fifo::MasterFifo;
use crate::sys::notify::Notifier;
use crate::sys::process::{self, ExitStatus, Forked, OsSignal, Pid};
use crate::sys::signal::SignalSource;
use crate::sys::{clock, memory, pidfile, privilege, rlimit};
use crate::worker::{self, Apps, WorkerSpec};
use action::Action;
use stats::StatsListener;
use touch::TouchFiles;
use workers::{Decision, Lifecycle, Worker, WorkerTable};

/// How often the master looks at its workers when nothing wakes it.
const TICK: Duration = Duration::from_millis(100);
/// How often worker memory is sampled (`reload-on-rss`, stats).
const MEMORY_SAMPLE: Duration = Duration::from_secs(1);
/// How often touch files are looked at.
const TOUCH_CHECK: Duration = Duration::from_secs(1);
/// After SIGABRT (watchdog) or during an immediate stop: how long before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);
/// The environment variable listing the previous image's worker pids across a re-exec.
const OLD_WORKERS_ENV: &str = "RCONTAINER_OLD_WORKERS";

/// The hand-over name of the stats listener across a re-exec.
const STATS_FD_NAME: &str = "stats";

const SIGNALS: Token = Token(0);
const FIFO: Token = Token(1);
const STATS: Token = Token(2);

/// Checks that the configuration as it is on disk now still loads (before a reload).
pub(crate) type ConfigCheck<'a> = &'a dyn Fn() -> Result<(), Vec<String>>;

/// Runs one instance of `config` with `apps`; returns the process exit code.
pub(crate) fn run(config: Config, apps: &Apps, recheck: ConfigCheck<'_>) -> ExitCode {
    crate::log::set_role_master();
    let mut daemon = None;
    let code = match Master::start(config, apps, recheck, &mut daemon) {
        Ok(mut master) => {
            let code = master.supervise(&mut daemon);
            master.clean_up();
            code
        }
        Err(e) => {
            log::error!("{e}");
            exit::RUNTIME
        }
    };
    if let Some(daemon) = daemon {
        daemon.report_failure(code.max(exit::RUNTIME));
    }
    ExitCode::from(code)
}

/// How the master is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    /// TERM: workers drain until `deadline`, then are killed.
    Graceful { deadline: Instant },
    /// INT/QUIT: workers exit now; killed at `deadline` if they have not.
    Immediate { deadline: Instant },
}

struct Master<'a> {
    config: Config,
    apps: &'a Apps,
    recheck: ConfigCheck<'a>,
    /// The directory the command was started in: a re-exec returns there, so relative
    /// `--ini` paths still resolve after `chdir`.
    start_dir: PathBuf,
    listeners: Vec<Listener>,
    scoreboard: Scoreboard,
    workers: WorkerTable,
    /// How many workers should be serving (`processes`, moved by TTIN/TTOU).
    target: usize,
    poll: Poll,
    signals: SignalSource,
    fifo: Option<MasterFifo>,
    stats: Option<StatsListener>,
    touch: TouchFiles,
    notifier: Notifier,
    /// Old workers still to replace one at a time (chain reload, recycling).
    chain: VecDeque<Pid>,
    /// Slots to respawn once their back-off has passed.
    backoffs: Vec<(Instant, WorkerId)>,
    stopping: Option<Stopping>,
    /// Whether the ready line was written for the current generation.
    announced: bool,
    paused: bool,
    halt: Option<u8>,
    last_memory_sample: Instant,
    last_touch_check: Instant,
    jitter: Jitter,
}

impl<'a> Master<'a> {
    /// Everything before the first worker: logs, daemon, sockets, pidfile, privileges,
    /// scoreboard, signals, FIFO, stats; then the workers are forked.
    fn start(
        config: Config,
        apps: &'a Apps,
        recheck: ConfigCheck<'a>,
        daemon: &mut Option<DaemonReady>,
    ) -> io::Result<Master<'a>> {
        let start_dir = std::env::current_dir()?;
        let mut inherited = fd::adopt_inherited_fds(|key| std::env::var(key).ok())?;
        let reexec = inherited.iter().any(|f| f.origin == fd::FdOrigin::Reexec);
        let inherited_stats = take_named(&mut inherited, STATS_FD_NAME);
        if !reexec {
            set_up_output(&config, daemon)?;
        }
        if let Ok(change) = rlimit::raise_nofile_limit()
            && change.after != change.before
        {
            log::info!(
                "raised open files limit from {} to {}",
                change.before,
                change.after
            );
        }
        if let Some(mask) = config.umask {
            privilege::set_umask(mask);
        }
        let listeners = bind_listeners(&config, inherited)?;
        if let Some(dir) = &config.chdir {
            privilege::change_dir(dir)?;
        }
        for pair in &config.env {
            process::set_env(&pair.name, &pair.value);
        }
        if let Some(path) = &config.pidfile {
            pidfile::write_pidfile(path, process::current_pid()).map_err(|e| {
                io::Error::new(e.kind(), format!("pidfile {}: {e}", path.display()))
            })?;
        }
        let scoreboard = Scoreboard::new(
            Scoreboard::capacity_for(config.processes),
            config.async_cores,
        )?;
        let poll = Poll::new()?;
        let mut signals = SignalSource::install_master()?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let fifo = match &config.master_fifo {
            Some(path) => {
                let mut fifo = MasterFifo::create(path)?;
                poll.registry()
                    .register(&mut fifo, FIFO, Interest::READABLE)?;
                Some(fifo)
            }
            None => None,
        };
        let stats = match &config.stats {
            Some(spec) => {
                let mut listener = match inherited_stats {
                    Some(fd) => StatsListener::adopt(fd, spec)?,
                    None => StatsListener::bind(spec)?,
                };
                poll.registry()
                    .register(&mut listener, STATS, Interest::READABLE)?;
                log::info!("stats server on {}", listener.describe());
                Some(listener)
            }
            None => None,
        };
        // Everything that may need root is open now: sockets, pidfile, FIFO, stats.
        drop_privileges(&config)?;
        let now = Instant::now();
        let mut master = Master {
            touch: TouchFiles::from_config(&config),
            target: config.processes,
            config,
            apps,
            recheck,
            start_dir,
            listeners,
            scoreboard,
            workers: WorkerTable::default(),
            poll,
            signals,
            fifo,
            stats,
            notifier: Notifier::from_env().unwrap_or_default(),
            chain: VecDeque::new(),
            backoffs: Vec::new(),
            stopping: None,
            announced: false,
            paused: false,
            halt: None,
            last_memory_sample: now,
            last_touch_check: now,
            jitter: Jitter::seeded(),
        };
        let old = adopt_old_workers(&mut master.workers);
        master.spawn_generation(&old)?;
        Ok(master)
    }

    /// The loop: wait for an event or the tick, apply actions, reap, run the checks.
    fn supervise(&mut self, daemon: &mut Option<DaemonReady>) -> u8 {
        let mut events = Events::with_capacity(16);
        loop {
            if let Err(e) = self.poll.poll(&mut events, Some(TICK))
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("master poll failed: {e}");
                return exit::RUNTIME;
            }
            let mut actions = vec![Action::Reap];
            for event in &events {
                match event.token() {
                    SIGNALS => actions.extend(self.drain_signals()),
                    FIFO => actions.extend(self.read_fifo()),
                    STATS => self.serve_stats(),
                    _ => {}
                }
            }
            for action in actions {
                self.apply(action);
            }
            self.check_touch_files();
            self.check_backoffs();
            self.check_ready(daemon);
            self.check_chain();
            self.check_mercy();
            self.check_watchdog();
            self.check_recycling();
            self.check_memory();
            if let Some(code) = self.halt {
                self.stop_now();
                return code;
            }
            if self.stopping.is_some() && self.workers.is_empty() {
                return exit::OK;
            }
        }
    }

    fn drain_signals(&mut self) -> Vec<Action> {
        match self.signals.drain() {
            Ok(signals) => signals
                .into_iter()
                .flat_map(|s| action::from_signal(s).iter().copied())
                .collect(),
            Err(e) => {
                log::error!("reading signals failed: {e}");
                Vec::new()
            }
        }
    }

    fn read_fifo(&mut self) -> Vec<Action> {
        let Some(fifo) = &mut self.fifo else {
            return Vec::new();
        };
        match fifo.read_commands() {
            Ok(bytes) => bytes
                .into_iter()
                .filter_map(action::from_fifo_byte)
                .collect(),
            Err(e) => {
                log::error!("reading the master fifo failed: {e}");
                Vec::new()
            }
        }
    }

    fn serve_stats(&self) {
        let Some(stats) = &self.stats else {
            return;
        };
        let slots: Vec<WorkerId> = self.workers.iter().filter_map(|w| w.slot).collect();
        stats.serve_pending(self.config.stats_http, || {
            stats::document(&self.config, &self.listeners, &self.scoreboard, &slots)
        });
    }

    /// Applies one action (STYLE 1).
    fn apply(&mut self, action: Action) {
        if self.stopping.is_some() {
            match action {
                Action::Reap => self.reap(),
                Action::ImmediateStop => self.stop_now(),
                Action::ReopenLogs => self.reopen_logs(),
                _ => {} // nothing else while stopping
            }
            return;
        }
        match action {
            Action::Reap => self.reap(),
            Action::GracefulReload => self.reexec(false),
            Action::BrutalReload => self.reexec(true),
            Action::ReloadWorkers => self.reload_workers(),
            Action::BrutalReloadWorkers => self.kill_all(OsSignal::SIGKILL, true),
            Action::ChainReload => self.chain_reload(),
            Action::GracefulStop => self.stop_gracefully(),
            Action::ImmediateStop => self.stop_now(),
            Action::ReopenLogs => self.reopen_logs(),
            Action::LogStats => self.log_stats(),
            Action::LogCores => self.log_cores(),
            Action::AddWorker => self.add_worker(),
            Action::RemoveWorker => self.remove_worker(),
            Action::TogglePause => self.toggle_pause(),
        }
    }

    // ----- workers -------------------------------------------------------------------------

    /// Forks the first workers of this image; worker `i` replaces `old[i]` once it accepts.
    fn spawn_generation(&mut self, old: &[Pid]) -> io::Result<()> {
        for i in 0..self.target {
            let slot = self
                .free_slot()
                .ok_or_else(|| io::Error::other("no free worker slot"))?;
            self.spawn_worker(slot, old.get(i).copied())?;
        }
        // Old workers beyond the new count drain once everything is ready (`check_ready`).
        Ok(())
    }

    fn free_slot(&self) -> Option<WorkerId> {
        self.scoreboard.ids().find(|&id| {
            !self.workers.slot_in_use(id) && !self.backoffs.iter().any(|(_, s)| *s == id)
        })
    }

    /// Forks a worker into `slot`. In the child this never returns.
    fn spawn_worker(&mut self, slot: WorkerId, replaces: Option<Pid>) -> io::Result<Pid> {
        let master_pid = process::current_pid();
        // The slot is reset before the fork: the child may report `Accepting` before the
        // parent runs again, and that must not be overwritten.
        self.scoreboard.record_spawn(slot, 0, clock::unix_now());
        self.scoreboard.request_pause(slot, self.paused);
        match process::fork()? {
            Forked::Parent(pid) => {
                self.scoreboard.set_pid(slot, pid.as_raw());
                let max_requests = (self.config.max_requests > 0).then(|| {
                    self.config.max_requests + self.jitter.below(self.config.max_requests_delta)
                });
                self.workers.insert(Worker {
                    slot: Some(slot),
                    pid,
                    spawned: Instant::now(),
                    state: Lifecycle::Booting,
                    replaces,
                    max_requests,
                });
                log::info!("spawned worker id={} pid={pid}", slot.0);
                self.announced = false;
                Ok(pid)
            }
            Forked::Child => {
                // A worker must not outlive its master (killed with -9, say): it then drains.
                if process::set_parent_death_signal(OsSignal::SIGTERM, master_pid).is_err() {
                    process::exit_now(exit::RUNTIME);
                }
                let code = worker::run(WorkerSpec {
                    id: u32::from(slot.0),
                    config: &self.config,
                    listeners: &self.listeners,
                    apps: self.apps,
                    slot: self.scoreboard.slot(slot),
                });
                process::exit_now(code)
            }
        }
    }

    fn reap(&mut self) {
        let now = Instant::now();
        for (pid, status) in process::reap_children() {
            let known = self
                .workers
                .iter()
                .find(|w| w.pid == pid)
                .map(|w| (w.slot, w.state));
            let Some((slot, state)) = known else {
                log::info!("reaped unknown child pid={pid} status={status}");
                continue;
            };
            let decision = self
                .workers
                .on_exit(pid, status, now, self.stopping.is_some());
            if let Some(slot) = slot {
                let retired = !matches!(decision, Decision::Respawn(_) | Decision::Backoff(..));
                self.scoreboard.record_exit(slot, retired);
            }
            log_exit(slot, pid, status, state, decision);
            match decision {
                Decision::Nothing => {}
                Decision::Respawn(slot) => {
                    if let Err(e) = self.spawn_worker(slot, None) {
                        log::error!("respawn failed id={}: {e}; retrying", slot.0);
                        self.backoffs.push((now + Duration::from_secs(1), slot));
                    }
                }
                Decision::Backoff(slot, delay) => self.backoffs.push((now + delay, slot)),
                Decision::Halt(code) => {
                    log::error!(
                        "workers keep failing at boot ({} times in a row): giving up",
                        workers::MAX_BOOT_FAILURES
                    );
                    self.halt = Some(code);
                }
            }
        }
    }

    /// Sends `signal` to every worker; `respawn`: they are replaced when they exit.
    fn kill_all(&mut self, signal: OsSignal, respawn: bool) {
        let now = Instant::now();
        let pids: Vec<Pid> = self.workers.iter().map(|w| w.pid).collect();
        for pid in pids {
            let _ = process::send_signal(pid, signal);
            if let Some(worker) = self.workers.get_mut(pid) {
                worker.state = Lifecycle::Killing {
                    since: now,
                    respawn: respawn && worker.state.is_serving() && worker.slot.is_some(),
                };
            }
        }
    }

    /// Tells `pid` to drain (TERM); it leaves the serving count.
    fn retire(&mut self, pid: Pid, why: &str) {
        let Some(worker) = self.workers.get_mut(pid) else {
            return;
        };
        if !worker.state.is_serving() {
            return;
        }
        worker.state = Lifecycle::Retiring {
            since: Instant::now(),
        };
        if let Some(slot) = worker.slot {
            self.scoreboard.set_status(slot, WorkerStatus::Draining);
        }
        log::info!("retiring worker pid={pid} reason={why}");
        let _ = process::send_signal(pid, OsSignal::SIGTERM);
    }

    // ----- actions -------------------------------------------------------------------------

    /// Re-executes the master in place (graceful: old workers drain once replaced; brutal:
    /// they are killed first). A configuration that no longer loads keeps the old one running.
    fn reexec(&mut self, brutal: bool) {
        if let Err(errors) = (self.recheck)() {
            log::error!(
                "reload refused, the configuration does not load; still running the old one:\n{}",
                errors.join("\n")
            );
            return;
        }
        log::info!("reloading: re-executing the master in place (brutal={brutal})");
        let _ = self.notifier.reloading();
        if brutal {
            self.kill_all(OsSignal::SIGKILL, false);
            while !self.workers.is_empty() {
                self.reap();
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let names: Vec<String> = self.listeners.iter().map(Listener::handover_name).collect();
        let mut fds: Vec<(i32, &str)> = self
            .listeners
            .iter()
            .zip(&names)
            .map(|(l, name)| (l.as_raw_fd(), name.as_str()))
            .collect();
        // The stats socket too: a monitor polling it never sees a refused connection.
        if let Some(stats) = &self.stats {
            fds.push((stats.as_raw_fd(), STATS_FD_NAME));
        }
        for &(raw, name) in &fds {
            if let Err(e) = fd::set_cloexec_raw(raw, false) {
                log::error!("reload aborted: cannot hand over {name}: {e}");
                return;
            }
        }
        let mut env = fd::env_for_reexec(std::env::vars_os(), &fds, process::current_pid());
        let old: Vec<String> = self.workers.iter().map(|w| w.pid.to_string()).collect();
        env.retain(|(k, _)| k != OLD_WORKERS_ENV);
        env.push((OLD_WORKERS_ENV.into(), old.join(",").into()));
        let argv: Vec<OsString> = std::env::args_os().collect();
        let _ = std::env::set_current_dir(&self.start_dir);
        let error = process::exec_self(&argv, env);
        log::error!("reload failed: exec: {error}; still running the old master");
        for &(raw, _) in &fds {
            let _ = fd::set_cloexec_raw(raw, true);
        }
        if let Some(dir) = &self.config.chdir {
            let _ = privilege::change_dir(dir);
        }
    }

    /// Replaces every serving worker at once; each old one drains when its replacement accepts.
    fn reload_workers(&mut self) {
        let old: Vec<Pid> = self
            .workers
            .iter()
            .filter(|w| w.state.is_serving())
            .map(|w| w.pid)
            .collect();
        log::info!("reloading workers count={}", old.len());
        for pid in old {
            self.spawn_replacement(pid);
        }
    }

    /// Queues every serving worker for replacement, one at a time.
    fn chain_reload(&mut self) {
        let old: Vec<Pid> = self
            .workers
            .iter()
            .filter(|w| w.state.is_serving() && w.replaces.is_none())
            .map(|w| w.pid)
            .filter(|pid| !self.chain.contains(pid))
            .collect();
        log::info!("chain reload of {} workers", old.len());
        self.chain.extend(old);
    }

    fn spawn_replacement(&mut self, old: Pid) {
        match self.free_slot() {
            Some(slot) => {
                if let Err(e) = self.spawn_worker(slot, Some(old)) {
                    log::error!("cannot start a replacement for pid={old}: {e}");
                }
            }
            None => log::error!("no free worker slot to replace pid={old}"),
        }
    }

    fn stop_gracefully(&mut self) {
        let mercy = self.config.worker_reload_mercy;
        log::info!(
            "graceful shutdown: draining workers for up to {}s",
            mercy.as_secs()
        );
        let _ = self.notifier.stopping();
        self.stopping = Some(Stopping::Graceful {
            deadline: Instant::now() + mercy,
        });
        let pids: Vec<Pid> = self.workers.iter().map(|w| w.pid).collect();
        for pid in pids {
            self.retire(pid, "shutdown");
        }
    }

    fn stop_now(&mut self) {
        if matches!(self.stopping, Some(Stopping::Immediate { .. })) {
            return;
        }
        log::info!("immediate shutdown");
        let _ = self.notifier.stopping();
        self.stopping = Some(Stopping::Immediate {
            deadline: Instant::now() + KILL_GRACE,
        });
        self.kill_all(OsSignal::SIGINT, false);
    }

    fn reopen_logs(&mut self) {
        let file = self
            .config
            .logto
            .as_ref()
            .or(self.config.daemonize.as_ref());
        let Some(file) = file else {
            return;
        };
        match daemon::redirect_output(file) {
            Ok(()) => log::info!("reopened log file {}", file.display()),
            Err(e) => log::error!("cannot reopen log file {}: {e}", file.display()),
        }
    }

    fn log_stats(&self) {
        let (mut requests, mut exceptions, mut harakiri) = (0, 0, 0);
        for slot in self.workers.iter().filter_map(|w| w.slot) {
            if let Some(s) = self.scoreboard.snapshot(slot) {
                requests += s.requests;
                exceptions += s.exceptions;
                harakiri += s.harakiri_count;
            }
        }
        log::info!(
            "stats workers={} target={} requests={requests} exceptions={exceptions} harakiri={harakiri} paused={}",
            self.workers.serving(),
            self.target,
            self.paused
        );
    }

    fn log_cores(&self) {
        let now_ms = u64::try_from(clock::unix_now().as_millis()).unwrap_or(0);
        for worker in self.workers.iter() {
            let Some(snapshot) = worker.slot.and_then(|s| self.scoreboard.snapshot(s)) else {
                log::info!("worker pid={} (previous master image)", worker.pid);
                continue;
            };
            let busy: Vec<String> = snapshot
                .cores
                .iter()
                .filter(|c| c.in_request)
                .map(|c| {
                    let (method, uri) = c.method_and_uri().unwrap_or(("?", "?"));
                    let age = now_ms.saturating_sub(c.request_start_unix_ms);
                    format!("core {} {method} {uri} for {age} ms", c.id)
                })
                .collect();
            log::info!(
                "worker id={} pid={} requests={} busy cores={}: {}",
                snapshot.id.0,
                worker.pid,
                snapshot.requests,
                busy.len(),
                if busy.is_empty() {
                    "idle".to_string()
                } else {
                    busy.join("; ")
                }
            );
        }
    }

    fn add_worker(&mut self) {
        let Some(slot) = self.free_slot() else {
            log::warn!(
                "no more worker slots (at most {})",
                self.scoreboard.ids().count()
            );
            return;
        };
        self.target += 1;
        log::info!("adding a worker: target={}", self.target);
        if let Err(e) = self.spawn_worker(slot, None) {
            log::error!("cannot add a worker: {e}");
            self.target -= 1;
        }
    }

    fn remove_worker(&mut self) {
        if self.target <= 1 {
            log::info!("keeping the last worker");
            return;
        }
        self.target -= 1;
        let newest = self
            .workers
            .iter()
            .filter(|w| w.state.is_serving())
            .max_by_key(|w| w.slot)
            .map(|w| w.pid);
        if let Some(pid) = newest {
            self.retire(pid, "fewer workers");
        }
        log::info!("removing a worker: target={}", self.target);
    }

    fn toggle_pause(&mut self) {
        self.paused = !self.paused;
        for slot in self.workers.iter().filter_map(|w| w.slot) {
            self.scoreboard.request_pause(slot, self.paused);
        }
        log::info!(
            "{} accepting",
            if self.paused { "paused" } else { "resumed" }
        );
    }

    // ----- checks (one per tick) -----------------------------------------------------------

    /// Announces readiness once every serving worker accepts; retires replaced workers.
    fn check_ready(&mut self, daemon: &mut Option<DaemonReady>) {
        let booted: Vec<(Pid, Option<Pid>)> = self
            .workers
            .iter()
            .filter(|w| w.state == Lifecycle::Booting)
            .filter(|w| {
                w.slot
                    .and_then(|s| self.scoreboard.snapshot(s))
                    .is_some_and(|s| {
                        matches!(s.status, WorkerStatus::Accepting | WorkerStatus::Paused)
                    })
            })
            .map(|w| (w.pid, w.replaces))
            .collect();
        for (pid, replaces) in booted {
            self.workers.mark_accepting(pid);
            if let Some(old) = replaces {
                self.retire(old, "replaced");
            }
        }
        let all_accepting = self
            .workers
            .iter()
            .filter(|w| w.slot.is_some() && w.state.is_serving())
            .all(|w| w.state == Lifecycle::Accepting);
        if self.announced || !all_accepting || self.stopping.is_some() {
            return;
        }
        self.announced = true;
        // Old workers left over from a re-exec with fewer workers now drain too.
        let leftovers: Vec<Pid> = self
            .workers
            .iter()
            .filter(|w| w.slot.is_none() && w.state.is_serving() && !self.chain.contains(&w.pid))
            .map(|w| w.pid)
            .collect();
        for pid in leftovers {
            self.retire(pid, "replaced");
        }
        let urls: Vec<String> = self.listeners.iter().map(Listener::url).collect();
        log::info!(
            "rcontainer ready pid={} sockets={} version={} build={}",
            std::process::id(),
            urls.join(","),
            env!("CARGO_PKG_VERSION"),
            process::binary_identity()
        );
        let _ = self
            .notifier
            .ready(&format!("{} workers accepting", self.workers.serving()));
        if let Some(daemon) = daemon.take() {
            daemon.report_ready();
        }
    }

    /// Chain reload and recycling: one replacement at a time.
    fn check_chain(&mut self) {
        let replacing = self
            .workers
            .iter()
            .any(|w| w.state == Lifecycle::Booting && w.replaces.is_some());
        if replacing || self.stopping.is_some() {
            return;
        }
        while let Some(old) = self.chain.pop_front() {
            let serving = self
                .workers
                .iter()
                .any(|w| w.pid == old && w.state.is_serving());
            if serving {
                self.spawn_replacement(old);
                return;
            }
        }
    }

    /// Workers past their mercy are killed; killed ones that linger get SIGKILL.
    fn check_mercy(&mut self) {
        let now = Instant::now();
        let out_of_time = matches!(
            self.stopping,
            Some(Stopping::Graceful { deadline } | Stopping::Immediate { deadline }) if now >= deadline
        );
        let mercy = self.config.worker_reload_mercy;
        let overdue: Vec<(Pid, bool)> = self
            .workers
            .iter()
            .filter_map(|w| match w.state {
                Lifecycle::Retiring { since } if out_of_time || now - since >= mercy => {
                    Some((w.pid, false))
                }
                // SIGABRT or SIGINT was not enough (or a SIGKILL is still being delivered).
                Lifecycle::Killing { since, .. } if out_of_time || now - since >= KILL_GRACE => {
                    Some((w.pid, true))
                }
                _ => None,
            })
            .collect();
        for (pid, already_killing) in overdue {
            let _ = process::send_signal(pid, OsSignal::SIGKILL);
            if already_killing {
                continue;
            }
            log::warn!("worker pid={pid} still busy after the mercy: killing it");
            if let Some(worker) = self.workers.get_mut(pid) {
                worker.state = Lifecycle::Killing {
                    since: now,
                    respawn: false,
                };
            }
        }
    }

    /// A worker whose loop heartbeat is older than `worker-watchdog` is blocked: log what its
    /// cores were doing, SIGABRT it (SIGKILL follows), respawn it.
    fn check_watchdog(&mut self) {
        let limit = self.config.worker_watchdog;
        if limit.is_zero() {
            return;
        }
        let now_ms = clock::monotonic_ms();
        let blocked: Vec<(Pid, WorkerId, Duration)> = self
            .workers
            .iter()
            .filter(|w| w.state == Lifecycle::Accepting)
            .filter_map(|w| {
                let slot = w.slot?;
                let age = self.scoreboard.snapshot(slot)?.heartbeat_age(now_ms);
                (age > limit).then_some((w.pid, slot, age))
            })
            .collect();
        for (pid, slot, age) in blocked {
            log::error!(
                "worker id={} pid={pid} blocked its event loop for {}s (worker-watchdog={}s): \
                 a handler is blocking the thread; aborting it",
                slot.0,
                age.as_secs(),
                limit.as_secs()
            );
            self.log_cores();
            let _ = process::send_signal(pid, OsSignal::SIGABRT);
            if let Some(worker) = self.workers.get_mut(pid) {
                worker.state = Lifecycle::Killing {
                    since: Instant::now(),
                    respawn: true,
                };
            }
        }
    }

    /// `max-requests`, `max-worker-lifetime`, `reload-on-rss`: queue the worker for a
    /// replacement (one at a time, the replacement accepting before the old one drains).
    fn check_recycling(&mut self) {
        let lifetime = self.config.max_worker_lifetime;
        let rss_limit = self.config.reload_on_rss.saturating_mul(1 << 20);
        let now = Instant::now();
        let due: Vec<(Pid, &'static str)> = self
            .workers
            .iter()
            .filter(|w| w.state == Lifecycle::Accepting && !self.chain.contains(&w.pid))
            .filter_map(|w| {
                let snapshot = self.scoreboard.snapshot(w.slot?)?;
                if w.max_requests
                    .is_some_and(|max| snapshot.delta_requests >= max)
                {
                    Some((w.pid, "max-requests"))
                } else if !lifetime.is_zero() && now.duration_since(w.spawned) >= lifetime {
                    Some((w.pid, "max-worker-lifetime"))
                } else if rss_limit > 0 && snapshot.rss > rss_limit {
                    Some((w.pid, "reload-on-rss"))
                } else {
                    None
                }
            })
            .collect();
        for (pid, why) in due {
            log::info!("recycling worker pid={pid} reason={why}");
            self.chain.push_back(pid);
        }
    }

    fn check_memory(&mut self) {
        if self.last_memory_sample.elapsed() < MEMORY_SAMPLE {
            return;
        }
        self.last_memory_sample = Instant::now();
        for worker in self.workers.iter() {
            if let (Some(slot), Ok(usage)) = (worker.slot, memory::read_memory_use(worker.pid)) {
                self.scoreboard.record_memory(slot, usage.rss, usage.vsz);
            }
        }
    }

    fn check_touch_files(&mut self) {
        if self.last_touch_check.elapsed() < TOUCH_CHECK {
            return;
        }
        self.last_touch_check = Instant::now();
        for kind in self.touch.changed() {
            log::info!("touch file changed: {kind:?}");
            self.apply(action::from_touch(kind));
        }
    }

    fn check_backoffs(&mut self) {
        let now = Instant::now();
        let due: Vec<WorkerId> = self
            .backoffs
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, slot)| *slot)
            .collect();
        self.backoffs.retain(|(at, _)| *at > now);
        if self.stopping.is_some() {
            return;
        }
        for slot in due {
            if let Err(e) = self.spawn_worker(slot, None) {
                log::error!("respawn failed id={}: {e}", slot.0);
            }
        }
    }

    /// What is left to do on the way out: pidfile, unix sockets (`vacuum`).
    fn clean_up(&mut self) {
        if let Some(path) = &self.config.pidfile {
            let _ = pidfile::remove_pidfile_if_ours(path, process::current_pid());
        }
        if self.config.vacuum {
            self.listeners.iter().for_each(Listener::remove_socket_file);
            if let Some(fifo) = &self.fifo {
                let _ = std::fs::remove_file(fifo.path());
            }
            if let Some(SocketSpec::Unix(path)) = &self.config.stats {
                let _ = std::fs::remove_file(path);
            }
        }
        log::info!("master exits");
    }
}

/// Daemonizes (or points the output at `logto`) before anything else is set up.
fn set_up_output(config: &Config, daemon: &mut Option<DaemonReady>) -> io::Result<()> {
    if let Some(logfile) = &config.daemonize {
        if Notifier::from_env().is_ok_and(|n| n.is_enabled()) {
            log::warn!("daemonize ignored: running under systemd (NOTIFY_SOCKET is set)");
        } else {
            *daemon = Some(daemon::daemonize(logfile).map_err(|e| {
                io::Error::new(e.kind(), format!("daemonize {}: {e}", logfile.display()))
            })?);
            return Ok(());
        }
    }
    if let Some(logfile) = &config.logto {
        daemon::redirect_output(logfile)
            .map_err(|e| io::Error::new(e.kind(), format!("logto {}: {e}", logfile.display())))?;
    }
    Ok(())
}

/// Binds `socket` (uwsgi) and `http-socket` listeners in that order, reusing sockets handed
/// over by a previous image (or systemd) whose name matches.
fn bind_listeners(config: &Config, inherited: Vec<InheritedFd>) -> io::Result<Vec<Listener>> {
    let owner = match &config.chown_socket {
        Some(spec) => {
            let (user, group) = spec
                .split_once(':')
                .map_or((spec.as_str(), None), |(u, g)| (u, Some(g)));
            let who = privilege::Credentials::resolve(Some(user), group)
                .map_err(|e| io::Error::new(e.kind(), format!("chown-socket {spec}: {e}")))?;
            Some((who.uid, who.gid))
        }
        None => None,
    };
    let unix = UnixOptions {
        mode: config.chmod_socket,
        owner,
    };
    let backlog = u32::try_from(config.listen).unwrap_or(u32::MAX);
    let mut inherited: Vec<(Option<String>, Option<OwnedFd>)> = inherited
        .into_iter()
        .map(|f| (f.name, Some(f.fd)))
        .collect();
    let specs = config
        .sockets
        .iter()
        .map(|s| (s, Protocol::Uwsgi))
        .chain(config.http_sockets.iter().map(|s| (s, Protocol::Http)));
    let mut listeners = Vec::new();
    for (spec, protocol) in specs {
        let name = Listener::name_for(spec, protocol);
        let handed_over = inherited
            .iter_mut()
            .find(|(n, fd)| fd.is_some() && n.as_deref() == Some(name.as_str()))
            .and_then(|(_, fd)| fd.take());
        let listener = match (handed_over, spec) {
            (Some(fd), _) => Listener::adopt(fd, spec, protocol)?,
            (None, SocketSpec::Fd(raw)) => {
                // systemd socket activation: the fd was adopted above, unnamed.
                let systemd = inherited
                    .iter_mut()
                    .find(|(_, fd)| fd.as_ref().is_some_and(|fd| fd.as_raw_fd() == *raw))
                    .and_then(|(_, fd)| fd.take());
                match systemd {
                    Some(fd) => Listener::adopt(fd, spec, protocol)?,
                    None => Listener::bind(spec, protocol, backlog, unix)?,
                }
            }
            (None, _) => Listener::bind(spec, protocol, backlog, unix)?,
        };
        listeners.push(listener);
    }
    // Sockets a previous image had but this configuration no longer lists are closed here.
    Ok(listeners)
}

/// Removes the inherited fd named `name` from `inherited` and returns it.
fn take_named(inherited: &mut Vec<InheritedFd>, name: &str) -> Option<OwnedFd> {
    let index = inherited
        .iter()
        .position(|f| f.name.as_deref() == Some(name))?;
    Some(inherited.remove(index).fd)
}

/// Drops to `uid`/`gid` once the sockets are bound; warns when workers would run as root.
fn drop_privileges(config: &Config) -> io::Result<()> {
    let credentials =
        privilege::Credentials::resolve(config.uid.as_deref(), config.gid.as_deref())?;
    if credentials.is_empty() {
        if privilege::is_root() {
            log::warn!("running workers as root: set uid and gid to drop privileges");
        }
        return Ok(());
    }
    privilege::drop_privileges(&credentials)
}

/// The previous image's workers, from `RCONTAINER_OLD_WORKERS`, as serving workers without a
/// slot (they write to the old scoreboard, which this image cannot see).
fn adopt_old_workers(table: &mut WorkerTable) -> Vec<Pid> {
    let Some(list) = std::env::var_os(OLD_WORKERS_ENV) else {
        return Vec::new();
    };
    process::remove_env(OLD_WORKERS_ENV);
    let pids: Vec<Pid> = list
        .to_string_lossy()
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .map(Pid::from_raw)
        .filter(|pid| process::is_alive(*pid))
        .collect();
    for &pid in &pids {
        table.insert(Worker {
            slot: None,
            pid,
            spawned: Instant::now(),
            state: Lifecycle::Accepting,
            replaces: None,
            max_requests: None,
        });
    }
    if !pids.is_empty() {
        log::info!(
            "adopted {} workers of the previous master image",
            pids.len()
        );
    }
    pids
}

fn log_exit(
    slot: Option<WorkerId>,
    pid: Pid,
    status: ExitStatus,
    state: Lifecycle,
    decision: Decision,
) {
    let id = slot.map_or_else(|| "old".to_string(), |s| s.0.to_string());
    let action = match decision {
        Decision::Nothing => "none".to_string(),
        Decision::Respawn(_) => "respawn".to_string(),
        Decision::Backoff(_, d) => format!("respawn-in-{}ms", d.as_millis()),
        Decision::Halt(code) => format!("halt-{code}"),
    };
    if state.is_serving() && decision != Decision::Nothing {
        log::warn!("worker died id={id} pid={pid} cause={status} action={action}");
    } else {
        log::info!("worker exited id={id} pid={pid} cause={status} action={action}");
    }
}

/// Per-worker `max-requests-delta` jitter, so workers do not all recycle at once.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Jitter {
        let nanos = clock::monotonic_now().as_nanos() as u64;
        Jitter(nanos ^ u64::from(std::process::id()).rotate_left(32) | 1)
    }

    /// A number in `0..=max` (xorshift64; statistical quality is not needed here).
    fn below(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % (max + 1)
    }
}
