//! The request body as the handler reads it: bytes already buffered first, then the socket,
//! through the protocol's body decoder (length or chunked). Also the bounded drain of what the
//! handler left unread, so the peer never sees a reset.

use std::io::{self, Read};

use super::conn::Conn;
use crate::proto::ParseError;
use crate::proto::http1::{self, BodyDecoder};

/// Where a request body stands; outlives the handler's borrow of the connection.
#[derive(Debug)]
pub(crate) struct BodyState {
    decoder: BodyDecoder,
    /// `Expect: 100-continue` not answered yet: answer before the first read from the socket.
    continue_pending: bool,
    /// The framing error that stopped the body, if any (its status answers the request).
    pub(crate) error: Option<ParseError>,
}

impl BodyState {
    pub(crate) fn new(decoder: BodyDecoder, expects_continue: bool) -> BodyState {
        BodyState {
            decoder,
            continue_pending: expects_continue,
            error: None,
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
pub(crate) struct BodyReader<'c> {
    conn: &'c mut Conn,
    state: &'c mut BodyState,
}

impl<'c> BodyReader<'c> {
    pub(crate) fn new(conn: &'c mut Conn, state: &'c mut BodyState) -> BodyReader<'c> {
        BodyReader { conn, state }
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_body(self.conn, self.state, out)
    }
}

fn read_body(conn: &mut Conn, state: &mut BodyState, out: &mut [u8]) -> io::Result<usize> {
    if out.is_empty() {
        return Ok(0);
    }
    loop {
        if state.decoder.is_done() {
            return Ok(0);
        }
        if let Some(error) = state.error {
            return Err(body_error(error));
        }
        if !conn.input.is_empty() {
            // At most `out.len()` input bytes, so the decoded data always fits in `out`.
            let pending = conn.input.pending();
            let window = pending.len().min(out.len());
            let decoded = match state.decoder.decode(&pending[..window]) {
                Ok(decoded) => decoded,
                Err(error) => {
                    state.error = Some(error);
                    return Err(body_error(error));
                }
            };
            let data = decoded.data.clone();
            let n = data.len();
            out[..n].copy_from_slice(&pending[data]);
            conn.input.consume(decoded.consumed);
            if n > 0 || decoded.done {
                return Ok(n);
            }
            continue; // framing bytes only (a chunk-size line): decode on
        }
        if state.continue_pending {
            state.continue_pending = false;
            conn.stream.write_all(http1::CONTINUE_100)?;
        }
        if conn.fill()? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client closed the connection inside the request body",
            ));
        }
    }
}

/// Reads and discards what the handler left of the body, up to `max` bytes. Returns whether
/// the body was read to its end (the connection is then in sync for the next request).
pub(crate) fn drain(conn: &mut Conn, state: &mut BodyState, max: u64) -> bool {
    if state.continue_unanswered() || state.error.is_some() {
        return false;
    }
    let mut scratch = [0u8; 16 * 1024];
    let mut drained = 0u64;
    while !state.decoder.is_done() {
        if drained >= max {
            return false;
        }
        match read_body(conn, state, &mut scratch) {
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
