//! The emperor: one instance (vassal) per INI file of a directory or glob, started, reloaded,
//! stopped and respawned as the files come, change, go and as the vassals die.
//!
//! One thread and one `mio::Poll`: the signal pipe, inotify, the FIFO, the stats socket and
//! every vassal's link wake it; it never sleeps on anything else, and the poll's timeout is
//! the nearest timer (a back-off ending, a rescan, a mercy running out). So a vassal in a long
//! back-off never delays another vassal's reload, and a hundred vassals start at once.
//!
//! A vassal is `<binary> [--set K=V]... --ini FILE`, run in the file's directory, with its end
//! of a socketpair as `UWSGI_EMPEROR_FD` (uWSGI's one-byte protocol, `sys::emperor_link`).
//! A changed file is first checked with `--check-config` in a child process (reaped by this
//! loop, never waited for): a file that does not load leaves the running vassal alone.
//! Commands go over the link to a vassal that reports over it; one that never reported gets
//! the signal its master obeys instead (HUP reload, TERM graceful stop, INT immediate stop).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the loop: spawning, checks, reaping, timers, stopping |
//! | `action.rs` | signal / FIFO byte -> `Action` (pure) |
//! | `command.rs` | the command line and environment of a vassal and of its check |
//! | `scan.rs` | monitors (dir, glob), file identities, inotify |
//! | `vassal.rs` | one vassal's state, reports, exits and back-off (pure) |
//! | `stats.rs` | `emperor-stats`: uWSGI's emperor JSON and its metrics |
//! | `upgrade.rs` | re-executing the emperor in place, adopting the vassals |

mod action;
mod command;
mod scan;
pub(crate) mod stats;
mod upgrade;
mod vassal;

pub(crate) use upgrade::{Ancestry, Lineage};

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::config::Config;
use crate::exit;
use crate::sys::daemon::{self, DaemonReady};
use crate::sys::emperor_link::{self, Command, Link, Report};
use crate::sys::error::context;
use crate::sys::fifo::{self, MasterFifo};
use crate::sys::notify::Notifier;
use crate::sys::process::{self, ExitStatus, OsSignal, Pid};
use crate::sys::signal::{self, SignalSource};
use crate::sys::spawn;
use crate::sys::{clock, fd, pidfile};
use action::{Action, action_of_fifo_byte, action_of_signal};
use command::VassalCommand;
use scan::{Change, FileId, Monitor, Watcher};
use stats::{Format, StatsListener, StatsServer, VassalStats};
use vassal::{AfterExit, Heard, State, Vassal};

const SIGNALS: Token = Token(0);
const INOTIFY: Token = Token(1);
const FIFO: Token = Token(2);
const STATS: Token = Token(3);
/// Stats clients are polled under tokens from here on.
const STATS_CLIENTS: usize = 16;
/// Vassal links are polled under `VASSALS + slab key`.
const VASSALS: usize = 1 << 20;
/// After an immediate stop: how long before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);
/// The shortest rescan period, whatever `emperor-freq` says.
const MIN_FREQ: Duration = Duration::from_millis(100);

/// Runs an emperor over `config.emperor`; `stats` is the bound `emperor-stats` socket,
/// `lineage` what an upgrade handed over and the way back.
pub(crate) fn run(config: &Config, stats: Option<StatsListener>, lineage: Lineage) -> ExitCode {
    crate::log::set_role_emperor();
    let _ = signal::block_master_signals();
    let mut daemon = None;
    let Lineage {
        inherited,
        upgraded,
        replaying,
        way_back,
        ancestry,
    } = lineage;
    let code = match Emperor::start(config, stats, &mut daemon, upgraded, way_back) {
        Ok(mut emperor) => {
            // Up: nothing of the previous image stays open for a child to inherit.
            ancestry.commit();
            if let Some(why) = &replaying {
                log::error!(
                    "emperor: upgrade failed: {why}; the previous image governs on (its \
                     configuration as it was then)"
                );
            }
            emperor.adopt_vassals(inherited, replaying.is_some());
            let _ = signal::unblock_master_signals();
            if let Some(daemon) = daemon.take() {
                daemon.report_ready();
            }
            let code = emperor.govern();
            emperor.clean_up();
            let _ = signal::block_master_signals();
            drop(emperor);
            code
        }
        Err(e) if ancestry.can_fall_back() => {
            log::error!("emperor: upgrade failed: {e}; starting the previous image again");
            let error = ancestry.fall_back(&e.to_string());
            log::error!("emperor: going back to the previous image failed: {error}");
            exit::RUNTIME
        }
        Err(e) => {
            log::error!("{e}");
            // A monitor that is not a directory is a configuration error.
            let code = if e.kind() == io::ErrorKind::InvalidInput {
                exit::CONFIG
            } else {
                exit::RUNTIME
            };
            if let Some(daemon) = daemon.take() {
                daemon.report_failure(code, &e.to_string());
            }
            code
        }
    };
    ExitCode::from(code)
}

/// A `--check-config` run for a changed vassal file.
#[derive(Debug)]
struct Check {
    path: PathBuf,
    /// Its stdout and stderr (a memfd: the child never blocks on a full pipe).
    output: OwnedFd,
    /// The file changed again while it ran: its result is stale, check again.
    again: bool,
    /// Whether a good result reloads the vassal, or the check only says why it died.
    reload: bool,
}

/// How the emperor is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    Graceful,
    Immediate,
}

struct Emperor<'a> {
    config: &'a Config,
    monitors: Vec<Monitor>,
    command: VassalCommand,
    poll: Poll,
    signals: SignalSource,
    watcher: Watcher,
    fifo: Option<MasterFifo>,
    stats: Option<StatsServer>,
    notifier: Notifier,
    vassals: Slab<Vassal>,
    by_path: BTreeMap<PathBuf, usize>,
    /// The files as the last scan saw them.
    files: BTreeMap<PathBuf, FileId>,
    checks: BTreeMap<Pid, Check>,
    next_rescan: Instant,
    rescan_now: bool,
    /// A rolling reload (HUP): the vassals still to reload, and the one reloading now (with
    /// the time after which the next goes anyway).
    rolling: VecDeque<PathBuf>,
    rolling_current: Option<(PathBuf, Instant)>,
    stopping: Option<Stopping>,
    /// How many vassals the last `STATUS=` told systemd about.
    governing: Option<usize>,
    jitter: u64,
    /// An upgrade was asked for (USR2, `R`): done at the end of this turn of the loop.
    upgrade: bool,
    /// The `--upgrade` commands waiting to hear how it went.
    upgrade_requesters: Vec<Pid>,
    /// What gives the image after an upgrade its way back to this one.
    way_back: Vec<(RawFd, String)>,
}

impl<'a> Emperor<'a> {
    fn start(
        config: &'a Config,
        stats: Option<StatsListener>,
        daemon: &mut Option<DaemonReady>,
        upgraded: bool,
        way_back: Vec<(RawFd, String)>,
    ) -> io::Result<Emperor<'a>> {
        let cwd = std::env::current_dir().map_err(context("working directory: getcwd"))?;
        let monitors = (config.emperor.iter())
            .map(|text| Monitor::parse(text, &cwd))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
        let notifier = Notifier::from_env().unwrap_or_default();
        // As an instance's master does (`master::startup::set_up_output`); an upgraded image
        // is that process still, set up already (a second daemonizing would change its pid).
        if !upgraded && let Some(logfile) = &config.daemonize {
            if notifier.is_enabled() {
                log::warn!("daemonize ignored: running under systemd (NOTIFY_SOCKET is set)");
            } else {
                *daemon = Some(
                    daemon::daemonize(logfile, exit::RUNTIME)
                        .map_err(context(format_args!("daemonize {}", logfile.display())))?,
                );
            }
        }
        if daemon.is_none()
            && !upgraded
            && let Some(logfile) = &config.logto
        {
            daemon::redirect_output(logfile)
                .map_err(context(format_args!("logto {}", logfile.display())))?;
        }
        if let Some(path) = &config.pidfile {
            pidfile::write_pidfile(path, process::current_pid())?;
        }
        let poll = Poll::new().map_err(context("emperor loop: epoll_create"))?;
        let mut signals = SignalSource::install_master().map_err(context("signal handlers"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(context("emperor loop: register signals"))?;
        let mut watcher = Watcher::new().map_err(context("inotify_init"))?;
        poll.registry()
            .register(&mut watcher, INOTIFY, Interest::READABLE)
            .map_err(context("emperor loop: register inotify"))?;
        let fifo = match &config.master_fifo {
            Some(path) => {
                let mut fifo = MasterFifo::create(path)?;
                poll.registry()
                    .register(&mut fifo, FIFO, Interest::READABLE)
                    .map_err(context("emperor loop: register master-fifo"))?;
                Some(fifo)
            }
            None => None,
        };
        let stats = match stats {
            Some(listener) => {
                log::info!("emperor stats on {}", listener.describe());
                // `stats-http` as in uWSGI: an HTTP answer, and `GET /metrics` for Prometheus.
                let server = StatsServer::new(
                    listener,
                    config.stats_http,
                    stats::log_incident,
                    poll.registry(),
                    STATS,
                    STATS_CLIENTS,
                )
                .map_err(context("emperor loop: register stats"))?;
                Some(server)
            }
            None => None,
        };
        let now = Instant::now();
        Ok(Emperor {
            config,
            monitors,
            command: VassalCommand::from_config(config),
            poll,
            signals,
            watcher,
            fifo,
            stats,
            notifier,
            vassals: Slab::new(),
            by_path: BTreeMap::new(),
            files: BTreeMap::new(),
            checks: BTreeMap::new(),
            next_rescan: now,
            rescan_now: true,
            rolling: VecDeque::new(),
            rolling_current: None,
            stopping: None,
            governing: None,
            jitter: seed(),
            upgrade: false,
            upgrade_requesters: Vec::new(),
            way_back,
        })
    }

    fn freq(&self) -> Duration {
        self.config.emperor_freq.max(MIN_FREQ)
    }

    /// The loop: wait for an event or the nearest timer, apply actions, reap, rescan, run
    /// the timers.
    fn govern(&mut self) -> u8 {
        let mut events = Events::with_capacity(256);
        let mut announced = false;
        loop {
            let timeout = self
                .next_timer()
                .map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("emperor poll failed: {e}");
                self.stop_all(Stopping::Immediate);
                return exit::RUNTIME;
            }
            let mut actions = vec![Action::Reap];
            let mut links = Vec::new();
            for event in &events {
                match event.token() {
                    SIGNALS => actions.extend(self.drain_signals()),
                    INOTIFY => self.rescan_now |= self.watcher.drain(&self.monitors),
                    FIFO => actions.extend(self.read_fifo()),
                    token if token.0 >= VASSALS => links.push(token.0 - VASSALS),
                    token => self.serve_stats(token),
                }
            }
            for key in links {
                self.read_link(key);
            }
            for action in actions {
                self.apply(action);
            }
            let now = Instant::now();
            if self.stopping.is_none() && (self.rescan_now || now >= self.next_rescan) {
                self.rescan();
                if !announced {
                    announced = true;
                    log::info!(
                        "emperor ready pid={} monitors={} vassals={}",
                        process::current_pid(),
                        self.monitor_names().join(","),
                        self.vassals.len()
                    );
                    let _ = self.notifier.ready(&self.status_text());
                }
            }
            self.check_backoffs(now);
            self.check_mercy(now);
            self.check_heartbeats(now);
            self.check_reloads(now);
            self.check_rolling(now);
            self.expire_stats(now);
            self.report_status();
            if std::mem::take(&mut self.upgrade) && self.stopping.is_none() {
                self.upgrade();
            }
            // Not upgraded: stopping, or the exec failed.
            self.answer_upgrade(signal::Answer::Refused);
            if self.stopping.is_some() && self.vassals.is_empty() && self.checks.is_empty() {
                log::info!("emperor: every vassal is gone");
                return exit::OK;
            }
        }
    }

    /// The nearest moment something is due.
    fn next_timer(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        if self.stopping.is_none() {
            consider(if self.rescan_now {
                Instant::now()
            } else {
                self.next_rescan
            });
        }
        for (_, vassal) in &self.vassals {
            match vassal.state {
                State::Backoff { until, .. } => consider(until),
                State::Reloading { since } => consider(since + self.config.worker_reload_mercy),
                State::Stopping {
                    deadline,
                    killed: false,
                } => consider(deadline),
                _ => {}
            }
            let required = self.config.emperor_required_heartbeat;
            if let Some(process) = &vassal.process
                && let Some(last) = process.last_heartbeat
                && !required.is_zero()
            {
                consider(process.heartbeat_reload.unwrap_or(last) + required);
            }
        }
        if let Some((_, until)) = &self.rolling_current {
            consider(*until);
        }
        if let Some(stats) = &self.stats
            && let Some(deadline) = stats.next_deadline()
        {
            consider(deadline);
        }
        // Signals, links and inotify wake the poll; a stopping emperor with nothing due still
        // looks around now and then.
        Some(next.unwrap_or_else(|| Instant::now() + self.freq()))
    }

    fn drain_signals(&mut self) -> Vec<Action> {
        (self.signals.drain_received_or_log().into_iter())
            .filter_map(|r| {
                let action = action_of_signal(r.signal)?;
                // `rcontainer --reload PIDFILE` waits for an answer: the rolling reload
                // has begun.
                if let (Action::ReloadAll, Some(pid)) = (action, r.requester)
                    && process::has_argument(pid, "--reload")
                {
                    let _ = signal::send_answer(pid, signal::Answer::Done);
                }
                // `rcontainer --upgrade PIDFILE` is answered by the image after the exec.
                if let (Action::Upgrade, Some(pid)) = (action, r.requester)
                    && process::has_argument(pid, "--upgrade")
                {
                    self.upgrade_requesters.push(pid);
                }
                Some(action)
            })
            .collect()
    }

    fn read_fifo(&mut self) -> Vec<Action> {
        fifo::read_actions(self.fifo.as_mut(), action_of_fifo_byte)
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Reap => self.reap(),
            Action::Status => self.log_status(),
            Action::StopNow => self.stop_all(Stopping::Immediate),
            _ if self.stopping.is_some() => {}
            Action::Rescan => self.rescan_now = true,
            Action::ReloadAll => self.reload_all(),
            Action::Stop => self.stop_all(Stopping::Graceful),
            Action::Upgrade => self.upgrade = true,
        }
    }

    // ----- files -----------------------------------------------------------------------------

    fn rescan(&mut self) {
        let now = Instant::now();
        self.rescan_now = false;
        self.next_rescan = now + self.freq();
        let files = scan::scan(&self.monitors);
        self.watcher.watch(&self.monitors, &files);
        let changes = scan::diff(&self.files, &files);
        self.files = files;
        for change in changes {
            match change {
                Change::Added(path, id) => self.file_added(path, id),
                Change::Changed(path, id) => self.file_changed(&path, id),
                Change::Removed(path) => self.file_removed(&path),
            }
        }
    }

    fn file_added(&mut self, path: PathBuf, id: FileId) {
        if let Some(&key) = self.by_path.get(&path) {
            // Removed and back while its vassal stops: it starts again once that one is gone.
            self.vassals[key].file = id;
            return;
        }
        let key = self.vassals.insert(Vassal::new(path.clone(), id));
        self.by_path.insert(path, key);
        self.spawn_vassal(key);
    }

    fn file_changed(&mut self, path: &Path, id: FileId) {
        let Some(&key) = self.by_path.get(path) else {
            return self.file_added(path.to_path_buf(), id);
        };
        let vassal = &mut self.vassals[key];
        vassal.file = id;
        match vassal.state {
            State::Backoff { .. } | State::Exiled => {
                log::info!("emperor: vassal {} changed: starting it now", vassal.id());
                vassal.config_error = None;
                vassal.respawns += 1;
                self.spawn_vassal(key);
            }
            State::Stopping { .. } => {}
            State::Running | State::Reloading { .. } => {
                if self.command.checks {
                    self.start_check(path, true);
                } else {
                    let name = vassal.id();
                    log::info!("emperor: vassal {name} changed: reloading it");
                    self.reload_vassal(key);
                }
            }
        }
    }

    fn file_removed(&mut self, path: &Path) {
        let Some(&key) = self.by_path.get(path) else {
            return;
        };
        log::info!(
            "emperor: vassal {} removed: stopping it",
            self.vassals[key].id()
        );
        let how = if self.config.emperor_brutal_shutdown {
            Stopping::Immediate
        } else {
            Stopping::Graceful
        };
        self.stop_vassal(key, how);
    }

    // ----- checks ----------------------------------------------------------------------------

    /// Starts `--check-config` for the file of a vassal (or marks the running check stale):
    /// before its reload (`reload`), or to learn why it died. A check that cannot even start
    /// lets the reload go on unchecked: the vassal's own reload refuses a configuration that
    /// does not load.
    fn start_check(&mut self, path: &Path, reload: bool) {
        if let Some(check) = self.checks.values_mut().find(|c| c.path == path) {
            check.again = true;
            check.reload |= reload;
            return;
        }
        let started = fd::memfd_with("vassal-check", b"").and_then(|output| {
            let program = self.command.check(path, output.as_raw_fd());
            spawn::spawn(&program).map(|pid| (pid, output))
        });
        match started {
            Ok((pid, output)) => {
                self.checks.insert(
                    pid,
                    Check {
                        path: path.to_path_buf(),
                        output,
                        again: false,
                        reload,
                    },
                );
            }
            Err(e) => {
                log::error!("emperor: cannot check {}: {e}", path.display());
                if reload && let Some(&key) = self.by_path.get(path) {
                    log::info!("emperor: reloading {} unchecked", path.display());
                    self.reload_vassal(key);
                }
            }
        }
    }

    fn finish_check(&mut self, check: Check, status: ExitStatus) {
        let Some(&key) = self.by_path.get(&check.path) else {
            return;
        };
        if self.stopping.is_some() {
            return;
        }
        if check.again {
            return self.start_check(&check.path, check.reload);
        }
        let vassal = &mut self.vassals[key];
        let name = vassal.id();
        let loads = status == ExitStatus::Exited(0);
        let error = (!loads).then(|| {
            let output = fd::read_whole(&check.output).unwrap_or_default();
            let text = String::from_utf8_lossy(&output);
            let error = last_chars(text.trim(), MAX_CONFIG_ERROR);
            if error.is_empty() {
                format!("--check-config failed ({status})")
            } else {
                error.to_string()
            }
        });
        if !check.reload {
            vassal.config_error = error;
            return;
        }
        match (vassal.state, error) {
            (State::Running | State::Reloading { .. }, None) => {
                vassal.config_error = None;
                log::info!("emperor: vassal {name} changed: reloading it");
                self.reload_vassal(key);
            }
            (State::Running | State::Reloading { .. }, Some(error)) => {
                log::error!(
                    "emperor: vassal {name}: the changed file does not load; the vassal keeps \
                     running its previous configuration: {error}"
                );
                vassal.config_error = Some(error);
            }
            // It died meanwhile: what the check found is still true of its file.
            (State::Backoff { .. } | State::Exiled, error) => vassal.config_error = error,
            (State::Stopping { .. }, _) => {}
        }
    }

    // ----- vassals ---------------------------------------------------------------------------

    /// Starts the process of vassal `key`; a start that fails counts as a death.
    fn spawn_vassal(&mut self, key: usize) {
        let now = Instant::now();
        let now_unix = clock::unix_now().as_secs();
        let path = self.vassals[key].path.clone();
        let started = Link::pair().and_then(|(mut link, theirs)| {
            let program = self.command.vassal(&path, theirs.as_raw_fd());
            let pid = spawn::spawn(&program)?;
            drop(theirs);
            self.poll
                .registry()
                .register(&mut link, Token(VASSALS + key), Interest::READABLE)?;
            Ok((pid, link))
        });
        let vassal = &mut self.vassals[key];
        match started {
            Ok((pid, link)) => {
                log::info!("emperor: vassal {} started pid={pid}", vassal.id());
                vassal.process = Some(vassal::Process::new(pid, link, now, now_unix));
                vassal.state = State::Running;
                vassal.backoff_until_unix = 0;
                if vassal.first_run_unix == 0 {
                    vassal.first_run_unix = now_unix;
                }
            }
            Err(e) => {
                let delay =
                    vassal::backoff_delay(vassal.failures, self.config.emperor_max_throttle, 0);
                vassal.failures += 1;
                vassal.state = State::Backoff {
                    until: now + delay,
                    delay,
                };
                vassal.backoff_until_unix = now_unix + delay.as_secs();
                log::error!(
                    "emperor: cannot start vassal {}: {e}; retrying in {} ms",
                    vassal.id(),
                    delay.as_millis()
                );
            }
        }
    }

    /// Sends `command` to vassal `key`: over the link if it speaks the protocol, else as the
    /// signal an rcontainer master obeys (until vassals report over the link, that is how
    /// rcontainer vassals are driven).
    fn tell(&self, key: usize, command: Command) {
        let Some(process) = &self.vassals[key].process else {
            return;
        };
        if process.speaks
            && let Some(link) = &process.link
            && link.send(command as u8).is_ok()
        {
            return;
        }
        let signal = match command {
            Command::Reload => OsSignal::SIGHUP,
            Command::Stop => OsSignal::SIGTERM,
            Command::StopNow => OsSignal::SIGINT,
        };
        let _ = process::send_signal(process.pid, signal);
    }

    fn reload_vassal(&mut self, key: usize) {
        if self.vassals[key].process.is_none() {
            return;
        }
        self.tell(key, Command::Reload);
        self.vassals[key].reloading(Instant::now());
    }

    /// Asks vassal `key` to stop; one without a process is forgotten at once.
    fn stop_vassal(&mut self, key: usize, how: Stopping) {
        let now = Instant::now();
        if self.vassals[key].process.is_none() {
            self.forget(key);
            return;
        }
        let (command, grace) = match how {
            Stopping::Graceful => (Command::Stop, self.config.worker_reload_mercy),
            Stopping::Immediate => (Command::StopNow, KILL_GRACE),
        };
        let deadline = now + grace;
        let vassal = &mut self.vassals[key];
        if let State::Stopping {
            deadline: old,
            killed,
        } = vassal.state
        {
            if how == Stopping::Graceful || killed {
                return;
            }
            vassal.state = State::Stopping {
                deadline: old.min(deadline),
                killed,
            };
        } else {
            vassal.state = State::Stopping {
                deadline,
                killed: false,
            };
        }
        self.tell(key, command);
    }

    fn forget(&mut self, key: usize) {
        let mut vassal = self.vassals.remove(key);
        self.by_path.remove(&vassal.path);
        if let Some(mut link) = vassal.process.take().and_then(|p| p.link) {
            let _ = self.poll.registry().deregister(&mut link);
        }
    }

    fn read_link(&mut self, key: usize) {
        let Some(vassal) = self.vassals.get_mut(key) else {
            return;
        };
        let Some(link) = vassal.process.as_ref().and_then(|p| p.link.as_ref()) else {
            return;
        };
        let received = match link.receive() {
            Ok(received) => received,
            Err(e) => {
                log::warn!("emperor: vassal {}: reading its link: {e}", vassal.id());
                emperor_link::Received {
                    bytes: Vec::new(),
                    closed: true,
                }
            }
        };
        let now = Instant::now();
        let now_unix = clock::unix_now().as_secs();
        let name = vassal.id();
        let mut accepting = false;
        for byte in received.bytes {
            match Report::from_byte(byte) {
                Some(report) => match vassal.hear(report, now, now_unix) {
                    Heard::Nothing => {}
                    Heard::NowAccepting => accepting = true,
                    Heard::Unsupported(what) => {
                        log::info!("emperor: vassal {name} asks for {what}: not supported");
                    }
                },
                None => log::warn!("emperor: vassal {name} sent unknown byte {byte}"),
            }
        }
        if received.closed
            && let Some(process) = &mut vassal.process
            && let Some(mut link) = process.link.take()
        {
            let _ = self.poll.registry().deregister(&mut link);
        }
        if accepting
            && let Some((path, _)) = &self.rolling_current
            && *path == self.vassals[key].path
        {
            self.rolling_current = None;
        }
    }

    fn reap(&mut self) {
        let now = Instant::now();
        for (pid, status) in process::reap_children() {
            if let Some(check) = self.checks.remove(&pid) {
                self.finish_check(check, status);
                continue;
            }
            let key = self
                .vassals
                .iter()
                .find(|(_, v)| v.process.as_ref().is_some_and(|p| p.pid == pid))
                .map(|(key, _)| key);
            let Some(key) = key else {
                log::info!("emperor: reaped unknown child pid={pid} status={status}");
                continue;
            };
            let mut link = self.vassals[key]
                .process
                .as_mut()
                .and_then(|p| p.link.take());
            if let Some(link) = &mut link {
                let _ = self.poll.registry().deregister(link);
            }
            let max = self.config.emperor_max_throttle;
            let jitter = self.next_jitter();
            let vassal = &mut self.vassals[key];
            let name = vassal.id();
            match vassal.on_exit(status, now, max, jitter) {
                AfterExit::Gone => {
                    log::info!("emperor: vassal {name} stopped pid={pid} status={status}");
                    let path = vassal.path.clone();
                    self.forget(key);
                    if self.stopping.is_none()
                        && let Some(&id) = self.files.get(&path)
                    {
                        self.file_added(path, id);
                    }
                }
                AfterExit::Respawn(_) if self.stopping.is_some() => self.forget(key),
                AfterExit::Respawn(delay) => {
                    vassal.backoff_until_unix = clock::unix_now().as_secs() + delay.as_secs();
                    log::warn!(
                        "emperor: vassal {name} died pid={pid} status={status}; respawning in {} ms",
                        delay.as_millis()
                    );
                    // It exited with the configuration error code: find out why, for stats
                    // (its own message went to the shared log).
                    if status == ExitStatus::Exited(i32::from(exit::CONFIG)) && self.command.checks
                    {
                        let path = self.vassals[key].path.clone();
                        self.start_check(&path, false);
                    }
                }
                AfterExit::Exile => {
                    log::warn!(
                        "emperor: vassal {name} exiled itself pid={pid} (exit code {}): not \
                         respawned until its file changes",
                        vassal::EXILE_CODE
                    );
                }
            }
        }
    }

    // ----- timers ----------------------------------------------------------------------------

    fn check_backoffs(&mut self, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        let due: Vec<usize> = (self.vassals.iter())
            .filter(|(_, v)| matches!(v.state, State::Backoff { until, .. } if until <= now))
            .map(|(key, _)| key)
            .collect();
        for key in due {
            self.vassals[key].respawns += 1;
            self.spawn_vassal(key);
        }
    }

    fn check_mercy(&mut self, now: Instant) {
        for (_, vassal) in &mut self.vassals {
            if let State::Stopping {
                deadline,
                killed: false,
            } = vassal.state
                && deadline <= now
                && let Some(process) = &vassal.process
            {
                log::warn!(
                    "emperor: vassal {} did not stop in time: SIGKILL pid={}",
                    vassal.id(),
                    process.pid
                );
                let _ = process::send_signal(process.pid, OsSignal::SIGKILL);
                vassal.state = State::Stopping {
                    deadline,
                    killed: true,
                };
            }
        }
    }

    /// A vassal that sent heartbeats and fell silent for `emperor-required-heartbeat` is
    /// reloaded; silent as long again, it is killed (and respawned as any dead vassal).
    fn check_heartbeats(&mut self, now: Instant) {
        let required = self.config.emperor_required_heartbeat;
        if required.is_zero() || self.stopping.is_some() {
            return;
        }
        let mut reload = Vec::new();
        for (key, vassal) in &mut self.vassals {
            let name = vassal.id();
            let Some(process) = &mut vassal.process else {
                continue;
            };
            let Some(last) = process.last_heartbeat else {
                continue;
            };
            match process.heartbeat_reload {
                None if now >= last + required => {
                    log::warn!("emperor: vassal {name} missed its heartbeat: reloading it");
                    process.heartbeat_reload = Some(now);
                    reload.push(key);
                }
                Some(since) if now >= since + required => {
                    log::warn!(
                        "emperor: vassal {name} still sends no heartbeat: SIGKILL pid={}",
                        process.pid
                    );
                    let _ = process::send_signal(process.pid, OsSignal::SIGKILL);
                    process.last_heartbeat = None;
                }
                _ => {}
            }
        }
        for key in reload {
            self.reload_vassal(key);
        }
    }

    /// A vassal that reports over the link but has not reported accepting within the mercy
    /// of its reload is taken to run (its reload may have been refused: it serves as before).
    fn check_reloads(&mut self, now: Instant) {
        let mercy = self.config.worker_reload_mercy;
        for (_, vassal) in &mut self.vassals {
            if let State::Reloading { since } = vassal.state
                && now >= since + mercy
            {
                log::warn!(
                    "emperor: vassal {} did not report accepting within {}s of its reload",
                    vassal.id(),
                    mercy.as_secs()
                );
                vassal.state = State::Running;
            }
        }
    }

    /// A rolling reload goes on: the next vassal once the current one reports accepting
    /// (one that never reports is not waited for), or after the mercy.
    fn check_rolling(&mut self, now: Instant) {
        if let Some((path, until)) = &self.rolling_current {
            let waiting = self
                .by_path
                .get(path)
                .is_some_and(|&key| matches!(self.vassals[key].state, State::Reloading { .. }));
            if waiting && now < *until {
                return;
            }
            self.rolling_current = None;
        }
        while let Some(path) = self.rolling.pop_front() {
            let Some(&key) = self.by_path.get(&path) else {
                continue;
            };
            if !matches!(
                self.vassals[key].state,
                State::Running | State::Reloading { .. }
            ) {
                continue;
            }
            log::info!("emperor: reloading vassal {}", self.vassals[key].id());
            self.reload_vassal(key);
            if matches!(self.vassals[key].state, State::Reloading { .. }) {
                self.rolling_current = Some((path, now + self.config.worker_reload_mercy));
                return;
            }
        }
    }

    fn expire_stats(&mut self, now: Instant) {
        if let Some(mut server) = self.stats.take() {
            server.expire(self.poll.registry(), now, |format| {
                self.stats_answer(format)
            });
            self.stats = Some(server);
        }
    }

    // ----- actions ---------------------------------------------------------------------------

    fn reload_all(&mut self) {
        log::info!(
            "emperor: reloading every vassal, one after another ({})",
            self.vassals.len()
        );
        self.rolling = self.by_path.keys().cloned().collect();
        self.rolling_current = None;
        self.check_rolling(Instant::now());
    }

    fn stop_all(&mut self, how: Stopping) {
        if self.stopping == Some(Stopping::Immediate) {
            return;
        }
        log::info!(
            "emperor: {} stop of every vassal ({})",
            match how {
                Stopping::Graceful => "graceful",
                Stopping::Immediate => "immediate",
            },
            self.vassals.len()
        );
        let _ = self.notifier.stopping();
        self.stopping = Some(how);
        self.rolling.clear();
        self.rolling_current = None;
        for pid in self.checks.keys() {
            let _ = process::send_signal(*pid, OsSignal::SIGKILL);
        }
        let keys: Vec<usize> = self.vassals.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.stop_vassal(key, how);
        }
    }

    fn log_status(&mut self) {
        let logfile = self
            .config
            .logto
            .as_ref()
            .or(self.config.daemonize.as_ref());
        if let Some(file) = logfile {
            match daemon::redirect_output(file) {
                Ok(()) => log::info!("reopened log file {}", file.display()),
                Err(e) => log::error!("cannot reopen log file {}: {e}", file.display()),
            }
            // rcontainer vassals write to that file through descriptors of their own (their
            // `logto`, see `command`): a master reopens its log, and its workers', on USR1.
            if self.command.checks {
                for (_, vassal) in self.vassals.iter() {
                    if let Some(running) = &vassal.process {
                        let _ = process::send_signal(running.pid, OsSignal::SIGUSR1);
                    }
                }
            }
        }
        log::info!("emperor: {}", self.status_text());
        for v in self.vassal_stats() {
            log::info!(
                "vassal id={} state={} pid={} ready={} accepting={} loyal={} respawns={} \
                 backoff_ms={} config_error={}",
                v.id,
                v.state,
                v.pid,
                v.ready,
                v.accepting,
                v.loyal != 0,
                v.respawns,
                v.backoff_ms,
                v.config_error.as_deref().unwrap_or("none")
            );
        }
    }

    fn status_text(&self) -> String {
        let n = self.vassals.len();
        format!("governing {n} vassal{}", if n == 1 { "" } else { "s" })
    }

    /// Tells systemd how many vassals there are, when that changed.
    fn report_status(&mut self) {
        let n = self.vassals.len();
        if self.notifier.is_enabled() && self.governing != Some(n) {
            self.governing = Some(n);
            let _ = self.notifier.status(&self.status_text());
        }
    }

    fn monitor_names(&self) -> Vec<String> {
        self.monitors.iter().map(Monitor::describe).collect()
    }

    fn vassal_stats(&self) -> Vec<VassalStats> {
        let monitors = &self.monitors;
        let mut list: Vec<VassalStats> = self
            .vassals
            .iter()
            .map(|(_, v)| {
                let process = v.process.as_ref();
                let monitor = monitors
                    .iter()
                    .find(|m| matches!(m, Monitor::Dir(dir) if v.path.parent() == Some(dir)))
                    .or(monitors.first())
                    .map(Monitor::describe)
                    .unwrap_or_default();
                let backoff_ms = match v.state {
                    State::Backoff { delay, .. } => {
                        u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
                    }
                    _ => 0,
                };
                VassalStats {
                    id: v.id(),
                    path: v.path.display().to_string(),
                    monitor,
                    state: v.state.name(),
                    pid: process.map_or(0, |p| p.pid.as_raw()),
                    born: process.map_or(0, |p| p.born_unix),
                    last_mod: v.file.mtime_secs(),
                    last_heartbeat: process.map_or(0, |p| p.last_heartbeat_unix),
                    loyal: process.map_or(0, |p| p.loyal_unix),
                    ready: process.is_some_and(|p| p.ready),
                    accepting: process.is_some_and(|p| p.accepting),
                    adopted: process.is_some_and(|p| p.adopted),
                    first_run: v.first_run_unix,
                    last_run: process.map_or(0, |p| p.born_unix),
                    respawns: v.respawns,
                    failures: v.failures,
                    config_error: v.config_error.clone(),
                    backoff_until: if backoff_ms > 0 {
                        v.backoff_until_unix
                    } else {
                        0
                    },
                    backoff_ms,
                }
            })
            .collect();
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list
    }

    fn serve_stats(&mut self, token: Token) {
        // Out of `self` while it serves, so that the document can be built from `self`.
        let Some(mut server) = self.stats.take() else {
            return;
        };
        if server.owns(token) {
            server.ready(self.poll.registry(), token, |format| {
                self.stats_answer(format)
            });
        }
        self.stats = Some(server);
    }

    /// The stats document in `format`, as sent to a client.
    fn stats_answer(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Json => stats::answer(&stats::document(
                process::current_pid().as_raw(),
                &self.monitor_names(),
                &self.vassal_stats(),
            )),
            Format::Prometheus => stats::metrics(&self.vassal_stats()),
        }
    }

    fn next_jitter(&mut self) -> u64 {
        // xorshift64: spreading respawns needs no statistical quality.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        self.jitter % 1001
    }

    fn clean_up(&mut self) {
        if let Some(path) = &self.config.pidfile {
            let _ = pidfile::remove_pidfile_if_ours(path, process::current_pid());
        }
        if let Some(path) = self.stats.as_ref().and_then(|s| s.listener().unix_path()) {
            let _ = std::fs::remove_file(path);
        }
        if self.config.vacuum
            && let Some(fifo) = &self.fifo
        {
            let _ = std::fs::remove_file(fifo.path());
        }
        log::info!("emperor exits");
    }
}

/// The longest configuration error kept for a vassal (the end of the check's output).
const MAX_CONFIG_ERROR: usize = 4096;

/// The last `max` bytes of `text`, cut at a character boundary.
fn last_chars(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn seed() -> u64 {
    let nanos = clock::monotonic_now().as_nanos() as u64;
    nanos ^ u64::from(std::process::id()).rotate_left(32) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_check_output_keeps_its_end_at_a_character_boundary() {
        assert_eq!(last_chars("abcdef", 3), "def");
        assert_eq!(last_chars("ab", 3), "ab");
        assert_eq!(last_chars("aé", 1), "");
        assert_eq!(last_chars("aéz", 2), "z");
    }
}
