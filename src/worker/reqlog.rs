//! The request log: one line per request, uWSGI's shape by default or `log-format`.
//!
//! Default line (uWSGI's, without the fields rcontainer does not track: app id, user, vars,
//! async switches): `[pid: 4121|worker: 1|req: 17] 127.0.0.1 [Mon Nov 23 17:45:01 2026] GET /x
//! => generated 11 bytes in 3 msecs (HTTP/1.1 200) 2 headers in 64 bytes (core 0)`. As in uWSGI,
//! `generated N bytes` counts the body only; the head (status line and headers) is reported
//! apart.
//!
//! `log-format` is checked when the configuration loads (`config::value::LogFormat`): a line of
//! uWSGI's `%(var)` variables, an empty value written `-` as uWSGI does; or `json`, one JSON
//! object per line (`method`, `uri`, `status`, `msecs`, `size`, `rsize`, `hsize`, `addr`,
//! `proto`, `worker`, `core`, `pid`, `time` in epoch seconds).
//!
//! What a peer sent (method, URI, headers, vars) is escaped with `log::escape_controls` in
//! every text line, so CR/LF or other control bytes can never split or forge a line (JSON
//! escapes them itself).
//!
//! `disable-logging` turns lines off except where `log-4xx`, `log-5xx` or `log-slow` ask for
//! them. `req-logger = file:PATH` sends the lines to their own file instead of the server log;
//! USR1 reopens it, and the server log file (`logto`, `daemonize`) too: see [`RequestLog::reopen`].

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::Shared;
use crate::api::RequestParts;
use crate::config::Config;
use crate::config::value::{LogPart, LogVar, RequestLogFormat};
use crate::log::escape_controls;

/// What one finished request contributes to the log.
#[derive(Debug, Clone)]
pub(crate) struct RequestRecord {
    start: RecordStart,
    status: u16,
    /// Response body bytes sent.
    body_size: u64,
    elapsed: Duration,
}

/// A request's log fields known before the answer (and the answer's head, once built).
#[derive(Debug, Clone)]
pub(crate) struct RecordStart {
    method: String,
    uri: String,
    addr: String,
    core: usize,
    protocol: String,
    at: SystemTime,
    /// The values of the request vars the format shows, in [`RequestLog::wanted_vars`] order.
    vars: Vec<Option<String>>,
    var_count: usize,
    /// The response head: its size in bytes and how many header lines it has.
    head_size: u64,
    header_count: usize,
}

impl RecordStart {
    /// The response head about to be written (status line, headers, blank line): the log
    /// reports its size and header count apart from the body's size.
    pub(crate) fn with_response_head(mut self, head: &[u8]) -> RecordStart {
        self.head_size = head.len() as u64;
        let lines = head.windows(2).filter(|w| w == b"\r\n").count();
        // Neither the status line nor the blank line that ends the head is a header.
        self.header_count = lines.saturating_sub(2);
        self
    }

    /// The request is answered: `sent` bytes in all (head included) in `elapsed`.
    pub(crate) fn finish(self, status: u16, sent: u64, elapsed: Duration) -> RequestRecord {
        RequestRecord {
            body_size: sent.saturating_sub(self.head_size),
            start: self,
            status,
            elapsed,
        }
    }
}

/// The request log settings of a worker.
#[derive(Debug)]
pub(crate) struct RequestLog {
    enabled: bool,
    log_4xx: bool,
    log_5xx: bool,
    log_slow: Option<Duration>,
    format: Option<RequestLogFormat>,
    /// The request vars the format shows (`HTTP_USER_AGENT` for `%(uagent)`...), captured
    /// when a request begins and only then.
    wanted_vars: Vec<String>,
    /// `req-logger = file:PATH`: the path and the open file (reopened on USR1).
    file: Option<(PathBuf, RefCell<File>)>,
    /// The server log file (`logto`, else `daemonize`) behind this worker's stdout/stderr.
    server_log: Option<PathBuf>,
}

impl RequestLog {
    pub(crate) fn from_config(config: &Config) -> RequestLog {
        let file = config.req_logger.as_deref().and_then(|path| {
            open_append(path)
                .map_err(|e| {
                    log::error!(
                        "req-logger file:{}: {e}; logging requests to the server log",
                        path.display()
                    )
                })
                .ok()
                .map(|file| (path.to_path_buf(), RefCell::new(file)))
        });
        RequestLog {
            enabled: !config.disable_logging,
            log_4xx: config.log_4xx,
            log_5xx: config.log_5xx,
            log_slow: (!config.log_slow.is_zero()).then_some(config.log_slow),
            format: config.log_format.clone(),
            wanted_vars: wanted_vars(config.log_format.as_ref()),
            file,
            server_log: config.logto.clone().or_else(|| config.daemonize.clone()),
        }
    }

    /// Starts the record of `request` from the peer at `addr` served on `core`: its method,
    /// URI and protocol, and of its CGI vars only those the format shows.
    pub(crate) fn begin(&self, request: &RequestParts, addr: &str, core: usize) -> RecordStart {
        let vars = &request.vars;
        RecordStart {
            method: request.method.clone(),
            uri: request.uri.clone(),
            addr: addr.to_string(),
            core,
            protocol: request.protocol.clone(),
            at: SystemTime::now(),
            vars: (self.wanted_vars.iter())
                .map(|name| {
                    vars.get(name)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .collect(),
            var_count: vars.len(),
            head_size: 0,
            header_count: 0,
        }
    }

    /// USR1: after a rotation moved the files away, opens them again by name. The server log
    /// is pointed at again on this process's stdout and stderr (they are copies of the
    /// master's from before the fork, so the master's own reopen does not reach them); the
    /// `req-logger` file is replaced. A file that cannot be opened keeps the old one, and says
    /// so in the log.
    pub(crate) fn reopen(&self) {
        if let Some(path) = &self.server_log
            && let Err(e) = crate::sys::daemon::redirect_output(path)
        {
            log::error!("cannot reopen log file {}: {e}", path.display());
        }
        if let Some((path, file)) = &self.file {
            match open_append(path) {
                Ok(new) => *file.borrow_mut() = new,
                Err(e) => log::error!("cannot reopen req-logger file:{}: {e}", path.display()),
            }
        }
    }

    fn wants(&self, record: &RequestRecord) -> bool {
        self.enabled
            || (self.log_4xx && (400..500).contains(&record.status))
            || (self.log_5xx && record.status >= 500)
            || self.log_slow.is_some_and(|slow| record.elapsed >= slow)
    }

    /// Writes the line for `record`, if the settings want one.
    pub(crate) fn log(&self, shared: &Shared, record: RequestRecord) {
        if !self.wants(&record) {
            return;
        }
        let requests = shared.requests.get();
        let line = match &self.format {
            Some(RequestLogFormat::Json) => json_line(&record, shared.worker_id),
            Some(RequestLogFormat::Line { parts, .. }) => {
                render_line(parts, &self.wanted_vars, &record, shared.worker_id)
            }
            None => default_line(&record, shared.worker_id, requests),
        };
        match &self.file {
            Some((_, file)) => {
                let _ = writeln!(file.borrow_mut(), "{line}");
            }
            None => log::info!(target: crate::log::REQUEST_TARGET, "{line}"),
        }
    }
}

/// The request vars a format shows, each once.
fn wanted_vars(format: Option<&RequestLogFormat>) -> Vec<String> {
    let mut wanted: Vec<String> = Vec::new();
    if let Some(RequestLogFormat::Line { parts, .. }) = format {
        for part in parts {
            if let LogPart::Var(var) = part
                && let Some(name) = var.request_var()
                && !wanted.iter().any(|w| w == name)
            {
                wanted.push(name.to_string());
            }
        }
    }
    wanted
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn default_line(r: &RequestRecord, worker: u32, requests: u64) -> String {
    let s = &r.start;
    format!(
        "[pid: {}|worker: {worker}|req: {requests}] {} [{}] {} {} => generated {} bytes in {} msecs ({} {}) {} headers in {} bytes (core {})",
        std::process::id(),
        if s.addr.is_empty() {
            "-".into()
        } else {
            escape_controls(&s.addr)
        },
        ctime(s.at),
        escape_controls(&s.method),
        escape_controls(&s.uri),
        r.body_size,
        r.elapsed.as_millis(),
        escape_controls(&s.protocol),
        r.status,
        s.header_count,
        s.head_size,
        s.core
    )
}

fn epoch(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// The request's start in the `ctime` shape of uWSGI's log line (UTC).
fn ctime(at: SystemTime) -> String {
    crate::proto::date::format_ctime(epoch(at).as_secs())
}

fn json_line(r: &RequestRecord, worker: u32) -> String {
    let s = &r.start;
    serde_json::json!({
        "method": s.method,
        "uri": s.uri,
        "status": r.status,
        "msecs": r.elapsed.as_millis() as u64,
        "size": s.head_size + r.body_size,
        "rsize": r.body_size,
        "hsize": s.head_size,
        "addr": s.addr,
        "proto": s.protocol,
        "worker": worker,
        "core": s.core,
        "pid": std::process::id(),
        "time": epoch(s.at).as_secs(),
    })
    .to_string()
}

/// A `log-format` line: the text as written, each variable's value escaped (`-` if empty).
fn render_line(parts: &[LogPart], wanted: &[String], r: &RequestRecord, worker: u32) -> String {
    let mut out = String::with_capacity(128);
    for part in parts {
        match part {
            LogPart::Text(text) => out.push_str(text),
            LogPart::Var(var) => {
                let value = value_of(var, wanted, r, worker);
                if value.is_empty() {
                    out.push('-');
                } else {
                    out.push_str(&escape_controls(&value));
                }
            }
        }
    }
    out
}

fn value_of(var: &LogVar, wanted: &[String], r: &RequestRecord, worker: u32) -> String {
    let s = &r.start;
    let request_var = |name: &str| -> String {
        (wanted.iter().zip(&s.vars))
            .find(|(w, _)| *w == name)
            .and_then(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut out = String::new();
    let _ = match var {
        LogVar::Uri => write!(out, "{}", s.uri),
        LogVar::Method => write!(out, "{}", s.method),
        LogVar::Addr => write!(out, "{}", s.addr),
        LogVar::Proto => write!(out, "{}", s.protocol),
        LogVar::Status => write!(out, "{}", r.status),
        LogVar::Micros => write!(out, "{}", r.elapsed.as_micros()),
        LogVar::Msecs => write!(out, "{}", r.elapsed.as_millis()),
        LogVar::Secs => write!(out, "{:.6}", r.elapsed.as_secs_f64()),
        LogVar::Time => write!(out, "{}", epoch(s.at).as_secs()),
        LogVar::Tmsecs => write!(out, "{}", epoch(s.at).as_millis()),
        LogVar::Tmicros => write!(out, "{}", epoch(s.at).as_micros()),
        LogVar::Ctime => write!(out, "{}", ctime(s.at)),
        LogVar::Ltime => write!(
            out,
            "{}",
            crate::proto::date::format_common_log(epoch(s.at).as_secs())
        ),
        LogVar::Epoch => write!(out, "{}", epoch(SystemTime::now()).as_secs()),
        LogVar::Size => write!(out, "{}", s.head_size + r.body_size),
        LogVar::Rsize => write!(out, "{}", r.body_size),
        LogVar::Hsize => write!(out, "{}", s.head_size),
        LogVar::Headers => write!(out, "{}", s.header_count),
        LogVar::Vars => write!(out, "{}", s.var_count),
        LogVar::Pid => write!(out, "{}", std::process::id()),
        LogVar::Wid => write!(out, "{worker}"),
        LogVar::Core => write!(out, "{}", s.core),
        LogVar::Cl => match request_var("CONTENT_LENGTH") {
            length if length.is_empty() => write!(out, "0"),
            length => write!(out, "{length}"),
        },
        LogVar::User | LogVar::Host | LogVar::Uagent | LogVar::Referer | LogVar::Var(_) => {
            let name = var
                .request_var()
                .expect("invariant: these variables show a request var");
            write!(out, "{}", request_var(name))
        }
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::value::{Kind, LogFormat};
    use crate::proto::Vars;

    fn request(method: &str, uri: &str, protocol: &str) -> RequestParts {
        let mut vars = Vars::with_capacity(256, 8);
        vars.push("REQUEST_METHOD", "GET");
        vars.push("HTTP_USER_AGENT", "curl/8\r\nforged");
        vars.push("CONTENT_LENGTH", "");
        RequestParts {
            method: method.into(),
            uri: uri.into(),
            protocol: protocol.into(),
            vars,
            ..RequestParts::default()
        }
    }

    fn log_with(format: Option<&str>) -> RequestLog {
        let format = format.map(|f| LogFormat::parse(f).expect("valid format"));
        let wanted_vars = wanted_vars(format.as_ref());
        RequestLog {
            enabled: true,
            log_4xx: false,
            log_5xx: false,
            log_slow: None,
            format,
            wanted_vars,
            file: None,
            server_log: None,
        }
    }

    /// A request with a 42-byte body after a 2-header, 44-byte head.
    fn record(log: &RequestLog, status: u16, ms: u64) -> RequestRecord {
        let head = b"HTTP/1.1 200 OK\r\nA: 1\r\nContent-Length: 9\r\n\r\n";
        assert_eq!(head.len(), 44);
        log.begin(&request("GET", "/x?y=1", "HTTP/1.1"), "127.0.0.1", 3)
            .with_response_head(head)
            .finish(status, 44 + 42, Duration::from_millis(ms))
    }

    fn line(format: &str) -> String {
        let log = log_with(Some(format));
        let Some(RequestLogFormat::Line { parts, .. }) = &log.format else {
            panic!("a line format");
        };
        render_line(parts, &log.wanted_vars, &record(&log, 404, 5), 2)
    }

    #[test]
    fn log_format_variables_are_expanded_like_uwsgi() {
        assert_eq!(
            line("%(method) %(uri) %(status) %(size) %(rsize) %(hsize) %(headers) %(wid) %(core)"),
            "GET /x?y=1 404 86 42 44 2 2 3"
        );
        assert_eq!(
            line("[%(user)] [%(referer)] %(cl) %(vars) %(var.REQUEST_METHOD) %(var.NOPE)"),
            "[-] [-] 0 3 GET -"
        );
        assert_eq!(line("%(msecs) %(micros) %(secs)"), "5 5000 0.005000");
    }

    #[test]
    fn control_bytes_in_values_are_escaped() {
        assert_eq!(line("ua=%(uagent)"), r"ua=curl/8\r\nforged");
        let log = log_with(None);
        let start = log.begin(&request("G\nET", "/\r", "HTTP/1.1\t"), "", 0);
        let line = default_line(&start.finish(200, 0, Duration::ZERO), 1, 1);
        assert!(line.contains(r"] G\nET /\r => generated 0 bytes"), "{line}");
        assert!(line.contains(r"(HTTP/1.1\t 200)"), "{line}");
        assert!(!line.contains(['\r', '\n', '\t']));
    }

    #[test]
    fn disabled_logging_still_logs_what_log_4xx_5xx_and_slow_ask_for() {
        let log = RequestLog {
            enabled: false,
            log_4xx: true,
            log_slow: Some(Duration::from_millis(100)),
            ..log_with(None)
        };
        assert!(log.wants(&record(&log, 404, 1)));
        assert!(!log.wants(&record(&log, 500, 1)));
        assert!(!log.wants(&record(&log, 200, 1)));
        assert!(log.wants(&record(&log, 200, 150)));
    }

    #[test]
    fn json_lines_carry_every_field() {
        let log = log_with(Some("json"));
        let line = json_line(&record(&log, 201, 12), 4);
        let doc: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(doc["status"], 201);
        assert_eq!(doc["msecs"], 12);
        assert_eq!(doc["uri"], "/x?y=1");
        assert_eq!(doc["worker"], 4);
        assert_eq!(doc["proto"], "HTTP/1.1");
        assert_eq!(
            (doc["size"].as_u64(), doc["rsize"].as_u64()),
            (Some(86), Some(42))
        );
    }

    #[test]
    fn the_default_line_has_the_uwsgi_shape() {
        let log = log_with(None);
        let line = default_line(&record(&log, 200, 7), 1, 9);
        assert!(line.starts_with(&format!(
            "[pid: {}|worker: 1|req: 9] 127.0.0.1 [",
            std::process::id()
        )));
        assert!(
            line.ends_with(
                "] GET /x?y=1 => generated 42 bytes in 7 msecs (HTTP/1.1 200) 2 headers in 44 bytes (core 3)"
            ),
            "{line}"
        );
    }
}
