//! The app's handler on the I/O thread: hands each request to the Python thread, feeds its
//! greenlet the request body as it asks, and turns its answer into the response, streamed
//! when the app streams it.

use std::borrow::Cow;
use std::io::{self, Read};
use std::rc::Rc;

use super::bridge::{Answer, IoBridge, IoEnd};
use crate::api::{Handler, Request, Response};

/// The app's handler: one per Python worker, on its I/O thread.
pub(crate) struct WsgiHandler {
    bridge: IoBridge,
    count_exception: Rc<dyn Fn()>,
}

impl std::fmt::Debug for WsgiHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsgiHandler").finish_non_exhaustive()
    }
}

impl IoBridge {
    /// The handler that serves the app's requests from the I/O thread; `count_exception` is
    /// called there for each request the app raised on (stats `exceptions`).
    pub(crate) fn handler(&self, count_exception: Rc<dyn Fn()>) -> WsgiHandler {
        WsgiHandler {
            bridge: self.clone(),
            count_exception,
        }
    }
}

impl Handler for WsgiHandler {
    fn handle(&self, req: &mut Request<'_>) -> Response {
        let mut end = match self.bridge.submit(environ_vars(req), req.scheme()) {
            Ok(end) => end,
            Err(e) => {
                log::error!("no answer from the app: {e}");
                return Response::error(500);
            }
        };
        loop {
            match end.recv() {
                Ok(Answer::NeedInput(size)) => match read_piece(req, size) {
                    Ok(piece) => end.give_input(piece),
                    Err(e) => {
                        // The worker answers a malformed or too large body itself; a client
                        // gone or too slow ends the exchange.
                        log::info!("request body not read: {e}");
                        return Response::error(400);
                    }
                },
                Ok(Answer::Head {
                    status,
                    headers,
                    body,
                    more,
                }) => {
                    let head = Head::of(&status, headers, req.method() == "HEAD");
                    return if more {
                        head.streamed(Streamed {
                            end,
                            piece: body,
                            at: 0,
                            ended: false,
                            count_exception: self.count_exception.clone(),
                        })
                    } else {
                        end.finish();
                        head.whole(body)
                    };
                }
                Ok(Answer::Raised(traceback)) => {
                    app_raised(&mut end, &*self.count_exception, "", &traceback);
                    return Response::error(500);
                }
                Ok(Answer::Chunk(_) | Answer::End) => {
                    log::error!("invariant broken: a piece of body came before its head");
                    return Response::error(500);
                }
                // Cancelled by harakiri: the worker answers 504 and logs it.
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Response::error(504),
                Err(e) => {
                    log::error!("no answer from the app: {e}");
                    return Response::error(500);
                }
            }
        }
    }
}

/// The app raised (`when`: "" or what it was doing): its answer is over, the exception is
/// counted (stats `exceptions`) and its traceback logged.
fn app_raised(end: &mut IoEnd, count_exception: &dyn Fn(), when: &str, traceback: &str) {
    end.finish();
    count_exception();
    super::log_traceback(&format!("the app raised an exception{when}:"), traceback);
}

/// Up to `size` bytes of the body (fewer when fewer have come; none at its end); `size` is at
/// most `INPUT_CHUNK`, as the greenlet's ask was capped.
fn read_piece(req: &mut Request<'_>, size: usize) -> io::Result<Vec<u8>> {
    let mut piece = vec![0u8; size];
    loop {
        match req.body().read(&mut piece) {
            Ok(n) => {
                piece.truncate(n);
                return Ok(piece);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The head of the app's answer, checked: its status code, its headers without the framing
/// ones (the worker frames the body), and the length it announced.
struct Head {
    response: Response,
    content_length: Option<u64>,
    head_request: bool,
}

impl Head {
    fn of(status: &str, headers: Vec<(String, String)>, head_request: bool) -> Head {
        let code = status
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (100..=999).contains(c));
        let Some(code) = code else {
            log::error!("the app answered with a bad status line {status:?}");
            return Head {
                response: Response::error(500),
                content_length: None,
                head_request,
            };
        };
        let mut response = Response::new(code);
        let mut content_length = None;
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().ok();
            } else if !["transfer-encoding", "connection"]
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f))
            {
                response = response.header(name, value);
            }
        }
        Head {
            response,
            content_length,
            head_request,
        }
    }

    /// With the whole body. A HEAD request's answer keeps the length the app announced (that
    /// of the body a GET would have had).
    fn whole(self, body: Vec<u8>) -> Response {
        match self.content_length {
            Some(len) if self.head_request && body.is_empty() => {
                self.response.stream(io::empty(), Some(len))
            }
            _ => self.response.body(Cow::<'static, [u8]>::Owned(body)),
        }
    }

    /// With a body that comes a piece at a time: of the length the app announced, else
    /// chunked (or up to the close, as the protocol frames it).
    fn streamed(self, body: Streamed) -> Response {
        let len = self.content_length;
        self.response.stream(body, len)
    }
}

/// A streamed response body: each read takes the greenlet's next piece. Dropped before its
/// end (the client went away), it has the greenlet killed, which calls the app's `close()`.
struct Streamed {
    end: IoEnd,
    piece: Vec<u8>,
    at: usize,
    ended: bool,
    count_exception: Rc<dyn Fn()>,
}

impl Read for Streamed {
    /// Fills `out` with what the greenlet has queued: it waits only while it has nothing, so
    /// small pieces go out together, and none waits for the next.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            if self.at < self.piece.len() {
                let n = (out.len() - filled).min(self.piece.len() - self.at);
                out[filled..filled + n].copy_from_slice(&self.piece[self.at..self.at + n]);
                self.at += n;
                filled += n;
                if filled == out.len() {
                    return Ok(filled);
                }
                continue;
            }
            if self.ended {
                return Ok(filled);
            }
            let answer = if filled == 0 {
                self.end.recv()?
            } else {
                match self.end.try_recv()? {
                    Some(answer) => answer,
                    None => return Ok(filled),
                }
            };
            self.take(answer)?;
        }
    }
}

impl Streamed {
    /// The greenlet's next message while the body streams.
    fn take(&mut self, answer: Answer) -> io::Result<()> {
        match answer {
            Answer::Chunk(piece) => {
                self.piece = piece;
                self.at = 0;
            }
            Answer::End => {
                self.ended = true;
                self.end.finish();
            }
            Answer::Raised(traceback) => {
                let when = " while streaming its answer";
                app_raised(&mut self.end, &*self.count_exception, when, &traceback);
                return Err(io::Error::other("the app raised mid-response"));
            }
            // The request is behind us once the answer streams: its body has ended.
            Answer::NeedInput(_) => self.end.give_input(Vec::new()),
            Answer::Head { .. } => {
                return Err(io::Error::other(
                    "invariant broken: the app's greenlet answered twice",
                ));
            }
        }
        Ok(())
    }
}

/// The CGI variables of PEP 3333's environ: the request's own (what the proxy sent over
/// uwsgi, or what the worker derived from the HTTP head) as latin-1 text, with `SCRIPT_NAME`
/// and `PATH_INFO` as the mount decided, and `SERVER_NAME`/`SERVER_PORT` always set.
fn environ_vars(req: &Request<'_>) -> Vec<(String, String)> {
    let script_name = req.script_name();
    let mut vars: Vec<(String, String)> = Vec::with_capacity(24);
    let mut path_info = None;
    for (name, value) in req.var_bytes() {
        match name {
            b"PATH_INFO" => path_info = Some(value),
            // PEP 3333 has no HTTP_CONTENT_TYPE or HTTP_CONTENT_LENGTH (CONTENT_* are set);
            // SCRIPT_NAME comes from the mount.
            b"SCRIPT_NAME" | b"HTTP_CONTENT_TYPE" | b"HTTP_CONTENT_LENGTH" => {}
            // An empty SERVER_NAME or SERVER_PORT (a plain HTTP request's) is derived below.
            b"SERVER_NAME" | b"SERVER_PORT" if value.is_empty() => {}
            _ if vars.iter().any(|(n, _)| n.as_bytes() == name) => {}
            _ => vars.push((latin1(name), latin1(value))),
        }
    }
    let has = |vars: &[(String, String)], name: &str| vars.iter().any(|(n, _)| n == name);
    if !has(&vars, "SERVER_NAME") || !has(&vars, "SERVER_PORT") {
        let host = req.header("host").unwrap_or("localhost");
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, port),
            _ => (host, if req.scheme() == "https" { "443" } else { "80" }),
        };
        for (key, value) in [("SERVER_NAME", name), ("SERVER_PORT", port)] {
            if !has(&vars, key) {
                vars.push((key.to_string(), value.to_string()));
            }
        }
    }
    let path_info = path_info.unwrap_or(b"/");
    let below = path_info
        .strip_prefix(script_name.as_bytes())
        .unwrap_or(path_info);
    vars.push(("SCRIPT_NAME".to_string(), script_name.to_string()));
    vars.push(("PATH_INFO".to_string(), latin1(below)));
    vars
}

/// `bytes` as latin-1 text: each byte the character of that code point (PEP 3333's "native
/// strings"; the app gets the bytes back with `.encode("latin-1")`).
fn latin1(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() => text.to_string(),
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_become_latin1_text_the_app_can_turn_back_into_them() {
        assert_eq!(latin1(b"/plain"), "/plain");
        // UTF-8 "é" arrives as two bytes: two characters, as PEP 3333 has it.
        assert_eq!(latin1("/caf\u{e9}".as_bytes()), "/caf\u{c3}\u{a9}");
        assert_eq!(latin1(b"\xff"), "\u{ff}");
    }

    #[test]
    fn the_framing_headers_are_the_workers_and_a_bad_status_is_a_500() {
        let headers = vec![
            ("Content-Type".to_string(), "text/plain".to_string()),
            ("Content-Length".to_string(), "5".to_string()),
            ("Transfer-Encoding".to_string(), "chunked".to_string()),
        ];
        let head = Head::of("201 Created", headers, false);
        assert_eq!(head.content_length, Some(5));
        assert_eq!(head.response.status(), 201);
        assert_eq!(
            head.response.header_value("content-type"),
            Some("text/plain")
        );
        assert_eq!(head.response.header_value("transfer-encoding"), None);
        assert_eq!(Head::of("OK", Vec::new(), false).response.status(), 500);
    }
}
