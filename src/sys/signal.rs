//! Signals as data: a self-pipe that the master's or a worker's `mio` loop reads.
//!
//! Owns the process's signal dispositions. The handler only writes a five-byte record (the
//! signal number, and the sender's pid when it asked for an answer) into a non-blocking pipe
//! (async-signal-safe, errno preserved); everything else happens in the loop that drains
//! [`SignalSource`]. It must not log, allocate or lock in the handler.
//!
//! Why not `signal-hook` (the crate is not a dependency):
//! - its pipe registration (`signal_hook::low_level::pipe::register`) writes the same byte, `X`,
//!   for every signal and passes on nothing of the `siginfo_t`: telling HUP from TERM would take
//!   one pipe per signal (eleven in the master, six per worker), and who sent a signal
//!   (`si_pid` of a `sigqueue` with our value: how `rcontainer --reload` gets its answer) could
//!   not reach the loop at all;
//! - its registry is process-global and survives `fork`: a forked worker must unregister every
//!   action of the master's by `SigId` before it installs its own, and its handler stays
//!   installed after that, where a worker wants clean defaults until it is ready.
//!
//! The whole mechanism here is one `SA_SIGINFO` handler function and one atomic file
//! descriptor, reset in every forked child.
//!
//! Exactly one source is installed per process at a time (the master's, or after a fork the
//! worker's). Signal numbers below are the Linux ones.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, sigaction};

use super::process::{OsSignal, Pid};

/// The write end of the installed source's pipe, or -1. Read by the handler.
static PIPE_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// The `sigqueue` value of a signal whose sender waits for an answer ([`request_answer`]):
/// the master answers such a HUP once the reload is done or refused ([`send_answer`]). A plain
/// `kill` never asks, so nobody is ever signalled who did not ask.
const ANSWER_REQUESTED: usize = 0x7263_7274;
/// The signal that answers "done".
const ANSWER_DONE: OsSignal = OsSignal::SIGUSR1;
/// The signal that answers "refused".
const ANSWER_REFUSED: OsSignal = OsSignal::SIGUSR2;
/// One record in the pipe: the signal number, then the requester's pid (0: none), LE.
const RECORD: usize = 5;

/// A signal the master or a worker acts on. WINCH and PIPE are ignored and never appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Signal {
    /// Master: graceful reload. Workers: ignored.
    Hup,
    /// Master: graceful shutdown. Workers: drain and exit.
    Term,
    /// Immediate shutdown.
    Int,
    /// Immediate shutdown.
    Quit,
    /// Reopen logs, then log stats.
    Usr1,
    /// Log what every core is doing.
    Usr2,
    /// Master: one worker more.
    Ttin,
    /// Master: one worker fewer.
    Ttou,
    /// Pause / resume accepting (the master toggles, and forwards it to workers).
    Tstp,
    /// Master: a child exited; reap.
    Chld,
    /// Master: chain reload (`--chain-reload PIDFILE`; uWSGI gives the master no use for it).
    Urg,
}

impl Signal {
    /// Every signal the master catches, in a fixed order.
    pub(crate) const MASTER: [Signal; 11] = [
        Signal::Hup,
        Signal::Term,
        Signal::Int,
        Signal::Quit,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Ttin,
        Signal::Ttou,
        Signal::Tstp,
        Signal::Chld,
        Signal::Urg,
    ];
    /// Every signal a worker catches.
    pub(crate) const WORKER: [Signal; 6] = [
        Signal::Term,
        Signal::Int,
        Signal::Quit,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Tstp,
    ];

    /// The kernel's signal.
    pub(crate) fn os(self) -> OsSignal {
        match self {
            Signal::Hup => OsSignal::SIGHUP,
            Signal::Term => OsSignal::SIGTERM,
            Signal::Int => OsSignal::SIGINT,
            Signal::Quit => OsSignal::SIGQUIT,
            Signal::Usr1 => OsSignal::SIGUSR1,
            Signal::Usr2 => OsSignal::SIGUSR2,
            Signal::Ttin => OsSignal::SIGTTIN,
            Signal::Ttou => OsSignal::SIGTTOU,
            Signal::Tstp => OsSignal::SIGTSTP,
            Signal::Chld => OsSignal::SIGCHLD,
            Signal::Urg => OsSignal::SIGURG,
        }
    }

    /// The `Signal` for a raw signal number, if it is one we catch.
    pub(crate) fn from_raw(signo: i32) -> Option<Signal> {
        Signal::MASTER
            .into_iter()
            .find(|signal| signal.os() as i32 == signo)
    }
}

/// `HUP`, `TERM`, ...: the name log lines use (`signal=HUP`).
impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(super::process::signal_short_name(self.os()))
    }
}

/// A signal as the handler recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) signal: Signal,
    /// Who sent it, when it asked for an answer (`rcontainer --reload`).
    pub(crate) requester: Option<Pid>,
}

/// What a master answered to a signal that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Done (a reload: the new workers accept).
    Done,
    /// Refused (a reload: the configuration or the binary cannot start; the old one serves).
    Refused,
}

/// Sends `signal` to `pid` asking for an answer, and waits up to `timeout` for it. `Ok(None)`:
/// no answer in time. Other signals that answer from other processes are ignored.
///
/// Blocks [`Answer`]'s signals in the calling thread (they are taken with `sigtimedwait`); meant
/// for a one-shot command process.
pub(crate) fn request_answer(
    pid: Pid,
    signal: OsSignal,
    timeout: std::time::Duration,
) -> io::Result<Option<Answer>> {
    let mut answers = SigSet::empty();
    answers.add(ANSWER_DONE);
    answers.add(ANSWER_REFUSED);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&answers), None)?;
    let value = libc::sigval {
        sival_ptr: ANSWER_REQUESTED as *mut libc::c_void,
    };
    // SAFETY: plain syscall wrapper; `value` is passed by value.
    if unsafe { libc::sigqueue(pid.as_raw(), signal as libc::c_int, value) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let wait = libc::timespec {
            tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(left.subsec_nanos()),
        };
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: `answers` is a valid set, `info` a writable siginfo_t, `wait` a valid timespec.
        let got = unsafe { libc::sigtimedwait(answers.as_ref(), info.as_mut_ptr(), &wait) };
        if got < 0 {
            match Errno::last() {
                Errno::EAGAIN => return Ok(None),
                Errno::EINTR => continue,
                errno => return Err(errno.into()),
            }
        }
        // SAFETY: zeroed above and filled by the kernel for the signal it returned.
        let from = unsafe { info.assume_init().si_pid() };
        if from != pid.as_raw() {
            continue;
        }
        return Ok(Some(if got == ANSWER_DONE as libc::c_int {
            Answer::Done
        } else {
            Answer::Refused
        }));
    }
}

/// Answers `requester`, who asked with [`request_answer`].
pub(crate) fn send_answer(requester: Pid, answer: Answer) -> io::Result<()> {
    let signal = match answer {
        Answer::Done => ANSWER_DONE,
        Answer::Refused => ANSWER_REFUSED,
    };
    nix::sys::signal::kill(requester, signal)?;
    Ok(())
}

/// Who installs a source: decides what is caught and what is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Master,
    Worker,
}

impl Role {
    fn caught(self) -> &'static [Signal] {
        match self {
            Role::Master => &Signal::MASTER,
            Role::Worker => &Signal::WORKER,
        }
    }

    /// Terminal resizes and broken pipes must never kill anyone. Workers also ignore HUP (so
    /// `pkill -HUP rcontainer` cannot stop every worker at once) and TTIN/TTOU (whose default
    /// would stop a worker that touches the terminal from the background).
    fn ignored(self) -> &'static [OsSignal] {
        match self {
            Role::Master => &[OsSignal::SIGWINCH, OsSignal::SIGPIPE],
            Role::Worker => &[
                OsSignal::SIGWINCH,
                OsSignal::SIGPIPE,
                OsSignal::SIGHUP,
                OsSignal::SIGTTIN,
                OsSignal::SIGTTOU,
            ],
        }
    }
}

/// The read end of the signal self-pipe: register it in a `mio::Poll` (it is a `mio` event
/// source) and call [`SignalSource::drain`] when it is readable.
///
/// Dropping the installed source restores the default dispositions of the signals it caught.
///
/// ```ignore
/// let mut signals = SignalSource::install_master()?;
/// poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
/// // in the loop, on SIGNALS:
/// for signal in signals.drain()? { let action = action_for_signal(signal); /* ... */ }
/// ```
#[derive(Debug)]
pub(crate) struct SignalSource {
    read: OwnedFd,
    write: OwnedFd,
    role: Role,
}

impl SignalSource {
    /// Installs the master's handlers: HUP, TERM, INT, QUIT, USR1, USR2, TTIN, TTOU, TSTP, CHLD
    /// and URG are recorded; WINCH and PIPE are ignored.
    pub(crate) fn install_master() -> io::Result<SignalSource> {
        SignalSource::install(Role::Master)
    }

    /// Installs a worker's handlers: TERM, INT, QUIT, USR1, USR2 and TSTP are recorded; HUP,
    /// TTIN, TTOU, WINCH and PIPE are ignored.
    ///
    /// A Ctrl-Z on a terminal sends TSTP to the whole foreground process group, master and
    /// workers at once; a master that forwards TSTP would then toggle workers twice.
    pub(crate) fn install_worker() -> io::Result<SignalSource> {
        SignalSource::install(Role::Worker)
    }

    fn install(role: Role) -> io::Result<SignalSource> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let write_fd = write.as_raw_fd();
        if PIPE_WRITE_FD
            .compare_exchange(-1, write_fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a signal source is already installed in this process",
            ));
        }
        let source = SignalSource { read, write, role };
        for signal in role.caught() {
            set_disposition(signal.os(), SigHandler::SigAction(record_signal))?;
        }
        for &signal in role.ignored() {
            set_disposition(signal, SigHandler::SigIgn)?;
        }
        // A forked child starts with the signals blocked (`reset_in_child`), so none could hit
        // a default disposition before this point: a worker takes them from now on. A master
        // unblocks them itself once it can act on them (`unblock_master_signals`).
        if role == Role::Worker {
            unblock_master_signals()?;
        }
        Ok(source)
    }

    /// Before a re-exec: signals recorded in the pipe but not acted on yet are raised again, to
    /// stay pending across the exec (they must be blocked: [`block_master_signals`]) and reach
    /// the new image's handlers. The pipe itself does not survive the exec; the requesters of
    /// those signals are returned, for the caller to hand over.
    pub(crate) fn requeue_unread(&mut self) -> io::Result<Vec<Pid>> {
        let mut requesters = Vec::new();
        for received in self.drain_received()? {
            nix::sys::signal::raise(received.signal.os())?;
            requesters.extend(received.requester);
        }
        Ok(requesters)
    }

    /// Returns the signals received since the last call, oldest first, repeats included (two
    /// TTINs mean two more workers). Never blocks; an empty vector is a spurious wakeup.
    ///
    /// The kernel merges a signal that arrives while the same one is still pending, so counts
    /// are "at least one", not exact.
    pub(crate) fn drain(&mut self) -> io::Result<Vec<Signal>> {
        Ok(self
            .drain_received()?
            .into_iter()
            .map(|r| r.signal)
            .collect())
    }

    /// [`SignalSource::drain_received`] for a supervising loop (master, emperor), which goes on
    /// whatever happens: a failed read is logged and reads as no signal.
    pub(crate) fn drain_received_or_log(&mut self) -> Vec<Received> {
        self.drain_received().unwrap_or_else(|e| {
            log::error!("reading signals failed: {e}");
            Vec::new()
        })
    }

    /// Like [`SignalSource::drain`], with who asked for an answer.
    pub(crate) fn drain_received(&mut self) -> io::Result<Vec<Received>> {
        let mut received = Vec::new();
        // A whole number of records: each is written atomically (below PIPE_BUF), so a read of
        // a multiple of the record size never splits one.
        let mut buf = [0u8; RECORD * 64];
        loop {
            match nix::unistd::read(&self.read, &mut buf) {
                Ok(0) | Err(Errno::EAGAIN) => break,
                Ok(n) => received.extend(decode_records(&buf[..n])),
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(received)
    }
}

impl SignalSource {
    /// Both ends of the pipe (a forked child closes its copies).
    pub(crate) fn raw_fds(&self) -> [RawFd; 2] {
        [self.read.as_raw_fd(), self.write.as_raw_fd()]
    }
}

impl AsRawFd for SignalSource {
    fn as_raw_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

impl AsFd for SignalSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

super::fd_event_source!(SignalSource, |source| source.read.as_raw_fd());

impl Drop for SignalSource {
    /// Restores the defaults only if this source is still the installed one: a forked worker
    /// may drop its copy of the master's source after installing its own.
    fn drop(&mut self) {
        let write_fd = self.write.as_raw_fd();
        let was_installed = PIPE_WRITE_FD
            .compare_exchange(write_fd, -1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if was_installed {
            for signal in self.role.caught() {
                let _ = set_disposition(signal.os(), SigHandler::SigDfl);
            }
        }
    }
}

/// Maps pipe records to signals; signals we do not catch cannot occur and are skipped.
fn decode_records(bytes: &[u8]) -> impl Iterator<Item = Received> + '_ {
    bytes.chunks_exact(RECORD).filter_map(|record| {
        let signal = Signal::from_raw(i32::from(record[0]))?;
        let pid = i32::from_le_bytes([record[1], record[2], record[3], record[4]]);
        Some(Received {
            signal,
            requester: (pid > 0).then(|| Pid::from_raw(pid)),
        })
    })
}

/// One pipe record for `signo` sent by `requester` (0: nobody waits for an answer).
fn encode_record(signo: libc::c_int, requester: i32) -> [u8; RECORD] {
    let pid = requester.to_le_bytes();
    // Linux signal numbers are below 65, so they fit in one byte.
    [signo as u8, pid[0], pid[1], pid[2], pid[3]]
}

/// The handler: records the signal number (and who asked for an answer) in the pipe and
/// nothing else.
extern "C" fn record_signal(
    signo: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    let saved_errno = Errno::last_raw();
    let fd = PIPE_WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t for this delivery (or
        // null, checked); reading `si_value`/`si_pid` of an SI_QUEUE signal reads the fields
        // the kernel filled for it.
        let requester = unsafe {
            match info.as_ref() {
                Some(info)
                    if info.si_code == libc::SI_QUEUE
                        && info.si_value().sival_ptr as usize == ANSWER_REQUESTED =>
                {
                    info.si_pid()
                }
                _ => 0,
            }
        };
        let record = encode_record(signo, requester);
        // SAFETY: write(2) is async-signal-safe; `record` lives for the call. A full pipe
        // (EAGAIN: thousands of unread signals) drops the record, and the reader is awake anyway.
        unsafe { libc::write(fd, record.as_ptr().cast(), RECORD) };
    }
    Errno::set_raw(saved_errno);
}

fn set_disposition(signal: OsSignal, handler: SigHandler) -> io::Result<()> {
    // SA_RESTART: slow syscalls in the loop resume instead of failing with EINTR (epoll_wait
    // still returns EINTR: mio reports it as `Interrupted`, which the loop just retries).
    // SA_NOCLDSTOP: a stopped child is not an exit.
    let flags = SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP | SaFlags::SA_SIGINFO;
    let action = SigAction::new(handler, flags, SigSet::empty());
    // SAFETY: `record_signal` is async-signal-safe (one write(2), errno restored); the other
    // handlers are SIG_DFL / SIG_IGN.
    unsafe { sigaction(signal, &action) }?;
    Ok(())
}

fn signal_set(signals: &[Signal]) -> SigSet {
    let mut set = SigSet::empty();
    for signal in signals {
        set.add(signal.os());
    }
    set
}

/// Blocks every signal the master catches and returns the previous mask. Before a re-exec:
/// the mask survives the exec, so a signal arriving before the new image has installed its
/// handlers stays pending instead of killing it (the default action of HUP, TERM, USR1...).
/// [`SignalSource::install_master`] unblocks them.
pub(crate) fn block_master_signals() -> io::Result<SigSet> {
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&signal_set(&Signal::MASTER)),
        Some(&mut previous),
    )?;
    Ok(previous)
}

/// Unblocks what [`block_master_signals`] blocked: pending signals reach the handlers now.
pub(crate) fn unblock_master_signals() -> io::Result<()> {
    let set = signal_set(&Signal::MASTER);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)?;
    Ok(())
}

/// Blocks every signal for the calling thread and returns the previous mask (used around fork).
pub(crate) fn block_all() -> io::Result<SigSet> {
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut previous),
    )?;
    Ok(previous)
}

/// Restores a mask returned by [`block_all`].
pub(crate) fn restore_mask(mask: &SigSet) -> io::Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None)?;
    Ok(())
}

/// In a freshly forked child: forgets the parent's pipe, puts every signal either role catches
/// back to its default disposition, and leaves those signals blocked (all others unblocked)
/// until the child installs its own source: a worker sent TERM or USR1 while it boots gets it
/// once it can act on it, instead of dying by the default action. Ignored signals stay ignored
/// (as across exec). [`crate::sys::process::fork`] calls it. The parent's `SignalSource` copy
/// in the child is inert and may be dropped.
pub(crate) fn reset_in_child() -> io::Result<()> {
    PIPE_WRITE_FD.store(-1, Ordering::SeqCst);
    for signal in Signal::MASTER {
        set_disposition(signal.os(), SigHandler::SigDfl)?;
    }
    restore_mask(&signal_set(&Signal::MASTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::rerun;

    #[test]
    fn every_caught_signal_round_trips_through_its_number() {
        for signal in Signal::MASTER {
            assert_eq!(Signal::from_raw(signal.os() as i32), Some(signal));
        }
        assert_eq!(Signal::from_raw(OsSignal::SIGWINCH as i32), None);
        assert_eq!(Signal::from_raw(OsSignal::SIGPIPE as i32), None);
    }

    #[test]
    fn workers_ignore_hup_and_catch_term() {
        assert!(Role::Worker.ignored().contains(&OsSignal::SIGHUP));
        assert!(Role::Worker.caught().contains(&Signal::Term));
        assert!(!Role::Worker.caught().contains(&Signal::Hup));
        assert!(Role::Master.caught().contains(&Signal::Hup));
        assert_eq!(Signal::Ttin.to_string(), "TTIN");
    }

    #[test]
    fn pipe_records_decode_in_order_with_repeats_and_requesters() {
        let bytes: Vec<u8> = [
            encode_record(OsSignal::SIGTTIN as i32, 0),
            encode_record(OsSignal::SIGTTIN as i32, 0),
            encode_record(OsSignal::SIGWINCH as i32, 0),
            encode_record(OsSignal::SIGHUP as i32, 4242),
        ]
        .concat();
        let decoded: Vec<Received> = decode_records(&bytes).collect();
        let plain = |signal| Received {
            signal,
            requester: None,
        };
        assert_eq!(
            decoded,
            [
                plain(Signal::Ttin),
                plain(Signal::Ttin),
                Received {
                    signal: Signal::Hup,
                    requester: Some(Pid::from_raw(4242)),
                }
            ]
        );
    }

    /// Runs in a child copy of the test binary: installing handlers is process-wide.
    #[test]
    fn master_source_records_raised_signals_in_a_child_process() {
        rerun::in_child_process(
            "sys::signal::tests::master_source_records_raised_signals_in_a_child_process",
            || {
                let mut source = SignalSource::install_master().expect("install");
                assert!(SignalSource::install_worker().is_err(), "only one source");
                nix::sys::signal::raise(OsSignal::SIGUSR1).expect("raise");
                nix::sys::signal::raise(OsSignal::SIGWINCH).expect("raise");
                nix::sys::signal::raise(OsSignal::SIGTTIN).expect("raise");
                assert_eq!(source.drain().expect("drain"), [Signal::Usr1, Signal::Ttin]);
                assert_eq!(source.drain().expect("drain"), []);
            },
        );
    }

    #[test]
    fn a_forked_worker_catches_its_own_signals_not_the_masters_in_a_child_process() {
        use crate::sys::process::{ExitStatus, Forked, current_pid, exit_now, fork};
        rerun::in_child_process(
            "sys::signal::tests::a_forked_worker_catches_its_own_signals_not_the_masters_in_a_child_process",
            || {
                let mut master = SignalSource::install_master().expect("install");
                let child = match fork().expect("fork") {
                    Forked::Child => {
                        let mut worker = SignalSource::install_worker().expect("worker");
                        let me = current_pid();
                        nix::sys::signal::kill(me, OsSignal::SIGTERM).expect("term");
                        nix::sys::signal::kill(me, OsSignal::SIGHUP).expect("hup, ignored");
                        let caught = worker.drain().expect("drain");
                        drop(master);
                        exit_now(if caught == [Signal::Term] { 0 } else { 1 });
                    }
                    Forked::Parent(child) => child,
                };
                let reaped = crate::sys::rerun::reap_within(std::time::Duration::from_secs(10));
                assert_eq!(reaped, [(child, ExitStatus::Exited(0))]);
                assert_eq!(
                    master.drain().expect("drain"),
                    [Signal::Chld],
                    "no TERM, no HUP"
                );
            },
        );
    }

    #[test]
    fn signal_source_wakes_a_mio_poll_in_a_child_process() {
        rerun::in_child_process(
            "sys::signal::tests::signal_source_wakes_a_mio_poll_in_a_child_process",
            || {
                let mut source = SignalSource::install_worker().expect("install");
                let mut poll = mio::Poll::new().expect("poll");
                poll.registry()
                    .register(&mut source, mio::Token(7), mio::Interest::READABLE)
                    .expect("register");
                nix::sys::signal::raise(OsSignal::SIGTERM).expect("raise");
                let mut events = mio::Events::with_capacity(4);
                poll.poll(&mut events, Some(std::time::Duration::from_secs(5)))
                    .expect("poll");
                assert!(events.iter().any(|event| event.token() == mio::Token(7)));
                assert_eq!(source.drain().expect("drain"), [Signal::Term]);
                drop(source);
                let again =
                    SignalSource::install_master().expect("a dropped source frees the slot");
                drop(again);
            },
        );
    }
}
