//! The pidfile: written atomically, read back for `--reload/--stop PIDFILE`, removed only if ours;
//! and telling whether the pid in it is an rcontainer master before anyone signals it.
//!
//! Owns the file format (`<pid>\n`) and its operations. Errors name the file, so the CLI can
//! print them as they are (`pidfile /run/app.pid: no such file or directory`). It must not
//! decide what to do with a pid (signal it, wait for it): that is the caller's.
//!
//! Pidfiles often live in shared directories (`/tmp`, a world-writable `/run/app`). Writing
//! goes through a temporary file with an unpredictable name created with `O_EXCL|O_NOFOLLOW`,
//! so a symlink planted by another user can never make root write through it; the rename then
//! replaces whatever is at the pidfile's name (a symlink itself, never its target). Reading
//! follows symlinks (that only reveals a pid) but takes nothing that is not a regular file, and
//! at most a few bytes: a FIFO or `/dev/zero` named as a pidfile must not hang the command.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::describe;
use super::process::{Pid, is_alive};

/// How many fresh temporary names are tried before giving up (each exists only if someone
/// else created it, which is either a collision or an attack).
const TEMP_ATTEMPTS: usize = 8;
/// A pid is at most 10 digits; anything longer is not a pidfile.
const MAX_PIDFILE_BYTES: u64 = 64;

/// Writes `pid` to `path` atomically: a new temporary file in the same directory is written,
/// synced and renamed over `path`, so a reader sees either the old content or the new, never a
/// partial one, and a crash leaves no truncated pidfile.
///
/// Errors name the pidfile and the step: `pidfile /x/y.pid: create: no such file or directory`.
pub(crate) fn write_pidfile(path: &Path, pid: Pid) -> io::Result<()> {
    let (tmp, mut file) = create_temp_file(path, pid).map_err(|e| with_path(path, "create", e))?;
    let written = file
        .write_all(format!("{pid}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| with_path(path, "write", e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| with_path(path, "rename", e)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Reads the pid stored in `path`.
///
/// Errors: `pidfile PATH: no such file or directory`, `pidfile PATH: not a regular file`,
/// `pidfile PATH: not a pid: "abc"`.
pub(crate) fn read_pidfile(path: &Path) -> io::Result<Pid> {
    let error = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("pidfile {}: {}", path.display(), describe(&e)),
        )
    };
    // Non-blocking, so that opening a FIFO returns at once; a regular file ignores the flag.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(error)?;
    if !file.metadata().map_err(error)?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("pidfile {}: not a regular file", path.display()),
        ));
    }
    let mut text = String::new();
    file.take(MAX_PIDFILE_BYTES)
        .read_to_string(&mut text)
        .map_err(error)?;
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
            fs::remove_file(path).map_err(|e| with_path(path, "remove", e))?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// What runs under a pid read from a pidfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// A binary built on the rcontainer library (the stock one or a user's own).
    Rcontainer,
    /// Another program; its executable, as `/proc/PID/exe` names it.
    Other(PathBuf),
    /// It cannot be told (no permission to look, the process is a zombie...): why.
    Unknown(String),
}

/// Every binary built on the library carries these bytes: the check that looks for them is part
/// of the library, so they are in the executable of whoever can run the check, and in nothing
/// else. The leading NUL keeps them from matching the middle of some unrelated string.
static LIBRARY_MARKER: &[u8] = b"\0rcontainer library executable marker v1: do not change\0";

/// Tells what `pid` runs, so that `--stop` never signals a process that merely reused the pid
/// of a master gone long ago.
///
/// The executable behind `/proc/PID/exe` is looked at, not the process's name or command line
/// (any program may set those, and a user's binary is named whatever its author liked): it is
/// an rcontainer binary when it is the very file this process runs (the common case, checked
/// by device and inode), or when its bytes contain [`LIBRARY_MARKER`]. That also holds for a
/// binary that was replaced or deleted since the master started (`/proc/PID/exe` still opens
/// the running file) and for a user's binary built on the library. A worker of some other
/// instance would pass too; only a pid recycled twice over could point at one.
///
/// A master that dropped root for `uid` is no longer "dumpable", and then only root may look
/// at its executable, while its user may still signal it (a deploy script running as the app
/// user). In that one case the command line decides: the program name it starts with must be
/// this binary's file name, or start with `rcontainer`.
pub(crate) fn identify(pid: Pid) -> Identity {
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let target = match fs::read_link(&exe) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return identify_by_command_line(pid).unwrap_or_else(|| {
                Identity::Unknown(format!("{}: {}", exe.display(), describe(&e)))
            });
        }
        Err(e) => return Identity::Unknown(format!("{}: {}", exe.display(), describe(&e))),
    };
    let same_as_ours = match (fs::metadata(&exe), fs::metadata("/proc/self/exe")) {
        (Ok(theirs), Ok(ours)) => theirs.dev() == ours.dev() && theirs.ino() == ours.ino(),
        _ => false,
    };
    if same_as_ours {
        return Identity::Rcontainer;
    }
    match File::open(&exe).and_then(|mut file| contains_marker(&mut file)) {
        Ok(true) => Identity::Rcontainer,
        Ok(false) => Identity::Other(target),
        Err(e) => Identity::Unknown(format!("{}: {}", exe.display(), describe(&e))),
    }
}

/// The weaker check of [`identify`], from `/proc/PID/cmdline` (readable by anyone): `None`
/// when that cannot be read either.
fn identify_by_command_line(pid: Pid) -> Option<Identity> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let program = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let program = PathBuf::from(String::from_utf8_lossy(program).into_owned());
    let name = program.file_name()?.to_string_lossy().into_owned();
    let ours = fs::read_link("/proc/self/exe").ok()?;
    let ours = ours.file_name()?.to_string_lossy();
    let ours = ours.strip_suffix(" (deleted)").unwrap_or(&ours);
    Some(if name == ours || name.starts_with("rcontainer") {
        Identity::Rcontainer
    } else {
        Identity::Other(program)
    })
}

/// Whether the bytes of `file` contain [`LIBRARY_MARKER`]; reads 1 MiB at a time.
fn contains_marker(file: &mut impl Read) -> io::Result<bool> {
    const CHUNK: usize = 1 << 20;
    // Read through black_box, so that the bytes stay in the executable as one piece rather than
    // being folded into the comparison code.
    let marker = std::hint::black_box(LIBRARY_MARKER);
    let mut buf = vec![0u8; CHUNK + marker.len()];
    let mut kept = 0;
    loop {
        let n = match file.read(&mut buf[kept..]) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let filled = kept + n;
        if find_bytes(&buf[..filled], marker) {
            return Ok(true);
        }
        // A marker cut by the chunk boundary is found with the next read.
        kept = (marker.len() - 1).min(filled);
        buf.copy_within(filled - kept..filled, 0);
    }
}

/// Whether `needle` occurs in `haystack` (libc's `memmem`, which is fast on large inputs).
fn find_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    // SAFETY: both pointers come from live slices with their exact lengths; memmem only reads
    // within them and returns a pointer into `haystack` or null, which is only compared here.
    let found = unsafe {
        libc::memmem(
            haystack.as_ptr().cast(),
            haystack.len(),
            needle.as_ptr().cast(),
            needle.len(),
        )
    };
    !found.is_null()
}

/// Creates a new temporary file beside `path`: `/run/.app.pid.<pid>.<random>.tmp`. The name
/// cannot be guessed, and `O_EXCL|O_NOFOLLOW` refuse anything already there (a symlink
/// included) instead of opening it.
fn create_temp_file(path: &Path, pid: Pid) -> io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last_error = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..TEMP_ATTEMPTS {
        let tmp = path.with_file_name(format!(".{name}.{pid}.{:016x}.tmp", unpredictable()));
        let opened = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o644)
            .open(&tmp);
        match opened {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = e,
            Err(e) => return Err(e),
        }
    }
    Err(last_error)
}

/// 64 bits nobody else can predict: the kernel's random bytes, mixed with the clock (alone if
/// `/dev/urandom` cannot be read, as in a bare chroot; `O_EXCL` still keeps that safe).
fn unpredictable() -> u64 {
    let mut bytes = [0u8; 8];
    let random = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    match random {
        Ok(()) => u64::from_ne_bytes(bytes) ^ nanos,
        Err(_) => nanos,
    }
}

fn parse_pid(text: &str) -> Option<Pid> {
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .map(Pid::from_raw)
}

/// `pidfile PATH: OPERATION: reason`.
fn with_path(path: &Path, operation: &str, err: io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        format!(
            "pidfile {}: {operation}: {}",
            path.display(),
            describe(&err)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::process::current_pid;
    use crate::sys::tempdir::TempDir;
    use std::os::unix::fs::symlink;

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
    fn a_symlink_at_the_pidfile_name_is_replaced_not_followed() {
        let dir = TempDir::new("pidfile-symlink");
        let victim = dir.join("victim");
        fs::write(&victim, "precious\n").expect("victim");
        let path = dir.join("app.pid");
        symlink(&victim, &path).expect("plant");
        write_pidfile(&path, Pid::from_raw(4321)).expect("write");
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
        assert!(fs::symlink_metadata(&path).expect("pidfile").is_file());
        assert_eq!(read_pidfile(&path).expect("parse"), Pid::from_raw(4321));
    }

    #[test]
    fn temp_names_are_fresh_each_time() {
        let dir = TempDir::new("pidfile-temp-names");
        let path = dir.join("app.pid");
        let (a, _) = create_temp_file(&path, Pid::from_raw(1)).expect("first");
        let (b, _) = create_temp_file(&path, Pid::from_raw(1)).expect("second");
        assert_ne!(a, b);
        let name = a.file_name().expect("name").to_string_lossy().into_owned();
        assert!(
            name.starts_with(".app.pid.1.") && name.ends_with(".tmp"),
            "{name}"
        );
    }

    #[test]
    fn write_errors_name_the_pidfile_and_the_step() {
        let dir = TempDir::new("pidfile-write-errors");
        let path = dir.join("missing/app.pid");
        let err = write_pidfile(&path, Pid::from_raw(1)).expect_err("no such dir");
        assert_eq!(
            err.to_string(),
            format!(
                "pidfile {}: create: no such file or directory",
                path.display()
            )
        );
    }

    #[test]
    fn missing_garbage_and_odd_pidfiles_give_clear_errors() {
        let dir = TempDir::new("pidfile-errors");
        let missing = dir.join("none.pid");
        let err = read_pidfile(&missing).expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            format!("pidfile {}: no such file or directory", missing.display())
        );
        let garbage = dir.join("bad.pid");
        fs::write(&garbage, "abc\n").expect("write");
        let err = read_pidfile(&garbage).expect_err("garbage");
        assert!(err.to_string().ends_with(": not a pid: \"abc\""), "{err}");
        fs::write(&garbage, "0\n").expect("write");
        assert!(read_pidfile(&garbage).is_err(), "pid 0 is not a process");
        let err = read_pidfile(Path::new("/dev/zero")).expect_err("a device");
        assert_eq!(err.to_string(), "pidfile /dev/zero: not a regular file");
        let fifo = dir.join("fifo.pid");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let err = read_pidfile(&fifo).expect_err("a fifo");
        assert!(err.to_string().ends_with("not a regular file"), "{err}");
        fs::write(&garbage, "1".repeat(100_000)).expect("write");
        assert!(
            read_pidfile(&garbage).is_err(),
            "only the first bytes are read"
        );
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

    /// `sleep 30`, once its exec is complete: `spawn` returns as soon as the exec has begun,
    /// and the new command line is set a moment later.
    fn spawn_sleep() -> (std::process::Child, Pid) {
        let sleep = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = Pid::from_raw(i32::try_from(sleep.id()).expect("pid"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        (sleep, pid)
    }

    #[test]
    fn our_own_process_is_rcontainer_and_a_foreign_program_is_not() {
        // The test binary is built on the library: it is its own kind.
        assert_eq!(identify(current_pid()), Identity::Rcontainer);
        let (mut sleep, pid) = spawn_sleep();
        let identity = identify(pid);
        let _ = sleep.kill();
        let _ = sleep.wait();
        match identity {
            Identity::Other(exe) => assert!(exe.ends_with("sleep"), "{exe:?}"),
            other => panic!("sleep identified as {other:?}"),
        }
        assert!(matches!(
            identify(Pid::from_raw(i32::MAX)),
            Identity::Unknown(_)
        ));
    }

    #[test]
    fn the_command_line_names_our_program_or_another_one() {
        assert_eq!(
            identify_by_command_line(current_pid()),
            Some(Identity::Rcontainer)
        );
        let (mut sleep, pid) = spawn_sleep();
        let identity = identify_by_command_line(pid);
        let _ = sleep.kill();
        let _ = sleep.wait();
        assert_eq!(identity, Some(Identity::Other(PathBuf::from("sleep"))));
    }

    #[test]
    fn the_marker_is_found_in_a_copy_of_this_executable_even_across_chunks() {
        let mut exe = File::open("/proc/self/exe").expect("own exe");
        assert!(contains_marker(&mut exe).expect("read"));
        let mut data = vec![b'x'; (1 << 20) - 5];
        data.extend_from_slice(LIBRARY_MARKER);
        data.extend_from_slice(b"tail");
        assert!(contains_marker(&mut data.as_slice()).expect("read"));
        assert!(!contains_marker(&mut &b"no marker here"[..]).expect("read"));
        assert!(!contains_marker(&mut &LIBRARY_MARKER[1..]).expect("read"));
    }
}
