//! Blocking-style sockets for coroutines: [`CoStream`] (TCP or unix), the connections
//! handlers open ([`TcpStream`], [`UnixStream`]: a `CoStream` each) and, for the worker,
//! [`CoListener`].
//!
//! The protocol (STYLE.md 5): try the syscall on the non-blocking fd; on `WouldBlock` park on
//! (fd token, direction, deadline) and retry when woken; `Interrupted` is retried; a passed
//! deadline is `TimedOut`. Each fd is registered once with mio, edge-triggered, for both
//! directions, so one coroutine may read while another writes. Outside a coroutine (or on a
//! thread without a runtime) the same calls wait with `poll(2)`: plain blocking behaviour.
//! This module must not block the thread inside a coroutine.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::{Interest, Registry, Token};
use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage};

use super::offload::offload;
use super::reactor::{Dir, IoToken};
use super::sched;
use super::time::deadline_after;

/// The address of a peer or of a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket, with its path when it has one (clients usually have none).
    Unix(Option<PathBuf>),
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "{a}"),
            Addr::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            Addr::Unix(None) => f.write_str("unix"),
        }
    }
}

fn unix_addr(a: &std::os::unix::net::SocketAddr) -> Addr {
    Addr::Unix(a.as_pathname().map(Path::to_path_buf))
}

enum Sock {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Source for Sock {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.register(r, t, i),
            Sock::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.reregister(r, t, i),
            Sock::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.deregister(r),
            Sock::Unix(s) => s.deregister(r),
        }
    }
}

impl AsFd for Sock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Sock::Tcp(s) => s.as_fd(),
            Sock::Unix(s) => s.as_fd(),
        }
    }
}

/// Waits for `fd` with `poll(2)`: the fallback outside coroutines.
fn wait_blocking(fd: BorrowedFd<'_>, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
    let events = match dir {
        Dir::Read => libc::POLLIN,
        Dir::Write => libc::POLLOUT,
    };
    let timeout_ms = match deadline {
        None => -1,
        Some(at) => {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "operation timed out",
                ));
            }
            // Round up so we never wake before the deadline.
            i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
        }
    };
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd for an fd borrowed for the duration of the call.
    match unsafe { libc::poll(&mut pfd, 1, timeout_ms) } {
        0 => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "operation timed out",
        )),
        n if n > 0 => Ok(()),
        _ => match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            e => Err(e),
        },
    }
}

/// A connected stream socket (TCP or unix) whose `read`/`write` park the calling coroutine
/// instead of blocking the worker. Implements `std::io::Read` and `Write` (also for `&CoStream`,
/// so one coroutine can read while another writes).
///
/// Timeouts ([`set_read_timeout`](Self::set_read_timeout)) apply per operation: a `read` that
/// waits longer fails with `TimedOut`. At most one coroutine may wait to read and one to write
/// at a time (a second reader would take the first one's place and leave it parked).
pub struct CoStream {
    sock: Sock,
    token: Option<IoToken>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl fmt::Debug for CoStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoStream")
            .field("fd", &self.as_raw_fd())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl CoStream {
    fn new(mut sock: Sock) -> io::Result<CoStream> {
        let token = match sched::runtime() {
            Some(rt) => Some(rt.register_io(&mut sock)?),
            None => None,
        };
        Ok(CoStream {
            sock,
            token,
            read_timeout: None,
            write_timeout: None,
        })
    }

    /// Adopts a connected std TCP stream (made non-blocking).
    pub fn from_std_tcp(s: std::net::TcpStream) -> io::Result<CoStream> {
        s.set_nonblocking(true)?;
        CoStream::new(Sock::Tcp(mio::net::TcpStream::from_std(s)))
    }

    /// Adopts a connected std unix stream (made non-blocking).
    pub fn from_std_unix(s: std::os::unix::net::UnixStream) -> io::Result<CoStream> {
        s.set_nonblocking(true)?;
        CoStream::new(Sock::Unix(mio::net::UnixStream::from_std(s)))
    }

    /// Reads into `buf`, parking until data (or end of stream) arrives. `Ok(0)` is end of stream.
    ///
    /// A read that comes back short took everything the kernel had: until the next readable
    /// event, the next read parks at once instead of failing with `EAGAIN` first (one syscall
    /// fewer per request on a keep-alive connection).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let registered = sched::in_coroutine().zip(self.token);
        let mut deadline = None;
        if let Some((rt, token)) = registered
            && !buf.is_empty()
            && !rt.read_ready(token)
        {
            let at = *deadline.get_or_insert_with(|| self.read_timeout.map(deadline_after));
            self.wait(Dir::Read, at)?;
        }
        loop {
            let result = match &self.sock {
                Sock::Tcp(s) => (&*s).read(buf),
                Sock::Unix(s) => (&*s).read(buf),
            };
            match result {
                Ok(n) => {
                    // `0` is the end of the stream: every later read returns at once too.
                    if let Some((rt, token)) = registered
                        && n > 0
                        && n < buf.len()
                    {
                        rt.clear_read_ready(token);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some((rt, token)) = registered {
                        rt.clear_read_ready(token);
                    }
                    let at = *deadline.get_or_insert_with(|| self.read_timeout.map(deadline_after));
                    self.wait(Dir::Read, at)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Parks until a read may find data or the end of the stream (or the read timeout passes),
    /// without a buffer to read into: a connection waiting for its next request holds none.
    /// Returns at once when the last read did not come back short (more may be waiting).
    pub(crate) fn wait_readable(&self) -> io::Result<()> {
        if let Some((rt, token)) = sched::in_coroutine().zip(self.token)
            && !rt.read_ready(token)
        {
            self.wait(Dir::Read, self.read_timeout.map(deadline_after))?;
        }
        Ok(())
    }

    /// Writes some of `buf`, parking while the socket buffer is full.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io(Dir::Write, self.write_timeout, |s| match s {
            Sock::Tcp(s) => (&*s).write(buf),
            Sock::Unix(s) => (&*s).write(buf),
        })
    }

    /// Writes all of `buf` (each wait bounded by the write timeout).
    pub fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf)? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write whole buffer",
                    ));
                }
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// Nothing is buffered here: always `Ok`.
    pub fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    /// Shuts down the read, write or both halves (`Shutdown::Write` sends FIN after the data).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match &self.sock {
            Sock::Tcp(s) => s.shutdown(how),
            Sock::Unix(s) => s.shutdown(how),
        }
    }

    /// Limits how long one `read` may wait (`None`: no limit).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// Limits how long one `write` may wait (`None`: no limit).
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// The current read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// The current write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<Addr> {
        match &self.sock {
            Sock::Tcp(s) => s.peer_addr().map(Addr::Tcp),
            Sock::Unix(s) => s.peer_addr().map(|a| unix_addr(&a)),
        }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<Addr> {
        match &self.sock {
            Sock::Tcp(s) => s.local_addr().map(Addr::Tcp),
            Sock::Unix(s) => s.local_addr().map(|a| unix_addr(&a)),
        }
    }

    /// Sets `TCP_NODELAY` (no effect on unix sockets).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match &self.sock {
            Sock::Tcp(s) => s.set_nodelay(on),
            Sock::Unix(_) => Ok(()),
        }
    }

    /// The pending socket error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match &self.sock {
            Sock::Tcp(s) => s.take_error(),
            Sock::Unix(s) => s.take_error(),
        }
    }

    fn io<R>(
        &self,
        dir: Dir,
        timeout: Option<Duration>,
        mut op: impl FnMut(&Sock) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut deadline = None;
        loop {
            match op(&self.sock) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let at = *deadline.get_or_insert_with(|| timeout.map(deadline_after));
                    self.wait(dir, at)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }

    fn wait(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        match (sched::in_coroutine(), self.token) {
            (Some(rt), Some(token)) => rt.wait_io(token, dir, deadline).map_err(|e| e.into_io()),
            _ => wait_blocking(self.sock.as_fd(), dir, deadline),
        }
    }
}

impl Drop for CoStream {
    fn drop(&mut self) {
        if let (Some(token), Some(rt)) = (self.token, sched::runtime()) {
            rt.deregister_io(&mut self.sock, token);
        }
    }
}

impl AsFd for CoStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for CoStream {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_fd().as_raw_fd()
    }
}

impl Read for CoStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        CoStream::read(self, buf)
    }
}

impl Write for CoStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CoStream::write(self, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for &CoStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        CoStream::read(self, buf)
    }
}

impl Write for &CoStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CoStream::write(self, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Lsn {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

impl Source for Lsn {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Lsn::Tcp(s) => s.register(r, t, i),
            Lsn::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Lsn::Tcp(s) => s.reregister(r, t, i),
            Lsn::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Lsn::Tcp(s) => s.deregister(r),
            Lsn::Unix(s) => s.deregister(r),
        }
    }
}

/// A listening socket (TCP or unix) whose `accept` parks the calling coroutine: the worker's.
///
/// The worker's accept loop takes a core before accepting, so a worker with every `async` core
/// busy does not accept (and does not poll the listener: edge-triggered readiness just waits).
pub(crate) struct CoListener {
    lsn: Lsn,
    token: Option<IoToken>,
}

impl fmt::Debug for CoListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoListener")
            .field("addr", &self.local_addr().ok())
            .finish()
    }
}

impl CoListener {
    fn new(mut lsn: Lsn) -> io::Result<CoListener> {
        let token = match sched::runtime() {
            Some(rt) => Some(rt.register_io(&mut lsn)?),
            None => None,
        };
        Ok(CoListener { lsn, token })
    }

    /// Adopts a bound, listening socket fd (as inherited from the master), TCP or unix.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<CoListener> {
        let addr: SockaddrStorage = nix::sys::socket::getsockname(fd.as_raw_fd())?;
        match addr.family() {
            Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                CoListener::from_std_tcp(std::net::TcpListener::from(fd))
            }
            Some(AddressFamily::Unix) => {
                CoListener::from_std_unix(std::os::unix::net::UnixListener::from(fd))
            }
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "fd {} is not a TCP or unix listener ({other:?})",
                    fd.as_raw_fd()
                ),
            )),
        }
    }

    /// Adopts a std TCP listener (made non-blocking).
    pub(crate) fn from_std_tcp(l: std::net::TcpListener) -> io::Result<CoListener> {
        l.set_nonblocking(true)?;
        CoListener::new(Lsn::Tcp(mio::net::TcpListener::from_std(l)))
    }

    /// Adopts a std unix listener (made non-blocking).
    pub(crate) fn from_std_unix(l: std::os::unix::net::UnixListener) -> io::Result<CoListener> {
        l.set_nonblocking(true)?;
        CoListener::new(Lsn::Unix(mio::net::UnixListener::from_std(l)))
    }

    /// Accepts one connection, parking until a client arrives.
    pub(crate) fn accept(&self) -> io::Result<(CoStream, Addr)> {
        loop {
            let accepted = match &self.lsn {
                Lsn::Tcp(l) => l.accept().map(|(s, a)| (Sock::Tcp(s), Addr::Tcp(a))),
                Lsn::Unix(l) => l.accept().map(|(s, a)| (Sock::Unix(s), unix_addr(&a))),
            };
            match accepted {
                Ok((sock, addr)) => return Ok((CoStream::new(sock)?, addr)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match (sched::in_coroutine(), self.token) {
                        (Some(rt), Some(token)) => rt
                            .wait_io(token, Dir::Read, None)
                            .map_err(|e| e.into_io())?,
                        _ => wait_blocking(self.as_fd(), Dir::Read, None)?,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The address it listens on.
    pub(crate) fn local_addr(&self) -> io::Result<Addr> {
        match &self.lsn {
            Lsn::Tcp(l) => l.local_addr().map(Addr::Tcp),
            Lsn::Unix(l) => l.local_addr().map(|a| unix_addr(&a)),
        }
    }
}

impl Drop for CoListener {
    fn drop(&mut self) {
        if let (Some(token), Some(rt)) = (self.token, sched::runtime()) {
            rt.deregister_io(&mut self.lsn, token);
        }
    }
}

impl AsFd for CoListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.lsn {
            Lsn::Tcp(l) => l.as_fd(),
            Lsn::Unix(l) => l.as_fd(),
        }
    }
}

/// A TCP connection of a coroutine, opened with [`TcpStream::connect`]: reads and writes park
/// the coroutine instead of the worker. It is a [`CoStream`] (it derefs to one, and converts
/// into one with `CoStream::from`), so every `CoStream` method works on it; `Read` and `Write`
/// are implemented for `TcpStream` and `&TcpStream`.
///
/// ```no_run
/// use std::io::{BufRead, BufReader};
/// use rcontainer::rt;
///
/// let conn = rt::TcpStream::connect("127.0.0.1:6379")?;
/// conn.write_all(b"PING\r\n")?;
/// let mut line = String::new();
/// BufReader::new(&conn).read_line(&mut line)?; // parks until the answer comes
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TcpStream(CoStream);

impl TcpStream {
    /// Resolves `addr` (DNS through [`offload`], so the worker never blocks in `getaddrinfo`)
    /// and connects to the first address that accepts, parking meanwhile.
    ///
    /// ```no_run
    /// # use rcontainer::rt;
    /// let conn = rt::TcpStream::connect("example.com:80")?;
    /// conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect<A>(addr: A) -> io::Result<TcpStream>
    where
        A: ToSocketAddrs + Send + 'static,
    {
        let addrs: Vec<SocketAddr> =
            offload(move || addr.to_socket_addrs().map(Iterator::collect))??;
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
        for a in addrs {
            match connect_tcp(a, None) {
                Ok(s) => return Ok(TcpStream(s)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Connects to `addr`, failing with `TimedOut` after `timeout`.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        connect_tcp(*addr, Some(deadline_after(timeout))).map(TcpStream)
    }
}

fn connect_tcp(addr: SocketAddr, deadline: Option<Instant>) -> io::Result<CoStream> {
    if sched::in_coroutine().is_none() {
        let s = match deadline {
            Some(at) => std::net::TcpStream::connect_timeout(
                &addr,
                at.saturating_duration_since(Instant::now()),
            )?,
            None => std::net::TcpStream::connect(addr)?,
        };
        return CoStream::from_std_tcp(s);
    }
    // Non-blocking connect: the socket becomes writable when the handshake ends either way.
    let stream = CoStream::new(Sock::Tcp(mio::net::TcpStream::connect(addr)?))?;
    loop {
        stream.wait(Dir::Write, deadline)?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        match stream.peer_addr() {
            Ok(_) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => continue, // spurious wake
            Err(e) => return Err(e),
        }
    }
}

/// A unix-socket connection of a coroutine, opened with [`UnixStream::connect`] (or made
/// with [`UnixStream::pair`]): like [`TcpStream`], a [`CoStream`] whose reads and writes park.
#[derive(Debug)]
pub struct UnixStream(CoStream);

impl UnixStream {
    /// Connects to the unix socket at `path`.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        if sched::in_coroutine().is_none() {
            let stream = std::os::unix::net::UnixStream::connect(path)?;
            return CoStream::from_std_unix(stream).map(UnixStream);
        }
        let stream = CoStream::new(Sock::Unix(mio::net::UnixStream::connect(path)?))?;
        stream.wait(Dir::Write, None)?;
        match stream.take_error()? {
            Some(e) => Err(e),
            None => Ok(UnixStream(stream)),
        }
    }

    /// A connected pair of unix stream sockets (to talk between two coroutines, or to a
    /// thread).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((
            UnixStream(CoStream::from_std_unix(a)?),
            UnixStream(CoStream::from_std_unix(b)?),
        ))
    }
}

/// What [`TcpStream`] and [`UnixStream`] share: being a [`CoStream`] (deref, conversion) and
/// reading and writing through it. The inherent `read`/`write`/`write_all`/`flush` take `&self`
/// like `CoStream`'s (without them, the `Write` impl below would be picked for
/// `conn.write_all(..)` and ask for a `mut` binding).
macro_rules! connection_of_costream {
    ($name:ident) => {
        impl $name {
            /// Reads into `buf`, parking until data (or end of stream) arrives; see
            /// [`CoStream::read`].
            pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
                self.0.read(buf)
            }

            /// Writes some of `buf`, parking while the socket buffer is full.
            pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
                self.0.write(buf)
            }

            /// Writes all of `buf` (each wait bounded by the write timeout).
            pub fn write_all(&self, buf: &[u8]) -> io::Result<()> {
                self.0.write_all(buf)
            }

            /// Nothing is buffered here: always `Ok`.
            pub fn flush(&self) -> io::Result<()> {
                Ok(())
            }
        }

        impl Deref for $name {
            type Target = CoStream;
            fn deref(&self) -> &CoStream {
                &self.0
            }
        }

        impl DerefMut for $name {
            fn deref_mut(&mut self) -> &mut CoStream {
                &mut self.0
            }
        }

        impl From<$name> for CoStream {
            fn from(conn: $name) -> CoStream {
                conn.0
            }
        }

        impl Read for $name {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0.read(buf)
            }
        }

        impl Read for &$name {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0.read(buf)
            }
        }

        impl Write for $name {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl Write for &$name {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }
    };
}

connection_of_costream!(TcpStream);
connection_of_costream!(UnixStream);
