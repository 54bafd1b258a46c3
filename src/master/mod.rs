//! The master: binds the listeners once, forks the workers and supervises them.
//!
//! One thread and one `mio::Poll`: the signal pipe, the master FIFO, the stats listener and
//! the emperor link (under an emperor) wake it; every [`TICK`] it also reaps children and runs
//! the named checks (readiness, replacements, mercy, watchdog, recycling, touch files, what the
//! emperor is due to hear). Signals, FIFO letters, touch files and emperor commands become
//! [`Action`]s ([`action`]); exits become [`Decision`]s ([`workers`]). The master never runs a
//! handler.
//!
//! A graceful reload re-executes the master in place: same pid, listening sockets handed over
//! through the environment (`RCONTAINER_FDS`), the INI and the binary read again. The new image
//! adopts the previous workers (`RCONTAINER_OLD_WORKERS`), starts its own, and tells each old
//! worker to drain only once its replacement accepts: no request is refused or dropped.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | `Master`: start-up order, the loop, applying actions, spawning and reaping |
//! | `action.rs` | signal / FIFO byte / touch file -> `Action` (pure) |
//! | `workers.rs` | the worker table and `on_exit -> Decision` (pure) |
//! | `checks.rs` | the per-tick checks |
//! | `reload.rs` | re-exec in place, workers and chain reloads, adopting old workers |
//! | `startup.rs` | daemonize/logto, binding or adopting listeners, dropping privileges |
//! | `stats.rs` | the stats socket, its log lines, its JSON and metrics (transport: `sys::stats_server`) |
//! | `touch.rs` | touch-file modification times |
//! | `vassal.rs` | the link to an emperor (`UWSGI_EMPEROR_FD`): reports and commands |

pub(crate) mod action;
mod checks;
pub(crate) mod handover;
mod preflight;
mod reload;
mod startup;
mod stats;
mod touch;
mod vassal;
pub(crate) mod workers;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::config::Config;
use crate::exit;
use crate::net::addr::SocketSpec;
use crate::net::listener::Listener;
use crate::scoreboard::{Scoreboard, SlotId, WorkerId, WorkerStatus};
use crate::sys::daemon::{self, DaemonReady};
use crate::sys::emperor_link::{self, Report};
use crate::sys::error::{context, with_context};
use crate::sys::fd::{self};
use crate::sys::fifo::{self, MasterFifo};
use crate::sys::notify::Notifier;
use crate::sys::process::{self, ExitStatus, Forked, OsSignal, Pid};
use crate::sys::signal::{self, Signal, SignalSource};
use crate::sys::{clock, pidfile, privilege, rlimit};
use crate::worker::{self, Apps, WorkerSpec};
use action::Action;
use handover::{Handover, Launch};
use reload::adopt_old_workers;
use startup::{
    bind_listeners, drop_privileges, listen_backlog, set_up_output, take_named, unix_options,
};
use stats::StatsServer;
use touch::TouchFiles;
use vassal::Vassal;
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
/// Set across a re-exec when accepting was paused: the new image starts paused.
const PAUSED_ENV: &str = "RCONTAINER_PAUSED";
/// Across a re-exec: the pids of `rcontainer --reload` commands waiting to hear how it went.
const REQUESTERS_ENV: &str = "RCONTAINER_RELOAD_REQUESTERS";

/// The hand-over name of the stats listener across a re-exec: `stats <spec>`, so a changed
/// `stats` address is bound anew instead of adopting the old socket.
fn stats_fd_name(spec: &SocketSpec) -> String {
    format!("stats {spec}")
}

const SIGNALS: Token = Token(0);
const FIFO: Token = Token(1);
const STATS: Token = Token(2);
const EMPEROR: Token = Token(3);
/// Stats clients are polled under tokens from here on.
const STATS_CLIENTS: usize = 16;

/// Loads the configuration as it is on disk now (before a reload); `Err` holds the errors.
pub(crate) type ConfigCheck<'a> = &'a dyn Fn() -> Result<Config, Vec<String>>;

/// An instance to run: its configuration, the INI texts it was loaded from, and what the
/// previous image of this master handed over (nothing on a first start).
#[derive(Debug)]
pub(crate) struct Instance {
    pub(crate) config: Config,
    /// What loading it warned about: logged once the instance's output is set up.
    pub(crate) warnings: Vec<String>,
    pub(crate) texts: Vec<(PathBuf, String)>,
    pub(crate) handover: Handover,
}

/// Runs one instance with `apps`; returns the process exit code.
pub(crate) fn run(instance: Instance, apps: &Apps, recheck: ConfigCheck<'_>) -> ExitCode {
    crate::log::set_role_master();
    // Signals wait until the master can act on them (a re-executed image has them blocked
    // since the exec): none may kill a master that is still starting.
    let _ = signal::block_master_signals();
    let mut daemon = None;
    // Why start-up failed, for the command that launched a daemon (it prints it).
    let mut reason = String::new();
    let code = match Master::start(instance, apps, recheck, &mut daemon) {
        Ok(mut master) => {
            let _ = signal::unblock_master_signals();
            let code = master.supervise(&mut daemon);
            master.clean_up();
            // Dropping the master restores the default dispositions: a late TERM must not turn
            // this exit into a kill.
            let _ = signal::block_master_signals();
            drop(master);
            code
        }
        Err(e) => {
            log::error!("{e}");
            reason = e.to_string();
            exit::RUNTIME
        }
    };
    if let Some(daemon) = daemon {
        daemon.report_failure(code.max(exit::RUNTIME), &reason);
    }
    ExitCode::from(code)
}

/// A worker to start again at `at`, after it failed to boot.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    at: Instant,
    slot: SlotId,
    id: WorkerId,
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
    /// The environment before the configuration's `env` lines: what a re-exec starts from, so
    /// a line removed from the INI is gone after the reload.
    base_env: Vec<(OsString, OsString)>,
    /// What the previous image handed over, and the way back to it until this one is up.
    handover: Handover,
    /// How to start this image again (the way back for the next reload, once this one is up).
    launch: Launch,
    /// This image's binary, kept open for that way back (a new binary may replace it on disk).
    own_binary: Option<std::fs::File>,
    listeners: Vec<Listener>,
    scoreboard: Scoreboard,
    workers: WorkerTable,
    /// How many workers should be serving (`processes`, moved by TTIN/TTOU).
    target: usize,
    poll: Poll,
    signals: SignalSource,
    fifo: Option<MasterFifo>,
    stats: Option<StatsServer>,
    /// The link to the emperor, when this instance is a vassal.
    vassal: Option<Vassal>,
    touch: TouchFiles,
    notifier: Notifier,
    /// Old workers still to replace one at a time (chain reload, recycling).
    chain: VecDeque<Pid>,
    /// Workers to respawn once their back-off has passed.
    backoffs: Vec<Backoff>,
    stopping: Option<Stopping>,
    /// A re-exec asked for and not done yet: `Some(brutal)`. Done after the batch of actions
    /// that asked for it (a TERM in the same batch wins), and a graceful one waits until the
    /// workers of the previous reload are up, so a burst of HUPs coalesces.
    reload: Option<bool>,
    /// `rcontainer --reload` commands waiting for a reload that has not happened yet: handed
    /// over to the new image, or answered "refused".
    requesters: Vec<Pid>,
    /// `rcontainer --reload` commands whose reload made this image: answered "done" when its
    /// workers accept.
    answer_when_ready: Vec<Pid>,
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
    ///
    /// An image started by a reload that fails here goes back to the previous image instead
    /// (`handover`): the instance keeps serving with the configuration it had.
    fn start(
        instance: Instance,
        apps: &'a Apps,
        recheck: ConfigCheck<'a>,
        daemon: &mut Option<DaemonReady>,
    ) -> io::Result<Master<'a>> {
        let Instance {
            config,
            warnings,
            texts,
            mut handover,
        } = instance;
        let loaded = (config, warnings, texts);
        // Before the environment is looked at for anything else: a bad `UWSGI_EMPEROR_FD`
        // stops the start, and the variable saying loyalty was reported is gone.
        let mut vassal = Vassal::from_env()?;
        match Master::build(loaded, &mut handover, &mut vassal, apps, recheck, daemon) {
            Ok(mut master) => {
                master.handover = handover;
                if let Some(why) = master.replaying() {
                    log::error!(
                        "reload failed: {why}; serving the previous configuration again (the \
                         INI files as they were then)"
                    );
                }
                if let Some(vassal) = &master.vassal {
                    vassal.report(Report::Spawned);
                }
                Ok(master)
            }
            Err(e) if handover.can_fall_back() => {
                log::error!("reload failed: {e}; starting the previous configuration again");
                // The previous image talks to the emperor on the same link.
                if let Some(vassal) = &vassal {
                    let _ = vassal.set_inheritable(true);
                }
                let error = handover.fall_back(&e.to_string(), &[], &[]);
                Err(io::Error::new(
                    e.kind(),
                    format!("{e}; and going back failed: {error}"),
                ))
            }
            Err(e) => Err(e),
        }
    }

    fn build(
        (config, warnings, texts): (Config, Vec<String>, Vec<(PathBuf, String)>),
        handover: &mut Handover,
        vassal: &mut Option<Vassal>,
        apps: &'a Apps,
        recheck: ConfigCheck<'a>,
        daemon: &mut Option<DaemonReady>,
    ) -> io::Result<Master<'a>> {
        let start_dir = std::env::current_dir().map_err(context("working directory: getcwd"))?;
        let mut inherited = handover.take_sockets();
        let reexec = handover.is_reexec();
        let inherited_stats = match &config.stats {
            Some(spec) => take_named(&mut inherited, &stats_fd_name(spec)),
            None => None,
        };
        if !reexec {
            set_up_output(&config, daemon, vassal.is_some())?;
        }
        if let Some(vassal) = vassal {
            log::info!(
                "running under an emperor ({}={})",
                emperor_link::FD_ENV,
                vassal.raw_fd()
            );
        }
        // Once per load, where the instance logs (its log file once daemonized or `logto`).
        for warning in &warnings {
            log::warn!("{warning}");
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
        let paused = std::env::var_os(PAUSED_ENV).is_some();
        if paused {
            process::remove_env(PAUSED_ENV);
            log::info!("paused accepting (as before the reload)");
        }
        let base_env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let launch = Launch {
            argv: std::env::args_os().collect(),
            env: base_env.clone(),
            files: texts,
        };
        let own_binary = handover::open_own_binary()
            .map_err(|e| log::warn!("a reload will have no way back: /proc/self/exe: {e}"))
            .ok();
        for pair in &config.env {
            process::set_env(&pair.name, &pair.value);
        }
        if let Some(path) = &config.pidfile {
            pidfile::write_pidfile(path, process::current_pid())?;
        }
        let scoreboard = Scoreboard::new(
            Scoreboard::capacity_for(config.processes),
            config.async_cores,
        )
        .map_err(context("scoreboard: mmap"))?;
        let poll = Poll::new().map_err(context("master loop: epoll_create"))?;
        let mut signals = SignalSource::install_master().map_err(context("signal handlers"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(context("master loop: register signals"))?;
        if let Some(vassal) = vassal.as_mut() {
            vassal
                .register(poll.registry(), EMPEROR)
                .map_err(context("master loop: register the emperor link"))?;
        }
        let fifo = match &config.master_fifo {
            Some(path) => {
                let mut fifo = MasterFifo::create(path)?;
                poll.registry()
                    .register(&mut fifo, FIFO, Interest::READABLE)
                    .map_err(context("master loop: register master-fifo"))?;
                Some(fifo)
            }
            None => None,
        };
        let stats = match &config.stats {
            Some(spec) => {
                let listener = match inherited_stats {
                    Some(fd) => stats::adopt_listener(fd, spec)?,
                    None => {
                        stats::bind_listener(spec, listen_backlog(&config), unix_options(&config))?
                    }
                };
                log::info!("stats server on {}", listener.describe());
                let server = StatsServer::new(
                    listener,
                    config.stats_http,
                    stats::log_incident,
                    poll.registry(),
                    STATS,
                    STATS_CLIENTS,
                )
                .map_err(context("master loop: register stats"))?;
                Some(server)
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
            base_env,
            handover: Handover::default(),
            launch,
            own_binary,
            listeners,
            scoreboard,
            workers: WorkerTable::default(),
            poll,
            signals,
            fifo,
            stats,
            vassal: vassal.take(),
            notifier: Notifier::from_env().unwrap_or_default(),
            chain: VecDeque::new(),
            backoffs: Vec::new(),
            stopping: None,
            reload: None,
            requesters: Vec::new(),
            answer_when_ready: take_requesters(),
            announced: false,
            paused,
            halt: None,
            last_memory_sample: now,
            last_touch_check: now,
            jitter: Jitter::seeded(),
        };
        let old = adopt_old_workers(&mut master.workers);
        if let Err(e) = master.spawn_generation(&old) {
            // Those that did start go: the way back (or the next start) brings its own.
            master.kill_own(OsSignal::SIGKILL);
            // The link outlives this failed start: the way back speaks on it.
            *vassal = master.vassal.take();
            return Err(with_context(e, "starting the workers"));
        }
        Ok(master)
    }

    /// For an image that replays the previous configuration after a failed reload: why.
    fn replaying(&self) -> Option<&str> {
        self.handover.replaying().map(|(why, _)| why)
    }

    /// Sends `signal` to the workers this image started (not those of the previous image).
    fn kill_own(&self, signal: OsSignal) {
        for worker in self.workers.iter().filter(|w| w.slot.is_some()) {
            let _ = process::send_signal(worker.pid, signal);
        }
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
            let mut commanded = Vec::new();
            for event in &events {
                match event.token() {
                    SIGNALS => actions.extend(self.drain_signals()),
                    FIFO => actions.extend(self.read_fifo()),
                    EMPEROR => commanded.extend(self.hear_emperor()),
                    token => self.serve_stats(token),
                }
            }
            for action in actions {
                let by_hand = matches!(action, Action::GracefulStop | Action::ImmediateStop);
                if by_hand && self.stopping.is_none() {
                    // A stop nobody asked the emperor for: it hears that the vassal leaves.
                    if let Some(vassal) = self.vassal.as_mut() {
                        vassal.report_leaving();
                    }
                }
                self.apply(action);
            }
            for action in commanded {
                if action == Action::ImmediateStop && self.draining_after_leaving() {
                    // uWSGI's emperor answers a leaving vassal with "stop now" (its
                    // emperor_stop): an acknowledgement, not a reason to drop requests.
                    log::info!("the emperor acknowledges the vassal is leaving: draining on");
                    continue;
                }
                self.apply(action);
            }
            self.expire_stats();
            self.check_touch_files();
            self.check_backoffs();
            self.check_ready(daemon);
            self.check_reload();
            self.check_chain();
            self.check_mercy();
            self.check_watchdog();
            self.check_recycling();
            self.check_memory();
            self.check_emperor();
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
        (self.signals.drain_received_or_log().into_iter())
            .flat_map(|r| {
                match (r.signal, r.requester) {
                    (Signal::Hup, Some(pid)) => self.requesters.push(pid),
                    // `rcontainer --upgrade` is for an emperor: a master says no at once.
                    (Signal::Usr2, Some(pid)) if process::has_argument(pid, "--upgrade") => {
                        let _ = signal::send_answer(pid, signal::Answer::Refused);
                    }
                    _ => {}
                }
                action::from_signal(r.signal).iter().copied()
            })
            .collect()
    }

    fn read_fifo(&mut self) -> Vec<Action> {
        fifo::read_actions(self.fifo.as_mut(), action::from_fifo_byte)
    }

    /// Whether this vassal drains after telling its emperor it leaves (a TERM or `q` by hand).
    fn draining_after_leaving(&self) -> bool {
        matches!(self.stopping, Some(Stopping::Graceful { .. }))
            && self.vassal.as_ref().is_some_and(Vassal::is_leaving)
    }

    /// Reads the emperor's commands. When the emperor is gone (its end of the link closed),
    /// the vassal stops gracefully, as uWSGI's do.
    fn hear_emperor(&mut self) -> Vec<Action> {
        let Some(vassal) = self.vassal.as_mut() else {
            return Vec::new();
        };
        let heard = vassal.hear();
        let mut actions = heard.actions;
        if heard.gone {
            log::warn!("the emperor is gone (its end of the link closed): stopping gracefully");
            vassal.deregister(self.poll.registry());
            self.vassal = None;
            actions.push(Action::GracefulStop);
        }
        actions
    }

    /// A stats listener or client is ready: accept, read, write, as far as each can go.
    fn serve_stats(&mut self, token: Token) {
        let Some(server) = self.stats.as_mut().filter(|s| s.owns(token)) else {
            return;
        };
        let (config, listeners, scoreboard) = (&self.config, &self.listeners, &self.scoreboard);
        let slots: Vec<SlotId> = self.workers.iter().filter_map(|w| w.slot).collect();
        server.ready(self.poll.registry(), token, |format| {
            stats::answer(format, config, listeners, scoreboard, &slots)
        });
    }

    /// Stats clients past their deadline are closed (see `sys::stats_server::CLIENT_DEADLINE`).
    fn expire_stats(&mut self) {
        let Some(server) = self.stats.as_mut() else {
            return;
        };
        let (config, listeners, scoreboard) = (&self.config, &self.listeners, &self.scoreboard);
        let slots: Vec<SlotId> = self.workers.iter().filter_map(|w| w.slot).collect();
        server.expire(self.poll.registry(), Instant::now(), |format| {
            stats::answer(format, config, listeners, scoreboard, &slots)
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
            Action::GracefulReload => self.request_reload(false),
            Action::BrutalReload => self.request_reload(true),
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

    /// Forks the first workers of this image, ids 1..=`processes`; each replaces the previous
    /// image's worker of the same id once it accepts.
    fn spawn_generation(&mut self, old: &[(Pid, WorkerId)]) -> io::Result<()> {
        for n in 1..=self.target {
            let id = WorkerId(u16::try_from(n).expect("invariant: processes fits the scoreboard"));
            let slot = self
                .free_slot()
                .ok_or_else(|| io::Error::other("no free worker slot"))?;
            let replaces = old
                .iter()
                .find(|(_, old_id)| *old_id == id)
                .map(|(pid, _)| *pid);
            self.spawn_worker(slot, id, replaces)?;
        }
        // Old workers beyond the new count drain once everything is ready (`check_ready`).
        Ok(())
    }

    fn free_slot(&self) -> Option<SlotId> {
        self.scoreboard.ids().find(|&slot| {
            !self.workers.slot_in_use(slot) && !self.backoffs.iter().any(|b| b.slot == slot)
        })
    }

    /// The lowest worker id no serving worker (or worker waiting for its back-off) has.
    fn free_id(&self) -> WorkerId {
        (1..=u16::MAX)
            .map(WorkerId)
            .find(|&id| !self.workers.id_in_use(id) && !self.backoffs.iter().any(|b| b.id == id))
            .expect("invariant: fewer workers than u16::MAX")
    }

    /// Forks worker `id` into `slot`. In the child this never returns.
    fn spawn_worker(
        &mut self,
        slot: SlotId,
        id: WorkerId,
        replaces: Option<Pid>,
    ) -> io::Result<Pid> {
        let master_pid = process::current_pid();
        // The slot is reset before the fork: the child may report `Accepting` before the
        // parent runs again, and that must not be overwritten.
        self.scoreboard.record_spawn(slot, id, 0, clock::unix_now());
        self.scoreboard.request_pause(slot, self.paused);
        match process::fork()? {
            Forked::Parent(pid) => {
                self.scoreboard.set_pid(slot, pid.as_raw());
                let max_requests = (self.config.max_requests > 0).then(|| {
                    self.config.max_requests + self.jitter.below(self.config.max_requests_delta)
                });
                self.workers.insert(Worker {
                    slot: Some(slot),
                    id,
                    pid,
                    spawned: Instant::now(),
                    state: Lifecycle::Booting,
                    replaces,
                    max_requests,
                });
                log::info!("spawned worker id={id} pid={pid}");
                self.announced = false;
                Ok(pid)
            }
            Forked::Child => {
                self.close_master_fds();
                if self.vassal.is_some() {
                    // Only the master speaks to the emperor (see `vassal`).
                    process::remove_env(emperor_link::FD_ENV);
                }
                // A worker must not outlive its master (killed with -9, say): it then closes
                // its listeners and drains.
                if process::set_parent_death_signal(OsSignal::SIGTERM, master_pid).is_err() {
                    process::exit_now(exit::RUNTIME);
                }
                // The worker owns the listeners: it closes them if the master dies.
                let code = worker::run(WorkerSpec {
                    id: u32::from(id.0),
                    config: &self.config,
                    listeners: std::mem::take(&mut self.listeners),
                    apps: self.apps,
                    slot: self.scoreboard.slot(slot),
                });
                process::exit_now(code)
            }
        }
    }

    /// In a forked worker: closes what only the master uses (its poll, signal pipe, FIFO,
    /// stats listener and clients, the emperor link, what it keeps for a way back). A worker
    /// holding a stats client would keep that connection open after the master closed it; one
    /// holding the FIFO would keep it alive; one holding an inherited socket would keep its
    /// port if orphaned; one holding the emperor link would keep it open after its master
    /// died.
    fn close_master_fds(&self) {
        let mut fds = vec![self.poll.as_raw_fd()];
        fds.extend(self.handover.originals());
        fds.extend(self.own_binary.as_ref().map(AsRawFd::as_raw_fd));
        fds.extend(self.vassal.as_ref().map(Vassal::raw_fd));
        fds.extend(self.signals.raw_fds());
        if let Some(fifo) = &self.fifo {
            fds.extend(fifo.raw_fds());
        }
        if let Some(stats) = &self.stats {
            fds.extend(stats.raw_fds());
        }
        for raw in fds {
            fd::close_inherited(raw);
        }
    }

    fn reap(&mut self) {
        let now = Instant::now();
        for (pid, status) in process::reap_children() {
            let known = self
                .workers
                .iter()
                .find(|w| w.pid == pid)
                .map(|w| (w.slot, w.id, w.state));
            let Some((slot, id, state)) = known else {
                log::info!("reaped unknown child pid={pid} status={status}");
                continue;
            };
            let decision = self
                .workers
                .on_exit(pid, status, now, self.stopping.is_some());
            if let Some(slot) = slot {
                let retired = !matches!(decision, Decision::Respawn(..) | Decision::Backoff(..));
                self.scoreboard.record_exit(slot, retired);
            }
            log_exit(slot.map(|_| id), pid, status, state, decision);
            match decision {
                Decision::Nothing => {}
                Decision::Respawn(slot, id) => {
                    if let Err(e) = self.spawn_worker(slot, id, None) {
                        log::error!("respawn failed id={id}: {e}; retrying");
                        let at = now + Duration::from_secs(1);
                        self.backoffs.push(Backoff { at, slot, id });
                    }
                }
                Decision::Backoff(..) | Decision::Halt(_) if self.handover.can_fall_back() => {
                    // A reload's new workers cannot boot: the previous configuration serves on.
                    let why = format!("the new workers cannot start (worker id={id} {status})");
                    let error = self.fall_back(&why);
                    log::error!("going back to the previous configuration failed: {error}");
                    let _ = signal::unblock_master_signals();
                    self.retry_after(decision, now);
                }
                Decision::Backoff(..) | Decision::Halt(_) => self.retry_after(decision, now),
            }
        }
    }

    /// After a boot failure: the worker is started again after its back-off (or the master
    /// gives up, for [`Decision::Halt`]).
    fn retry_after(&mut self, decision: Decision, now: Instant) {
        match decision {
            Decision::Backoff(slot, id, delay) => {
                self.backoffs.push(Backoff {
                    at: now + delay,
                    slot,
                    id,
                });
            }
            Decision::Halt(code) => {
                log::error!(
                    "workers keep failing at boot ({} times in a row): giving up",
                    workers::MAX_BOOT_FAILURES
                );
                self.halt = Some(code);
            }
            Decision::Nothing | Decision::Respawn(..) => {}
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

    /// Tells the `--reload` commands in `pids` how their reload went. Only processes that
    /// still run `--reload` are signalled: a pid reused since is left alone.
    fn answer_requesters(pids: Vec<Pid>, answer: signal::Answer) {
        for pid in pids {
            if process::has_argument(pid, "--reload") {
                let _ = signal::send_answer(pid, answer);
            }
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
        if let Some(file) = file {
            match daemon::redirect_output(file) {
                Ok(()) => log::info!("reopened log file {}", file.display()),
                Err(e) => log::error!("cannot reopen log file {}: {e}", file.display()),
            }
        }
        // Workers write through their own copies of the old descriptors, and to their own
        // req-logger files: they reopen on USR1 too. A worker still booting holds the signal
        // until its handler is in place (`signal::reset_in_child`), so every one is told.
        for worker in self.workers.iter() {
            let _ = process::send_signal(worker.pid, OsSignal::SIGUSR1);
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
        let id = self.free_id();
        if let Err(e) = self.spawn_worker(slot, id, None) {
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
            .filter(|w| w.slot.is_some() && w.state.is_serving())
            .max_by_key(|w| w.id)
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

/// The `--reload` commands a previous image handed over (`RCONTAINER_RELOAD_REQUESTERS`).
fn take_requesters() -> Vec<Pid> {
    let Some(list) = std::env::var_os(REQUESTERS_ENV) else {
        return Vec::new();
    };
    process::remove_env(REQUESTERS_ENV);
    list.to_string_lossy()
        .split(',')
        .filter_map(|pid| pid.trim().parse().ok())
        .map(Pid::from_raw)
        .collect()
}

/// Logs a worker's exit; `id` is `None` for a worker of the previous master image.
fn log_exit(
    id: Option<WorkerId>,
    pid: Pid,
    status: ExitStatus,
    state: Lifecycle,
    decision: Decision,
) {
    let id = id.map_or_else(|| "old".to_string(), |id| id.to_string());
    let action = match decision {
        Decision::Nothing => "none".to_string(),
        Decision::Respawn(..) => "respawn".to_string(),
        Decision::Backoff(_, _, d) => format!("respawn-in-{}ms", d.as_millis()),
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
