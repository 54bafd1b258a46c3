//! uwsgi-protocol connections (`socket`), as nginx's `uwsgi_pass` speaks it: one packet, its
//! body, one raw HTTP answer (never chunked), then `shutdown(SHUT_WR)` and close.
//!
//! The packet is read without a core and must be complete within `http-header-timeout` of its
//! first byte (nginx sends it at once; a peer that does not is closed without an answer). Its
//! header gives its length, so an incomplete packet costs no parsing. The core is taken for
//! the app and the answer only.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use super::Shared;
use super::body::{self, BodyReader, BodyState};
use super::conn::{self, Answer, AppOutcome, Conn, ConnGuard, Core};
use crate::api::{Body, Request, Response};
use crate::proto::http1::{BodyDecoder, BodyEncoding};
use crate::proto::uwsgi::{self, Packet};
use crate::proto::{ParseError, Vars, http1};

/// Unread request body drained before answering, at most (nginx sends it all at once and
/// resets would turn into 502s); past it the connection closes after the answer regardless.
const MAX_DRAIN: u64 = 64 << 20;

/// Serves the one request of a uwsgi connection.
pub(crate) fn serve(mut conn: Conn, shared: &Shared, guard: &ConnGuard<'_>) {
    let request = match read_packet(&mut conn, shared) {
        Ok(Some(Packet::Request(request))) => request,
        Ok(Some(Packet::Ping)) => {
            let _ = conn.send(&uwsgi::PONG);
            conn.close_gracefully();
            return;
        }
        Ok(None) => return,
        Err(error) => {
            refuse(conn, error);
            return;
        }
    };
    guard.set_idle(false);
    let Ok(core) = shared.cores.acquire() else {
        return; // cancelled: the worker is stopping
    };
    let served = serve_request(&mut conn, request, shared, &core);
    drop(core);
    match served {
        Ok(()) => conn.close_gracefully(),
        Err(e) => conn::note_write_error(shared, &conn, &e),
    }
}

/// Reads until a whole packet (header + vars) is buffered; `Ok(None)` when the peer closed,
/// went silent first, or did not complete the packet within `http-header-timeout`.
fn read_packet(conn: &mut Conn, shared: &Shared) -> Result<Option<Packet>, ParseError> {
    let mut deadline = None;
    loop {
        // Parsing an incomplete packet stops at its 4-byte header: no cost to retry.
        if let Some((packet, consumed)) = uwsgi::parse_packet(conn.input.pending(), &shared.limits)?
        {
            conn.input.consume(consumed);
            return Ok(Some(packet));
        }
        if deadline.is_none() && !conn.input.is_empty() {
            deadline = shared
                .header_timeout
                .and_then(|limit| Instant::now().checked_add(limit));
        }
        match conn.fill_before(deadline) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut && !conn.input.is_empty() => {
                log::info!(
                    "uwsgi packet incomplete in time peer={} (http-header-timeout, socket-timeout): closing",
                    conn.peer
                );
                return Ok(None);
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Answers a packet we refuse (or just closes, when there is nobody to answer to).
fn refuse(mut conn: Conn, error: ParseError) {
    match error {
        ParseError::HttpOnUwsgiSocket => log::warn!(
            "HTTP request on a uwsgi socket peer={}: point HTTP clients at an http-socket, \
             or nginx at this one with uwsgi_pass",
            conn.peer
        ),
        ParseError::UnsupportedModifier(m) => {
            log::warn!(
                "unsupported uwsgi modifier1={m} peer={}: closing",
                conn.peer
            );
            return;
        }
        ParseError::VarsTooLarge => log::warn!(
            "uwsgi vars block over buffer-size peer={}: raise buffer-size (max 65535)",
            conn.peer
        ),
        other => log::info!(
            "bad uwsgi request peer={} status={} reason={}",
            conn.peer,
            other.status(),
            other.reason()
        ),
    }
    let mut out = Vec::new();
    http1::write_error_response(&mut out, error.status());
    if conn.send(&out).is_ok() {
        conn.close_gracefully();
    }
}

fn serve_request(
    conn: &mut Conn,
    request: uwsgi::Request,
    shared: &Shared,
    core: &Core<'_>,
) -> io::Result<()> {
    let started = Instant::now();
    let decoder = BodyDecoder::new(request.body_framing(), shared.limits.limit_post);
    let mut body_state = BodyState::new(decoder, false, shared.body_pace);
    let scheme = request.scheme().to_string();
    let vars = vars_to_strings(request.vars());
    let var = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let method = var("REQUEST_METHOD").to_string();
    let path_info = match var("PATH_INFO") {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    let query = var("QUERY_STRING").to_string();
    let uri = match var("REQUEST_URI") {
        "" if query.is_empty() => path_info.clone(),
        "" => format!("{path_info}?{query}"),
        uri => uri.to_string(),
    };
    let protocol = match var("SERVER_PROTOCOL") {
        "" => "HTTP/1.0".to_string(),
        p => p.to_string(),
    };
    let remote_ip = var("REMOTE_ADDR").to_string();
    let remote_addr = format!("{remote_ip}:{}", var("REMOTE_PORT"))
        .parse::<SocketAddr>()
        .ok();
    let is_head = method == "HEAD";
    // Route on nginx's decoded bytes, as HTTP does, not on their lossy text.
    let route = shared.router.route(match request.vars().get("PATH_INFO") {
        None | Some(b"") => b"/",
        Some(raw) => raw,
    });
    let record_base = (shared.request_log).begin(
        &(method.clone(), uri.clone()),
        &remote_ip,
        core.id(),
        request.vars(),
    );
    shared.begin_request(core.id(), &method, &uri);
    let (response, outcome) = {
        let headers = headers_from_vars(&vars);
        let mut req = Request {
            method,
            uri,
            path: path_info
                .strip_prefix(route.script_name)
                .unwrap_or(&path_info)
                .to_string(),
            query,
            protocol: protocol.clone(),
            scheme,
            headers,
            vars,
            remote_addr,
            script_name: route.script_name.to_string(),
            worker_id: shared.worker_id,
            body: Body::new(BodyReader::new(conn, &mut body_state)),
        };
        conn::call_app(shared, route.handler.as_ref(), &mut req)
    };
    // Drain before answering: closing with unread bytes would reset the connection and
    // nginx would answer 502 instead of our response.
    body::drain(conn, &mut body_state, MAX_DRAIN);
    let response = match body_state.error {
        Some(error) if outcome == AppOutcome::Answered => Response::error(error.status()),
        _ if body_state.timed_out && outcome == AppOutcome::Answered => {
            log::info!("request body too slow peer={} status=408", conn.peer);
            Response::error(408)
        }
        _ => response,
    };
    let (status, headers, body) = conn::checked(response).into_parts();
    let len = conn::body_len(&body);
    let mut out = Vec::with_capacity(256);
    uwsgi::write_response_head(
        &mut out,
        status,
        headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        len,
    )
    .expect("invariant: conn::checked let only valid headers through");
    let record = record_base
        .with_protocol(&protocol)
        .with_response_head(&out);
    // Never chunked: a body of unknown length ends when we close.
    let encoding = len.map_or(BodyEncoding::CloseDelimited, BodyEncoding::Length);
    let send_body = !is_head && http1::response::status_allows_body(status);
    let answer = Answer {
        status,
        head: out,
        body,
        encoding,
        send_body,
    };
    conn::send_answer(conn, shared, core, answer, record, started)
}

/// The vars as strings (bytes that are not UTF-8 are replaced, as the handler API is text).
pub(crate) fn vars_to_strings(vars: &Vars) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// Request headers rebuilt from the CGI vars: `HTTP_USER_AGENT` is `user-agent`; the body's
/// `CONTENT_TYPE`/`CONTENT_LENGTH` count as headers when nginx did not also send them as
/// `HTTP_*`.
fn headers_from_vars(vars: &[(String, String)]) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = vars
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("HTTP_")?;
            Some((name.to_ascii_lowercase().replace('_', "-"), v.clone()))
        })
        .collect();
    for (var, header) in [
        ("CONTENT_TYPE", "content-type"),
        ("CONTENT_LENGTH", "content-length"),
    ] {
        let present = headers.iter().any(|(n, _)| n == header);
        if let Some((_, value)) = vars.iter().find(|(k, v)| k == var && !v.is_empty())
            && !present
        {
            headers.push((header.to_string(), value.clone()));
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_rebuilt_from_http_vars_and_the_body_vars() {
        let vars: Vec<(String, String)> = [
            ("HTTP_USER_AGENT", "curl"),
            ("HTTP_X_FORWARDED_FOR", "1.2.3.4"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", ""),
            ("REQUEST_METHOD", "POST"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let headers = headers_from_vars(&vars);
        assert_eq!(
            headers,
            vec![
                ("user-agent".to_string(), "curl".to_string()),
                ("x-forwarded-for".to_string(), "1.2.3.4".to_string()),
                ("content-type".to_string(), "text/plain".to_string()),
            ]
        );
    }
}
