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
use std::net::{IpAddr, Shutdown};
use std::time::{Duration, Instant};

use slab::Slab;

use super::Shared;
use super::pool::Pools;
use crate::api::{PeerText, ResponseBody};
use crate::config::value::AllowedPeer;
use crate::coro::{self, Addr, CoStream, Permit, Semaphore, TaskId};
use crate::net::listener::Protocol;
use crate::proto::http1::{self, BodyEncoding, HeadSpans, LAST_CHUNK};

/// A body up to this size goes out in the same write as the head.
const COALESCE_BODY: usize = 32 * 1024;
/// Answers to pipelined requests wait to go out together until they reach this size.
pub(crate) const BATCH_LIMIT: usize = 64 * 1024;
/// Chunk size when streaming a body.
const STREAM_CHUNK: usize = 64 * 1024;
/// How long to read (and discard) after `shutdown(SHUT_WR)` before closing, so the peer
/// reads our response instead of a reset.
const LINGER: Duration = Duration::from_secs(2);

/// A client connection: the stream, the bytes read from it but not used yet, and the answers
/// written but not sent yet. Its buffers are the worker's ([`Pools`]), held only while in use.
#[derive(Debug)]
pub(crate) struct Conn<'s> {
    pub(crate) stream: CoStream,
    pub(crate) input: InBuf,
    pub(crate) peer: Addr,
    /// Where the parts of the last HTTP request head are (reused from head to head).
    pub(crate) head: HeadSpans,
    /// Answers not sent yet (empty and unallocated when there are none).
    out: Vec<u8>,
    pools: &'s Pools,
}

/// Bytes read from a socket and not used yet, in a buffer lent by the worker: taken for a read,
/// given back once everything read was used (so an idle connection or a parked request holds
/// none). It grows only when one request head needs more room (bounded by `buffer-size`: the
/// parsers refuse a longer head).
#[derive(Debug, Default)]
pub(crate) struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
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

    /// Room to read into: a buffer from `pools` if none is held; moves pending bytes to the
    /// front, or grows, when the end is reached.
    fn spare(&mut self, pools: &Pools) -> &mut [u8] {
        if self.data.is_empty() {
            self.data = pools.take_input();
        }
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

    /// Gives the buffer back to `pools` if it holds nothing pending.
    fn release(&mut self, pools: &Pools) {
        if self.is_empty() && !self.data.is_empty() {
            pools.give_input(std::mem::take(&mut self.data));
        }
    }
}

impl<'s> Conn<'s> {
    pub(crate) fn new(stream: CoStream, peer: Addr, pools: &'s Pools) -> Conn<'s> {
        Conn {
            stream,
            input: InBuf::default(),
            peer,
            head: HeadSpans::default(),
            out: Vec::new(),
            pools,
        }
    }

    /// Reads more bytes into `input`; `Ok(0)` at end of stream. What waits to be sent goes
    /// first: a peer may wait for those answers before it sends more.
    pub(crate) fn fill(&mut self) -> io::Result<usize> {
        self.flush()?;
        if self.input.data.is_empty() {
            // Waits before taking a buffer: thousands of keep-alive connections waiting for
            // their next request hold none, and a head that arrives whole is read, parsed and
            // its buffer given back before the next connection's is read into.
            self.stream.wait_readable()?;
        }
        let n = self.stream.read(self.input.spare(self.pools))?;
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

    /// Gives the input buffer back to the worker if everything read was used: done before a
    /// request is handed to its app, which may park for long.
    pub(crate) fn release_input(&mut self) {
        self.input.release(self.pools);
    }

    /// The buffer answers are written into, to be sent by [`flush`](Self::flush).
    pub(crate) fn out(&mut self) -> &mut Vec<u8> {
        if self.out.capacity() == 0 {
            self.out = self.pools.take_output();
        }
        &mut self.out
    }

    /// How many bytes of answers wait to be sent.
    pub(crate) fn unsent(&self) -> usize {
        self.out.len()
    }

    /// Sends the answers written so far, in one write when the socket takes them.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.out);
        self.pools.give_output(std::mem::take(&mut self.out));
        result
    }

    /// Writes `bytes` completely, after what waits to be sent.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.flush()?;
        self.stream.write_all(bytes)
    }

    /// Sends what waits, half-closes, then reads and discards until the peer closes (or
    /// [`LINGER`] passes), so unread request bytes do not turn our close into a reset that eats
    /// the response.
    pub(crate) fn close_gracefully(mut self) {
        if self.flush().is_err() {
            return;
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        self.stream.set_read_timeout(Some(LINGER));
        let deadline = Instant::now() + LINGER;
        while Instant::now() < deadline {
            let pending = self.input.pending().len();
            self.input.consume(pending);
            match self.fill() {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }

    /// The peer's IP address and port as text, for the CGI vars (empty on unix sockets).
    pub(crate) fn peer_text(&self) -> PeerText {
        match &self.peer {
            Addr::Tcp(addr) => PeerText::of(*addr),
            Addr::Unix(_) => PeerText::default(),
        }
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if !self.input.data.is_empty() {
            self.pools.give_input(std::mem::take(&mut self.input.data));
        }
        if self.out.capacity() > 0 {
            self.pools.give_output(std::mem::take(&mut self.out));
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
    let conn = Conn::new(stream, peer, &shared.pools);
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

/// Writes `body` with `encoding` after the head already in [`Conn::out`]; returns the body
/// bytes written. A small body joins the head (one write for both, when the connection sends
/// them); a larger or streamed one goes out at once, after the head.
///
/// A body shorter than its announced length is an error (the connection must close: the
/// peer would wait for the rest).
pub(crate) fn write_body(
    conn: &mut Conn<'_>,
    body: ResponseBody,
    encoding: BodyEncoding,
    send_body: bool,
) -> io::Result<u64> {
    if !send_body {
        return Ok(0);
    }
    match body {
        ResponseBody::Bytes(bytes) => {
            if bytes.len() <= COALESCE_BODY {
                conn.out().extend_from_slice(&bytes);
            } else {
                conn.send(&bytes)?;
            }
            Ok(bytes.len() as u64)
        }
        ResponseBody::Stream { reader, len } => {
            conn.flush()?;
            stream_body(conn, reader, len, encoding)
        }
    }
}

fn stream_body(
    conn: &mut Conn<'_>,
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
            Err(e) => return Err(io::Error::new(e.kind(), BodySourceFailed(e))),
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

/// A streamed body's own reader failed (a file read, an app that raised mid-answer): the
/// answer is cut short, but the client did nothing wrong.
#[derive(Debug)]
struct BodySourceFailed(io::Error);

impl std::fmt::Display for BodySourceFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodySourceFailed {}

/// Logs a failed write once, at info level (a client going away is normal), and counts it. A
/// response body whose source failed is not the client's doing: a warning, not counted as a
/// write error.
pub(crate) fn note_write_error(shared: &Shared, conn: &Conn<'_>, error: &io::Error) {
    if let Some(source) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<BodySourceFailed>())
    {
        log::warn!(
            "response cut short: its body failed peer={} error={source}",
            conn.peer
        );
        return;
    }
    shared.count_write_error();
    log::info!("client gone mid-response peer={} error={error}", conn.peer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

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
        let pools = Pools::new(1);
        let mut input = InBuf::default();
        let chunk = input.spare(&pools).len();
        input.spare(&pools)[..chunk].fill(b'a');
        input.end += chunk;
        input.consume(chunk - 3); // 3 left at the very end: the next read compacts
        assert_eq!(input.pending(), b"aaa");
        let spare = input.spare(&pools);
        assert_eq!(spare.len(), chunk - 3);
        spare[0] = b'b';
        input.end += 1;
        assert_eq!(input.pending(), b"aaab");
        // A head that fills the whole buffer makes it grow instead.
        let room = input.spare(&pools).len();
        input.end += room;
        assert_eq!(input.pending().len(), chunk);
        assert!(input.spare(&pools).len() >= chunk, "grown");
        assert_eq!(&input.pending()[..4], b"aaab");
        input.release(&pools);
        assert!(!input.data.is_empty(), "bytes pending: kept");
        input.consume(chunk);
        assert!(input.is_empty());
        input.release(&pools);
        assert!(input.data.is_empty(), "given back");
    }
}
