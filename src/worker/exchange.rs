//! One request, from the moment its protocol has it whole to its logged answer: the lifecycle
//! both protocols share ([`serve_request`]).
//!
//! A protocol supplies two things ([`Protocol`]): the request as it parsed it, written into the
//! [`RequestData`] the worker lends, and how its answer's head is framed (HTTP decides length,
//! chunks or close and keep-alive; uwsgi writes a raw HTTP head, never chunked). Everything
//! else happens here, the same way on every socket: taking a core, routing, the scoreboard,
//! the handler's [`Request`], the call under `harakiri` ([`call_app`]: a panic is a 500, an
//! expired deadline a 504: respond exactly once, STYLE 6), draining what the handler left of
//! the body, a refused or too slow body answering instead of the handler, the header check,
//! writing the answer, the request log.
//!
//! The answer is written into the connection's output buffer; the protocol sends it (at once,
//! or together with the answers to the pipelined requests after it).

use std::io;
use std::time::Instant;

use super::Shared;
use super::body::{self, BodyReader, BodyState};
use super::conn::{self, Conn, Core};
use super::reqlog::{self, RequestRecord};
use crate::api::{Body, Handler, HeaderField, Request, RequestData, Response, ResponseBody};
use crate::coro::{self, Addr, CancelReason, JoinError};
use crate::proto::http1::response::{InvalidHeader, ResponseFraming};
use crate::proto::http1::{self, BodyDecoder, BodyFraming};
use crate::proto::{ParseError, Vars};

/// How the body of a request comes, as its protocol parsed it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodySpec {
    pub(crate) framing: BodyFraming,
    /// `Expect: 100-continue`: answer it before the body is first read from the socket.
    pub(crate) expects_continue: bool,
}

/// What a protocol does for the lifecycle.
pub(crate) trait Protocol {
    /// Unread request body drained before answering, at most; past it the connection closes
    /// after the answer.
    const MAX_DRAIN: u64;

    /// Writes the request waiting in `conn` into `data` (empty) and takes it off the input;
    /// says how its body comes. Called once a core is held. An error refuses the request: the
    /// protocol answers it ([`Next::Refused`]).
    fn fill(
        &mut self,
        conn: &mut Conn<'_>,
        shared: &Shared,
        data: &mut RequestData,
    ) -> Result<BodySpec, ParseError>;

    /// Writes `head` into `out`; says how the body goes on the wire and whether the connection
    /// stays open.
    fn write_head(
        &self,
        shared: &Shared,
        out: &mut Vec<u8>,
        head: &AnswerHead<'_>,
    ) -> Result<ResponseFraming, InvalidHeader>;
}

/// What the head of an answer says, for the protocol to frame.
#[derive(Debug)]
pub(crate) struct AnswerHead<'a> {
    pub(crate) status: u16,
    /// The handler's headers (the encoder refuses invalid ones).
    pub(crate) headers: &'a [HeaderField],
    /// The body's length, when it is known before it is sent.
    pub(crate) body_len: Option<u64>,
    /// The request left the connection in sync and the worker does not mind keeping it (the
    /// protocol may still close it).
    pub(crate) reusable: bool,
}

impl AnswerHead<'_> {
    /// The headers as the wire encoders take them.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
    }
}

/// What becomes of the connection after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// The answer is written and the connection may carry another request.
    Reuse,
    /// The answer is written; close the connection gracefully.
    Close,
    /// Nothing more to send: the client is gone, or the worker stops (no core was given).
    Abandon,
    /// The protocol could not make a request of what it read (a malformed uwsgi vars block):
    /// it answers with the error's status.
    Refused(ParseError),
}

/// Serves the request waiting in `conn`: takes a core, has `protocol` write the request into
/// storage lent by the worker, routes, runs the app, writes the answer with the head `protocol`
/// frames, logs. The core is held from here to the end of the answer only.
pub(crate) fn serve_request<P: Protocol>(
    conn: &mut Conn<'_>,
    shared: &Shared,
    protocol: &mut P,
) -> Next {
    let Ok(core) = shared.cores.acquire() else {
        return Next::Abandon; // cancelled: the worker is stopping
    };
    let mut data = shared.pools.take_request();
    let body = match protocol.fill(conn, shared, &mut data) {
        Ok(body) => body,
        Err(error) => return Next::Refused(error),
    };
    // The app may park for long: without body bytes waiting, it holds no input buffer.
    conn.release_input();
    match answer_request(conn, shared, &core, &data, body, protocol) {
        Ok(framing) if framing.keep_alive => Next::Reuse,
        Ok(_) => Next::Close,
        Err(e) => {
            conn::note_write_error(shared, conn, &e);
            Next::Abandon
        }
    }
}

/// [`serve_request`] once the request is parsed: the framing the answer went out with, or the
/// error that cut it short.
fn answer_request<P: Protocol>(
    conn: &mut Conn<'_>,
    shared: &Shared,
    core: &Core<'_>,
    data: &RequestData,
    body: BodySpec,
    protocol: &P,
) -> io::Result<ResponseFraming> {
    let started = Instant::now();
    let mut body_state = BodyState::new(
        BodyDecoder::new(body.framing, shared.limits.limit_post),
        body.expects_continue,
        shared.body_pace,
    );
    let route = shared.router.route(data.route_path());
    shared.begin_request(core.id(), data.method(), data.uri());
    // A stack overflow in the handler is reported with the request's name.
    coro::set_label(&[data.method(), data.uri()]);
    let (response, outcome) = {
        let mut reader = BodyReader::new(conn, &mut body_state);
        let body = Body::borrowed(&mut reader);
        let mut req = Request::new(data, route.script_name, shared.worker_id, body);
        call_app(shared, route.handler.as_ref(), &mut req)
    };
    // Drain before answering: closing with unread bytes would reset the connection, and the
    // peer (nginx: a 502) would lose our answer.
    let drained = body::drain(conn, &mut body_state, P::MAX_DRAIN);
    let response = match body_state.error {
        // The body was malformed (or over limit-post): that, not the handler, answers.
        Some(error) if outcome == AppOutcome::Answered => body_refused(&conn.peer, error),
        _ if body_state.timed_out && outcome == AppOutcome::Answered => body_too_slow(&conn.peer),
        _ => response,
    };
    let reusable = drained
        && body_state.is_done()
        && !shared.draining.get()
        && !wants_close(&response)
        && outcome != AppOutcome::TimedOut;
    let out = conn.out();
    let head_start = out.len();
    let (status, body, wire) = write_head(protocol, shared, out, response, reusable);
    let head = &out[head_start..];
    let head_size = head.len() as u64;
    // Counted only for a log line that may be written.
    let header_count = if shared.request_log.is_active() {
        reqlog::header_lines(head)
    } else {
        0
    };
    let sent = conn::write_body(conn, body, wire.encoding, wire.send_body);
    let elapsed = started.elapsed();
    let body_size = *sent.as_ref().unwrap_or(&0);
    shared.end_request(core.id(), head_size + body_size, elapsed);
    sent?;
    let record = RequestRecord {
        core: core.id(),
        status,
        head_size,
        header_count,
        body_size,
        elapsed,
    };
    shared.request_log.log(shared, data, &record);
    Ok(wire)
}

/// The decoded path a request is routed on: `PATH_INFO`'s bytes (UTF-8 or not), `/` when it
/// is empty or missing.
pub(crate) fn path_info(vars: &Vars) -> &[u8] {
    vars.get("PATH_INFO")
        .filter(|p| !p.is_empty())
        .unwrap_or(b"/")
}

#[cold]
#[inline(never)]
fn body_refused(peer: &Addr, error: ParseError) -> Response {
    log_refused(peer, error);
    Response::error(error.status())
}

#[cold]
#[inline(never)]
fn body_too_slow(peer: &Addr) -> Response {
    log::info!("request body too slow peer={peer} status=408");
    Response::error(408)
}

/// Logs a request refused for `error` (its head, or its body), at info level: the client's
/// mistake, not ours.
pub(crate) fn log_refused(peer: &Addr, error: ParseError) {
    log::info!(
        "bad request peer={peer} status={} reason={}",
        error.status(),
        error.reason()
    );
}

/// How a request ended, for the log and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppOutcome {
    /// The handler answered.
    Answered,
    /// The handler panicked: 500.
    Panicked,
    /// The request's deadline passed: 504.
    TimedOut,
}

/// Calls `handler` under the request deadline; always yields a response to send.
fn call_app(
    shared: &Shared,
    handler: &dyn Handler,
    req: &mut Request<'_>,
) -> (Response, AppOutcome) {
    if let Some(limit) = shared.harakiri {
        coro::cancel_at(Some(Instant::now() + limit), CancelReason::Deadline);
    }
    let result = coro::catch_panic(|| handler.handle(req));
    // The deadline covers the handler; sending the answer is bounded by socket-timeout.
    coro::cancel_at(None, CancelReason::Deadline);
    let cancelled = coro::take_cancel();
    shared.count_request();
    match (result, cancelled) {
        (_, Some(CancelReason::Deadline)) => harakiri_answer(shared, req),
        (Ok(response), _) => (response, AppOutcome::Answered),
        (Err(error), _) => panic_answer(shared, req, &error),
    }
}

// The rare outcomes are their own frames: the one that calls the handler stays small, and every
// byte of stack a parked request reaches is resident memory of the worker.

#[cold]
#[inline(never)]
fn harakiri_answer(shared: &Shared, req: &Request<'_>) -> (Response, AppOutcome) {
    shared.count_harakiri();
    log::warn!(
        "harakiri: request cancelled after {}s method={} uri={}",
        shared.harakiri.map_or(0, |d| d.as_secs()),
        req.method(),
        req.uri()
    );
    (Response::error(504), AppOutcome::TimedOut)
}

#[cold]
#[inline(never)]
fn panic_answer(shared: &Shared, req: &Request<'_>, error: &JoinError) -> (Response, AppOutcome) {
    shared.count_exception();
    log::error!(
        "handler panicked method={} uri={}: {}",
        req.method(),
        req.uri(),
        error.message().unwrap_or("(no message)")
    );
    (Response::error(500), AppOutcome::Panicked)
}

/// Writes the head of `response` into `out` as `protocol` frames it; returns the status and
/// body that go with it. A response whose headers cannot go on the wire (a name that is not a
/// token, a value with CR, LF or NUL: the encoder checks every one) becomes a logged 500: a
/// handler must never be able to split a response.
fn write_head<P: Protocol>(
    protocol: &P,
    shared: &Shared,
    out: &mut Vec<u8>,
    response: Response,
    reusable: bool,
) -> (u16, ResponseBody, ResponseFraming) {
    let (status, headers, body) = response.into_parts();
    let head = AnswerHead {
        status,
        headers: &headers,
        body_len: body_len(&body),
        reusable,
    };
    match protocol.write_head(shared, out, &head) {
        Ok(wire) => (status, body, wire),
        Err(_) => invalid_head_answer(protocol, shared, out, &headers, reusable),
    }
}

/// [`write_head`] for a response whose headers cannot go on the wire: a logged 500.
#[cold]
#[inline(never)]
fn invalid_head_answer<P: Protocol>(
    protocol: &P,
    shared: &Shared,
    out: &mut Vec<u8>,
    invalid: &[HeaderField],
    reusable: bool,
) -> (u16, ResponseBody, ResponseFraming) {
    log_invalid_header(invalid);
    let (status, headers, body) = Response::error(500).into_parts();
    let head = AnswerHead {
        status,
        headers: &headers,
        body_len: body_len(&body),
        reusable,
    };
    let wire = (protocol.write_head(shared, out, &head))
        .expect("invariant: an error page's headers are valid");
    (status, body, wire)
}

#[cold]
fn log_invalid_header(headers: &[HeaderField]) {
    let invalid = headers.iter().find(|(name, value)| {
        !http1::response::is_valid_field_name(name.as_bytes())
            || !http1::response::is_valid_field_value(value.as_bytes())
    });
    if let Some((name, _)) = invalid {
        log::error!("handler sent an invalid header {name:?}: answering 500");
    }
}

/// The body's length when it is known in advance.
fn body_len(body: &ResponseBody) -> Option<u64> {
    match body {
        ResponseBody::Bytes(bytes) => Some(bytes.len() as u64),
        ResponseBody::Stream { len, .. } => *len,
    }
}

/// Whether the handler asked for the connection to close (`Connection: close`).
fn wants_close(response: &Response) -> bool {
    response
        .header_value("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_close_from_the_handler_is_seen() {
        assert!(wants_close(&Response::ok().header("Connection", "Close")));
        assert!(!wants_close(&Response::ok()));
    }

    #[test]
    fn requests_are_routed_on_path_info_and_an_empty_one_is_the_root() {
        let mut vars = Vars::with_capacity(64, 2);
        vars.push("PATH_INFO", b"/a\xffb");
        assert_eq!(path_info(&vars), b"/a\xffb");
        let mut empty = Vars::with_capacity(64, 2);
        assert_eq!(path_info(&empty), b"/", "no PATH_INFO");
        empty.push("PATH_INFO", "");
        assert_eq!(path_info(&empty), b"/", "an empty PATH_INFO");
    }
}
