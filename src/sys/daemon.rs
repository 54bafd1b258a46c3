//! Detaching from the terminal (`daemonize`) and sending stdout/stderr to a log file (`logto`,
//! log reopen).
//!
//! Owns the double fork, `setsid` and the stdio redirections. It must not write a pidfile or
//! bind anything: the master does that after `daemonize` returns, then reports readiness so the
//! command that started it can exit with a meaningful code.
//!
//! Choices: the working directory is kept (relative paths in the INI keep their meaning; `chdir`
//! exists for those who want `/`), and so is the umask (`umask` is a separate option).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;

use super::process::{Forked, exit_now, fork};
use crate::exit;

/// Held by the daemonized master; tells the original command how start-up went.
///
/// The command that ran `rcontainer --daemonize` waits until the daemon calls
/// [`DaemonReady::report_ready`] (exit 0) or [`DaemonReady::report_failure`] (that code). If the
/// daemon drops this without reporting (an early error, a crash, an exec), the command exits
/// with the runtime-failure code 2. Workers forked before the report inherit the pipe; that is
/// harmless because the command only waits for the first byte or for every copy to close.
#[derive(Debug)]
pub(crate) struct DaemonReady {
    pipe: OwnedFd,
}

impl DaemonReady {
    /// Start-up succeeded (sockets bound, pidfile written): the original command exits 0.
    pub(crate) fn report_ready(self) {
        self.report(exit::OK);
    }

    /// Start-up failed: the original command exits with `code`.
    pub(crate) fn report_failure(self, code: u8) {
        self.report(code);
    }

    fn report(self, code: u8) {
        // Nobody is left to tell if the command is already gone; ignore the error.
        let _ = nix::unistd::write(&self.pipe, &[code]);
    }
}

/// Detaches the process: fork, `setsid`, fork again; stdin from `/dev/null`, stdout and stderr
/// appended to `logfile`. Returns only in the grandchild (the daemon), which is not a session
/// leader and so can never acquire a controlling terminal again.
///
/// The original process waits for the daemon's [`DaemonReady`] report and exits with its code
/// (so `rcontainer --daemonize ... && curl ...` works: the pidfile exists once the command
/// returns); the intermediate process exits at once. Errors opening the log file are returned
/// before anything forks, so they reach the terminal. Must be called while single-threaded.
pub(crate) fn daemonize(logfile: &Path) -> io::Result<DaemonReady> {
    let log = open_log(logfile)?;
    let devnull = File::open("/dev/null")?;
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    match fork()? {
        Forked::Parent(child) => {
            drop(write_end);
            let _ = waitpid(child, None);
            exit_now(wait_for_report(&read_end))
        }
        Forked::Child => drop(read_end),
    }
    if let Err(errno) = nix::unistd::setsid() {
        log::error!("daemonize: setsid failed errno={errno}");
        exit_now(exit::RUNTIME);
    }
    match fork() {
        Ok(Forked::Parent(_)) => exit_now(exit::OK),
        Ok(Forked::Child) => {}
        Err(err) => {
            log::error!("daemonize: second fork failed: {err}");
            exit_now(exit::RUNTIME);
        }
    }
    nix::unistd::dup2_stdin(&devnull)?;
    redirect_stdout_stderr(&log)?;
    Ok(DaemonReady { pipe: write_end })
}

/// The first byte the daemon writes, or the runtime-failure code on EOF.
fn wait_for_report(pipe: &OwnedFd) -> u8 {
    let mut code = [exit::RUNTIME];
    loop {
        match nix::unistd::read(pipe, &mut code) {
            Err(Errno::EINTR) => continue,
            Ok(1) => return code[0],
            _ => return exit::RUNTIME,
        }
    }
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
    nix::unistd::dup2_stdout(log)?;
    nix::unistd::dup2_stderr(log)?;
    Ok(())
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("log file {}: {e}", path.display())))
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
            let ready = daemonize(&log).expect("daemonize");
            // Only the daemon gets here.
            let me = nix::unistd::getpid();
            let sid = nix::unistd::getsid(None).expect("sid");
            println!("daemon pid={me} session_leader={}", sid == me);
            let mut stdin = [0u8; 1];
            let stdin_read = nix::unistd::read(std::io::stdin(), &mut stdin).expect("read");
            println!("stdin_bytes={stdin_read}");
            std::io::stdout().flush().expect("flush");
            ready.report_failure(7);
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
    fn an_unwritable_log_file_is_reported_with_its_path() {
        let err = open_log(Path::new("/nonexistent-dir/x.log")).expect_err("no such dir");
        assert!(
            err.to_string()
                .starts_with("log file /nonexistent-dir/x.log: ")
        );
    }
}
