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

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::Shared;
use crate::api::RequestData;
use crate::config::Config;
use crate::config::value::{LogPart, LogVar, RequestLogFormat};
use crate::log::{Escaped, escape_controls};
use crate::proto::Vars;
use crate::proto::date::Ctime;

/// What the answer to a request contributes to the log (the request's own fields are read from
/// its [`RequestData`] when the line is written).
#[derive(Debug, Clone)]
pub(crate) struct RequestRecord {
    pub(crate) core: usize,
    pub(crate) status: u16,
    /// The response head: its size in bytes and how many header lines it has.
    pub(crate) head_size: u64,
    pub(crate) header_count: usize,
    /// Response body bytes sent.
    pub(crate) body_size: u64,
    pub(crate) elapsed: Duration,
}

/// How many header lines a response head (status line, headers, blank line) has.
pub(crate) fn header_lines(head: &[u8]) -> usize {
    let lines = head.windows(2).filter(|w| w == b"\r\n").count();
    // Neither the status line nor the blank line that ends the head is a header.
    lines.saturating_sub(2)
}

/// One line's worth: the request's fields and its answer's.
struct Entry<'a> {
    method: &'a str,
    uri: &'a str,
    protocol: &'a str,
    /// The peer's address (`REMOTE_ADDR`).
    addr: &'a str,
    /// The request, for the vars a format shows (derived only then).
    vars: &'a RequestData,
    /// When the request began.
    at: SystemTime,
    record: &'a RequestRecord,
}

impl<'a> Entry<'a> {
    fn new(data: &'a RequestData, record: &'a RequestRecord) -> Entry<'a> {
        Entry {
            method: data.method(),
            uri: data.uri(),
            protocol: data.protocol(),
            addr: data.remote_addr_text(),
            vars: data,
            at: SystemTime::now()
                .checked_sub(record.elapsed)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            record,
        }
    }
}

/// The text of var `name` (empty when missing; bytes that are not UTF-8 replaced).
fn var_text<'v>(vars: &'v Vars, name: &str) -> Cow<'v, str> {
    String::from_utf8_lossy(vars.get(name).unwrap_or(b""))
}

/// The request log settings of a worker.
#[derive(Debug)]
pub(crate) struct RequestLog {
    enabled: bool,
    log_4xx: bool,
    log_5xx: bool,
    log_slow: Option<Duration>,
    format: Option<RequestLogFormat>,
    /// `req-logger = file:PATH`: the path and the open file (reopened on USR1).
    file: Option<(PathBuf, RefCell<File>)>,
    /// The server log file (`logto`, else `daemonize`) behind this worker's stdout/stderr.
    server_log: Option<PathBuf>,
    /// The line being written (its room is kept from line to line).
    line: RefCell<String>,
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
            file,
            server_log: config.logto.clone().or_else(|| config.daemonize.clone()),
            line: RefCell::new(String::new()),
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

    /// Whether a request may get a line at all (then its head's header lines are counted).
    pub(crate) fn is_active(&self) -> bool {
        self.enabled || self.log_4xx || self.log_5xx || self.log_slow.is_some()
    }

    fn wants(&self, record: &RequestRecord) -> bool {
        self.enabled
            || (self.log_4xx && (400..500).contains(&record.status))
            || (self.log_5xx && record.status >= 500)
            || self.log_slow.is_some_and(|slow| record.elapsed >= slow)
    }

    /// Writes the line for the request of `data` answered as `record` says, if the settings
    /// want one.
    pub(crate) fn log(&self, shared: &Shared, data: &RequestData, record: &RequestRecord) {
        if !self.wants(record) {
            return;
        }
        let entry = Entry::new(data, record);
        let requests = shared.requests.get();
        let mut line = self.line.borrow_mut();
        line.clear();
        match &self.format {
            Some(RequestLogFormat::Json) => line.push_str(&json_line(&entry, shared.worker_id)),
            Some(RequestLogFormat::Line { parts, .. }) => {
                line.push_str(&render_line(parts, &entry, shared.worker_id));
            }
            None => write_default_line(&mut line, &entry, shared.worker_id, requests),
        }
        match &self.file {
            Some((_, file)) => {
                line.push('\n');
                let _ = file.borrow_mut().write_all(line.as_bytes());
            }
            None => log::info!(target: crate::log::REQUEST_TARGET, "{line}"),
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
fn default_line(e: &Entry<'_>, worker: u32, requests: u64) -> String {
    let mut line = String::new();
    write_default_line(&mut line, e, worker, requests);
    line
}

/// uWSGI's line, written at the end of `out` (a reused buffer: no allocation once warm).
fn write_default_line(out: &mut String, e: &Entry<'_>, worker: u32, requests: u64) {
    let r = e.record;
    let addr = if e.addr.is_empty() { "-" } else { e.addr };
    let _ = write!(
        out,
        "[pid: {}|worker: {worker}|req: {requests}] {} [{}] {} {} => generated {} bytes in {} msecs ({} {}) {} headers in {} bytes (core {})",
        std::process::id(),
        Escaped(addr),
        Ctime(epoch(e.at).as_secs()),
        Escaped(e.method),
        Escaped(e.uri),
        r.body_size,
        r.elapsed.as_millis(),
        Escaped(e.protocol),
        r.status,
        r.header_count,
        r.head_size,
        r.core
    );
}

fn epoch(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// The request's start in the `ctime` shape of uWSGI's log line (UTC).
fn ctime(at: SystemTime) -> String {
    Ctime(epoch(at).as_secs()).to_string()
}

fn json_line(e: &Entry<'_>, worker: u32) -> String {
    let r = e.record;
    serde_json::json!({
        "method": e.method,
        "uri": e.uri,
        "status": r.status,
        "msecs": r.elapsed.as_millis() as u64,
        "size": r.head_size + r.body_size,
        "rsize": r.body_size,
        "hsize": r.head_size,
        "addr": e.addr,
        "proto": e.protocol,
        "worker": worker,
        "core": r.core,
        "pid": std::process::id(),
        "time": epoch(e.at).as_secs(),
    })
    .to_string()
}

/// A `log-format` line: the text as written, each variable's value escaped (`-` if empty).
fn render_line(parts: &[LogPart], e: &Entry<'_>, worker: u32) -> String {
    let mut out = String::with_capacity(128);
    for part in parts {
        match part {
            LogPart::Text(text) => out.push_str(text),
            LogPart::Var(var) => {
                let value = value_of(var, e, worker);
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

fn value_of(var: &LogVar, e: &Entry<'_>, worker: u32) -> String {
    let r = e.record;
    let request_var = |name: &str| var_text(e.vars.vars(), name);
    let mut out = String::new();
    let _ = match var {
        LogVar::Uri => write!(out, "{}", e.uri),
        LogVar::Method => write!(out, "{}", e.method),
        LogVar::Addr => write!(out, "{}", e.addr),
        LogVar::Proto => write!(out, "{}", e.protocol),
        LogVar::Status => write!(out, "{}", r.status),
        LogVar::Micros => write!(out, "{}", r.elapsed.as_micros()),
        LogVar::Msecs => write!(out, "{}", r.elapsed.as_millis()),
        LogVar::Secs => write!(out, "{:.6}", r.elapsed.as_secs_f64()),
        LogVar::Time => write!(out, "{}", epoch(e.at).as_secs()),
        LogVar::Tmsecs => write!(out, "{}", epoch(e.at).as_millis()),
        LogVar::Tmicros => write!(out, "{}", epoch(e.at).as_micros()),
        LogVar::Ctime => write!(out, "{}", ctime(e.at)),
        LogVar::Ltime => write!(
            out,
            "{}",
            crate::proto::date::format_common_log(epoch(e.at).as_secs())
        ),
        LogVar::Epoch => write!(out, "{}", epoch(SystemTime::now()).as_secs()),
        LogVar::Size => write!(out, "{}", r.head_size + r.body_size),
        LogVar::Rsize => write!(out, "{}", r.body_size),
        LogVar::Hsize => write!(out, "{}", r.head_size),
        LogVar::Headers => write!(out, "{}", r.header_count),
        LogVar::Vars => write!(out, "{}", e.vars.vars().len()),
        LogVar::Pid => write!(out, "{}", std::process::id()),
        LogVar::Wid => write!(out, "{worker}"),
        LogVar::Core => write!(out, "{}", r.core),
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
    use crate::api::Field;
    use crate::config::value::{Kind, LogFormat};

    fn request(method: &str, uri: &str, protocol: &str) -> RequestData {
        let mut data = RequestData::default();
        let vars = data.vars_mut();
        vars.push("REQUEST_METHOD", "GET");
        vars.push("HTTP_USER_AGENT", "curl/8\r\nforged");
        vars.push("CONTENT_LENGTH", "");
        vars.push("REMOTE_ADDR", "127.0.0.1");
        data.text.set(Field::RemoteAddr, b"127.0.0.1");
        data.text.set(Field::Method, method.as_bytes());
        data.text.set(Field::Uri, uri.as_bytes());
        data.text.set(Field::Protocol, protocol.as_bytes());
        data
    }

    fn log_with(format: Option<&str>) -> RequestLog {
        RequestLog {
            enabled: true,
            log_4xx: false,
            log_5xx: false,
            log_slow: None,
            format: format.map(|f| LogFormat::parse(f).expect("valid format")),
            file: None,
            server_log: None,
            line: RefCell::new(String::new()),
        }
    }

    /// A request with a 42-byte body after a 2-header, 44-byte head.
    fn record(status: u16, ms: u64) -> RequestRecord {
        let head = b"HTTP/1.1 200 OK\r\nA: 1\r\nContent-Length: 9\r\n\r\n";
        assert_eq!(head.len(), 44);
        RequestRecord {
            core: 3,
            status,
            head_size: 44,
            header_count: header_lines(head),
            body_size: 42,
            elapsed: Duration::from_millis(ms),
        }
    }

    fn line(format: &str) -> String {
        let log = log_with(Some(format));
        let Some(RequestLogFormat::Line { parts, .. }) = &log.format else {
            panic!("a line format");
        };
        let data = request("GET", "/x?y=1", "HTTP/1.1");
        render_line(parts, &Entry::new(&data, &record(404, 5)), 2)
    }

    #[test]
    fn log_format_variables_are_expanded_like_uwsgi() {
        assert_eq!(
            line("%(method) %(uri) %(status) %(size) %(rsize) %(hsize) %(headers) %(wid) %(core)"),
            "GET /x?y=1 404 86 42 44 2 2 3"
        );
        assert_eq!(
            line("[%(user)] [%(referer)] %(cl) %(vars) %(var.REQUEST_METHOD) %(var.NOPE)"),
            "[-] [-] 0 4 GET -"
        );
        assert_eq!(line("%(msecs) %(micros) %(secs)"), "5 5000 0.005000");
    }

    #[test]
    fn control_bytes_in_values_are_escaped() {
        assert_eq!(line("ua=%(uagent)"), r"ua=curl/8\r\nforged");
        let data = request("G\nET", "/\r", "HTTP/1.1\t");
        let record = RequestRecord {
            body_size: 0,
            ..record(200, 0)
        };
        let line = default_line(&Entry::new(&data, &record), 1, 1);
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
        assert!(log.is_active());
        assert!(log.wants(&record(404, 1)));
        assert!(!log.wants(&record(500, 1)));
        assert!(!log.wants(&record(200, 1)));
        assert!(log.wants(&record(200, 150)));
        let off = RequestLog {
            enabled: false,
            ..log_with(None)
        };
        assert!(!off.is_active(), "no line can be wanted");
    }

    #[test]
    fn json_lines_carry_every_field() {
        let data = request("GET", "/x?y=1", "HTTP/1.1");
        let line = json_line(&Entry::new(&data, &record(201, 12)), 4);
        let doc: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(doc["status"], 201);
        assert_eq!(doc["msecs"], 12);
        assert_eq!(doc["uri"], "/x?y=1");
        assert_eq!(doc["worker"], 4);
        assert_eq!(doc["proto"], "HTTP/1.1");
        assert_eq!(doc["addr"], "127.0.0.1");
        assert_eq!(
            (doc["size"].as_u64(), doc["rsize"].as_u64()),
            (Some(86), Some(42))
        );
    }

    #[test]
    fn the_default_line_has_the_uwsgi_shape() {
        let data = request("GET", "/x?y=1", "HTTP/1.1");
        let line = default_line(&Entry::new(&data, &record(200, 7)), 1, 9);
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
