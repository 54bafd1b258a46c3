//! Listening sockets: bound once by the master (or adopted from an inherited fd) before any
//! worker is forked, and kept open across every reload.
//!
//! A [`Listener`] is a non-blocking listening socket plus what the rest of the system needs to
//! know about it: the protocol it speaks, the spec it came from and the address it really got
//! (`:0` asks the kernel for a port; the ready line reports the real one).
//!
//! Errors name the option, the address and the step, so a failed start says what it was doing:
//! `http-socket 127.0.0.1:80: bind: permission denied`, `socket /run/app.sock: chmod 660: ...`.

use std::fmt;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, AddressFamily, Backlog, SockaddrLike, SockaddrStorage, sockopt};
use nix::unistd::{Gid, Uid};

use super::addr::{Host, SocketSpec};
use crate::sys::error::{context, with_context};
use crate::sys::fd;

/// The protocol spoken on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// The uwsgi binary protocol (`socket =`), as nginx's `uwsgi_pass` speaks it.
    Uwsgi,
    /// HTTP/1.1 (`http-socket =`).
    Http,
}

impl Protocol {
    /// The scheme used in the ready line: `uwsgi` or `http`.
    pub(crate) fn scheme(self) -> &'static str {
        match self {
            Protocol::Uwsgi => "uwsgi",
            Protocol::Http => "http",
        }
    }

    /// The option that configures listeners of this protocol, for error messages.
    pub(crate) fn option(self) -> &'static str {
        match self {
            Protocol::Uwsgi => "socket",
            Protocol::Http => "http-socket",
        }
    }
}

/// The address a listener is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalAddr::Tcp(addr) => write!(f, "{addr}"),
            LocalAddr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How to create unix sockets (`chmod-socket`, `chown-socket`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UnixOptions {
    /// Permission bits for the socket file, such as `0o666`.
    pub(crate) mode: Option<u32>,
    /// Owner and group for the socket file (either may stay as it is).
    pub(crate) owner: Option<(Option<Uid>, Option<Gid>)>,
}

/// A bound, listening, non-blocking socket.
#[derive(Debug)]
pub(crate) struct Listener {
    fd: OwnedFd,
    protocol: Protocol,
    local: LocalAddr,
    /// The configuration's text for it (`127.0.0.1:0`), kept across re-execs.
    spec_text: String,
}

impl Listener {
    /// Binds `spec` (or adopts it, for `fd://N`) with `backlog` and returns the listener.
    ///
    /// Errors name the option, the spec and the step: `socket 127.0.0.1:80: bind: permission
    /// denied`.
    pub(crate) fn bind(
        spec: &SocketSpec,
        protocol: Protocol,
        backlog: u32,
        unix: UnixOptions,
    ) -> io::Result<Listener> {
        let what = format!("{} {spec}", protocol.option());
        if let SocketSpec::Fd(raw) = spec {
            let fd =
                fd::adopt_fd(*raw).map_err(|e| with_context(with_context(e, "adopt"), &what))?;
            return Listener::adopt(fd, spec, protocol);
        }
        let (fd, local) = bind_socket(spec, &what, backlog, unix)?;
        Ok(Listener {
            fd,
            protocol,
            local,
            spec_text: spec.to_string(),
        })
    }

    /// Takes over an inherited listening socket (`fd://N`, systemd `LISTEN_FDS`, a re-exec'd
    /// master). Errors read `http-socket fd://3: adopt: not a listening socket`.
    pub(crate) fn adopt(
        fd: OwnedFd,
        spec: &SocketSpec,
        protocol: Protocol,
    ) -> io::Result<Listener> {
        let what = format!("{} {spec}: adopt", protocol.option());
        let local = adopt_socket(&fd, &what)?;
        Ok(Listener {
            fd,
            protocol,
            local,
            spec_text: spec.to_string(),
        })
    }

    pub(crate) fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub(crate) fn local_addr(&self) -> &LocalAddr {
        &self.local
    }

    /// `uwsgi://127.0.0.1:3031` or `http:///run/app.sock`, as the ready line prints it.
    pub(crate) fn url(&self) -> String {
        format!("{}://{}", self.protocol.scheme(), self.local)
    }

    /// The name under which a listener for `spec` speaking `protocol` is handed over to the
    /// next master image, so it is matched to the same configuration line there.
    pub(crate) fn name_for(spec: &SocketSpec, protocol: Protocol) -> String {
        format!("{} {spec}", protocol.scheme())
    }

    /// This listener's hand-over name (see [`Listener::name_for`]).
    pub(crate) fn handover_name(&self) -> String {
        format!("{} {}", self.protocol.scheme(), self.spec_text)
    }

    /// A second handle to the same socket (for a worker's event loop).
    pub(crate) fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// Removes the socket file of a unix listener (`vacuum`).
    pub(crate) fn remove_socket_file(&self) {
        if let LocalAddr::Unix(path) = &self.local {
            let _ = fs::remove_file(path);
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Checks that `fd` (handed over) is a listening socket, makes it non-blocking and returns
/// its address; errors start with `what`.
pub(crate) fn adopt_socket(fd: &OwnedFd, what: &str) -> io::Result<LocalAddr> {
    let listening =
        socket::getsockopt(fd, sockopt::AcceptConn).map_err(|e| with_context(e.into(), what))?;
    if !listening {
        return Err(with_context(
            io::Error::new(io::ErrorKind::InvalidInput, "not a listening socket"),
            what,
        ));
    }
    let local = local_addr(fd.as_fd()).map_err(context(what))?;
    fd::set_nonblocking(fd, true).map_err(context(what))?;
    Ok(local)
}

/// Binds the TCP or unix socket `spec` non-blocking, listening with `backlog`; a unix socket
/// replaces only a stale socket file and gets `unix`'s mode and owner. Every listening socket
/// of the instance (the served ones and the stats socket) is made here. Errors start with
/// `what` (`stats 127.0.0.1:9191: bind: address already in use`).
pub(crate) fn bind_socket(
    spec: &SocketSpec,
    what: &str,
    backlog: u32,
    unix: UnixOptions,
) -> io::Result<(OwnedFd, LocalAddr)> {
    let (fd, local) = match spec {
        SocketSpec::Tcp { host, port } => bind_tcp(host, *port).map_err(context(what))?,
        SocketSpec::Unix(path) => bind_unix(path, unix).map_err(context(what))?,
        SocketSpec::Fd(raw) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what}: fd://{raw} cannot be bound here"),
            ));
        }
    };
    set_backlog(fd.as_fd(), backlog).map_err(context(what))?;
    Ok((fd, local))
}

fn bind_tcp(host: &Host, port: u16) -> io::Result<(OwnedFd, LocalAddr)> {
    let candidates: Vec<SocketAddr> = match host {
        Host::Any => vec![SocketAddr::from(([0, 0, 0, 0], port))],
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Host::Name(name) => (name.as_str(), port)
            .to_socket_addrs()
            .map_err(context("resolve"))?
            .collect(),
    };
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "name resolved to no address");
    for addr in candidates {
        // std sets SO_REUSEADDR, so a restart does not wait for TIME_WAIT to clear.
        match TcpListener::bind(addr) {
            Ok(listener) => {
                listener
                    .set_nonblocking(true)
                    .map_err(context("set non-blocking"))?;
                let local = listener.local_addr().map_err(context("getsockname"))?;
                return Ok((OwnedFd::from(listener), LocalAddr::Tcp(local)));
            }
            Err(e) => last_error = with_context(e, "bind"),
        }
    }
    Err(last_error)
}

fn bind_unix(path: &Path, options: UnixOptions) -> io::Result<(OwnedFd, LocalAddr)> {
    remove_stale_socket(path)?;
    let listener = UnixListener::bind(path).map_err(context("bind"))?;
    listener
        .set_nonblocking(true)
        .map_err(context("set non-blocking"))?;
    if let Some(mode) = options.mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(context(format_args!("chmod {mode:o}")))?;
    }
    if let Some((uid, gid)) = options.owner {
        nix::unistd::chown(path, uid, gid).map_err(|e| with_context(e.into(), "chown"))?;
    }
    Ok((OwnedFd::from(listener), LocalAddr::Unix(path.to_path_buf())))
}

/// A socket file left behind by a dead instance would make `bind` fail with `AddrInUse`; one
/// that a live process still accepts on must not be stolen.
pub(crate) fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(with_context(e, "stat")),
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                ));
            }
            match UnixStream::connect(path) {
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process is listening on it",
                )),
                Err(_) => fs::remove_file(path).map_err(context("remove stale socket")),
            }
        }
    }
}

/// The largest listen backlog the kernel grants (`net.core.somaxconn`); `None` when `/proc`
/// cannot tell. Larger backlogs are silently cut to it by `listen(2)`.
pub(crate) fn kernel_backlog_limit() -> Option<u32> {
    fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Re-listening on a listening socket only updates its backlog (Linux).
fn set_backlog(fd: BorrowedFd<'_>, backlog: u32) -> io::Result<()> {
    socket::listen(&fd, backlog_for(backlog))
        .map_err(|e| with_context(e.into(), format_args!("listen (backlog {backlog})")))
}

/// nix refuses backlogs above libc's `SOMAXCONN` constant (4096) with `EINVAL`, although the
/// kernel takes up to `net.core.somaxconn`, which may be set higher. Above the constant, ask
/// for the most the kernel allows (`-1`, which it cuts to `somaxconn`): `config::load` has
/// already clamped `listen` to that limit.
fn backlog_for(backlog: u32) -> Backlog {
    i32::try_from(backlog)
        .ok()
        .and_then(|n| Backlog::new(n).ok())
        .unwrap_or(Backlog::MAXALLOWABLE)
}

fn local_addr(fd: BorrowedFd<'_>) -> io::Result<LocalAddr> {
    let addr: SockaddrStorage = socket::getsockname(fd.as_raw_fd())?;
    match addr.family() {
        Some(AddressFamily::Inet) | Some(AddressFamily::Inet6) => {
            let std_addr = addr
                .as_sockaddr_in()
                .map(|a| SocketAddr::from(std::net::SocketAddrV4::from(*a)))
                .or_else(|| {
                    addr.as_sockaddr_in6()
                        .map(|a| SocketAddr::from(std::net::SocketAddrV6::from(*a)))
                })
                .ok_or_else(|| io::Error::other("unreadable inet address"))?;
            Ok(LocalAddr::Tcp(std_addr))
        }
        Some(AddressFamily::Unix) => {
            let path = addr
                .as_unix_addr()
                .and_then(|u| u.path())
                .map(Path::to_path_buf)
                .unwrap_or_default();
            Ok(LocalAddr::Unix(path))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a TCP or unix socket",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_reports_the_port_the_kernel_picked() {
        let spec: SocketSpec = "127.0.0.1:0".parse().unwrap();
        let listener = Listener::bind(&spec, Protocol::Http, 16, UnixOptions::default()).unwrap();
        let LocalAddr::Tcp(addr) = listener.local_addr() else {
            panic!("tcp expected");
        };
        assert_ne!(addr.port(), 0);
        assert_eq!(listener.url(), format!("http://{addr}"));
    }

    #[test]
    fn a_stale_unix_socket_file_is_replaced_and_chmod_applied() {
        let dir = std::env::temp_dir().join(format!("rc-listener-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves the file, nobody listening
        let spec = SocketSpec::Unix(path.clone());
        let options = UnixOptions {
            mode: Some(0o660),
            owner: None,
        };
        let listener = Listener::bind(&spec, Protocol::Uwsgi, 16, options).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        assert_eq!(listener.url(), format!("uwsgi://{}", path.display()));
        // A live listener is not stolen.
        let err = Listener::bind(&spec, Protocol::Uwsgi, 16, options).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        listener.remove_socket_file();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bind_errors_name_the_option_the_address_and_the_step() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let spec: SocketSpec = taken.local_addr().unwrap().to_string().parse().unwrap();
        let err = Listener::bind(&spec, Protocol::Http, 16, UnixOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("http-socket {spec}: bind: address already in use")
        );
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let spec = SocketSpec::Unix("/nonexistent-dir/app.sock".into());
        let err = Listener::bind(&spec, Protocol::Uwsgi, 16, UnixOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "socket /nonexistent-dir/app.sock: bind: no such file or directory"
        );
    }

    #[test]
    fn backlogs_above_the_libc_constant_ask_for_the_kernel_maximum() {
        assert_eq!(i32::from(backlog_for(1024)), 1024);
        assert_eq!(i32::from(backlog_for(16384)), -1);
        assert_eq!(i32::from(backlog_for(u32::MAX)), -1);
        let spec: SocketSpec = "127.0.0.1:0".parse().unwrap();
        Listener::bind(&spec, Protocol::Http, 65535, UnixOptions::default())
            .expect("a backlog above SOMAXCONN binds");
    }

    #[test]
    fn an_inherited_listening_fd_is_adopted_with_its_address() {
        let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let spec = SocketSpec::Fd(3);
        let listener =
            Listener::adopt(OwnedFd::from(std_listener), &spec, Protocol::Uwsgi).unwrap();
        assert_eq!(listener.local_addr(), &LocalAddr::Tcp(addr));
    }
}
