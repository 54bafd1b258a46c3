//! One client connection on its own coroutine: what both protocols share.
//!
//! - [`Conn`]: the stream and its read buffer (bytes read but not parsed yet).
//! - [`ConnTable`]: which connections the worker has and whether each is idle, so a drain can
//!   close idle keep-alive connections at once and wait for busy ones.
//! - [`Cores`]: the worker's `async` cores. A connection holds one only from the end of a
//!   request head to the end of its answer, never while it waits for a client.
//! - [`write_response`]: an answer's head, then its body, framed.
//!
//! What happens to one request on a connection, whichever protocol, is [`super::exchange`]'s.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use slab::Slab;

use super::Shared;
use crate::api::ResponseBody;
use crate::config::value::AllowedPeer;
use crate::coro::{self, Addr, CoStream, Permit, Semaphore, TaskId};
use crate::net::listener::Protocol;
use crate::proto::http1::{self, BodyEncoding, LAST_CHUNK};

/// The first size of a connection's input buffer: a request head rarely needs more, and a
/// worker with `async = 1000` holds one buffer per connection, touched by the zero-fill. It
/// doubles when a head needs more room (bounded by `buffer-size`).
const FIRST_READ: usize = 4 * 1024;
/// A body up to this size goes out in the same write as the head.
const COALESCE_BODY: usize = 32 * 1024;
/// Chunk size when streaming a body.
const STREAM_CHUNK: usize = 64 * 1024;
/// How long to read (and discard) after `shutdown(SHUT_WR)` before closing, so the peer
/// reads our response instead of a reset.
const LINGER: Duration = Duration::from_secs(2);

/// A client connection: the stream and the bytes read from it but not used yet.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: CoStream,
    pub(crate) input: InBuf,
    pub(crate) peer: Addr,
}

/// Bytes read from a socket and not used yet, in one buffer per connection that is zeroed once
/// (not at every read) and grows only when one request head needs more room (bounded by
/// `buffer-size`: the parsers refuse a longer head).
#[derive(Debug)]
pub(crate) struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    fn new() -> InBuf {
        InBuf {
            data: vec![0; FIRST_READ],
            start: 0,
            end: 0,
        }
    }

    /// The bytes read and not used yet.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks the first `n` pending bytes as used.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end, "consumed more than was read");
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into: moves pending bytes to the front, or grows, when the end is reached.
    fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let len = self.data.len();
                self.data.resize(len * 2, 0);
            }
        }
        &mut self.data[self.end..]
    }
}

impl Conn {
    /// Reads more bytes into `input`; `Ok(0)` at end of stream.
    pub(crate) fn fill(&mut self) -> io::Result<usize> {
        let n = self.stream.read(self.input.spare())?;
        self.input.end += n;
        Ok(n)
    }

    /// Like [`fill`](Self::fill), failing with `TimedOut` at `deadline` too (the whole head's
    /// or the body's), whichever comes first of it and the per-read `socket-timeout`.
    pub(crate) fn fill_before(&mut self, deadline: Option<Instant>) -> io::Result<usize> {
        let Some(deadline) = deadline else {
            return self.fill();
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "read deadline passed",
            ));
        }
        let per_read = self.stream.read_timeout();
        self.stream
            .set_read_timeout(Some(per_read.map_or(left, |t| t.min(left))));
        let result = self.fill();
        self.stream.set_read_timeout(per_read);
        result
    }

    /// Writes `bytes` completely.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Half-closes, then reads and discards until the peer closes (or [`LINGER`] passes), so
    /// unread request bytes do not turn our close into a reset that eats the response.
    pub(crate) fn close_gracefully(mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        self.stream.set_read_timeout(Some(LINGER));
        let deadline = Instant::now() + LINGER;
        let mut scratch = [0u8; 4096];
        while Instant::now() < deadline {
            match self.stream.read(&mut scratch) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }

    /// The peer's IP address and port, as strings for the CGI vars (empty on unix sockets).
    pub(crate) fn peer_parts(&self) -> (String, String) {
        match &self.peer {
            Addr::Tcp(addr) => (addr.ip().to_string(), addr.port().to_string()),
            _ => (String::new(), String::new()),
        }
    }

    pub(crate) fn peer_socket_addr(&self) -> Option<SocketAddr> {
        match &self.peer {
            Addr::Tcp(addr) => Some(*addr),
            _ => None,
        }
    }
}

/// The connections of a worker, keyed by a slab index.
#[derive(Debug, Default)]
pub(crate) struct ConnTable {
    entries: Slab<ConnEntry>,
}

#[derive(Debug)]
struct ConnEntry {
    task: Option<TaskId>,
    idle: bool,
}

impl ConnTable {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Tasks of connections waiting for their next request.
    pub(crate) fn idle_tasks(&self) -> Vec<TaskId> {
        self.entries
            .iter()
            .filter(|(_, e)| e.idle)
            .filter_map(|(_, e)| e.task)
            .collect()
    }
}

/// Registers a connection for its lifetime; removing it even when the coroutine unwinds.
#[derive(Debug)]
pub(crate) struct ConnGuard<'s> {
    shared: &'s Shared,
    key: usize,
}

impl<'s> ConnGuard<'s> {
    fn register(shared: &'s Shared) -> ConnGuard<'s> {
        let key = shared.conns.borrow_mut().entries.insert(ConnEntry {
            task: coro::current(),
            idle: false,
        });
        ConnGuard { shared, key }
    }

    /// Marks the connection idle (between requests) or busy.
    pub(crate) fn set_idle(&self, idle: bool) {
        if let Some(entry) = self.shared.conns.borrow_mut().entries.get_mut(self.key) {
            entry.idle = idle;
        }
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.shared.conns.borrow_mut().entries.try_remove(self.key);
    }
}

/// The worker's `async` cores, numbered `0..async` for the scoreboard and the request log.
#[derive(Debug)]
pub(crate) struct Cores {
    permits: Semaphore,
    /// Numbers of the free cores; the lowest on top, so a quiet worker keeps using core 0.
    free: RefCell<Vec<usize>>,
}

impl Cores {
    pub(crate) fn new(count: usize) -> Cores {
        Cores {
            permits: Semaphore::new(count),
            free: RefCell::new((0..count).rev().collect()),
        }
    }

    /// Takes a core, parking while all are busy. Fails only when the coroutine is cancelled.
    pub(crate) fn acquire(&self) -> io::Result<Core<'_>> {
        let permit = self.permits.acquire()?;
        let id = self
            .free
            .borrow_mut()
            .pop()
            .expect("invariant: a free permit means a free core number");
        Ok(Core {
            cores: self,
            id,
            _permit: permit,
        })
    }
}

/// A core held by one request; free again when dropped.
#[derive(Debug)]
pub(crate) struct Core<'c> {
    cores: &'c Cores,
    id: usize,
    // Dropped after `drop` put the number back, so the woken waiter finds it.
    _permit: Permit,
}

impl Core<'_> {
    /// The core's number (stats, USR2, the request log's `core`).
    pub(crate) fn id(&self) -> usize {
        self.id
    }
}

impl Drop for Core<'_> {
    fn drop(&mut self) {
        self.cores.free.borrow_mut().push(self.id);
    }
}

/// Runs one connection to its end.
pub(crate) fn serve_connection(stream: CoStream, peer: Addr, protocol: Protocol, shared: &Shared) {
    let mut stream = stream;
    stream.set_read_timeout(shared.socket_timeout);
    stream.set_write_timeout(shared.socket_timeout);
    if let Addr::Tcp(_) = peer {
        let _ = stream.set_nodelay(true);
    }
    let guard = ConnGuard::register(shared);
    let conn = Conn {
        stream,
        input: InBuf::new(),
        peer,
    };
    match protocol {
        Protocol::Http => super::http::serve(conn, shared, &guard),
        Protocol::Uwsgi => super::uwsgi::serve(conn, shared, &guard),
    }
}

/// Whether `peer` may talk uwsgi to us (`uwsgi-allow-from`); unix peers always may.
pub(crate) fn peer_allowed(peer: &Addr, allowed: &[AllowedPeer]) -> bool {
    let Addr::Tcp(addr) = peer else {
        return true;
    };
    let ip = canonical_ip(addr.ip());
    allowed.iter().any(|a| match a {
        AllowedPeer::Any => true,
        AllowedPeer::Ip(allowed_ip) => canonical_ip(*allowed_ip) == ip,
    })
}

/// `::ffff:127.0.0.1` is `127.0.0.1`.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Writes `head` and then `body` with `encoding`; returns the bytes written in all.
///
/// A body shorter than its announced length is an error (the connection must close: the
/// peer would wait for the rest).
pub(crate) fn write_response(
    conn: &mut Conn,
    mut head: Vec<u8>,
    body: ResponseBody,
    encoding: BodyEncoding,
    send_body: bool,
) -> io::Result<u64> {
    let head_len = head.len() as u64;
    if !send_body {
        conn.send(&head)?;
        return Ok(head_len);
    }
    match body {
        ResponseBody::Bytes(bytes) => {
            if bytes.len() <= COALESCE_BODY {
                head.extend_from_slice(&bytes);
                conn.send(&head)?;
            } else {
                conn.send(&head)?;
                conn.send(&bytes)?;
            }
            Ok(head_len + bytes.len() as u64)
        }
        ResponseBody::Stream { reader, len } => {
            conn.send(&head)?;
            let sent = stream_body(conn, reader, len, encoding)?;
            Ok(head_len + sent)
        }
    }
}

fn stream_body(
    conn: &mut Conn,
    reader: Box<dyn Read>,
    len: Option<u64>,
    encoding: BodyEncoding,
) -> io::Result<u64> {
    let mut reader = reader.take(len.unwrap_or(u64::MAX));
    let mut chunk = vec![0u8; STREAM_CHUNK];
    let mut framed = Vec::new();
    let mut sent = 0u64;
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if encoding == BodyEncoding::Chunked {
            framed.clear();
            http1::encode_chunk(&mut framed, &chunk[..n]);
            conn.send(&framed)?;
        } else {
            conn.send(&chunk[..n])?;
        }
        sent += n as u64;
    }
    if encoding == BodyEncoding::Chunked {
        conn.send(LAST_CHUNK)?;
    }
    if let Some(len) = len
        && sent < len
    {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("response body ended after {sent} of {len} bytes"),
        ));
    }
    Ok(sent)
}

/// Logs a failed write once, at info level (a client going away is normal), and counts it.
pub(crate) fn note_write_error(shared: &Shared, conn: &Conn, error: &io::Error) {
    shared.count_write_error();
    log::info!("client gone mid-response peer={} error={error}", conn.peer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uwsgi_peers_are_checked_against_allow_from() {
        let allowed = vec![AllowedPeer::Ip("127.0.0.1".parse().unwrap())];
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let other: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        assert!(peer_allowed(&Addr::Tcp(local), &allowed));
        assert!(peer_allowed(&Addr::Tcp(mapped), &allowed));
        assert!(!peer_allowed(&Addr::Tcp(other), &allowed));
        assert!(peer_allowed(&Addr::Tcp(other), &[AllowedPeer::Any]));
    }

    #[test]
    fn cores_are_numbered_and_the_lowest_free_one_is_taken_first() {
        let cores = Cores::new(2);
        let a = cores.acquire().expect("core");
        let b = cores.acquire().expect("core");
        assert_eq!((a.id(), b.id()), (0, 1));
        assert!(cores.permits.try_acquire().is_none(), "both are busy");
        drop(a);
        assert_eq!(cores.acquire().expect("core").id(), 0);
    }
}

#[cfg(test)]
mod inbuf_tests {
    use super::*;

    #[test]
    fn pending_bytes_survive_compaction_and_growth() {
        let mut input = InBuf::new();
        let chunk = input.spare().len();
        input.spare()[..chunk].fill(b'a');
        input.end += chunk;
        input.consume(chunk - 3); // 3 left at the very end: the next read compacts
        assert_eq!(input.pending(), b"aaa");
        let spare = input.spare();
        assert_eq!(spare.len(), chunk - 3);
        spare[0] = b'b';
        input.end += 1;
        assert_eq!(input.pending(), b"aaab");
        // A head that fills the whole buffer makes it grow instead.
        let room = input.spare().len();
        input.end += room;
        assert_eq!(input.pending().len(), chunk);
        assert!(input.spare().len() >= chunk, "grown");
        assert_eq!(&input.pending()[..4], b"aaab");
        input.consume(chunk);
        assert!(input.is_empty());
    }
}
