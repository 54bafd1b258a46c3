//! The request body as the handler reads it: bytes already buffered first, then the socket,
//! through the protocol's body decoder (length or chunked). Also the bounded drain of what the
//! handler left unread, so the peer never sees a reset.
//!
//! A body must keep coming ([`BodyPace`]): besides `socket-timeout` per read, the time spent
//! waiting for its bytes may total `socket-timeout` plus one second per `body-min-rate` bytes
//! received. Only waiting counts, not the handler's own work between reads (the client's bytes
//! wait in the kernel meanwhile). A body too slow either way ends the request with 408 and a
//! close: a drip-fed body cannot hold a core for long.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use super::conn::Conn;
use crate::coro;
use crate::proto::ParseError;
use crate::proto::http1::{self, BodyDecoder};

/// How slowly a request body may arrive (`socket-timeout`, `body-min-rate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BodyPace {
    /// Waiting allowed before the rate counts (`socket-timeout`); `None`: no bound at all.
    pub(crate) grace: Option<Duration>,
    /// Each this many bytes received earn one more second of waiting; `None`: no bound.
    pub(crate) min_rate: Option<u64>,
}

impl BodyPace {
    /// How much longer a body that brought `received` bytes in `waited` may be waited for;
    /// `None` when there is no bound.
    fn allowance(&self, received: u64, waited: Duration) -> Option<Duration> {
        let (grace, rate) = (self.grace?, self.min_rate?);
        let earned = Duration::from_millis(received.saturating_mul(1000) / rate.max(1));
        Some(grace.saturating_add(earned).saturating_sub(waited))
    }
}

/// Where a request body stands; outlives the handler's borrow of the connection.
#[derive(Debug)]
pub(crate) struct BodyState {
    decoder: BodyDecoder,
    /// `Expect: 100-continue` not answered yet: answer before the first read from the socket.
    continue_pending: bool,
    /// The framing error that stopped the body, if any (its status answers the request).
    pub(crate) error: Option<ParseError>,
    /// The body came too slowly (per read or in all, see [`BodyPace`]): 408 answers.
    pub(crate) timed_out: bool,
    pace: BodyPace,
    /// Bytes read from the socket for this body, and the time spent waiting for them.
    received: u64,
    waited: Duration,
}

impl BodyState {
    pub(crate) fn new(decoder: BodyDecoder, expects_continue: bool, pace: BodyPace) -> BodyState {
        BodyState {
            decoder,
            continue_pending: expects_continue,
            error: None,
            timed_out: false,
            pace,
            received: 0,
            waited: Duration::ZERO,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.decoder.is_done()
    }

    /// The client still waits for `100 Continue` before it sends the body: nothing to drain,
    /// but the connection cannot be reused (the client may send the body later anyway).
    pub(crate) fn continue_unanswered(&self) -> bool {
        self.continue_pending && !self.decoder.is_done()
    }
}

/// `io::Read` over the body of the request in flight.
#[derive(Debug)]
pub(crate) struct BodyReader<'c, 's> {
    conn: &'c mut Conn<'s>,
    state: &'c mut BodyState,
}

impl<'c, 's> BodyReader<'c, 's> {
    pub(crate) fn new(conn: &'c mut Conn<'s>, state: &'c mut BodyState) -> BodyReader<'c, 's> {
        BodyReader { conn, state }
    }
}

impl Read for BodyReader<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_body(self.conn, self.state, out)
    }
}

fn read_body(conn: &mut Conn<'_>, state: &mut BodyState, out: &mut [u8]) -> io::Result<usize> {
    if out.is_empty() {
        return Ok(0);
    }
    // At most `out.len()` input bytes, so the decoded data always fits in `out`.
    next_body_bytes(conn, state, out.len(), |data| {
        out[..data.len()].copy_from_slice(data);
    })
}

/// Decodes the next body bytes from at most `window` buffered input bytes (reading from the
/// socket when none are buffered) and hands them to `take`; returns how many there were, `0`
/// at the end of the body.
fn next_body_bytes(
    conn: &mut Conn<'_>,
    state: &mut BodyState,
    window: usize,
    mut take: impl FnMut(&[u8]),
) -> io::Result<usize> {
    loop {
        if state.decoder.is_done() {
            return Ok(0);
        }
        if let Some(error) = state.error {
            return Err(body_error(error));
        }
        if state.timed_out {
            return Err(too_slow());
        }
        if !conn.input.is_empty() {
            let pending = conn.input.pending();
            let window = pending.len().min(window);
            let decoded = match state.decoder.decode(&pending[..window]) {
                Ok(decoded) => decoded,
                Err(error) => {
                    state.error = Some(error);
                    return Err(body_error(error));
                }
            };
            let data = &pending[decoded.data.clone()];
            let n = data.len();
            take(data);
            conn.input.consume(decoded.consumed);
            if n > 0 || decoded.done {
                return Ok(n);
            }
            continue; // framing bytes only (a chunk-size line): decode on
        }
        if state.continue_pending {
            state.continue_pending = false;
            conn.send(http1::CONTINUE_100)?;
        }
        if fill_paced(conn, state)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client closed the connection inside the request body",
            ));
        }
    }
}

/// Reads more body bytes within what [`BodyPace`] still allows; a read that times out marks the
/// body too slow (a cancelled request's `TimedOut`, harakiri's, is not the client's doing).
fn fill_paced(conn: &mut Conn<'_>, state: &mut BodyState) -> io::Result<usize> {
    let allowance = state.pace.allowance(state.received, state.waited);
    if allowance == Some(Duration::ZERO) {
        state.timed_out = true;
        return Err(too_slow());
    }
    let started = Instant::now();
    let result = conn.fill_before(allowance.and_then(|left| started.checked_add(left)));
    state.waited += started.elapsed();
    match result {
        Ok(n) => {
            state.received += n as u64;
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::TimedOut && !coro::is_cancelled() => {
            state.timed_out = true;
            Err(too_slow())
        }
        Err(e) => Err(e),
    }
}

fn too_slow() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the request body came too slowly (socket-timeout, body-min-rate)",
    )
}

/// Reads and discards what the handler left of the body, up to `max` bytes. Returns whether
/// the body was read to its end (the connection is then in sync for the next request). Decodes
/// in the input buffer itself: nothing is copied, and no scratch buffer sits on the stack.
pub(crate) fn drain(conn: &mut Conn<'_>, state: &mut BodyState, max: u64) -> bool {
    if state.decoder.is_done() {
        return true;
    }
    if state.continue_unanswered() || state.error.is_some() || state.timed_out {
        return false;
    }
    let mut drained = 0u64;
    while !state.decoder.is_done() {
        if drained >= max {
            return false;
        }
        match next_body_bytes(conn, state, usize::MAX, |_| {}) {
            Ok(0) => break,
            Ok(n) => drained += n as u64,
            Err(_) => return false,
        }
    }
    true
}

fn body_error(error: ParseError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.reason())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_may_wait_the_grace_plus_a_second_per_min_rate_bytes() {
        let pace = BodyPace {
            grace: Some(Duration::from_secs(5)),
            min_rate: Some(1000),
        };
        assert_eq!(
            pace.allowance(0, Duration::ZERO),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            pace.allowance(3000, Duration::from_secs(2)),
            Some(Duration::from_secs(6)),
            "5 s + 3 s earned - 2 s waited"
        );
        assert_eq!(
            pace.allowance(10, Duration::from_secs(9)),
            Some(Duration::ZERO),
            "a drip-fed body runs out"
        );
    }

    #[test]
    fn without_a_timeout_or_a_rate_a_body_is_not_bounded_in_all() {
        let no_rate = BodyPace {
            grace: Some(Duration::from_secs(5)),
            min_rate: None,
        };
        assert_eq!(no_rate.allowance(0, Duration::from_secs(60)), None);
        let no_timeout = BodyPace {
            grace: None,
            min_rate: Some(1000),
        };
        assert_eq!(no_timeout.allowance(0, Duration::from_secs(60)), None);
    }
}
