//! The request log and the server log: the uWSGI-shaped default line, `log-format` variables,
//! escaping of what peers send, and reopening every log file (workers' too) after a rotation.

use std::fs;
use std::path::Path;

use crate::harness::client::{Proto, http_get, http_request, uwsgi_packet_raw};
use crate::harness::{Instance, Signal, Target, eventually, run_cli};

fn read(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

// ----- control bytes never split a log line ----------------------------------------------------

/// Sends a uwsgi request whose method and URI carry CR/LF (and other control bytes), then
/// returns every log line that mentions the marker.
fn log_lines_for_forged_request(name: &str, extra_ini: &str) -> Vec<String> {
    let mut server = Instance::start(
        name,
        &format!("[rcontainer]\nsocket = 127.0.0.1:0\nmodule = echo\n{extra_ini}"),
        &[],
    );
    let packet = uwsgi_packet_raw(
        &[
            (
                b"REQUEST_METHOD",
                b"GET\r\n[pid: 1|worker: 1|req: 1] forged-method",
            ),
            (b"REQUEST_URI", b"/x\nforged-uri\x1b[31m\x7f"),
            (b"PATH_INFO", b"/x"),
            (b"REMOTE_ADDR", b"127.0.0.1"),
        ],
        b"",
    );
    let response = server
        .target(Proto::Uwsgi)
        .connect()
        .send(&packet)
        .read_response();
    assert_eq!(response.status, 200);
    server.wait_for_log("forged-uri");
    server
        .logs()
        .lines()
        .filter(|l| l.contains("forged"))
        .map(str::to_string)
        .collect()
}

#[test]
fn control_bytes_in_the_default_request_line_are_escaped_on_one_line() {
    let lines = log_lines_for_forged_request("log-escape-default", "");
    assert_eq!(lines.len(), 1, "one line: {lines:#?}");
    let line = &lines[0];
    assert!(line.starts_with("[pid: "), "{line}");
    assert!(
        line.contains(r"GET\r\n[pid: 1|worker: 1|req: 1] forged-method /x\nforged-uri\x1b[31m\x7f => generated"),
        "{line}"
    );
}

#[test]
fn control_bytes_in_a_custom_log_format_are_escaped_on_one_line() {
    let lines = log_lines_for_forged_request(
        "log-escape-format",
        "log-format = M=%(method) U=%(uri) S=%(status)\n",
    );
    assert_eq!(lines.len(), 1, "one line: {lines:#?}");
    assert_eq!(
        lines[0],
        r"M=GET\r\n[pid: 1|worker: 1|req: 1] forged-method U=/x\nforged-uri\x1b[31m\x7f S=200"
    );
}

// ----- USR1 reopens the workers' files too ------------------------------------------------------

/// The listeners of the ready line written to `log`.
fn ready_targets(log: &str) -> Vec<Target> {
    let line = log
        .lines()
        .find(|l| l.contains("rcontainer ready"))
        .expect("a ready line");
    let list = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sockets="))
        .expect("sockets=");
    list.split(',').filter_map(Target::parse).collect()
}

#[test]
fn usr1_sends_worker_request_and_server_lines_to_the_new_files() {
    let server = Instance::spawn(
        "log-reopen-workers",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nlogto = %dserver.log\n\
         req-logger = file:%dreq.log\n",
        &[],
    );
    let dir = server.scratch.path().to_path_buf();
    let (server_log, req_log) = (dir.join("server.log"), dir.join("req.log"));
    eventually("the ready line in server.log", &server, || {
        read(&server_log).contains("rcontainer ready")
    });
    let http = ready_targets(&read(&server_log))
        .into_iter()
        .find(|t| t.proto == Proto::Http)
        .expect("an http socket");
    assert_eq!(http_get(&http, "/before-rotation").status, 200);
    eventually("the first request line", &server, || {
        read(&req_log).contains("/before-rotation")
    });

    // What logrotate does: move the files away, then signal.
    let (old_server, old_req) = (dir.join("server.log.1"), dir.join("req.log.1"));
    fs::rename(&server_log, &old_server).expect("rotate server.log");
    fs::rename(&req_log, &old_req).expect("rotate req.log");
    server.signal(Signal::SIGUSR1);
    eventually("the worker says it reopened", &server, || {
        read(&server_log).contains("worker reopened logs")
    });

    assert_eq!(http_get(&http, "/after-rotation").status, 200);
    // Something the worker itself writes to the server log: a refused request.
    let refused = http_request(&http, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(refused.status, 400);
    eventually("the new request line in the new req.log", &server, || {
        read(&req_log).contains("/after-rotation")
    });
    eventually(
        "the worker's server line in the new server.log",
        &server,
        || read(&server_log).contains("bad request peer="),
    );
    assert!(!read(&old_req).contains("/after-rotation"), "old req.log");
    assert!(
        !read(&old_server).contains("bad request peer="),
        "old server.log"
    );
}

// ----- log-format variables and the default line -----------------------------------------------

#[test]
fn an_unknown_log_format_variable_fails_check_config_with_file_and_line() {
    let scratch = crate::harness::Scratch::new("log-format-unknown");
    let ini = scratch.write(
        "app.ini",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nlog-format = %(method) %(nope)\n",
    );
    let out = run_cli(
        scratch.path(),
        &["--ini", ini.to_str().expect("path"), "--check-config"],
    );
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("app.ini:4: log-format: unknown variable 'nope' (known: "),
        "{}",
        out.stderr
    );
}

#[test]
fn log_format_variables_render_as_in_uwsgi() {
    let mut server = Instance::start(
        "log-format-vars",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\n\
         log-format = LF method=%(method) uri=%(uri) proto=%(proto) status=%(status) \
         rsize=%(rsize) hsize=%(hsize) size=%(size) headers=%(headers) uagent=%(uagent) \
         referer=%(referer) host=%(host) user=%(user) addr=%(addr) wid=%(wid) core=%(core) \
         pid=%(pid) cl=%(cl) qs=%(var.QUERY_STRING) ltime=[%(ltime)] end\n",
        &[],
    );
    let response = http_request(
        &server.target(Proto::Http),
        b"GET /?bytes=10 HTTP/1.1\r\nHost: h.test\r\nUser-Agent: ua/1\r\nReferer: http://r/\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!((response.status, response.body.len()), (200, 10));
    let line = server.wait_for_log("LF method=");
    let field = |name: &str| -> String {
        let start = line.find(&format!(" {name}=")).expect(name) + name.len() + 2;
        line[start..]
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(field("method"), "GET");
    assert_eq!(field("uri"), "/?bytes=10");
    assert_eq!(field("proto"), "HTTP/1.1");
    assert_eq!(field("status"), "200");
    assert_eq!(field("rsize"), "10");
    let hsize: u64 = field("hsize").parse().expect("hsize");
    let size: u64 = field("size").parse().expect("size");
    assert!(hsize > 20, "{line}");
    assert_eq!(size, hsize + 10, "size is headers + body");
    let headers: u64 = field("headers").parse().expect("headers");
    assert!(headers >= 2, "{line}");
    assert_eq!(field("uagent"), "ua/1");
    assert_eq!(field("referer"), "http://r/");
    assert_eq!(field("host"), "h.test");
    assert_eq!(field("user"), "-", "empty values are a dash, as in uWSGI");
    assert_eq!(field("addr"), "127.0.0.1");
    assert_eq!(field("wid"), "1");
    assert_eq!(field("core"), "0");
    assert!(field("pid").parse::<u32>().is_ok(), "{line}");
    assert_eq!(field("cl"), "0", "no body: 0, as uWSGI counts it");
    assert_eq!(field("qs"), "bytes=10");
    // `[23/Nov/2026:17:45:01 +0000]`
    let ltime = line
        .split_once("ltime=[")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(t, _)| t)
        .expect("ltime");
    let shape: String = ltime
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                '9'
            } else if c.is_ascii_alphabetic() {
                'a'
            } else {
                c
            }
        })
        .collect();
    assert_eq!(shape, "99/aaa/9999:99:99:99 +9999", "{ltime}");
}

#[test]
fn the_default_line_counts_the_body_and_reports_the_headers_apart() {
    let mut server = Instance::start(
        "log-default-sizes",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\n",
        &[],
    );
    assert_eq!(
        http_get(&server.target(Proto::Http), "/?bytes=10").status,
        200
    );
    let line = server.wait_for_log("GET /?bytes=10 =>");
    assert!(
        line.contains("=> generated 10 bytes in "),
        "the body only: {line}"
    );
    let (_, tail) = line.split_once("(HTTP/1.1 200) ").expect("status part");
    let words: Vec<&str> = tail.split_whitespace().collect();
    assert!(
        matches!(words.as_slice(), [n, "headers", "in", m, "bytes", "(core", "0)"]
            if n.parse::<u32>().is_ok() && m.parse::<u32>().is_ok()),
        "{line}"
    );
}
