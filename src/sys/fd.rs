//! File-descriptor flags and listening sockets handed over across `exec`.
//!
//! Owns `FD_CLOEXEC` / `O_NONBLOCK` and the two ways a master receives already-bound sockets:
//! its own re-exec (`RCONTAINER_FDS`) and systemd socket activation (`LISTEN_FDS`). It knows
//! nothing about socket specs: a name travels with each fd as an opaque string that `net`
//! interprets. It must not bind, listen or accept.
//!
//! Ownership rule: an inherited descriptor is owned by nobody in the new image until
//! [`adopt_inherited_fds`] turns it into an `OwnedFd`; that function runs at most once per image.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};

use super::process::Pid;

/// `3:http=127.0.0.1:8000,4:uwsgi=/run/app.sock`-style list written by the master before a
/// re-exec: `fd:name` pairs, `,` and `%` in names escaped as `%2C` / `%25`.
pub(crate) const FDS_ENV: &str = "RCONTAINER_FDS";
/// The pid the `RCONTAINER_FDS` list is meant for (exec in place keeps the pid; anything else,
/// e.g. a program an app spawns, inherits the variable but must ignore it).
pub(crate) const FDS_PID_ENV: &str = "RCONTAINER_FDS_PID";
/// systemd socket activation: number of fds, starting at 3.
pub(crate) const LISTEN_FDS_ENV: &str = "LISTEN_FDS";
/// systemd socket activation: the pid the fds are for.
pub(crate) const LISTEN_PID_ENV: &str = "LISTEN_PID";
/// systemd socket activation: optional `:`-separated names (`FileDescriptorName=`).
pub(crate) const LISTEN_FDNAMES_ENV: &str = "LISTEN_FDNAMES";
/// The first fd systemd passes.
const SD_LISTEN_FDS_START: RawFd = 3;

/// Sets or clears `FD_CLOEXEC`. Listening sockets must have it cleared just before
/// [`crate::sys::process::exec_self`]; everything else should keep it set.
/// [`set_cloexec`] for a descriptor known by number (owned elsewhere in the process).
pub(crate) fn set_cloexec_raw(raw: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: the caller passes a descriptor it owns for the duration of this call (a
    // listener of the master); `fcntl` does not keep the borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    set_cloexec(fd, on)
}

/// Closes descriptor `raw` in a freshly forked child: the child inherited it with the
/// parent's objects, which it will never use or drop (it leaves with `_exit`).
///
/// Only for a process that ends with [`crate::sys::process::exit_now`]: the owning object's
/// destructor never runs there, so the number is not closed twice.
pub(crate) fn close_inherited(raw: RawFd) {
    // SAFETY: closing a descriptor is memory-safe; the caller guarantees its owner in this
    // (forked) process is never used again.
    unsafe { libc::close(raw) };
}

pub(crate) fn set_cloexec(fd: impl AsFd, on: bool) -> io::Result<()> {
    let flags = FdFlag::from_bits_retain(fcntl(fd.as_fd(), FcntlArg::F_GETFD)?);
    let wanted = if on {
        flags | FdFlag::FD_CLOEXEC
    } else {
        flags - FdFlag::FD_CLOEXEC
    };
    fcntl(fd, FcntlArg::F_SETFD(wanted))?;
    Ok(())
}

/// Sets or clears `O_NONBLOCK` (shared by every process holding the same open file description:
/// the master and all workers see the same flag on an inherited listener).
pub(crate) fn set_nonblocking(fd: impl AsFd, on: bool) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    let wanted = if on {
        flags | OFlag::O_NONBLOCK
    } else {
        flags - OFlag::O_NONBLOCK
    };
    fcntl(fd, FcntlArg::F_SETFL(wanted))?;
    Ok(())
}

#[cfg(test)]
/// Tells whether `FD_CLOEXEC` is set.
pub(crate) fn is_cloexec(fd: impl AsFd) -> io::Result<bool> {
    let flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    Ok(flags.contains(FdFlag::FD_CLOEXEC))
}

/// Where an inherited descriptor came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdOrigin {
    /// Our own re-exec (`RCONTAINER_FDS`).
    Reexec,
    /// systemd socket activation (`LISTEN_FDS`).
    Systemd,
}

/// A descriptor handed over by the previous image, now owned by this one.
///
/// From a re-exec, `fd` is a close-on-exec copy and the number the previous image listed stays
/// open and inheritable (`original`) until the new image is sure it runs: if it cannot start,
/// it passes the very same list on to a fallback image.
#[derive(Debug)]
pub(crate) struct InheritedFd {
    pub(crate) fd: OwnedFd,
    /// The number the previous image passed, still open (re-exec only).
    pub(crate) original: Option<RawFd>,
    /// The name given by the master that passed it (a socket spec) or by systemd
    /// (`LISTEN_FDNAMES`), if any.
    pub(crate) name: Option<String>,
}

/// Builds the environment for a re-exec: `current` (e.g. `std::env::vars_os()`) without any
/// previous hand-over variables, plus `RCONTAINER_FDS` for `fds` (raw fd, name) addressed to
/// `pid`. `LISTEN_*` are dropped too: after the first exec every socket travels in
/// `RCONTAINER_FDS`, so no fd is listed twice.
pub(crate) fn env_for_reexec(
    current: impl IntoIterator<Item = (OsString, OsString)>,
    fds: &[(RawFd, &str)],
    pid: Pid,
) -> Vec<(OsString, OsString)> {
    let handover = [
        FDS_ENV,
        FDS_PID_ENV,
        LISTEN_FDS_ENV,
        LISTEN_PID_ENV,
        LISTEN_FDNAMES_ENV,
    ];
    let mut env: Vec<(OsString, OsString)> = current
        .into_iter()
        .filter(|(key, _)| !handover.iter().any(|var| OsStr::new(var) == key))
        .collect();
    env.push((FDS_ENV.into(), encode_fd_list(fds).into()));
    env.push((FDS_PID_ENV.into(), pid.to_string().into()));
    env
}

/// Takes ownership of the descriptors the previous image handed over: `RCONTAINER_FDS` if it is
/// addressed to this pid, else systemd's `LISTEN_FDS` if addressed to this pid, else nothing.
///
/// `lookup` reads an environment variable (`|key| std::env::var(key).ok()` in production).
/// Each listed fd must be open. Returns an error if called a second time in the same image.
pub(crate) fn adopt_inherited_fds(
    lookup: impl Fn(&str) -> Option<String>,
) -> io::Result<Vec<InheritedFd>> {
    static ADOPTED: AtomicBool = AtomicBool::new(false);
    let our_pid = super::process::current_pid();
    let listed = list_inherited_fds(&lookup, our_pid)?;
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "inherited fds were already adopted by this process",
        ));
    }
    listed
        .into_iter()
        .map(|(raw, name, origin)| {
            ensure_open(raw)?;
            if origin == FdOrigin::Reexec {
                // SAFETY: `raw` is open (checked above); the borrow lasts for the dup only.
                let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
                let fd = borrowed.try_clone_to_owned()?;
                return Ok(InheritedFd {
                    fd,
                    original: Some(raw),
                    name,
                });
            }
            // SAFETY: `raw` is open (checked above), was passed by the service manager for
            // this pid to own, and this code runs once per image (the `ADOPTED` guard), so no
            // other `OwnedFd` in this process holds that number.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            set_cloexec(&fd, true)?;
            Ok(InheritedFd {
                fd,
                original: None,
                name,
            })
        })
        .collect()
}

/// A memory file (`memfd_create`, close-on-exec) holding `bytes`: data handed to the next image
/// of this process by descriptor.
pub(crate) fn memfd_with(name: &str, bytes: &[u8]) -> io::Result<OwnedFd> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC)?;
    let mut written = 0;
    while written < bytes.len() {
        let offset = libc::off_t::try_from(written).map_err(|_| invalid("too big".into()))?;
        match nix::sys::uio::pwrite(&fd, &bytes[written..], offset) {
            Ok(n) => written += n,
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(fd)
}

/// Everything in the file `fd` refers to, read from offset 0 (it is not moved).
pub(crate) fn read_whole(fd: impl AsFd) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let offset = libc::off_t::try_from(out.len()).map_err(|_| invalid("too big".into()))?;
        match nix::sys::uio::pread(fd.as_fd(), &mut buf, offset) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// The accept queue of a listening TCP socket: connections waiting for `accept` and the
/// backlog it may hold (Linux reports both through `TCP_INFO` on a listening socket). A unix
/// socket, or any error, reads as `None`.
pub(crate) fn listen_queue(fd: impl AsFd) -> Option<(u32, u32)> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes that the kernel fills (zeroed first, so
    // every field is initialised even if the kernel writes fewer bytes); the fd is borrowed.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: zero-initialised above and possibly overwritten by the kernel: initialised.
    let info = unsafe { info.assume_init() };
    Some((info.tcpi_unacked, info.tcpi_sacked))
}

/// Takes ownership of descriptor `raw` named by the configuration (`socket = fd://3`): the
/// service manager or parent that started us opened it for us.
///
/// The caller must adopt each number at most once (the configuration lists it once); a
/// closed number is an error.
pub(crate) fn adopt_fd(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "negative fd"));
    }
    ensure_open(raw)?;
    // SAFETY: `raw` is open (checked above) and was handed to this process to own; the
    // configuration names it once, so no other `OwnedFd` in this process holds that number.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_cloexec(&fd, true)?;
    Ok(fd)
}

/// The (fd, name, origin) list the environment hands to `our_pid`, without touching any fd.
fn list_inherited_fds(
    lookup: &impl Fn(&str) -> Option<String>,
    our_pid: Pid,
) -> io::Result<Vec<(RawFd, Option<String>, FdOrigin)>> {
    if let Some(list) = lookup(FDS_ENV)
        && is_addressed_to(lookup(FDS_PID_ENV).as_deref(), our_pid)
    {
        let fds = decode_fd_list(&list)?;
        return Ok(fds
            .into_iter()
            .map(|(fd, name)| (fd, Some(name), FdOrigin::Reexec))
            .collect());
    }
    let systemd = parse_listen_fds(
        lookup(LISTEN_FDS_ENV).as_deref(),
        lookup(LISTEN_PID_ENV).as_deref(),
        lookup(LISTEN_FDNAMES_ENV).as_deref(),
        our_pid,
    )?;
    Ok(systemd
        .into_iter()
        .map(|(fd, name)| (fd, name, FdOrigin::Systemd))
        .collect())
}

/// systemd's rules: `LISTEN_PID` must be our pid (otherwise the variables were inherited by
/// accident and mean nothing to us), `LISTEN_FDS` fds start at 3, `LISTEN_FDNAMES` is optional.
pub(crate) fn parse_listen_fds(
    listen_fds: Option<&str>,
    listen_pid: Option<&str>,
    fdnames: Option<&str>,
    our_pid: Pid,
) -> io::Result<Vec<(RawFd, Option<String>)>> {
    let Some(count) = listen_fds else {
        return Ok(Vec::new());
    };
    if !is_addressed_to(listen_pid, our_pid) {
        return Ok(Vec::new());
    }
    let count: RawFd = count
        .trim()
        .parse()
        .map_err(|_| invalid(format!("{LISTEN_FDS_ENV}={count}: not a number")))?;
    let mut names = fdnames.map(|names| names.split(':'));
    Ok((0..count)
        .map(|i| {
            let name = names.as_mut().and_then(Iterator::next).map(str::to_owned);
            (SD_LISTEN_FDS_START + i, name)
        })
        .collect())
}

fn is_addressed_to(pid_var: Option<&str>, our_pid: Pid) -> bool {
    pid_var.and_then(|pid| pid.trim().parse::<i32>().ok()) == Some(our_pid.as_raw())
}

/// `[(3, "http=:80"), (4, "a,b")]` -> `3:http=:80,4:a%2Cb`.
pub(crate) fn encode_fd_list(fds: &[(RawFd, &str)]) -> String {
    fds.iter()
        .map(|(fd, name)| format!("{fd}:{}", escape_name(name)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The inverse of [`encode_fd_list`]; an empty string is an empty list.
pub(crate) fn decode_fd_list(list: &str) -> io::Result<Vec<(RawFd, String)>> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|entry| {
            let (fd, name) = entry
                .split_once(':')
                .ok_or_else(|| invalid(format!("{FDS_ENV}: entry {entry:?} has no ':'")))?;
            let fd = fd
                .parse::<RawFd>()
                .ok()
                .filter(|fd| *fd >= 0)
                .ok_or_else(|| invalid(format!("{FDS_ENV}: bad fd in {entry:?}")))?;
            Ok((fd, unescape_name(name)?))
        })
        .collect()
}

fn escape_name(name: &str) -> String {
    name.replace('%', "%25").replace(',', "%2C")
}

fn unescape_name(name: &str) -> io::Result<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escaped = rest.get(at..at + 3);
        match escaped {
            Some("%25") => out.push('%'),
            Some("%2C") => out.push(','),
            _ => return Err(invalid(format!("{FDS_ENV}: bad escape in {name:?}"))),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn ensure_open(raw: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD only reads the flags of a descriptor number; on a closed number it fails
    // with EBADF and has no effect.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    if flags == -1 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("inherited fd {raw}: {err}"),
        ));
    }
    Ok(())
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::fd::{AsRawFd, IntoRawFd};

    fn pid(raw: i32) -> Pid {
        Pid::from_raw(raw)
    }

    #[test]
    fn a_listening_socket_reports_its_queue_and_backlog() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let waiting = std::net::TcpStream::connect(addr).expect("connect");
        let (queued, backlog) = listen_queue(&listener).expect("tcp info");
        assert_eq!(queued, 1, "one connection waits for accept");
        assert!(backlog >= 1);
        drop(waiting);
        let unix = std::os::unix::net::UnixListener::bind(
            std::env::temp_dir().join(format!("rc-lq-{}", std::process::id())),
        );
        if let Ok(unix) = unix {
            assert_eq!(listen_queue(&unix), None);
            let _ = std::fs::remove_file(unix.local_addr().unwrap().as_pathname().unwrap());
        }
    }

    #[test]
    fn fd_list_round_trips_names_with_commas_and_percents() {
        let fds = [
            (3, "http=127.0.0.1:8000"),
            (7, "uwsgi=/run/a,b%c.sock"),
            (9, ""),
        ];
        let encoded = encode_fd_list(&fds);
        assert_eq!(
            encoded,
            "3:http=127.0.0.1:8000,7:uwsgi=/run/a%2Cb%25c.sock,9:"
        );
        let decoded = decode_fd_list(&encoded).expect("decode");
        let expected: Vec<(RawFd, String)> =
            fds.iter().map(|(fd, n)| (*fd, n.to_string())).collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn malformed_fd_lists_are_errors() {
        assert_eq!(decode_fd_list("").expect("empty").len(), 0);
        assert!(decode_fd_list("3").is_err());
        assert!(decode_fd_list("x:name").is_err());
        assert!(decode_fd_list("-1:name").is_err());
        assert!(decode_fd_list("3:bad%zz").is_err());
    }

    #[test]
    fn listen_fds_start_at_three_with_optional_names() {
        let fds = parse_listen_fds(Some("2"), Some("42"), Some("web:admin"), pid(42));
        assert_eq!(
            fds.expect("parse"),
            [(3, Some("web".to_owned())), (4, Some("admin".to_owned()))]
        );
        let unnamed = parse_listen_fds(Some("1"), Some("42"), None, pid(42)).expect("parse");
        assert_eq!(unnamed, [(3, None)]);
    }

    #[test]
    fn listen_fds_for_another_pid_are_ignored() {
        let fds = parse_listen_fds(Some("2"), Some("41"), None, pid(42)).expect("parse");
        assert!(fds.is_empty());
        let no_pid = parse_listen_fds(Some("2"), None, None, pid(42)).expect("parse");
        assert!(no_pid.is_empty());
        assert!(parse_listen_fds(Some("two"), Some("42"), None, pid(42)).is_err());
    }

    #[test]
    fn reexec_env_replaces_every_handover_variable() {
        let current = [
            ("PATH", "/bin"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", "5"),
            ("RCONTAINER_FDS", "3:old"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = env_for_reexec(current, &[(3, "http=:80"), (4, "uwsgi=:3031")], pid(5));
        let env: HashMap<_, _> = env.into_iter().collect();
        assert_eq!(env.len(), 3);
        assert_eq!(env[OsStr::new("PATH")], "/bin");
        assert_eq!(env[OsStr::new(FDS_ENV)], "3:http=:80,4:uwsgi=:3031");
        assert_eq!(env[OsStr::new(FDS_PID_ENV)], "5");
    }

    #[test]
    fn cloexec_and_nonblocking_flags_toggle() {
        let (read, _write) = nix::unistd::pipe().expect("pipe");
        set_cloexec(&read, true).expect("set");
        assert!(is_cloexec(&read).expect("get"));
        set_cloexec(&read, false).expect("clear");
        assert!(!is_cloexec(&read).expect("get"));
        set_nonblocking(&read, true).expect("nonblock");
        let mut buf = [0u8; 1];
        let err = nix::unistd::read(&read, &mut buf).expect_err("nothing to read");
        assert_eq!(err, nix::errno::Errno::EAGAIN);
    }

    /// The only test that adopts (adoption is once per process image).
    #[test]
    fn reexec_fds_addressed_to_us_are_adopted_once() {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let raw = read.into_raw_fd();
        let our_pid = super::super::process::current_pid().to_string();
        let vars: HashMap<&str, String> = HashMap::from([
            (FDS_ENV, encode_fd_list(&[(raw, "pipe")])),
            (FDS_PID_ENV, our_pid),
            (LISTEN_FDS_ENV, "5".to_owned()),
        ]);
        let lookup = |key: &str| vars.get(key).cloned();
        let adopted = adopt_inherited_fds(lookup).expect("adopt");
        assert_eq!(adopted.len(), 1, "RCONTAINER_FDS wins over LISTEN_FDS");
        assert_eq!(
            adopted[0].original,
            Some(raw),
            "a re-exec keeps the number listed"
        );
        assert_ne!(adopted[0].fd.as_raw_fd(), raw, "and works on a copy");
        assert_eq!(adopted[0].name.as_deref(), Some("pipe"));
        assert!(is_cloexec(&adopted[0].fd).expect("flags"));
        // SAFETY: `raw` is open (the test owns it until the close below).
        let original = unsafe { BorrowedFd::borrow_raw(raw) };
        assert!(
            !is_cloexec(original).expect("flags"),
            "the original stays inheritable"
        );
        assert!(adopt_inherited_fds(lookup).is_err(), "second adoption");
        close_inherited(raw);
        drop(write);
    }
}
