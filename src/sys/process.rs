//! Processes: fork, `_exit`, reaping children, parent-death signal, re-exec in place, kill.
//!
//! Owns the process-level syscalls the master needs to supervise workers. It classifies what
//! `waitpid` reports into [`ExitStatus`]; deciding what to do about an exit is the master's job,
//! not this module's. It must not log inside a forked child before the caller is ready, nor
//! touch the scoreboard or the config.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::ForkResult;

pub(crate) use nix::sys::signal::Signal as OsSignal;
pub(crate) use nix::unistd::Pid;

/// The exit status of a forked child that could not reset its signal handling: a runtime
/// failure (the crate's `exit::RUNTIME`; a test of the command line keeps the two equal: `sys` imports nothing).
pub(crate) const CHILD_SETUP_FAILED: u8 = 2;

/// Which side of a [`fork`] we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    /// The original process; the value is the child's pid.
    Parent(Pid),
    /// The new process. It must leave with [`exit_now`], never by returning through `main`.
    Child,
}

/// Forks the calling process.
///
/// The process must be single-threaded: after a fork only the calling thread exists in the child,
/// and locks held by other threads (the allocator's, the logger's) would never be released. This
/// is checked through `/proc/self/status` and refused with an error otherwise; since only this
/// very thread could start another one, the check cannot race.
///
/// Signals are blocked around the fork, and the child resets every disposition to the default
/// (see [`crate::sys::signal::reset_in_child`]), so a signal sent to the new pid can never run
/// the master's handler and land in the master's signal pipe; the signals a master or worker
/// catches stay blocked in the child until it installs its own handlers.
pub(crate) fn fork() -> io::Result<Forked> {
    ensure_single_threaded()?;
    let saved_mask = super::signal::block_all()?;
    // SAFETY: the process has exactly one thread (checked above, and no other thread can be
    // started concurrently), so the child inherits no lock held by a vanished thread.
    let result = unsafe { nix::unistd::fork() };
    match result {
        Ok(ForkResult::Parent { child }) => {
            super::signal::restore_mask(&saved_mask)?;
            Ok(Forked::Parent(child))
        }
        Ok(ForkResult::Child) => {
            // Cannot fail with valid arguments; if it did, the child must not go on as a
            // copy of the parent with the parent's handlers.
            if super::signal::reset_in_child().is_err() {
                exit_now(CHILD_SETUP_FAILED);
            }
            Ok(Forked::Child)
        }
        Err(errno) => {
            super::signal::restore_mask(&saved_mask)?;
            Err(errno.into())
        }
    }
}

/// Ends the calling process at once with `code`: no atexit handlers, no destructors, no flush of
/// Rust's stdout buffer.
///
/// This is how a forked child leaves: running the parent's destructors twice (temp dirs,
/// pidfile removal, buffered output) would undo or duplicate the parent's work.
pub(crate) fn exit_now(code: u8) -> ! {
    // SAFETY: `_exit` is always safe to call; it never returns and runs no user code.
    unsafe { libc::_exit(i32::from(code)) }
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// It called `exit` / `_exit` (or returned from `main`) with this code.
    Exited(i32),
    /// A signal killed it; `core_dumped` tells whether the kernel wrote a core file.
    Signaled { signal: OsSignal, core_dumped: bool },
}

impl ExitStatus {
    /// Classifies one `waitpid` result. Stops and continues (only reported with `WUNTRACED` /
    /// `WCONTINUED`, which we never ask for) and "still alive" give `None`.
    pub(crate) fn from_wait_status(status: WaitStatus) -> Option<(Pid, ExitStatus)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, ExitStatus::Exited(code))),
            WaitStatus::Signaled(pid, signal, core_dumped) => Some((
                pid,
                ExitStatus::Signaled {
                    signal,
                    core_dumped,
                },
            )),
            _ => None,
        }
    }

    #[cfg(test)]
    /// The exit code, if the process exited rather than being killed.
    pub(crate) fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(code) => Some(code),
            ExitStatus::Signaled { .. } => None,
        }
    }
}

/// `code:3`, `signal:KILL`, `signal:SEGV+core`: the `cause=` value of log lines.
impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "code:{code}"),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "signal:{}", signal_short_name(*signal))?;
                if *core_dumped {
                    f.write_str("+core")?;
                }
                Ok(())
            }
        }
    }
}

/// `KILL` for `SIGKILL`: the name without its `SIG` prefix.
pub(crate) fn signal_short_name(signal: OsSignal) -> &'static str {
    let name = signal.as_str();
    name.strip_prefix("SIG").unwrap_or(name)
}

/// Collects every child that has exited, without blocking: `waitpid(-1, WNOHANG)` until it
/// reports nothing more (or `ECHILD`: no children at all).
///
/// Call it after each `SIGCHLD` (signals of one kind merge, so one `SIGCHLD` may stand for
/// several exits) and once per tick for safety. Any other error cannot happen with these
/// arguments; it ends the loop and returns what was collected.
pub(crate) fn reap_children() -> Vec<(Pid, ExitStatus)> {
    let mut exited = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Err(Errno::EINTR) => continue,
            Ok(status) => exited.extend(ExitStatus::from_wait_status(status)),
            Err(errno) => {
                log::error!("waitpid failed errno={errno}");
                break;
            }
        }
    }
    exited
}

/// Asks the kernel to send `signal` to this process when its parent dies (`PR_SET_PDEATHSIG`),
/// so no worker outlives a master killed with SIGKILL.
///
/// The parent may already have died between `fork` and this call, in which case the signal will
/// never come: that race is detected by comparing the current parent pid with `expected_parent`
/// and reported as an error (the child should then exit).
///
/// The setting survives the master's re-exec in place (the parent thread does not die on exec),
/// so workers live on through a graceful reload, as they must.
pub(crate) fn set_parent_death_signal(signal: OsSignal, expected_parent: Pid) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(signal)?;
    let parent = nix::unistd::getppid();
    if parent != expected_parent {
        return Err(io::Error::other(format!(
            "parent pid {expected_parent} exited before the parent-death signal was set (now {parent})"
        )));
    }
    Ok(())
}

/// Sends `signal` to `pid`. `ESRCH` (already gone) comes back as an error like any other.
pub(crate) fn send_signal(pid: Pid, signal: OsSignal) -> io::Result<()> {
    nix::sys::signal::kill(pid, signal)?;
    Ok(())
}

/// Tells whether a process with this pid exists (`kill(pid, 0)`). `EPERM` means it exists but
/// belongs to another user, which still counts as alive.
pub(crate) fn is_alive(pid: Pid) -> bool {
    match nix::sys::signal::kill(pid, None) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Whether process `pid` runs with `arg` among its arguments (`/proc/PID/cmdline`); false if it
/// is gone or unreadable.
pub(crate) fn has_argument(pid: Pid, arg: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
}

/// The pid of the calling process.
pub(crate) fn current_pid() -> Pid {
    nix::unistd::getpid()
}

/// Sets an environment variable of this process (the master's `env = K=V`, inherited by
/// every worker it forks).
pub(crate) fn set_env(key: &str, value: &str) {
    ensure_single_threaded()
        .expect("invariant: the environment is only changed while single-threaded");
    // SAFETY: the process is single-threaded (checked above), so no other thread can read the
    // environment while it changes.
    unsafe { std::env::set_var(key, value) };
}

/// Removes an environment variable of this process (a hand-over variable once read).
pub(crate) fn remove_env(key: &str) {
    ensure_single_threaded()
        .expect("invariant: the environment is only changed while single-threaded");
    // SAFETY: as in `set_env`: single-threaded, checked.
    unsafe { std::env::remove_var(key) };
}

/// Replaces the running program with a fresh copy of the executable, keeping the pid (so
/// systemd's MAINPID, the pidfile and the workers' parent stay valid). Returns only on failure.
///
/// `argv` is the whole argument vector, `argv[0]` included (it is kept as the program name shown
/// by `ps`). `env` becomes the whole environment of the new image: the caller builds it, e.g.
/// from `std::env::vars_os()` plus the inherited-fd variables of [`crate::sys::fd`].
///
/// The program run is [`reexec_path`]: a binary replaced on disk by rename (how package managers
/// and `install` deploy) is picked up. See [`exec_program`] for what crosses the exec.
pub(crate) fn exec_self<K, V>(argv: &[OsString], env: impl IntoIterator<Item = (K, V)>) -> io::Error
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    exec_program(&reexec_path(), argv, env)
}

/// Replaces the running program with `program` (`execve`), keeping the pid. Returns only on
/// failure.
///
/// File descriptors without `FD_CLOEXEC` stay open: the caller clears it on what it hands over
/// and keeps it on everything else. Caught signals return to their default and ignored ones stay
/// ignored (exec rules); the signal mask and pending signals are kept as they are, unlike
/// `std::process::Command::exec`, which empties the mask: a master blocks its signals before
/// the exec so that none arriving in between is lost or kills the new image before it installs
/// its handlers.
pub(crate) fn exec_program<K, V>(
    program: &Path,
    argv: &[OsString],
    env: impl IntoIterator<Item = (K, V)>,
) -> io::Error
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_string = |bytes: &[u8]| {
        CString::new(bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in argv or env"))
    };
    let built = (|| -> io::Result<(CString, Vec<CString>, Vec<CString>)> {
        let path = c_string(program.as_os_str().as_bytes())?;
        let args = argv
            .iter()
            .map(|arg| c_string(arg.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let vars = env
            .into_iter()
            .map(|(key, value)| {
                let mut pair = key.as_ref().as_bytes().to_vec();
                pair.push(b'=');
                pair.extend_from_slice(value.as_ref().as_bytes());
                c_string(&pair)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok((path, args, vars))
    })();
    match built {
        Ok((path, args, vars)) => {
            let exec = || nix::unistd::execve(&path, &args, &vars).map_err(io::Error::from);
            match retry_text_busy(exec) {
                Ok(never) => match never {},
                Err(e) => e,
            }
        }
        Err(e) => e,
    }
}

/// Runs `attempt` again (a few times, briefly) while it fails with `ETXTBSY`: a binary just
/// written is still open for writing in a process that was forked meanwhile, until that
/// process execs or exits.
pub(crate) fn retry_text_busy<T>(mut attempt: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    for _ in 0..25 {
        match attempt() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
    attempt()
}

/// A short identity of the running binary file (device, inode, size, modification time of
/// `/proc/self/exe`): it changes when a new binary is installed and the master re-executes,
/// so logs show which build is serving.
pub(crate) fn binary_identity() -> String {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata("/proc/self/exe") else {
        return "unknown".to_string();
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
    )
        .hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The executable to run on re-exec.
///
/// `/proc/self/exe` always names the image *this* process was started from; when that file was
/// replaced by rename the link reads `/path/rcontainer (deleted)` and executing the link itself
/// would run the old, deleted binary again. So the path on disk is used when it still exists (it
/// then holds the new binary), and the link otherwise (the old image, still executable because
/// the kernel keeps its inode alive). A binary started through a symlink is re-run from the
/// symlink's target at start time: switching the symlink to another version is not followed.
pub(crate) fn reexec_path() -> PathBuf {
    let proc_exe = Path::new("/proc/self/exe");
    match std::fs::read_link(proc_exe) {
        Ok(link) => {
            let on_disk = strip_deleted_suffix(link);
            if on_disk.is_file() {
                on_disk
            } else {
                proc_exe.to_path_buf()
            }
        }
        Err(_) => proc_exe.to_path_buf(),
    }
}

/// `/usr/bin/rcontainer (deleted)` -> `/usr/bin/rcontainer`; other paths unchanged.
fn strip_deleted_suffix(link: PathBuf) -> PathBuf {
    const DELETED: &str = " (deleted)";
    match link.to_str().and_then(|s| s.strip_suffix(DELETED)) {
        Some(stripped) => PathBuf::from(stripped),
        None => link,
    }
}

/// Refuses to fork from a process with more than one thread (see [`fork`]).
fn ensure_single_threaded() -> io::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    match parse_thread_count(&status) {
        Some(n) if n <= allowed_threads() => Ok(()),
        Some(n) => Err(io::Error::other(format!(
            "refusing to fork: the process has {n} threads"
        ))),
        None => Err(io::Error::other("no Threads: line in /proc/self/status")),
    }
}

/// One, except in a unit test re-run in a child process (`sys::rerun`): there libtest's main
/// thread is parked, waiting for the test thread that forks.
fn allowed_threads() -> usize {
    #[cfg(test)]
    if super::rerun::is_child() {
        return 2;
    }
    1
}

/// The `Threads:` value of a `/proc/<pid>/status` text.
fn parse_thread_count(status: &str) -> Option<usize> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exited_status_displays_its_code() {
        let status = WaitStatus::Exited(Pid::from_raw(42), 3);
        let (pid, exit) = ExitStatus::from_wait_status(status).expect("an exit");
        assert_eq!(pid, Pid::from_raw(42));
        assert_eq!(exit, ExitStatus::Exited(3));
        assert_eq!(exit.to_string(), "code:3");
        assert_eq!(exit.code(), Some(3));
    }

    #[test]
    fn killed_status_displays_the_short_signal_name() {
        let status = WaitStatus::Signaled(Pid::from_raw(7), OsSignal::SIGKILL, false);
        let (_, exit) = ExitStatus::from_wait_status(status).expect("a kill");
        assert_eq!(exit.to_string(), "signal:KILL");
        assert_eq!(exit.code(), None);
    }

    #[test]
    fn core_dump_is_shown_after_the_signal() {
        let exit = ExitStatus::Signaled {
            signal: OsSignal::SIGSEGV,
            core_dumped: true,
        };
        assert_eq!(exit.to_string(), "signal:SEGV+core");
    }

    #[test]
    fn still_alive_and_stops_are_not_exits() {
        assert_eq!(ExitStatus::from_wait_status(WaitStatus::StillAlive), None);
        let stopped = WaitStatus::Stopped(Pid::from_raw(9), OsSignal::SIGSTOP);
        assert_eq!(ExitStatus::from_wait_status(stopped), None);
    }

    #[test]
    fn deleted_suffix_is_stripped_from_the_exe_link() {
        let link = PathBuf::from("/usr/bin/rcontainer (deleted)");
        assert_eq!(
            strip_deleted_suffix(link),
            PathBuf::from("/usr/bin/rcontainer")
        );
        let plain = PathBuf::from("/usr/bin/rcontainer");
        assert_eq!(strip_deleted_suffix(plain.clone()), plain);
    }

    #[test]
    fn reexec_path_names_the_running_test_binary() {
        let expected = std::env::current_exe().expect("current exe");
        assert_eq!(reexec_path(), expected);
    }

    #[test]
    fn thread_count_is_read_from_proc_status() {
        let status = "Name:\tx\nThreads:\t4\nSigQ:\t0/1\n";
        assert_eq!(parse_thread_count(status), Some(4));
        assert_eq!(parse_thread_count("Name:\tx\n"), None);
    }

    #[test]
    fn fork_is_refused_in_the_multithreaded_test_runner() {
        let _helper = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(1)));
        let err = fork().expect_err("more than one thread");
        assert!(err.to_string().contains("threads"), "{err}");
    }

    #[test]
    fn forked_child_exit_code_is_reaped_in_a_child_process() {
        crate::sys::rerun::in_child_process(
            "sys::process::tests::forked_child_exit_code_is_reaped_in_a_child_process",
            || {
                let child = match fork().expect("fork") {
                    Forked::Child => exit_now(3),
                    Forked::Parent(child) => child,
                };
                let reaped = crate::sys::rerun::reap_within(std::time::Duration::from_secs(10));
                assert_eq!(reaped, [(child, ExitStatus::Exited(3))]);
                assert!(reap_children().is_empty());
            },
        );
    }

    const EXEC_TEST: &str =
        "sys::process::tests::exec_in_place_keeps_the_pid_and_hands_over_fds_in_a_child_process";
    const EXEC_TARGET: &str = "sys::process::tests::exec_target_adopts_the_handed_over_fd";

    #[test]
    fn exec_in_place_keeps_the_pid_and_hands_over_fds_in_a_child_process() {
        use crate::sys::{fd, rerun};
        rerun::in_child_process(EXEC_TEST, || {
            let (_read, write) = nix::unistd::pipe().expect("pipe");
            fd::set_cloexec(&write, false).expect("inheritable");
            let raw = std::os::fd::AsRawFd::as_raw_fd(&write);
            let current = std::env::vars_os().filter(|(key, _)| key != rerun::CHILD_ENV);
            let mut env = fd::env_for_reexec(current, &[(raw, "pipe")], current_pid());
            env.push((rerun::CHILD_ENV.into(), EXEC_TARGET.into()));
            let argv: Vec<OsString> = ["rcontainer-test", EXEC_TARGET, "--exact", "--nocapture"]
                .map(OsString::from)
                .to_vec();
            let err = exec_self(&argv, env);
            panic!("exec failed: {err}");
        });
    }

    /// The second half of the test above, run by the re-exec'd image; a no-op on its own.
    #[test]
    fn exec_target_adopts_the_handed_over_fd() {
        if !crate::sys::rerun::is_child_for(EXEC_TARGET) {
            return;
        }
        let lookup = |key: &str| std::env::var(key).ok();
        let adopted = crate::sys::fd::adopt_inherited_fds(lookup).expect("adopt");
        assert_eq!(adopted.len(), 1, "the RCONTAINER_FDS_PID matched: same pid");
        assert_eq!(adopted[0].name.as_deref(), Some("pipe"));
        nix::unistd::write(&adopted[0].fd, b"x").expect("the pipe survived exec");
    }

    #[test]
    fn the_arguments_of_a_process_are_read_from_proc() {
        let me = current_pid();
        let first = std::env::args().next().expect("argv[0]");
        assert!(has_argument(me, &first));
        assert!(!has_argument(
            me,
            "--surely-not-an-argument-of-the-test-runner"
        ));
        assert!(!has_argument(Pid::from_raw(i32::MAX), &first));
    }

    #[test]
    fn this_process_is_alive_and_signal_names_are_short() {
        assert!(is_alive(current_pid()));
        assert_eq!(signal_short_name(OsSignal::SIGTERM), "TERM");
    }
}
