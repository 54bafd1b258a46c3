//! One request, from the moment its protocol parsed it to its logged answer: the lifecycle both
//! protocols share ([`serve_request`]).
//!
//! A protocol supplies two things: the request as it parsed it ([`ParsedRequest`]) and how its
//! answer's head is framed ([`Framing`]: HTTP decides length, chunks or close and keep-alive;
//! uwsgi writes a raw HTTP head, never chunked). Everything else happens here, the same way on
//! every socket: routing, taking a core, the scoreboard, the handler's [`Request`], the call
//! under `harakiri` ([`call_app`]: a panic is a 500, an expired deadline a 504: respond exactly
//! once, STYLE 6), draining what the handler left of the body, a refused or too slow body
//! answering instead of the handler, the header check, sending, the request log.

use std::borrow::Cow;
use std::io;
use std::time::Instant;

use super::Shared;
use super::body::{self, BodyReader, BodyState};
use super::conn::{self, Conn, Core};
use super::reqlog::RecordStart;
use crate::api::{Body, Handler, Request, RequestParts, Response, ResponseBody};
use crate::coro::{self, Addr, CancelReason};
use crate::proto::http1::response::{InvalidHeader, ResponseFraming};
use crate::proto::http1::{self, BodyDecoder, BodyEncoding, BodyFraming};
use crate::proto::{ParseError, Vars};

/// A request as its protocol parsed it: the handler's view of it, and how its body comes.
#[derive(Debug)]
pub(crate) struct ParsedRequest {
    pub(crate) parts: RequestParts,
    pub(crate) body: BodyFraming,
    /// `Expect: 100-continue`: answer it before the body is first read from the socket.
    pub(crate) expects_continue: bool,
}

/// How a protocol frames the head of an answer.
pub(crate) trait Framing {
    /// Unread request body drained before answering, at most; past it the connection closes
    /// after the answer.
    const MAX_DRAIN: u64;

    /// Writes `head` into `out`; says how the body goes on the wire and whether the connection
    /// stays open.
    fn write_head(
        &self,
        out: &mut Vec<u8>,
        head: &AnswerHead<'_>,
    ) -> Result<ResponseFraming, InvalidHeader>;
}

/// What the head of an answer says, for the protocol to frame.
#[derive(Debug)]
pub(crate) struct AnswerHead<'a> {
    pub(crate) status: u16,
    /// The handler's headers, already [`checked`].
    pub(crate) headers: &'a [(String, String)],
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
    /// The answer went out and the connection may carry another request.
    Reuse,
    /// The answer went out; close the connection gracefully.
    Close,
    /// Nothing more to send: the client is gone, or the worker stops (no core was given).
    Abandon,
}

/// Serves one parsed request on `conn`: takes a core, routes, runs the app, answers with the
/// head `framing` writes, logs. The core is held from here to the end of the answer only.
pub(crate) fn serve_request<F: Framing>(
    conn: &mut Conn,
    shared: &Shared,
    request: ParsedRequest,
    framing: &F,
) -> Next {
    let Ok(core) = shared.cores.acquire() else {
        return Next::Abandon; // cancelled: the worker is stopping
    };
    match answer_request(conn, shared, &core, request, framing) {
        Ok(framing) if framing.keep_alive => Next::Reuse,
        Ok(_) => Next::Close,
        Err(e) => {
            conn::note_write_error(shared, conn, &e);
            Next::Abandon
        }
    }
}

/// [`serve_request`] once the core is taken: the framing the answer went out with, or the
/// error that cut it short.
fn answer_request<F: Framing>(
    conn: &mut Conn,
    shared: &Shared,
    core: &Core<'_>,
    request: ParsedRequest,
    framing: &F,
) -> io::Result<ResponseFraming> {
    let started = Instant::now();
    let ParsedRequest {
        parts,
        body: body_framing,
        expects_continue,
    } = request;
    let mut body_state = BodyState::new(
        BodyDecoder::new(body_framing, shared.limits.limit_post),
        expects_continue,
        shared.body_pace,
    );
    let route = shared.router.route(path_info(&parts.vars));
    let record =
        (shared.request_log).begin(&parts, &var_text(&parts.vars, "REMOTE_ADDR"), core.id());
    shared.begin_request(core.id(), &parts.method, &parts.uri);
    // A stack overflow in the handler is reported with the request's name.
    coro::set_label(&[&parts.method, &parts.uri]);
    let (response, outcome) = {
        let body = Body::new(BodyReader::new(conn, &mut body_state));
        let mut req = Request::new(parts, route.script_name, shared.worker_id, body);
        call_app(shared, route.handler.as_ref(), &mut req)
    };
    // Drain before answering: closing with unread bytes would reset the connection, and the
    // peer (nginx: a 502) would lose our answer.
    let drained = body::drain(conn, &mut body_state, F::MAX_DRAIN);
    let response = match body_state.error {
        // The body was malformed (or over limit-post): that, not the handler, answers.
        Some(error) if outcome == AppOutcome::Answered => {
            log_refused(&conn.peer, error);
            Response::error(error.status())
        }
        _ if body_state.timed_out && outcome == AppOutcome::Answered => {
            log::info!("request body too slow peer={} status=408", conn.peer);
            Response::error(408)
        }
        _ => response,
    };
    let reusable = drained
        && body_state.is_done()
        && !shared.draining.get()
        && !wants_close(&response)
        && outcome != AppOutcome::TimedOut;
    let (status, headers, body) = checked(response).into_parts();
    let mut head = Vec::with_capacity(256);
    let answer_head = AnswerHead {
        status,
        headers: &headers,
        body_len: body_len(&body),
        reusable,
    };
    let wire = framing
        .write_head(&mut head, &answer_head)
        .expect("invariant: checked() let only valid headers through");
    let record = record.with_response_head(&head);
    let answer = Answer {
        status,
        head,
        body,
        encoding: wire.encoding,
        send_body: wire.send_body,
    };
    send_answer(conn, shared, core, answer, record, started)?;
    Ok(wire)
}

/// The decoded path a request is routed on: `PATH_INFO`'s bytes (UTF-8 or not), `/` when it
/// is empty or missing.
fn path_info(vars: &Vars) -> &[u8] {
    vars.get("PATH_INFO")
        .filter(|p| !p.is_empty())
        .unwrap_or(b"/")
}

/// [`path_info`] as the handler's text.
pub(crate) fn path_text(vars: &Vars) -> String {
    String::from_utf8_lossy(path_info(vars)).into_owned()
}

/// The text of var `name` (empty when missing; bytes that are not UTF-8 replaced).
pub(crate) fn var_text<'v>(vars: &'v Vars, name: &str) -> Cow<'v, str> {
    String::from_utf8_lossy(vars.get(name).unwrap_or(b""))
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
        (_, Some(CancelReason::Deadline)) => {
            shared.count_harakiri();
            log::warn!(
                "harakiri: request cancelled after {}s method={} uri={}",
                shared.harakiri.map_or(0, |d| d.as_secs()),
                req.method(),
                req.uri()
            );
            (Response::error(504), AppOutcome::TimedOut)
        }
        (Ok(response), _) => (response, AppOutcome::Answered),
        (Err(error), _) => {
            shared.count_exception();
            log::error!(
                "handler panicked method={} uri={}: {}",
                req.method(),
                req.uri(),
                error.message().unwrap_or("(no message)")
            );
            (Response::error(500), AppOutcome::Panicked)
        }
    }
}

/// A response ready for the wire: its head already encoded for the protocol.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: Vec<u8>,
    body: ResponseBody,
    encoding: BodyEncoding,
    send_body: bool,
}

/// Sends `answer` and accounts for the request whatever happens: the scoreboard (the core is
/// shown free again; the caller gives it back), the counters and, once it went out, the
/// request log.
fn send_answer(
    conn: &mut Conn,
    shared: &Shared,
    core: &Core<'_>,
    answer: Answer,
    record: RecordStart,
    started: Instant,
) -> io::Result<()> {
    let status = answer.status;
    let sent = conn::write_response(
        conn,
        answer.head,
        answer.body,
        answer.encoding,
        answer.send_body,
    );
    let elapsed = started.elapsed();
    shared.end_request(core.id(), *sent.as_ref().unwrap_or(&0), elapsed);
    let sent = sent?;
    shared
        .request_log
        .log(shared, record.finish(status, sent, elapsed));
    Ok(())
}

/// A response whose headers cannot go on the wire (a name that is not a token, a value with
/// CR, LF or NUL) becomes a logged 500: a handler must never be able to split a response.
fn checked(response: Response) -> Response {
    let invalid = response.headers().iter().find(|(name, value)| {
        !http1::response::is_valid_field_name(name.as_bytes())
            || !http1::response::is_valid_field_value(value.as_bytes())
    });
    match invalid {
        None => response,
        Some((name, _)) => {
            log::error!("handler sent an invalid header {name:?}: answering 500");
            Response::error(500)
        }
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
        assert_eq!(path_text(&vars), "/a\u{fffd}b");
        let mut empty = Vars::with_capacity(64, 2);
        assert_eq!(path_info(&empty), b"/", "no PATH_INFO");
        empty.push("PATH_INFO", "");
        assert_eq!(path_info(&empty), b"/", "an empty PATH_INFO");
    }
}
