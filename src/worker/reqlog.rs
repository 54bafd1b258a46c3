//! The request log: one line per request, uWSGI's shape by default or `log-format`.
//!
//! Default line (close to uWSGI's, without the fields rcontainer does not track):
//! `[pid: 4121|worker: 1|req: 17] 127.0.0.1 [Mon Nov 23 17:45:01 2026] GET /x => generated 211 bytes in 3 msecs (HTTP/1.1 200) core 0`
//!
//! `log-format = json` writes one JSON object per line instead (`method`, `uri`, `status`,
//! `msecs`, `size`, `addr`, `proto`, `worker`, `core`, `pid`, `time` in epoch seconds).
//!
//! `disable-logging` turns lines off except where `log-4xx`, `log-5xx` or `log-slow` ask for
//! them. `req-logger = file:PATH` sends the lines to their own file instead of the server log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::{Duration, SystemTime};

use super::Shared;
use crate::config::Config;

/// What one finished request contributes to the log.
#[derive(Debug, Clone)]
pub(crate) struct RequestRecord {
    method: String,
    uri: String,
    addr: String,
    core: usize,
    status: u16,
    size: u64,
    elapsed: Duration,
    protocol: String,
    at: SystemTime,
}

/// A request's log fields known before the answer.
#[derive(Debug, Clone)]
pub(crate) struct RecordStart {
    method: String,
    uri: String,
    addr: String,
    core: usize,
    protocol: String,
    at: SystemTime,
}

impl RequestRecord {
    pub(crate) fn begin((method, uri): &(String, String), addr: &str, core: usize) -> RecordStart {
        RecordStart {
            method: method.clone(),
            uri: uri.clone(),
            addr: addr.to_string(),
            core,
            protocol: String::new(),
            at: SystemTime::now(),
        }
    }
}

impl RecordStart {
    /// The protocol version the answer uses (`HTTP/1.1`).
    pub(crate) fn with_protocol(mut self, protocol: &str) -> RecordStart {
        self.protocol = protocol.to_string();
        self
    }

    pub(crate) fn finish(self, status: u16, size: u64, elapsed: Duration) -> RequestRecord {
        RequestRecord {
            method: self.method,
            uri: self.uri,
            addr: self.addr,
            core: self.core,
            status,
            size,
            elapsed,
            protocol: self.protocol,
            at: self.at,
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
    format: Option<String>,
    file: Option<File>,
}

impl RequestLog {
    pub(crate) fn from_config(config: &Config) -> RequestLog {
        if let Some(target) = config.req_logger.as_deref()
            && !target.starts_with("file:")
        {
            log::warn!(
                "req-logger {target}: only file:PATH is supported; logging requests to the server log"
            );
        }
        let file = config
            .req_logger
            .as_deref()
            .and_then(|target| target.strip_prefix("file:"))
            .and_then(|path| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        log::error!(
                            "req-logger file:{path}: {e}; logging requests to the server log"
                        )
                    })
                    .ok()
            });
        RequestLog {
            enabled: !config.disable_logging,
            log_4xx: config.log_4xx,
            log_5xx: config.log_5xx,
            log_slow: (!config.log_slow.is_zero()).then_some(config.log_slow),
            format: config.log_format.clone(),
            file,
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
        let requests = shared.counters.requests.get();
        let line = match self.format.as_deref() {
            Some("json") => json_line(&record, shared.worker_id),
            Some(format) => render_format(format, &record, shared.worker_id),
            None => default_line(&record, shared.worker_id, requests),
        };
        match &self.file {
            Some(file) => {
                let _ = writeln!(&*file, "{line}");
            }
            None => log::info!(target: crate::log::REQUEST_TARGET, "{line}"),
        }
    }
}

fn default_line(r: &RequestRecord, worker: u32, requests: u64) -> String {
    format!(
        "[pid: {}|worker: {worker}|req: {requests}] {} [{}] {} {} => generated {} bytes in {} msecs ({} {}) core {}",
        std::process::id(),
        if r.addr.is_empty() { "-" } else { &r.addr },
        ctime(r.at),
        r.method,
        r.uri,
        r.size,
        r.elapsed.as_millis(),
        r.protocol,
        r.status,
        r.core
    )
}

/// The request's start in the `ctime` shape of uWSGI's log line (UTC).
fn ctime(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::proto::date::format_ctime(secs)
}

fn json_line(r: &RequestRecord, worker: u32) -> String {
    serde_json::json!({
        "method": r.method,
        "uri": r.uri,
        "status": r.status,
        "msecs": r.elapsed.as_millis() as u64,
        "size": r.size,
        "addr": r.addr,
        "proto": r.protocol,
        "worker": worker,
        "core": r.core,
        "pid": std::process::id(),
        "time": r.at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    })
    .to_string()
}

/// Expands uWSGI `log-format` variables; unknown ones are left as written.
fn render_format(format: &str, r: &RequestRecord, worker: u32) -> String {
    let mut out = String::with_capacity(format.len() + 64);
    let mut rest = format;
    while let Some(start) = rest.find("%(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        match value_of(name, r, worker) {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[start..start + 3 + end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn value_of(name: &str, r: &RequestRecord, worker: u32) -> Option<String> {
    Some(match name {
        "method" => r.method.clone(),
        "uri" => r.uri.clone(),
        "status" => r.status.to_string(),
        "msecs" => r.elapsed.as_millis().to_string(),
        "micros" => r.elapsed.as_micros().to_string(),
        "size" => r.size.to_string(),
        "addr" => r.addr.clone(),
        "wid" => worker.to_string(),
        "pid" => std::process::id().to_string(),
        "core" => r.core.to_string(),
        "proto" => r.protocol.clone(),
        "ltime" | "ctime" => ctime(r.at),
        "epoch" => {
            r.at.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                .to_string()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: u16, ms: u64) -> RequestRecord {
        RequestRecord::begin(&("GET".into(), "/x?y=1".into()), "127.0.0.1", 3)
            .with_protocol("HTTP/1.1")
            .finish(status, 42, Duration::from_millis(ms))
    }

    #[test]
    fn log_format_variables_are_expanded_and_unknown_ones_kept() {
        let line = render_format(
            "%(method) %(uri) %(status) %(size) %(wid) %(core) %(nope) %(",
            &record(404, 5),
            2,
        );
        assert_eq!(line, "GET /x?y=1 404 42 2 3 %(nope) %(");
    }

    #[test]
    fn disabled_logging_still_logs_what_log_4xx_5xx_and_slow_ask_for() {
        let log = RequestLog {
            enabled: false,
            log_4xx: true,
            log_5xx: false,
            log_slow: Some(Duration::from_millis(100)),
            format: None,
            file: None,
        };
        assert!(log.wants(&record(404, 1)));
        assert!(!log.wants(&record(500, 1)));
        assert!(!log.wants(&record(200, 1)));
        assert!(log.wants(&record(200, 150)));
    }

    #[test]
    fn json_lines_carry_every_field() {
        let line = json_line(&record(201, 12), 4);
        let doc: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(doc["status"], 201);
        assert_eq!(doc["msecs"], 12);
        assert_eq!(doc["uri"], "/x?y=1");
        assert_eq!(doc["worker"], 4);
        assert_eq!(doc["proto"], "HTTP/1.1");
    }

    #[test]
    fn the_default_line_has_the_uwsgi_shape() {
        let line = default_line(&record(200, 7), 1, 9);
        assert!(line.starts_with(&format!(
            "[pid: {}|worker: 1|req: 9] 127.0.0.1 [",
            std::process::id()
        )));
        assert!(
            line.ends_with("] GET /x?y=1 => generated 42 bytes in 7 msecs (HTTP/1.1 200) core 3"),
            "{line}"
        );
    }
}
