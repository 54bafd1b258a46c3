//! Listening sockets: bound once by the master (or adopted from an inherited fd) before any
//! worker is forked, and kept open across every reload.
//!
//! A [`Listener`] is a non-blocking listening socket plus what the rest of the system needs to
//! know about it: the protocol it speaks, the spec it came from and the address it really got
//! (`:0` asks the kernel for a port; the ready line reports the real one).

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
    /// Errors name the spec: `bind 127.0.0.1:80: permission denied`.
    pub(crate) fn bind(
        spec: &SocketSpec,
        protocol: Protocol,
        backlog: u32,
        unix: UnixOptions,
    ) -> io::Result<Listener> {
        let (fd, local) = match spec {
            SocketSpec::Tcp { host, port } => {
                bind_tcp(host, *port).map_err(|e| with_context(e, format!("bind {spec}")))?
            }
            SocketSpec::Unix(path) => bind_unix(path, unix)
                .map_err(|e| with_context(e, format!("bind {}", path.display())))?,
            SocketSpec::Fd(raw) => {
                return fd::adopt_fd(*raw)
                    .and_then(|fd| Listener::adopt(fd, spec, protocol))
                    .map_err(|e| with_context(e, format!("adopt fd://{raw}")));
            }
        };
        set_backlog(fd.as_fd(), backlog)?;
        Ok(Listener {
            fd,
            protocol,
            local,
            spec_text: spec.to_string(),
        })
    }

    /// Takes over an inherited listening socket (`fd://N`, systemd `LISTEN_FDS`, a re-exec'd
    /// master).
    pub(crate) fn adopt(
        fd: OwnedFd,
        spec: &SocketSpec,
        protocol: Protocol,
    ) -> io::Result<Listener> {
        if !socket::getsockopt(&fd, sockopt::AcceptConn).map_err(io::Error::from)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a listening socket",
            ));
        }
        let local = local_addr(fd.as_fd())?;
        fd::set_nonblocking(&fd, true)?;
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

fn bind_tcp(host: &Host, port: u16) -> io::Result<(OwnedFd, LocalAddr)> {
    let candidates: Vec<SocketAddr> = match host {
        Host::Any => vec![SocketAddr::from(([0, 0, 0, 0], port))],
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Host::Name(name) => (name.as_str(), port).to_socket_addrs()?.collect(),
    };
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "name resolved to no address");
    for addr in candidates {
        // std sets SO_REUSEADDR, so a restart does not wait for TIME_WAIT to clear.
        match TcpListener::bind(addr) {
            Ok(listener) => {
                listener.set_nonblocking(true)?;
                let local = listener.local_addr()?;
                return Ok((OwnedFd::from(listener), LocalAddr::Tcp(local)));
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

fn bind_unix(path: &Path, options: UnixOptions) -> io::Result<(OwnedFd, LocalAddr)> {
    remove_stale_socket(path)?;
    let listener = UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    if let Some(mode) = options.mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    if let Some((uid, gid)) = options.owner {
        nix::unistd::chown(path, uid, gid)?;
    }
    Ok((OwnedFd::from(listener), LocalAddr::Unix(path.to_path_buf())))
}

/// A socket file left behind by a dead instance would make `bind` fail with `AddrInUse`; one
/// that a live process still accepts on must not be stolen.
pub(crate) fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
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
                Err(_) => fs::remove_file(path),
            }
        }
    }
}

/// Re-listening on a listening socket only updates its backlog (Linux).
fn set_backlog(fd: BorrowedFd<'_>, backlog: u32) -> io::Result<()> {
    let backlog = Backlog::new(i32::try_from(backlog).unwrap_or(i32::MAX))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    socket::listen(&fd, backlog).map_err(io::Error::from)
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

fn with_context(error: io::Error, context: String) -> io::Error {
    io::Error::new(error.kind(), format!("{context}: {error}"))
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
    fn an_inherited_listening_fd_is_adopted_with_its_address() {
        let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let spec = SocketSpec::Fd(3);
        let listener =
            Listener::adopt(OwnedFd::from(std_listener), &spec, Protocol::Uwsgi).unwrap();
        assert_eq!(listener.local_addr(), &LocalAddr::Tcp(addr));
    }
}
