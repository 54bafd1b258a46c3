//! Detaching from the terminal (`daemonize`) and sending stdout/stderr to a log file (`logto`,
//! log reopen).
//!
//! Owns the double fork, `setsid` and the stdio redirections. It must not write a pidfile or
//! bind anything: the master does that after `daemonize` returns, then reports readiness so the
//! command that started it can exit with a meaningful code, and print why when start-up
//! failed: by then the daemon's own output goes to the log file, which nobody is looking at.
//!
//! Choices: the working directory is kept (relative paths in the INI keep their meaning; `chdir`
//! exists for those who want `/`), and so is the umask (`umask` is a separate option).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;

use super::error::{context, describe, with_context};
use super::process::{Forked, exit_now, fork};

/// Held by the daemonized master; tells the original command how start-up went.
///
/// The command that ran `rcontainer --daemonize` waits until the daemon calls
/// [`DaemonReady::report_ready`] (exit 0) or [`DaemonReady::report_failure`] (that code, and
/// the reason, which the command prints on its stderr). If the daemon drops this without
/// reporting (a crash, an exec), the command exits with the runtime-failure code 2 and says so.
/// Workers forked before the report inherit the pipe; that is harmless because a report is one
/// `write` (atomic, at most `PIPE_BUF` bytes) and the command reads no further than its end.
///
/// The report on the pipe: one byte (the exit code), then for a failure a little-endian `u16`
/// length and that many bytes of UTF-8 reason.
#[derive(Debug)]
pub(crate) struct DaemonReady {
    pipe: OwnedFd,
}

impl DaemonReady {
    /// Start-up succeeded (sockets bound, pidfile written): the original command exits 0.
    pub(crate) fn report_ready(self) {
        // Nobody is left to tell if the command is already gone; ignore the error.
        let _ = nix::unistd::write(&self.pipe, &[READY]);
    }

    /// Start-up failed: the original command prints `reason` (when not empty) on its stderr
    /// and exits with `code`.
    pub(crate) fn report_failure(self, code: u8, reason: &str) {
        let _ = nix::unistd::write(&self.pipe, &failure_report(code, reason));
    }
}

/// The report of a daemon that is ready: exit status 0, the launching command's too.
const READY: u8 = 0;

/// The most reason bytes a report carries: the whole report stays within `PIPE_BUF` (4096 on
/// Linux), so it is written in one piece.
const MAX_REASON: usize = 2048;

/// `code`, then the reason's length and bytes (cut at a character boundary if too long).
fn failure_report(code: u8, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let len = u16::try_from(reason.len()).expect("invariant: at most MAX_REASON bytes");
    let mut report = Vec::with_capacity(3 + reason.len());
    report.push(code);
    report.extend_from_slice(&len.to_le_bytes());
    report.extend_from_slice(reason);
    report
}

/// Detaches the process: fork, `setsid`, fork again; stdin from `/dev/null`, stdout and stderr
/// appended to `logfile`. Returns only in the grandchild (the daemon), which is not a session
/// leader and so can never acquire a controlling terminal again.
///
/// The original process waits for the daemon's [`DaemonReady`] report, prints the reason of a
/// failure on its stderr and exits with the daemon's code (so `rcontainer --daemonize ... &&
/// curl ...` works: the pidfile exists once the command returns); the intermediate process exits
/// at once. A log file that cannot be one (see [`check_log_path`]) or cannot be opened is
/// reported before anything forks, so the error reaches the terminal. Errors read `open:
/// permission denied`; the caller adds the option and path. Must be called while
/// single-threaded.
pub(crate) fn daemonize(logfile: &Path, failure_code: u8) -> io::Result<DaemonReady> {
    check_log_path(logfile).map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
    let log = open_log(logfile)?;
    let devnull = File::open("/dev/null").map_err(context("open /dev/null"))?;
    let (read_end, write_end) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| with_context(e.into(), "pipe"))?;
    match fork().map_err(context("fork"))? {
        Forked::Parent(child) => {
            drop(write_end);
            // The launching command only waits: Ctrl-C may stop it (not the daemon).
            let _ = super::signal::unblock_master_signals();
            let _ = waitpid(child, None);
            let (code, reason) = wait_for_report(&read_end, failure_code);
            if let Some(reason) = reason {
                let _ = writeln!(io::stderr(), "rcontainer: {reason}");
            } else if code != READY {
                let _ = writeln!(
                    io::stderr(),
                    "rcontainer: the daemon stopped before it was ready (exit code {code}); \
                     its log is {}",
                    logfile.display()
                );
            }
            exit_now(code)
        }
        Forked::Child => drop(read_end),
    }
    let ready = DaemonReady { pipe: write_end };
    if let Err(errno) = nix::unistd::setsid() {
        ready.report_failure(
            failure_code,
            &format!("daemonize: setsid: {}", errno.desc()),
        );
        exit_now(failure_code);
    }
    match fork() {
        Ok(Forked::Parent(_)) => exit_now(READY),
        Ok(Forked::Child) => {}
        Err(err) => {
            let reason = format!("daemonize: second fork: {}", describe(&err));
            ready.report_failure(failure_code, &reason);
            exit_now(failure_code);
        }
    }
    nix::unistd::dup2_stdin(&devnull).map_err(|e| with_context(e.into(), "dup2 stdin"))?;
    redirect_stdout_stderr(&log)?;
    Ok(ready)
}

/// Reads the daemon's report: its exit code and, for a failure, its reason. End of file
/// without a report (the daemon died) is `failure_code` without a reason.
fn wait_for_report(pipe: &OwnedFd, failure_code: u8) -> (u8, Option<String>) {
    let mut code = [0u8];
    if read_full(pipe, &mut code) < 1 {
        return (failure_code, None);
    }
    if code[0] == READY {
        return (READY, None);
    }
    let mut len = [0u8; 2];
    if read_full(pipe, &mut len) < len.len() {
        return (code[0], None);
    }
    let mut reason = vec![0u8; usize::from(u16::from_le_bytes(len))];
    let got = read_full(pipe, &mut reason);
    reason.truncate(got);
    let reason = String::from_utf8_lossy(&reason).into_owned();
    (code[0], Some(reason).filter(|r| !r.is_empty()))
}

/// Reads until `buf` is full or the pipe reaches end of file; returns how many bytes came.
fn read_full(pipe: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(pipe, &mut buf[got..]) {
            Err(Errno::EINTR) => continue,
            Ok(n) if n > 0 => got += n,
            _ => break,
        }
    }
    got
}

/// Checks that `path` can be a daemon's log file, before anything is started: a regular file
/// (or one to be created) that is writable, or `/dev/null` to discard the log. A directory, a
/// FIFO (opening it would block until a reader comes), a device, or a path on `/proc` or
/// `/sys` (where files are kernel interfaces, not logs) is refused. A missing directory is left
/// for the start to report, like the pidfile's: it may be created by then. `Err` is the
/// reason, naming the path.
pub(crate) fn check_log_path(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let on_kernel_fs = |dir: &Path| {
        nix::sys::statfs::statfs(dir).is_ok_and(|fs| {
            let kind = fs.filesystem_type();
            kind == nix::sys::statfs::PROC_SUPER_MAGIC || kind == nix::sys::statfs::SYSFS_MAGIC
        })
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(format!("{shown} is a directory, not a log file")),
        Ok(meta) if meta.file_type().is_char_device() && is_dev_null(&meta) => Ok(()),
        Ok(meta) if !meta.is_file() => Err(format!("{shown} is not a regular file")),
        Ok(_) if on_kernel_fs(path) => Err(format!(
            "{shown} is on /proc or /sys (a kernel file system), not a log file"
        )),
        Ok(_) => nix::unistd::access(path, nix::unistd::AccessFlags::W_OK)
            .map_err(|errno| format!("{shown} is not writable: {}", lower(errno.desc()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            if on_kernel_fs(dir) {
                return Err(format!(
                    "{shown} is on /proc or /sys (a kernel file system), not a log file"
                ));
            }
            Ok(())
        }
        Err(e) => Err(format!("{shown}: {}", describe(&e))),
    }
}

fn is_dev_null(meta: &std::fs::Metadata) -> bool {
    std::fs::metadata("/dev/null").is_ok_and(|null| null.rdev() == meta.rdev())
}

fn lower(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_lowercase().to_string() + chars.as_str()
    })
}

/// Points stdout and stderr at `logfile` (opened for append, created 0640 if missing).
///
/// Used for `logto`, and again to reopen the log on USR1 / FIFO `l` / `touch-logreopen`: after
/// logrotate renames the file, opening the path again creates a fresh one and `dup2` swaps it in
/// under fds 1 and 2, so the rotated file is closed once nothing else holds it. Children forked
/// afterwards inherit the new file; workers forked earlier reopen it themselves when told.
pub(crate) fn redirect_output(logfile: &Path) -> io::Result<()> {
    let log = open_log(logfile)?;
    redirect_stdout_stderr(&log)
}

fn redirect_stdout_stderr(log: &impl AsFd) -> io::Result<()> {
    nix::unistd::dup2_stdout(log).map_err(|e| with_context(e.into(), "dup2 stdout"))?;
    nix::unistd::dup2_stderr(log).map_err(|e| with_context(e.into(), "dup2 stderr"))?;
    Ok(())
}

/// Opens `path` for appending; errors read `open: permission denied` (the caller names the
/// option and the path).
fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(context("open"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::rerun;
    use std::io::Write;
    use std::path::PathBuf;

    /// A log path both the test and its child process can compute.
    fn shared_log_path(test: &str, parent_pid: u32) -> PathBuf {
        std::env::temp_dir().join(format!("rcontainer-{test}-{parent_pid}.log"))
    }

    #[test]
    fn daemonized_grandchild_logs_to_the_file_and_reports_its_code() {
        const TEST: &str =
            "sys::daemon::tests::daemonized_grandchild_logs_to_the_file_and_reports_its_code";
        if rerun::is_child_for(TEST) {
            let parent = nix::unistd::getppid().as_raw().unsigned_abs();
            let log = shared_log_path("daemon", parent);
            let ready = daemonize(&log, 2).expect("daemonize");
            // Only the daemon gets here.
            let me = nix::unistd::getpid();
            let sid = nix::unistd::getsid(None).expect("sid");
            println!("daemon pid={me} session_leader={}", sid == me);
            let mut stdin = [0u8; 1];
            let stdin_read = nix::unistd::read(std::io::stdin(), &mut stdin).expect("read");
            println!("stdin_bytes={stdin_read}");
            std::io::stdout().flush().expect("flush");
            ready.report_failure(7, "");
            exit_now(0);
        }
        let log = shared_log_path("daemon", std::process::id());
        let _ = std::fs::remove_file(&log);
        let (status, output) = rerun::spawn_test_child(TEST);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let status = status.expect("the command returned before the deadline");
        assert_eq!(status.code(), Some(7), "the daemon's code: {output}");
        assert!(text.contains("session_leader=false"), "log: {text}");
        assert!(text.contains("stdin_bytes=0"), "stdin is /dev/null: {text}");
    }

    #[test]
    fn reopened_output_goes_to_the_new_file_after_a_rename() {
        const TEST: &str =
            "sys::daemon::tests::reopened_output_goes_to_the_new_file_after_a_rename";
        let parent = std::process::id();
        if !rerun::is_child_for(TEST) {
            let _ = std::fs::remove_file(shared_log_path("reopen", parent));
        }
        rerun::in_child_process(TEST, || {
            let parent = nix::unistd::getppid().as_raw().unsigned_abs();
            let log = shared_log_path("reopen", parent);
            let rotated = log.with_extension("log.1");
            let terminal = nix::unistd::dup(std::io::stdout()).expect("save stdout");
            redirect_output(&log).expect("logto");
            println!("before rotation");
            std::fs::rename(&log, &rotated).expect("rotate");
            redirect_output(&log).expect("reopen");
            eprintln!("after rotation");
            nix::unistd::dup2_stdout(&terminal).expect("restore stdout");
            nix::unistd::dup2_stderr(&terminal).expect("restore stderr");
            let old = std::fs::read_to_string(&rotated).expect("rotated file");
            let new = std::fs::read_to_string(&log).expect("new file");
            let _ = std::fs::remove_file(&rotated);
            let _ = std::fs::remove_file(&log);
            assert_eq!(old, "before rotation\n");
            assert_eq!(new, "after rotation\n");
        });
    }

    #[test]
    fn a_log_file_that_cannot_be_opened_says_why() {
        let err = open_log(Path::new("/nonexistent-dir/x.log")).expect_err("no such dir");
        assert_eq!(err.to_string(), "open: no such file or directory");
    }

    #[test]
    fn only_regular_files_and_dev_null_can_be_daemon_logs() {
        let dir = crate::sys::tempdir::TempDir::new("daemon-log-path");
        assert_eq!(
            check_log_path(&dir.join("new.log")),
            Ok(()),
            "to be created"
        );
        std::fs::write(dir.join("old.log"), "x").expect("write");
        assert_eq!(check_log_path(&dir.join("old.log")), Ok(()));
        assert_eq!(check_log_path(Path::new("/dev/null")), Ok(()));
        let refused = |path: &Path| check_log_path(path).expect_err("refused");
        assert!(refused(dir.path()).ends_with("is a directory, not a log file"));
        assert!(refused(Path::new("/dev/zero")).ends_with("is not a regular file"));
        assert!(refused(Path::new("/proc/app.log")).contains("is on /proc or /sys"));
        assert!(refused(Path::new("/proc/version")).contains("is on /proc or /sys"));
        let fifo = dir.join("log.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        assert!(refused(&fifo).ends_with("is not a regular file"));
    }

    #[test]
    fn a_failure_report_carries_the_code_and_the_reason_within_pipe_buf() {
        assert_eq!(
            failure_report(2, "bind"),
            vec![2, 4, 0, b'b', b'i', b'n', b'd']
        );
        let long = "é".repeat(3000);
        let report = failure_report(3, &long);
        assert!(report.len() <= 4096);
        let reason = std::str::from_utf8(&report[3..]).expect("cut at a char boundary");
        assert!(reason.starts_with('é'));
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        DaemonReady { pipe: write_end }.report_failure(2, "socket :80: bind: permission denied");
        assert_eq!(
            wait_for_report(&read_end, 9),
            (2, Some("socket :80: bind: permission denied".to_owned()))
        );
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        drop(write_end);
        assert_eq!(
            wait_for_report(&read_end, 9),
            (9, None),
            "died unreported: the caller's failure code"
        );
    }
}
