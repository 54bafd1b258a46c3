//! HTTP/1.1 connections (`http-socket`): keep-alive, pipelining, request bodies by length or
//! chunks, `Expect: 100-continue`, and framing of the answer by length, chunks or close.

use std::io;
use std::time::Instant;

use super::Shared;
use super::body::{self, BodyReader, BodyState};
use super::conn::{self, Answer, AppOutcome, Conn, ConnGuard};
use crate::api::{Body, Request, Response};
use crate::proto::cgi::{self, ConnInfo};
use crate::proto::http1::{self, BodyDecoder, RequestHead, ResponseContext};
use crate::proto::{ParseError, Vars};

/// Unread request body beyond this is not drained: the connection closes after the answer.
const MAX_DRAIN: u64 = 1 << 20;

/// Serves requests on `conn` until the client closes, an error, or the worker drains.
pub(crate) fn serve(mut conn: Conn, shared: &Shared, guard: &ConnGuard<'_>) {
    // A new connection is busy until its first request is answered: a client that just
    // connected has a request on its way, and a drain must not drop it.
    let mut first = true;
    loop {
        guard.set_idle(!first);
        let head = match read_head(&mut conn, shared) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(Refused(status)) => {
                let mut out = Vec::new();
                http1::write_error_response(&mut out, status);
                if conn.send(&out).is_ok() {
                    conn.close_gracefully();
                }
                return;
            }
        };
        guard.set_idle(false);
        first = false;
        match serve_request(&mut conn, head, shared, guard) {
            Ok(true) => continue,
            Ok(false) => {
                conn.close_gracefully();
                return;
            }
            Err(e) => {
                conn::note_write_error(shared, &conn, &e);
                return;
            }
        }
    }
}

/// A request refused before the app saw it, with the status to answer.
struct Refused(u16);

/// Reads until a whole head is buffered. `Ok(None)`: the client closed, or went idle past
/// `socket-timeout` between requests, or a drain closed the idle connection: nothing to
/// answer.
fn read_head(conn: &mut Conn, shared: &Shared) -> Result<Option<RequestHead>, Refused> {
    loop {
        match http1::parse_request_head(conn.input.pending(), &shared.limits) {
            Ok(Some((head, consumed))) => {
                conn.input.consume(consumed);
                return Ok(Some(head));
            }
            Ok(None) => {}
            Err(error) => {
                log_refused(conn, error);
                return Err(Refused(error.status()));
            }
        }
        match conn.fill() {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut && !conn.input.is_empty() => {
                log::info!("request head timed out peer={}", conn.peer);
                return Err(Refused(408));
            }
            // Closed, reset, idle keep-alive timeout, or cancelled by a drain.
            Err(_) => return Ok(None),
        }
    }
}

fn log_refused(conn: &Conn, error: ParseError) {
    log::info!(
        "bad request peer={} status={} reason={}",
        conn.peer,
        error.status(),
        error.reason()
    );
}

/// Serves one request whose head was read; returns whether the connection stays open.
fn serve_request(
    conn: &mut Conn,
    head: RequestHead,
    shared: &Shared,
    guard: &ConnGuard<'_>,
) -> io::Result<bool> {
    let started = Instant::now();
    let (remote_addr, remote_port) = conn.peer_parts();
    let vars = cgi::vars_from_head(
        &head,
        &ConnInfo {
            remote_addr: &remote_addr,
            remote_port: &remote_port,
            ..ConnInfo::default()
        },
    );
    let mut body_state = BodyState::new(
        BodyDecoder::new(head.framing(), shared.limits.limit_post),
        head.expects_continue(),
    );
    let route = shared.router.route(head_path(&vars));
    let record_base =
        (shared.request_log).begin(&head_summary(&head), &remote_addr, guard.core(), &vars);
    shared.begin_request(guard.core(), head.method(), head.target());
    let (response, outcome) = {
        let mut req = request_from_head(&head, vars, route.script_name, conn, &mut body_state);
        req.worker_id = shared.worker_id;
        conn::call_app(shared, route.handler.as_ref(), &mut req)
    };
    let drained = body::drain(conn, &mut body_state, MAX_DRAIN);
    let response = match body_state.error {
        // The body was malformed (or over limit-post): that, not the handler, answers.
        Some(error) if outcome == AppOutcome::Answered => {
            log_refused(conn, error);
            Response::error(error.status())
        }
        _ => response,
    };
    let keep_alive = head.keep_alive()
        && drained
        && body_state.is_done()
        && !shared.draining.get()
        && !conn::wants_close(&response)
        && outcome != AppOutcome::TimedOut;
    let ctx = ResponseContext {
        version: head.version(),
        is_head: head.is_head(),
        keep_alive,
    };
    let (status, headers, body) = conn::checked(response).into_parts();
    let len = conn::body_len(&body);
    let framing = http1::decide_framing(ctx, status, len);
    let mut out = Vec::with_capacity(256);
    http1::write_response_head(
        &mut out,
        head.version(),
        status,
        headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        &framing,
    )
    .expect("invariant: conn::checked let only valid headers through");
    let record = (record_base.with_protocol(head.version().as_str())).with_response_head(&out);
    let answer = Answer {
        status,
        head: out,
        body,
        encoding: framing.encoding,
        send_body: framing.send_body,
    };
    conn::send_answer(conn, shared, guard, answer, record, started)?;
    Ok(framing.keep_alive)
}

/// `PATH_INFO` of the derived vars (percent-decoded bytes, UTF-8 or not), for routing.
fn head_path(vars: &Vars) -> &[u8] {
    vars.get("PATH_INFO")
        .filter(|p| !p.is_empty())
        .unwrap_or(b"/")
}

fn head_summary(head: &RequestHead) -> (String, String) {
    (head.method().to_string(), head.target().to_string())
}

/// The handler's view of an HTTP request.
fn request_from_head<'c>(
    head: &RequestHead,
    vars: Vars,
    script_name: &str,
    conn: &'c mut Conn,
    body_state: &'c mut BodyState,
) -> Request<'c> {
    let vars = super::uwsgi::vars_to_strings(&vars);
    let path_info = vars
        .iter()
        .find(|(k, _)| k == "PATH_INFO")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/");
    let path = path_info
        .strip_prefix(script_name)
        .unwrap_or(path_info)
        .to_string();
    // An absolute-form target's authority is the request's host (RFC 9112 §3.2.2).
    let authority = head.authority();
    let headers = head
        .headers()
        .map(|(name, value)| {
            let value = match authority {
                Some(authority) if name.eq_ignore_ascii_case("host") => authority.as_bytes(),
                _ => value,
            };
            (
                name.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            )
        })
        .collect();
    let remote_addr = conn.peer_socket_addr();
    Request {
        method: head.method().to_string(),
        uri: head.target().to_string(),
        path,
        query: head.query().to_string(),
        protocol: head.version().as_str().to_string(),
        scheme: "http".to_string(),
        headers,
        vars,
        remote_addr,
        script_name: script_name.to_string(),
        worker_id: 0,
        body: Body::new(BodyReader::new(conn, body_state)),
    }
}
