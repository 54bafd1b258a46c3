//! [`Conn`]: one connection to an upstream, plain TCP or TLS over TCP, and [`connect`], which
//! makes one (DNS on the offload pool, TCP connect, TLS handshake) within the request's time.
//!
//! Reads and writes take the request's deadline: every wait on the socket is bounded by what
//! is left of it, however many socket operations one call needs (a TLS record can take
//! several reads).

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::exchange::remaining;
use super::tls::{TlsConfig, TlsStream};
use super::url::{Scheme, Url};
use super::{Error, ErrorKind};
use crate::coro::{self, CoStream};

/// How long a connect (or a TLS handshake) may take when the client has no time limit at all.
const UNLIMITED_CONNECT: Duration = Duration::from_secs(120);

/// A connection carrying HTTP/1.1 requests.
#[derive(Debug)]
pub(crate) enum Conn {
    Plain(CoStream),
    Tls(Box<TlsStream>),
}

impl Conn {
    /// Reads what comes next into `buf` (`Ok(0)`: the upstream closed), waiting no later
    /// than `deadline`.
    pub(crate) fn read(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        match self {
            Conn::Plain(sock) => {
                sock.set_read_timeout(remaining(deadline)?);
                sock.read(buf)
            }
            Conn::Tls(tls) => tls.read(buf, deadline),
        }
    }

    /// Writes all of `buf` before `deadline`.
    pub(crate) fn write_all(
        &mut self,
        mut buf: &[u8],
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        match self {
            Conn::Plain(sock) => {
                while !buf.is_empty() {
                    sock.set_write_timeout(remaining(deadline)?);
                    match sock.write(buf)? {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => buf = &buf[n..],
                    }
                }
                Ok(())
            }
            Conn::Tls(tls) => tls.write_all(buf, deadline),
        }
    }

    /// The TCP socket underneath (the pool peeks at it).
    pub(crate) fn socket(&self) -> &CoStream {
        match self {
            Conn::Plain(sock) => sock,
            Conn::Tls(tls) => tls.socket(),
        }
    }

    /// Whether nothing is left unread above the socket (always, for plain connections; for
    /// TLS, no decrypted bytes and no `close_notify` wait in the session).
    pub(crate) fn is_drained(&mut self) -> bool {
        match self {
            Conn::Plain(_) => true,
            Conn::Tls(tls) => tls.is_drained(),
        }
    }
}

/// Connects to `url`'s host (an IP literal directly, a name through DNS on the offload pool)
/// and, for `https`, runs the TLS handshake with `tls` (given for `https` URLs only). `limit` bounds each address's connect
/// and the handshake, all within `deadline`.
pub(crate) fn connect(
    url: &Url,
    tls: Option<&TlsConfig>,
    deadline: Option<Instant>,
    limit: Option<Duration>,
) -> Result<Conn, Error> {
    let sock = connect_tcp(url, deadline, limit)?;
    match url.scheme {
        Scheme::Http => Ok(Conn::Plain(sock)),
        Scheme::Https => {
            let tls = tls.expect("invariant: an https request carries a TLS configuration");
            connect_tls(sock, url, tls, phase_deadline(deadline, limit))
        }
    }
}

/// The TLS handshake on a connected `sock`. Never inlined: inside `connect` its `rustls`
/// session made that frame 5 KiB, probed page by page on entry, so every plain `http` connect
/// touched (and kept resident) 5 KiB of its coroutine's stack for nothing.
#[inline(never)]
fn connect_tls(
    sock: CoStream,
    url: &Url,
    tls: &TlsConfig,
    deadline: Option<Instant>,
) -> Result<Conn, Error> {
    let stream = TlsStream::handshake(sock, &url.host, &url.origin(), tls, deadline)?;
    Ok(Conn::Tls(Box::new(stream)))
}

/// The earlier of `deadline` and `limit` from now; [`UNLIMITED_CONNECT`] from now if neither.
fn phase_deadline(deadline: Option<Instant>, limit: Option<Duration>) -> Option<Instant> {
    let own = Instant::now() + limit.unwrap_or(UNLIMITED_CONNECT);
    match (deadline, limit) {
        (Some(at), Some(_)) => Some(at.min(own)),
        (Some(at), None) => Some(at),
        (None, _) => Some(own),
    }
}

fn connect_tcp(
    url: &Url,
    deadline: Option<Instant>,
    limit: Option<Duration>,
) -> Result<CoStream, Error> {
    let addrs = match url.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, url.port)],
        Err(_) => {
            let name = (url.host.clone(), url.port);
            coro::offload(move || name.to_socket_addrs().map(Iterator::collect::<Vec<_>>))
                .and_then(|resolved| resolved)
                .map_err(|e| Error {
                    kind: ErrorKind::Connect,
                    message: format!("cannot resolve {}: {e}", url.host),
                    source: Some(e),
                })?
        }
    };
    let mut last = None;
    for addr in addrs {
        let left = remaining(deadline).map_err(|e| Error::io("connecting", e))?;
        let wait = match (left, limit) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => UNLIMITED_CONNECT,
        };
        match coro::TcpStream::connect_timeout(&addr, wait) {
            Ok(stream) => {
                // Requests are written whole: no need to wait for more bytes to coalesce.
                let _ = stream.set_nodelay(true);
                return Ok(stream.into());
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((addr, e)) if e.kind() == io::ErrorKind::TimedOut => {
            Error::io(&format!("connecting to {addr}"), e)
        }
        Some((addr, e)) => Error {
            kind: ErrorKind::Connect,
            message: format!("cannot connect to {addr}: {e}"),
            source: Some(e),
        },
        None => Error::new(ErrorKind::Connect, format!("{} has no address", url.host)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_ends_at_the_earlier_of_the_deadline_and_its_own_limit() {
        let now = Instant::now();
        let soon = now + Duration::from_millis(10);
        let late = now + Duration::from_secs(60);
        assert_eq!(
            phase_deadline(Some(soon), Some(Duration::from_secs(5))),
            Some(soon)
        );
        let capped = phase_deadline(Some(late), Some(Duration::from_secs(5))).unwrap();
        assert!(capped < late);
        assert_eq!(phase_deadline(Some(late), None), Some(late));
        // No limit at all still ends some day: a handshake never hangs a core forever.
        assert!(phase_deadline(None, None).unwrap() > now + Duration::from_secs(100));
    }
}
