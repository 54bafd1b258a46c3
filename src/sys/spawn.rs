//! Starting another program as a child process: fork, set the child up, exec.
//!
//! Owns what happens in the child between `fork` and `exec`: the signal mask cleared (a forked
//! child starts with the master's signals blocked, see `signal::reset_in_child`, and a mask
//! survives exec), the descriptors it keeps made inheritable there only, its output pointed at a
//! file, its working directory. The parent never waits here: it gets the pid and reaps the
//! exit in its own loop. Used by the emperor for vassals and for `--check-config` runs.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::path::PathBuf;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, sigaction};

use super::fd;
use super::process::{self, Forked, Pid};

/// A program to start.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    /// The executable.
    pub(crate) path: PathBuf,
    /// The whole argv, `argv[0]` included.
    pub(crate) argv: Vec<OsString>,
    /// The whole environment of the child.
    pub(crate) env: Vec<(OsString, OsString)>,
    /// The child's working directory (the parent's when `None`).
    pub(crate) cwd: Option<PathBuf>,
    /// Descriptors of the parent (close-on-exec there) that the child keeps, at the same numbers.
    pub(crate) keep: Vec<RawFd>,
    /// Where the child's stdout and stderr go (the parent's when `None`).
    pub(crate) output: Option<RawFd>,
    /// The exit code of a child that cannot be set up or cannot exec the program.
    pub(crate) failure_code: u8,
}

/// Forks and execs `program`; returns the child's pid. A child that fails before the exec
/// writes why on its stderr and exits with `program.failure_code`. Must be called while
/// single-threaded (as every fork here).
pub(crate) fn spawn(program: &Program) -> io::Result<Pid> {
    match process::fork()? {
        Forked::Parent(pid) => Ok(pid),
        Forked::Child => {
            let error = set_up_and_exec(program);
            let _ = writeln!(
                io::stderr(),
                "rcontainer: cannot start {}: {error}",
                program.path.display()
            );
            process::exit_now(program.failure_code)
        }
    }
}

/// In the child: returns only on failure.
fn set_up_and_exec(program: &Program) -> io::Error {
    if let Err(e) =
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
    {
        return e.into();
    }
    // Rust ignores SIGPIPE in its own processes and an ignored signal stays ignored across
    // exec: the program gets the default back, as `std::process::Command` gives it.
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing the default disposition runs no handler code.
    if let Err(e) = unsafe { sigaction(nix::sys::signal::Signal::SIGPIPE, &default) } {
        return e.into();
    }
    if let Some(output) = program.output {
        for target in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
            // SAFETY: plain syscall on descriptors of this process; `output` is open (the parent
            // holds it), and replacing stdout/stderr is the point.
            if unsafe { libc::dup2(output, target) } < 0 {
                return io::Error::last_os_error();
            }
        }
    }
    for &raw in &program.keep {
        if let Err(e) = fd::set_cloexec_raw(raw, false) {
            return e;
        }
    }
    if let Some(dir) = &program.cwd
        && let Err(e) = std::env::set_current_dir(dir)
    {
        return super::error::with_context(e, format_args!("chdir {}", dir.display()));
    }
    process::exec_program(&program.path, &program.argv, program.env.iter().cloned())
}
