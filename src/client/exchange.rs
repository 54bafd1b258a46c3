//! One request/response exchange on a connection: write the encoded request, read the
//! response head and its body, all within one deadline.
//!
//! The wire format is `proto`'s ([`crate::proto::http1::client`]: encoding, head parsing,
//! framing; [`BodyDecoder`] for length and chunked bodies); this file only moves the bytes.

use std::io;
use std::time::{Duration, Instant};

use crate::proto::http1::client::{
    ResponseFraming, ResponseHead, parse_response_head, response_framing,
};
use crate::proto::http1::{BodyDecoder, BodyFraming};

use super::conn::Conn;
use super::{Error, ErrorKind};

/// The first read of a response head, and of a body that is not all there yet. The buffer it
/// fills is zeroed, hence resident, while the request waits for the upstream to answer: a
/// worker may have thousands of requests waiting so. Most heads are a few hundred bytes (nginx:
/// about 160); a longer one takes a second read, of twice as much.
const FIRST_READ: usize = 512;

/// The most a read of a head grows its buffer by (each read of the same head doubles it).
const HEAD_CHUNK: usize = 8 * 1024;

/// The most a body read grows its buffer by at a time.
const BODY_CHUNK: usize = 256 * 1024;

/// What came back.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// The connection may carry another request: the body was framed and read to its end,
    /// nothing followed it, and neither side asked to close.
    pub(crate) reusable: bool,
}

/// Why an exchange failed, and whether it is safe to try it again on a new connection.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    /// No byte of a response arrived: a reused connection that the upstream had closed fails
    /// this way, and an idempotent request can go again on a fresh connection.
    pub(crate) nothing_received: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure {
            error,
            nothing_received: false,
        }
    }
}

/// Writes `request` and reads the response to it, all before `deadline`.
pub(crate) fn round_trip(
    conn: &mut Conn,
    request: &[u8],
    deadline: Option<Instant>,
    is_head: bool,
    max_body: usize,
) -> Result<Incoming, Failure> {
    if let Err(e) = conn.write_all(request, deadline) {
        return Err(Failure {
            error: Error::io("sending the request", e),
            nothing_received: true,
        });
    }
    let (head, pending) = read_head(conn, deadline)?;
    let framing = response_framing(&head, is_head).map_err(Error::from)?;
    if let ResponseFraming::Framed(BodyFraming::Length(n)) = framing
        && n > max_body as u64
    {
        return Err(Error::new(
            ErrorKind::BodyTooLarge,
            format!("response body of {n} bytes is over the limit of {max_body}"),
        )
        .into());
    }
    let (body, clean_end) = match framing {
        ResponseFraming::Framed(framing) => {
            read_framed(conn, pending, framing, deadline, max_body)?
        }
        ResponseFraming::UntilClose => (read_to_close(conn, pending, deadline, max_body)?, false),
    };
    Ok(Incoming {
        status: head.status,
        headers: head.headers,
        reusable: clean_end && head.keep_alive && conn.is_drained(),
        body,
    })
}

/// Reads until a final response head is complete; returns it and the bytes after it. This and
/// the body readers are never inlined into `round_trip`, so each wait carries only its own
/// frame (small while waiting, see the client's module docs).
#[inline(never)]
fn read_head(
    conn: &mut Conn,
    deadline: Option<Instant>,
) -> Result<(ResponseHead, Vec<u8>), Failure> {
    let mut buf = Vec::new();
    let mut chunk = FIRST_READ;
    loop {
        let nothing_yet = buf.is_empty();
        let read = read_more(conn, &mut buf, chunk, deadline);
        chunk = (chunk * 2).min(HEAD_CHUNK);
        match read {
            Ok(0) => {
                return Err(Failure {
                    error: Error::invalid_response(if nothing_yet {
                        "connection closed before a response"
                    } else {
                        "connection closed inside the response head"
                    }),
                    nothing_received: nothing_yet,
                });
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Failure {
                    // A reset (or, over TLS, a close without close_notify) before any byte is
                    // what a stale keep-alive connection gives.
                    nothing_received: nothing_yet && e.kind() != io::ErrorKind::TimedOut,
                    error: Error::io("reading the response", e),
                });
            }
        }
        if let Some((head, consumed)) = parse_response_head(&buf).map_err(Error::from)? {
            buf.drain(..consumed);
            return Ok((head, buf));
        }
    }
}

/// Reads a framed body; returns it and whether it ended cleanly with no stray bytes after it.
#[inline(never)]
fn read_framed(
    conn: &mut Conn,
    mut pending: Vec<u8>,
    framing: BodyFraming,
    deadline: Option<Instant>,
    max_body: usize,
) -> Result<(Vec<u8>, bool), Error> {
    let mut decoder = BodyDecoder::new(framing, Some(max_body as u64));
    let (mut body, mut chunk) = match framing {
        BodyFraming::Length(n) => {
            let n = usize::try_from(n).unwrap_or(max_body).min(max_body);
            (Vec::with_capacity(n), n.clamp(FIRST_READ, BODY_CHUNK))
        }
        _ => (Vec::new(), FIRST_READ),
    };
    loop {
        while !pending.is_empty() && !decoder.is_done() {
            let decoded = decoder
                .decode(&pending)
                .map_err(|e| Error::invalid_response(&format!("bad response body: {e}")))?;
            body.extend_from_slice(&pending[decoded.data.clone()]);
            if body.len() > max_body {
                return Err(Error::new(
                    ErrorKind::BodyTooLarge,
                    format!("response body over the limit of {max_body} bytes"),
                ));
            }
            pending.drain(..decoded.consumed);
            if decoded.consumed == 0 {
                break;
            }
        }
        if decoder.is_done() {
            return Ok((body, pending.is_empty()));
        }
        let n = read_more(conn, &mut pending, chunk, deadline)
            .map_err(|e| Error::io("reading the response body", e))?;
        if n == 0 {
            return Err(Error::invalid_response(
                "connection closed inside the response body",
            ));
        }
        // A body that keeps coming is read in bigger steps.
        chunk = (chunk * 2).min(BODY_CHUNK);
    }
}

#[inline(never)]
fn read_to_close(
    conn: &mut Conn,
    mut body: Vec<u8>,
    deadline: Option<Instant>,
    max_body: usize,
) -> Result<Vec<u8>, Error> {
    loop {
        if body.len() > max_body {
            return Err(Error::new(
                ErrorKind::BodyTooLarge,
                format!("response body over the limit of {max_body} bytes"),
            ));
        }
        let n = read_more(conn, &mut body, BODY_CHUNK, deadline)
            .map_err(|e| Error::io("reading the response body", e))?;
        if n == 0 {
            return Ok(body);
        }
    }
}

/// Appends what the next read (of at most `chunk` bytes) gives to `buf`, waiting no later
/// than `deadline`.
fn read_more(
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    chunk: usize,
    deadline: Option<Instant>,
) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + chunk, 0);
    let read = conn.read(&mut buf[start..], deadline);
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

/// The time left before `deadline` (`None`: no limit); `TimedOut` once it has passed.
pub(crate) fn remaining(deadline: Option<Instant>) -> io::Result<Option<Duration>> {
    match deadline {
        None => Ok(None),
        Some(at) => match at.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request timeout passed",
            )),
        },
    }
}
