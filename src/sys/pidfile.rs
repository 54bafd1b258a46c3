//! The pidfile: written atomically, read back for `--reload/--stop PIDFILE`, removed only if ours.
//!
//! Owns the file format (`<pid>\n`) and its three operations. Errors name the file, so the CLI
//! can print them as they are (`pidfile /run/app.pid: no such file`). It must not decide what to
//! do with a pid (signal it, wait for it): that is the caller's.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::process::{Pid, is_alive};

/// Writes `pid` to `path` atomically: a temporary file in the same directory is written, synced
/// and renamed over `path`, so a reader sees either the old content or the new, never a partial
/// one, and a crash leaves no truncated pidfile.
pub(crate) fn write_pidfile(path: &Path, pid: Pid) -> io::Result<()> {
    let tmp = temp_path_for(path, pid);
    let written =
        write_new_file(&tmp, format!("{pid}\n").as_bytes()).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(|e| with_path(path, e))
}

/// Reads the pid stored in `path`.
///
/// Errors: `pidfile PATH: no such file`, `pidfile PATH: not a pid: "abc"`, or the I/O error.
pub(crate) fn read_pidfile(path: &Path) -> io::Result<Pid> {
    let text = fs::read_to_string(path).map_err(|e| with_path(path, e))?;
    parse_pid(&text).ok_or_else(|| {
        let shown = text.trim();
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("pidfile {}: not a pid: {shown:?}", path.display()),
        )
    })
}

/// Reads `path` and checks that the process is running: what `--reload`, `--stop` and friends
/// need before sending a signal. A dead pid is `pidfile PATH: stale pid 1234`.
pub(crate) fn read_running_pid(path: &Path) -> io::Result<Pid> {
    let pid = read_pidfile(path)?;
    if !is_alive(pid) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("pidfile {}: stale pid {pid}", path.display()),
        ));
    }
    Ok(pid)
}

/// Removes `path` only if it still holds `pid` (a newer instance may have taken it over).
/// Returns whether it was removed; a missing file is `Ok(false)`.
pub(crate) fn remove_pidfile_if_ours(path: &Path, pid: Pid) -> io::Result<bool> {
    match read_pidfile(path) {
        Ok(stored) if stored == pid => {
            fs::remove_file(path).map_err(|e| with_path(path, e))?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `/run/app.pid` -> `/run/.app.pid.<pid>.tmp`: same directory, so `rename` stays atomic.
fn temp_path_for(path: &Path, pid: Pid) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{pid}.tmp"))
}

fn write_new_file(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

fn parse_pid(text: &str) -> Option<Pid> {
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .map(Pid::from_raw)
}

fn with_path(path: &Path, err: io::Error) -> io::Error {
    let what = match err.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        _ => err.to_string(),
    };
    io::Error::new(err.kind(), format!("pidfile {}: {what}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::process::current_pid;
    use crate::sys::tempdir::TempDir;

    #[test]
    fn written_pidfile_reads_back_and_leaves_no_temp_file() {
        let dir = TempDir::new("pidfile-roundtrip");
        let path = dir.join("app.pid");
        write_pidfile(&path, Pid::from_raw(1234)).expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "1234\n");
        assert_eq!(read_pidfile(&path).expect("parse"), Pid::from_raw(1234));
        write_pidfile(&path, Pid::from_raw(99)).expect("overwrite");
        assert_eq!(read_pidfile(&path).expect("parse"), Pid::from_raw(99));
        let entries = fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(entries, 1);
    }

    #[test]
    fn missing_and_garbage_pidfiles_give_clear_errors() {
        let dir = TempDir::new("pidfile-errors");
        let missing = dir.join("none.pid");
        let err = read_pidfile(&missing).expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            format!("pidfile {}: no such file", missing.display())
        );
        let garbage = dir.join("bad.pid");
        fs::write(&garbage, "abc\n").expect("write");
        let err = read_pidfile(&garbage).expect_err("garbage");
        assert!(err.to_string().ends_with(": not a pid: \"abc\""), "{err}");
        fs::write(&garbage, "0\n").expect("write");
        assert!(read_pidfile(&garbage).is_err(), "pid 0 is not a process");
    }

    #[test]
    fn a_dead_pid_is_reported_stale() {
        let dir = TempDir::new("pidfile-stale");
        let path = dir.join("app.pid");
        // Above the default pid_max (4194304 is the largest possible): no such process.
        write_pidfile(&path, Pid::from_raw(i32::MAX)).expect("write");
        let err = read_running_pid(&path).expect_err("stale");
        assert!(err.to_string().ends_with("stale pid 2147483647"), "{err}");
        write_pidfile(&path, current_pid()).expect("write");
        assert_eq!(read_running_pid(&path).expect("alive"), current_pid());
    }

    #[test]
    fn pidfile_is_removed_only_while_it_holds_our_pid() {
        let dir = TempDir::new("pidfile-remove");
        let path = dir.join("app.pid");
        write_pidfile(&path, Pid::from_raw(77)).expect("write");
        assert!(!remove_pidfile_if_ours(&path, Pid::from_raw(78)).expect("other pid"));
        assert!(path.exists());
        assert!(remove_pidfile_if_ours(&path, Pid::from_raw(77)).expect("ours"));
        assert!(!path.exists());
        assert!(!remove_pidfile_if_ours(&path, Pid::from_raw(77)).expect("already gone"));
    }
}
