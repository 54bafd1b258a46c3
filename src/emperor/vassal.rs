//! One vassal: its file, its process and link, where it is in its life, and the pure
//! decisions about it (what its reports mean, what its exit means, how long its back-off is).
//!
//! States: `Running` (started; `ready`/`accepting`/`loyal` as it reported them), `Reloading`
//! (asked to reload, until it reports accepting again), `Stopping` (asked to stop, killed at
//! the deadline), `Backoff` (dead, respawned at `until`), `Exiled` (exited with uWSGI's exile
//! code: waits for its file to change). A configuration error found by the check before a
//! reload is kept beside the state: the vassal keeps running its previous configuration.
//!
//! What a re-executed emperor needs to know of a vassal (running, in back-off or exiled) fits
//! in [`Adoption`], a line of text of the vassal table it is handed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys::emperor_link::{Link, Report};
use crate::sys::process::{ExitStatus, Pid};

use super::scan::FileId;

/// uWSGI's exile code: a vassal exiting with it is removed, not respawned, until its file
/// changes.
pub(crate) const EXILE_CODE: i32 = 26;
/// The first respawn delay; it doubles with each death in a row.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// A vassal that stayed up this long (and was loyal, if it speaks the protocol) starts its
/// back-off from [`FIRST_BACKOFF`] again.
const STABLE_UPTIME: Duration = Duration::from_secs(60);

/// Where a vassal is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Running,
    /// Asked to reload at `since`; over when it reports accepting (or it never reports).
    Reloading {
        since: Instant,
    },
    /// Asked to stop; SIGKILL at `deadline`.
    Stopping {
        deadline: Instant,
        killed: bool,
    },
    /// Dead; respawned at `until`, `delay` after it died.
    Backoff {
        until: Instant,
        delay: Duration,
    },
    /// Exited with [`EXILE_CODE`]: not respawned until its file changes.
    Exiled,
}

impl State {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            State::Running => "running",
            State::Reloading { .. } => "reloading",
            State::Stopping { .. } => "stopping",
            State::Backoff { .. } => "backoff",
            State::Exiled => "exiled",
        }
    }
}

/// A vassal process and what it reported.
#[derive(Debug)]
pub(crate) struct Process {
    pub(crate) pid: Pid,
    /// The emperor's end of the link; `None` once the vassal closed its end.
    pub(crate) link: Option<Link>,
    pub(crate) started: Instant,
    /// Unix seconds of its start (stats `born`/`last_run`).
    pub(crate) born_unix: u64,
    /// It sent at least one report: it speaks the emperor protocol, so commands go over the
    /// link and its readiness can be waited for. rcontainer vassals that do not report yet
    /// (and any other program) get signals instead.
    pub(crate) speaks: bool,
    pub(crate) ready: bool,
    pub(crate) accepting: bool,
    /// Unix seconds it became loyal (0: not yet).
    pub(crate) loyal_unix: u64,
    /// When its last heartbeat came; `None` if it never sent one.
    pub(crate) last_heartbeat: Option<Instant>,
    pub(crate) last_heartbeat_unix: u64,
    /// Silent too long: a reload was sent at this time; killed if still silent later.
    pub(crate) heartbeat_reload: Option<Instant>,
    /// Started by a previous image of this emperor, adopted after an upgrade.
    pub(crate) adopted: bool,
}

impl Process {
    pub(crate) fn new(pid: Pid, link: Link, now: Instant, now_unix: u64) -> Process {
        Process {
            pid,
            link: Some(link),
            started: now,
            born_unix: now_unix,
            speaks: false,
            ready: false,
            accepting: false,
            loyal_unix: 0,
            last_heartbeat: None,
            last_heartbeat_unix: 0,
            heartbeat_reload: None,
            adopted: false,
        }
    }

    pub(crate) fn is_loyal(&self) -> bool {
        self.loyal_unix != 0
    }
}

/// What a report asks of the emperor besides updating the vassal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heard {
    Nothing,
    /// A reload (or start) is complete: the next vassal of a rolling reload may go.
    NowAccepting,
    /// Logged: the vassal asked for something rcontainer does not do.
    Unsupported(&'static str),
}

/// What becomes of a vassal whose process exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterExit {
    /// It was asked to stop: it is gone.
    Gone,
    /// Respawn after this delay.
    Respawn(Duration),
    /// Exiled: respawned only when its file changes.
    Exile,
}

/// One vassal file and what runs for it.
#[derive(Debug)]
pub(crate) struct Vassal {
    pub(crate) path: PathBuf,
    /// The file's identity when last seen.
    pub(crate) file: FileId,
    pub(crate) process: Option<Process>,
    pub(crate) state: State,
    /// Times it was started again after a death.
    pub(crate) respawns: u32,
    /// Deaths in a row, for the back-off.
    pub(crate) failures: u32,
    /// Why its file's current version does not load (the check before a reload said so).
    pub(crate) config_error: Option<String>,
    /// Unix seconds of the first start.
    pub(crate) first_run_unix: u64,
    /// The back-off's end in unix seconds (stats), while in back-off.
    pub(crate) backoff_until_unix: u64,
}

impl Vassal {
    pub(crate) fn new(path: PathBuf, file: FileId) -> Vassal {
        Vassal {
            path,
            file,
            process: None,
            state: State::Running,
            respawns: 0,
            failures: 0,
            config_error: None,
            first_run_unix: 0,
            backoff_until_unix: 0,
        }
    }

    /// The name stats and the log use: the file name (uWSGI's vassal `id`).
    pub(crate) fn id(&self) -> String {
        file_name(&self.path)
    }

    /// Applies one report byte from the vassal (unknown bytes are for the caller to log).
    pub(crate) fn hear(&mut self, report: Report, now: Instant, now_unix: u64) -> Heard {
        let Some(process) = &mut self.process else {
            return Heard::Nothing;
        };
        process.speaks = true;
        match report {
            Report::Spawned => {
                process.ready = true;
                Heard::Nothing
            }
            Report::Accepting => {
                process.ready = true;
                process.accepting = true;
                if matches!(self.state, State::Reloading { .. }) {
                    self.state = State::Running;
                }
                Heard::NowAccepting
            }
            Report::Loyal => {
                if process.loyal_unix == 0 {
                    process.loyal_unix = now_unix.max(1);
                }
                Heard::Nothing
            }
            Report::Heartbeat => {
                process.last_heartbeat = Some(now);
                process.last_heartbeat_unix = now_unix;
                process.heartbeat_reload = None;
                Heard::Nothing
            }
            Report::Leaving => Heard::Nothing,
            Report::ConfigWanted => Heard::Unsupported("its configuration over the link"),
            Report::Sos => Heard::Unsupported("more capacity (broodlord)"),
        }
    }

    /// A reload was asked for: it is reloading until it reports accepting again, if it speaks
    /// the protocol (one that does not is taken to be running at once).
    pub(crate) fn reloading(&mut self, now: Instant) {
        if let Some(process) = &mut self.process
            && process.speaks
        {
            process.accepting = false;
            self.state = State::Reloading { since: now };
        }
    }

    /// Its process exited with `status`; `max_delay` caps the back-off, `jitter` is a number
    /// in `0..=1000` (permille of the delay added). Updates the counters and the state.
    pub(crate) fn on_exit(
        &mut self,
        status: ExitStatus,
        now: Instant,
        max_delay: Duration,
        jitter: u64,
    ) -> AfterExit {
        let process = self.process.take();
        if matches!(self.state, State::Stopping { .. }) {
            return AfterExit::Gone;
        }
        if status == ExitStatus::Exited(EXILE_CODE) {
            self.state = State::Exiled;
            return AfterExit::Exile;
        }
        if let Some(process) = &process {
            let stable = now.saturating_duration_since(process.started) >= STABLE_UPTIME
                && (process.is_loyal() || !process.speaks);
            if stable {
                self.failures = 0;
            }
        }
        let delay = backoff_delay(self.failures, max_delay, jitter);
        self.failures = self.failures.saturating_add(1);
        self.state = State::Backoff {
            until: now + delay,
            delay,
        };
        AfterExit::Respawn(delay)
    }
}

impl Vassal {
    /// What the next image needs to adopt this vassal: `link_fd` is the number its link is
    /// handed over under (-1: none). `recheck` records an unknown file for a running vassal,
    /// so that the next image checks the file again (a check was running, or the file's
    /// current version does not load and the vassal runs an earlier one). A vassal waiting out
    /// its back-off or exiled is handed over as such, with no process; one stopping without a
    /// process (never: it is forgotten at once) is not.
    pub(crate) fn adoption(&self, link_fd: i32, recheck: bool, now: Instant) -> Option<Adoption> {
        let waiting = match self.state {
            State::Backoff { until, delay } => Waiting::Backoff {
                left_ms: millis(until.saturating_duration_since(now)),
                delay_ms: millis(delay),
            },
            State::Exiled => Waiting::Exiled,
            State::Running | State::Reloading { .. } | State::Stopping { .. } => Waiting::Running,
        };
        let process = self.process.as_ref();
        if waiting == Waiting::Running && process.is_none() {
            return None;
        }
        Some(Adoption {
            pid: process.map_or(0, |p| p.pid.as_raw()),
            link_fd: if process.is_some() { link_fd } else { -1 },
            file: if recheck && waiting == Waiting::Running {
                FileId::default()
            } else {
                self.file
            },
            ready: process.is_some_and(|p| p.ready),
            accepting: process.is_some_and(|p| p.accepting),
            loyal_unix: process.map_or(0, |p| p.loyal_unix),
            born_unix: process.map_or(0, |p| p.born_unix),
            first_run_unix: self.first_run_unix,
            respawns: self.respawns,
            failures: self.failures,
            waiting,
            path: self.path.clone(),
        })
    }

    /// A vassal of the previous image: its process (`link` its link, if it still had one) as
    /// the previous image knew it, or its back-off or exile. A vassal that reported anything
    /// speaks the protocol.
    pub(crate) fn adopt(
        adoption: &Adoption,
        link: Option<Link>,
        now: Instant,
        now_unix: u64,
    ) -> Vassal {
        let mut vassal = Vassal::new(adoption.path.clone(), adoption.file);
        vassal.first_run_unix = adoption.first_run_unix;
        vassal.respawns = adoption.respawns;
        vassal.failures = adoption.failures;
        match adoption.waiting {
            Waiting::Running => {
                let age = Duration::from_secs(now_unix.saturating_sub(adoption.born_unix));
                vassal.process = Some(Process {
                    pid: Pid::from_raw(adoption.pid),
                    link,
                    started: now.checked_sub(age).unwrap_or(now),
                    born_unix: adoption.born_unix,
                    speaks: adoption.ready || adoption.accepting || adoption.loyal_unix != 0,
                    ready: adoption.ready,
                    accepting: adoption.accepting,
                    loyal_unix: adoption.loyal_unix,
                    last_heartbeat: None,
                    last_heartbeat_unix: 0,
                    heartbeat_reload: None,
                    adopted: true,
                });
            }
            Waiting::Backoff { left_ms, delay_ms } => {
                let left = Duration::from_millis(left_ms);
                vassal.state = State::Backoff {
                    until: now + left,
                    delay: Duration::from_millis(delay_ms),
                };
                vassal.backoff_until_unix = now_unix + left.as_secs();
            }
            Waiting::Exiled => vassal.state = State::Exiled,
        }
        vassal
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The delay before respawning a vassal that died `failures` times in a row before: 1 s
/// doubling, at most `max`, plus up to a quarter more (`jitter` permille of a quarter), so
/// vassals that died together do not all come back in the same instant.
pub(crate) fn backoff_delay(failures: u32, max: Duration, jitter: u64) -> Duration {
    let base = FIRST_BACKOFF
        .checked_mul(1u32.checked_shl(failures.min(30)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max.max(FIRST_BACKOFF));
    let extra = base / 4 * u32::try_from(jitter.min(1000)).unwrap_or(1000) / 1000;
    base + extra
}

/// A file's name, for messages and stats.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A vassal as one line of text, for a re-executed emperor to adopt it (the link's fd stays
/// open across the exec): `pid fd dev ino size mtime_ns ready accepting loyal_unix born_unix
/// first_run_unix respawns failures waiting path`, `waiting` being `run`, `exiled` or
/// `backoff:LEFT_MS:DELAY_MS` (then `pid` is 0: no process), the path last (it may contain
/// spaces; `%`, control bytes and bytes that are not ASCII are written `%XX`, so any path
/// survives and a line holds no newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Adoption {
    pub(crate) pid: i32,
    pub(crate) link_fd: i32,
    pub(crate) file: FileId,
    pub(crate) ready: bool,
    pub(crate) accepting: bool,
    pub(crate) loyal_unix: u64,
    pub(crate) born_unix: u64,
    pub(crate) first_run_unix: u64,
    pub(crate) respawns: u32,
    pub(crate) failures: u32,
    pub(crate) waiting: Waiting,
    pub(crate) path: PathBuf,
}

/// Whether an adopted vassal has a process, or waits for its respawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// It has a process (`pid`).
    Running,
    /// Dead, respawned `left_ms` from now (`delay_ms` after it died).
    Backoff { left_ms: u64, delay_ms: u64 },
    /// Exiled: respawned when its file changes.
    Exiled,
}

impl Waiting {
    fn encode(self) -> String {
        match self {
            Waiting::Running => "run".into(),
            Waiting::Exiled => "exiled".into(),
            Waiting::Backoff { left_ms, delay_ms } => format!("backoff:{left_ms}:{delay_ms}"),
        }
    }

    fn decode(word: &str) -> Option<Waiting> {
        Some(match word {
            "run" => Waiting::Running,
            "exiled" => Waiting::Exiled,
            _ => {
                let (left, delay) = word.strip_prefix("backoff:")?.split_once(':')?;
                Waiting::Backoff {
                    left_ms: left.parse().ok()?,
                    delay_ms: delay.parse().ok()?,
                }
            }
        })
    }
}

impl Adoption {
    pub(crate) fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
            self.pid,
            self.link_fd,
            self.file.dev,
            self.file.ino,
            self.file.size,
            self.file.mtime_ns,
            u8::from(self.ready),
            u8::from(self.accepting),
            self.loyal_unix,
            self.born_unix,
            self.first_run_unix,
            self.respawns,
            self.failures,
            self.waiting.encode(),
            escape_path(&self.path)
        )
    }

    pub(crate) fn decode(line: &str) -> Option<Adoption> {
        let mut words = line.splitn(15, ' ');
        let mut next = || words.next();
        let pid = next()?.parse().ok()?;
        let link_fd = next()?.parse().ok()?;
        let file = FileId {
            dev: next()?.parse().ok()?,
            ino: next()?.parse().ok()?,
            size: next()?.parse().ok()?,
            mtime_ns: next()?.parse().ok()?,
        };
        let flag = |word: Option<&str>| -> Option<bool> {
            match word? {
                "0" => Some(false),
                "1" => Some(true),
                _ => None,
            }
        };
        let ready = flag(next())?;
        let accepting = flag(next())?;
        let loyal_unix = next()?.parse().ok()?;
        let born_unix = next()?.parse().ok()?;
        let first_run_unix = next()?.parse().ok()?;
        let respawns = next()?.parse().ok()?;
        let failures = next()?.parse().ok()?;
        let waiting = Waiting::decode(next()?)?;
        let path = unescape_path(next().filter(|p| !p.is_empty())?)?;
        // A running vassal has a process; a waiting one has none.
        if (waiting == Waiting::Running) != (pid > 0) {
            return None;
        }
        Some(Adoption {
            pid,
            link_fd,
            file,
            ready,
            accepting,
            loyal_unix,
            born_unix,
            first_run_unix,
            respawns,
            failures,
            waiting,
            path,
        })
    }
}

/// A path as printable ASCII without newlines: `%`, control bytes and non-ASCII bytes as `%XX`.
fn escape_path(path: &Path) -> String {
    use std::fmt::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &byte in path.as_os_str().as_bytes() {
        if byte == b'%' || !(0x20..0x7f).contains(&byte) {
            let _ = write!(out, "%{byte:02X}");
        } else {
            out.push(char::from(byte));
        }
    }
    out
}

/// The inverse of [`escape_path`]; `None` for a malformed escape.
fn unescape_path(text: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> FileId {
        FileId {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
        }
    }

    fn running(now: Instant) -> Vassal {
        let (link, _theirs) = Link::pair().unwrap();
        let mut vassal = Vassal::new(PathBuf::from("/v/app.ini"), file());
        vassal.process = Some(Process::new(Pid::from_raw(10), link, now, 1000));
        vassal
    }

    #[test]
    fn the_back_off_starts_at_one_second_doubles_and_stops_at_the_maximum() {
        let max = Duration::from_secs(180);
        let delays: Vec<u64> = (0..10)
            .map(|n| backoff_delay(n, max, 0).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 180, 180]);
        assert_eq!(backoff_delay(1, max, 1000), Duration::from_millis(2500));
        assert_eq!(backoff_delay(u32::MAX, max, 0), max);
        assert_eq!(backoff_delay(5, Duration::ZERO, 0), FIRST_BACKOFF);
    }

    #[test]
    fn deaths_in_a_row_grow_the_delay_and_a_stable_run_resets_it() {
        let now = Instant::now();
        let max = Duration::from_secs(180);
        let mut vassal = running(now);
        let died = ExitStatus::Exited(1);
        assert_eq!(
            vassal.on_exit(died, now, max, 0),
            AfterExit::Respawn(Duration::from_secs(1))
        );
        vassal.process = running(now).process;
        assert_eq!(
            vassal.on_exit(died, now, max, 0),
            AfterExit::Respawn(Duration::from_secs(2))
        );
        assert!(matches!(vassal.state, State::Backoff { .. }));
        // Up for a long time, and loyal: the next death starts over.
        vassal.process = running(now).process;
        let later = now + STABLE_UPTIME;
        vassal.hear(Report::Loyal, later, 2000);
        assert_eq!(
            vassal.on_exit(died, later, max, 0),
            AfterExit::Respawn(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_long_run_without_loyalty_does_not_reset_a_vassal_that_speaks_the_protocol() {
        let now = Instant::now();
        let max = Duration::from_secs(180);
        let mut vassal = running(now);
        vassal.failures = 3;
        vassal.hear(Report::Spawned, now, 1000);
        let later = now + STABLE_UPTIME;
        assert_eq!(
            vassal.on_exit(ExitStatus::Exited(1), later, max, 0),
            AfterExit::Respawn(Duration::from_secs(8))
        );
    }

    #[test]
    fn the_exile_code_exiles_and_a_stopping_vassal_is_gone() {
        let now = Instant::now();
        let max = Duration::from_secs(180);
        let mut vassal = running(now);
        let exile = ExitStatus::Exited(EXILE_CODE);
        assert_eq!(vassal.on_exit(exile, now, max, 0), AfterExit::Exile);
        assert_eq!(vassal.state, State::Exiled);
        let mut vassal = running(now);
        vassal.state = State::Stopping {
            deadline: now,
            killed: false,
        };
        assert_eq!(vassal.on_exit(exile, now, max, 0), AfterExit::Gone);
    }

    #[test]
    fn reports_mark_ready_accepting_loyal_and_end_a_reload() {
        let now = Instant::now();
        let mut vassal = running(now);
        vassal.reloading(now);
        assert_eq!(vassal.state, State::Running, "it never reported: no wait");
        assert_eq!(vassal.hear(Report::Spawned, now, 1000), Heard::Nothing);
        vassal.reloading(now);
        assert!(matches!(vassal.state, State::Reloading { .. }));
        assert_eq!(
            vassal.hear(Report::Accepting, now, 1000),
            Heard::NowAccepting
        );
        assert_eq!(vassal.state, State::Running);
        vassal.hear(Report::Loyal, now, 1234);
        vassal.hear(Report::Loyal, now, 9999);
        let process = vassal.process.as_ref().unwrap();
        assert!(process.ready && process.accepting && process.speaks);
        assert_eq!(process.loyal_unix, 1234, "loyal once, at the first report");
        assert!(matches!(
            vassal.hear(Report::Sos, now, 1),
            Heard::Unsupported(_)
        ));
    }

    #[test]
    fn an_adoption_line_round_trips_with_spaces_in_the_path() {
        let adoption = Adoption {
            pid: 42,
            link_fd: 7,
            file: file(),
            ready: true,
            accepting: false,
            loyal_unix: 1_700_000_000,
            born_unix: 1_600_000_000,
            first_run_unix: 1_500_000_000,
            respawns: 3,
            failures: 1,
            waiting: Waiting::Running,
            path: PathBuf::from("/etc/my vassals/app.ini"),
        };
        assert_eq!(Adoption::decode(&adoption.encode()), Some(adoption.clone()));
        let waiting = Adoption {
            pid: 0,
            link_fd: -1,
            waiting: Waiting::Backoff {
                left_ms: 1500,
                delay_ms: 4000,
            },
            ..adoption.clone()
        };
        let line = waiting.encode();
        assert!(line.contains(" backoff:1500:4000 "), "{line}");
        assert_eq!(Adoption::decode(&line), Some(waiting));
        let exiled = Adoption {
            pid: 0,
            waiting: Waiting::Exiled,
            ..adoption
        };
        assert_eq!(Adoption::decode(&exiled.encode()), Some(exiled));
        assert_eq!(Adoption::decode("42 7 1 2 3"), None);
        assert_eq!(
            Adoption::decode("42 7 1 2 3 4 2 0 0 0 0 0 0 run /a.ini"),
            None
        );
        assert_eq!(Adoption::decode("42 7 1 2 3 4 1 0 0 0 0 0 0 run "), None);
        assert_eq!(
            Adoption::decode("42 7 1 2 3 4 1 0 0 0 0 0 0 run /a%4"),
            None
        );
        assert_eq!(Adoption::decode("42 7 1 2 3 4 1 0 0 0 0 0 0 nap /a"), None);
        assert_eq!(Adoption::decode("0 7 1 2 3 4 1 0 0 0 0 0 0 run /a"), None);
        assert_eq!(
            Adoption::decode("9 7 1 2 3 4 1 0 0 0 0 0 0 exiled /a"),
            None
        );
    }

    #[test]
    fn any_path_survives_an_adoption_line_which_holds_no_newline() {
        use std::os::unix::ffi::OsStringExt;
        let odd = std::ffi::OsString::from_vec(b"/v/x\n%41 \xff\xc3\xa9.ini".to_vec());
        let adoption = Adoption {
            pid: 1,
            link_fd: -1,
            file: file(),
            ready: false,
            accepting: false,
            loyal_unix: 0,
            born_unix: 0,
            first_run_unix: 0,
            respawns: 0,
            failures: 0,
            waiting: Waiting::Running,
            path: PathBuf::from(odd),
        };
        let line = adoption.encode();
        assert!(!line.contains('\n') && line.is_ascii(), "{line}");
        assert!(line.ends_with("/v/x%0A%2541 %FF%C3%A9.ini"), "{line}");
        assert_eq!(Adoption::decode(&line), Some(adoption));
    }

    #[test]
    fn an_adopted_vassal_keeps_what_the_previous_image_knew_and_a_stale_file_is_rechecked() {
        let now = Instant::now();
        let mut vassal = running(now);
        vassal.respawns = 2;
        vassal.first_run_unix = 900;
        vassal.hear(Report::Accepting, now, 1000);
        vassal.hear(Report::Loyal, now, 1100);
        vassal.failures = 4;
        let adoption = vassal.adoption(7, false, now).expect("it runs");
        assert_eq!(adoption.file, file());
        let line = adoption.encode();
        let back = Adoption::decode(&line).expect("decodes");
        let adopted = Vassal::adopt(&back, None, now, 1200);
        let process = adopted.process.as_ref().expect("a process");
        assert_eq!(process.pid, Pid::from_raw(10));
        assert!(process.adopted && process.speaks && process.ready && process.accepting);
        assert_eq!(process.loyal_unix, 1100);
        assert_eq!(process.born_unix, 1000);
        assert_eq!((adopted.respawns, adopted.first_run_unix), (2, 900));
        assert_eq!(adopted.failures, 4);
        assert_eq!(adopted.state, State::Running);
        assert_eq!(
            vassal.adoption(7, true, now).expect("it runs").file,
            FileId::default(),
            "a file to check again is recorded as unknown"
        );
        vassal.process = None;
        assert_eq!(
            vassal.adoption(7, false, now),
            None,
            "neither running nor waiting"
        );
    }

    #[test]
    fn a_vassal_in_back_off_or_exiled_is_adopted_waiting_as_it_was() {
        let now = Instant::now();
        let max = Duration::from_secs(180);
        let mut vassal = running(now);
        vassal.failures = 2;
        let AfterExit::Respawn(delay) = vassal.on_exit(ExitStatus::Exited(1), now, max, 0) else {
            panic!("a death is respawned");
        };
        assert_eq!(delay, Duration::from_secs(4));
        let later = now + Duration::from_secs(1);
        let adoption = vassal.adoption(7, true, later).expect("waiting");
        assert_eq!((adoption.pid, adoption.link_fd), (0, -1));
        assert_eq!(
            adoption.file,
            file(),
            "no recheck while waiting: no respawn at once"
        );
        assert_eq!(
            adoption.waiting,
            Waiting::Backoff {
                left_ms: 3000,
                delay_ms: 4000
            }
        );
        let back = Adoption::decode(&adoption.encode()).expect("decodes");
        let adopted = Vassal::adopt(&back, None, later, 1000);
        assert!(adopted.process.is_none());
        assert_eq!(adopted.failures, 3);
        assert_eq!(
            adopted.state,
            State::Backoff {
                until: later + Duration::from_secs(3),
                delay
            }
        );
        assert_eq!(adopted.backoff_until_unix, 1003);

        let mut exiled = running(now);
        exiled.on_exit(ExitStatus::Exited(EXILE_CODE), now, max, 0);
        let adoption = exiled.adoption(-1, false, now).expect("exiled");
        let adopted = Vassal::adopt(&adoption, None, now, 1000);
        assert_eq!(adopted.state, State::Exiled);
    }
}
