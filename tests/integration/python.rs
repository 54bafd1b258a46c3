//! Python WSGI apps (feature `python`): apps from a virtualenv with gevent and Flask from PyPI
//! (made once per run by `scripts/python-venv.sh` under target/), served by the real binary.
//! Each test's INI names its app as a uWSGI user's does (`module`, `wsgi-file`, `home`,
//! `pythonpath`, `gevent`).

use std::thread;

use crate::harness::client::{Proto, http_get, http_request, nginx_vars, uwsgi_request};
pub(crate) use crate::harness::venv;
use crate::harness::{Instance, Scratch, Signal, Target, eventually, json, stats};

/// Every test app runs under `wsgiref.validate.validator`, which raises on any PEP 3333
/// violation by the server (a 500 in the test) and warns on lesser ones (made errors here).
const PRELUDE: &str = "\
import warnings
warnings.simplefilter('error')
from wsgiref.validate import validator
";

/// A plain WSGI app: `/` describes the request as JSON, `/raise` raises, `/sleep` sleeps 0.1 s
/// (gevent's `time.sleep` once patched), `/slow` 5 s, `/forever` an hour (counting those that
/// ended), `/spin` never yields, `/file` sends its own source through `wsgi.file_wrapper`,
/// `/lines` and `/to-eof` read `wsgi.input` by lines and in small pieces, and `/stats` tells how
/// many were in flight at most.
const APP: &str = "
import json, sys, time

state = {'now': 0, 'max': 0, 'closed': 0, 'forever_ended': 0}

class Closing:
    # A response iterable that counts its close() calls, failing half-way when asked.
    def __init__(self, fail):
        self.fail = fail
    def __iter__(self):
        yield b'first '
        if self.fail:
            raise RuntimeError('the iterable failed half-way')
        yield b'second'
    def close(self):
        state['closed'] += 1

def describe(environ, start_response):
    path = environ['PATH_INFO']
    if path == '/raise':
        raise ValueError('the view failed on purpose')
    if path == '/exc_info':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        try:
            raise KeyError('late trouble')
        except KeyError:
            start_response('503 Service Unavailable', [('Content-Type', 'text/plain')],
                           sys.exc_info())
        return [b'replaced']
    if path in ('/iterable', '/iterable-fails'):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return Closing(path == '/iterable-fails')
    if path == '/sleep':
        state['now'] += 1
        state['max'] = max(state['max'], state['now'])
        try:
            time.sleep(0.1)
        finally:
            state['now'] -= 1
        body = b'slept'
    elif path == '/slow':
        time.sleep(5)
        body = b'late'
    elif path == '/forever':
        try:
            time.sleep(3600)
        finally:
            state['forever_ended'] += 1
        body = b'never'
    elif path == '/spin':
        while True:
            pass
    elif path == '/file':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return environ['wsgi.file_wrapper'](open(__file__, 'rb'), 1000)
    elif path == '/lines':
        stream = environ['wsgi.input']
        lines = [stream.readline()]
        lines += list(stream)
        body = json.dumps([line.decode() for line in lines]).encode()
    elif path == '/to-eof':
        pieces = []
        while True:
            piece = environ['wsgi.input'].read(7)
            if not piece:
                break
            pieces.append(piece)
        body = b''.join(pieces)
    elif path == '/stats':
        body = json.dumps(state).encode()
    else:
        length = int(environ.get('CONTENT_LENGTH') or 0)
        keys = ['REQUEST_METHOD', 'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING', 'SERVER_NAME',
                'SERVER_PORT', 'SERVER_PROTOCOL', 'REMOTE_ADDR', 'CONTENT_TYPE', 'HTTP_X_TEST',
                'wsgi.url_scheme', 'wsgi.multithread', 'wsgi.multiprocess', 'wsgi.run_once']
        doc = {k: environ.get(k) for k in keys}
        doc['wsgi.version'] = list(environ['wsgi.version'])
        # PEP 3333: native strings hold the bytes as latin-1; the app decodes them.
        doc['path_utf8'] = environ['PATH_INFO'].encode('latin-1').decode('utf-8', 'replace')
        doc['body'] = environ['wsgi.input'].read(length).decode()
        environ['wsgi.errors'].write('a line for the log\\n')
        body = json.dumps(doc).encode()
    write = start_response('200 OK', [('Content-Type', 'application/json'),
                                      ('X-App', 'plain')])
    write(b'')
    return [body]

application = validator(describe)
";

const FLASK_APP: &str = "
from flask import Flask, request

web = Flask(__name__)

@web.route('/hello/<name>')
def hello(name):
    return 'hello %s from flask, q=%s' % (name, request.args.get('q'))
";

/// A Python worker serving `module` (from `files` written to its own directory), one worker,
/// `gevent = 100` cores, plus `extra` INI lines.
fn start(name: &str, files: &[(&str, &str)], module: &str, extra: &str) -> (Instance, Scratch) {
    let (instance, dir) = spawn(name, files, module, extra);
    let mut instance = instance;
    instance.wait_ready();
    (instance, dir)
}

fn spawn(name: &str, files: &[(&str, &str)], module: &str, extra: &str) -> (Instance, Scratch) {
    let dir = Scratch::new(&format!("{name}-py"));
    for (file, text) in files {
        dir.write(file, text);
    }
    let path = dir.path().to_string_lossy().into_owned();
    let instance = Instance::spawn(
        name,
        &format!(
            "[uwsgi]\nhttp-socket = 127.0.0.1:0\nplugins = python3,gevent\nmodule = {module}\n\
             home = {}\npythonpath = {path}\ngevent = 100\n{extra}",
            venv()
        ),
        &[],
    );
    (instance, dir)
}

fn plain(name: &str, extra: &str) -> (Instance, Scratch) {
    start(
        name,
        &[("plainapp.py", &format!("{PRELUDE}{APP}"))],
        "plainapp",
        extra,
    )
}

fn http(instance: &Instance) -> Target {
    instance.target(Proto::Http)
}

#[test]
fn a_plain_wsgi_app_under_the_validator_gets_a_pep_3333_environ_and_answers() {
    let (server, _dir) = plain("py-plain", "");
    let response = http_request(
        &http(&server),
        b"POST /some/path?a=1 HTTP/1.1\r\nHost: example.test:8080\r\nX-Test: yes\r\n\
          Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(response.status, 200, "{}", server.logs());
    assert_eq!(response.header("x-app"), Some("plain"));
    let doc = json(&response.body);
    assert_eq!(doc["REQUEST_METHOD"], "POST");
    assert_eq!(doc["SCRIPT_NAME"], "");
    assert_eq!(doc["PATH_INFO"], "/some/path");
    assert_eq!(doc["QUERY_STRING"], "a=1");
    assert_eq!(doc["SERVER_NAME"], "example.test");
    assert_eq!(doc["SERVER_PORT"], "8080");
    assert_eq!(doc["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(doc["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(doc["CONTENT_TYPE"], "text/plain");
    assert_eq!(doc["HTTP_X_TEST"], "yes");
    assert_eq!(doc["wsgi.url_scheme"], "http");
    assert_eq!(doc["wsgi.version"], serde_json::json!([1, 0]));
    assert_eq!(doc["wsgi.multithread"], false);
    assert_eq!(doc["wsgi.multiprocess"], true);
    assert_eq!(doc["wsgi.run_once"], false);
    assert_eq!(doc["body"], "hello");
    let logs = server.logs();
    assert!(logs.contains("a line for the log"), "wsgi.errors: {logs}");
    assert!(!logs.contains("Traceback"), "{logs}");
}

#[test]
fn an_app_that_raises_answers_500_logs_the_traceback_counts_it_and_the_next_request_works() {
    let (mut server, _dir) = plain("py-raise", "stats = %dstats.sock\n");
    let failed = http_get(&http(&server), "/raise");
    assert_eq!(failed.status, 500);
    server.wait_for_log("ValueError: the view failed on purpose");
    let next = http_get(&http(&server), "/");
    assert_eq!(next.status, 200, "{}", server.logs());
    let logs = server.logs();
    assert!(logs.contains("Traceback (most recent call last)"), "{logs}");
    assert!(!logs.contains("worker exited"), "the worker lives on");
    assert_eq!(stats(&server)["workers"][0]["exceptions"], 1, "{logs}");
}

#[test]
fn twenty_sleeping_requests_overlap_on_one_worker_under_gevent() {
    let (server, _dir) = plain("py-overlap", "");
    let target = http(&server);
    let sleepers: Vec<_> = (0..20)
        .map(|_| {
            let target = target.clone();
            thread::spawn(move || http_get(&target, "/sleep"))
        })
        .collect();
    for sleeper in sleepers {
        let response = sleeper.join().expect("client thread");
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "slept");
    }
    let stats = json(&http_get(&target, "/stats").body);
    let most = stats["max"].as_u64().expect("max in flight");
    assert!(
        most >= 10,
        "at most {most} of 20 sleeping requests overlapped"
    );
}

#[test]
fn a_flask_app_answers_through_module_and_callable() {
    let (server, _dir) = start(
        "py-flask",
        &[("flaskapp.py", FLASK_APP)],
        "flaskapp:web",
        "",
    );
    let response = http_get(&http(&server), "/hello/you?q=1");
    assert_eq!(response.status, 200, "{}", server.logs());
    assert_eq!(response.text(), "hello you from flask, q=1");
    let missing = http_get(&http(&server), "/nothing");
    assert_eq!(missing.status, 404);
}

#[test]
fn an_app_that_fails_to_import_fails_the_worker_at_boot_with_its_traceback_and_exit_3() {
    let (mut server, _dir) = spawn(
        "py-import-error",
        &[("broken.py", "import no_such_module_here\n")],
        "broken",
        "",
    );
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(3), "{}", server.logs());
    let logs = server.logs();
    assert!(logs.contains("the Python app failed to load"), "{logs}");
    assert!(
        logs.contains("ModuleNotFoundError: No module named 'no_such_module_here'"),
        "{logs}"
    );
}

#[test]
fn term_drains_a_python_worker_its_request_in_flight_finishes_and_it_exits_0() {
    let (mut server, _dir) = plain("py-term", "");
    let target = http(&server);
    let sleeper = thread::spawn(move || http_get(&target, "/sleep"));
    server.wait_for_log("GET /sleep");
    server.signal(Signal::SIGTERM);
    let response = sleeper.join().expect("client thread");
    assert_eq!(response.status, 200);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.logs());
    server.wait_for_log("worker drained");
}

#[test]
fn max_requests_recycles_a_python_worker_and_its_successor_serves() {
    let (mut server, _dir) = plain("py-max-requests", "max-requests = 2\n");
    for _ in 0..2 {
        assert_eq!(http_get(&http(&server), "/").status, 200);
    }
    server.wait_for_log_count("worker ready", 2);
    assert_eq!(
        http_get(&http(&server), "/").status,
        200,
        "{}",
        server.logs()
    );
}

#[test]
fn hup_reloads_python_workers_and_the_new_one_serves() {
    let (mut server, _dir) = plain("py-hup", "");
    assert_eq!(http_get(&http(&server), "/").status, 200);
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("worker ready", 2);
    server.wait_for_log("worker drained");
    assert_eq!(
        http_get(&http(&server), "/").status,
        200,
        "{}",
        server.logs()
    );
}

#[test]
fn harakiri_answers_504_for_a_slow_python_view_and_the_worker_serves_on() {
    let (server, _dir) = plain("py-harakiri", "harakiri = 1\n");
    let late = http_get(&http(&server), "/slow");
    assert_eq!(late.status, 504, "{}", server.logs());
    assert_eq!(
        http_get(&http(&server), "/").status,
        200,
        "{}",
        server.logs()
    );
}

#[test]
fn start_response_with_exc_info_replaces_the_status_before_anything_is_sent() {
    let (server, _dir) = plain("py-exc-info", "");
    let response = http_get(&http(&server), "/exc_info");
    assert_eq!(response.status, 503, "{}", server.logs());
    assert_eq!(response.text(), "replaced");
}

#[test]
fn a_response_iterable_is_closed_whether_it_ends_or_raises() {
    let (mut server, _dir) = plain("py-close", "");
    let whole = http_get(&http(&server), "/iterable");
    assert_eq!(whole.status, 200, "{}", server.logs());
    assert_eq!(whole.text(), "first second");
    // Its head went out with the first piece: the failure can only cut the body short.
    let raw = b"GET /iterable-fails HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let failed = http(&server).connect().send(raw).try_read_response(false);
    assert!(failed.is_err(), "a complete answer: {failed:?}");
    server.wait_for_log("the app raised an exception while streaming its answer");
    // The app's failure, not the client's: no "client gone", no write error counted.
    server.wait_for_log("response cut short: its body failed");
    assert!(
        !server.logs().contains("client gone mid-response"),
        "{}",
        server.logs()
    );
    let stats = json(&http_get(&http(&server), "/stats").body);
    assert_eq!(stats["closed"], 2, "{}", server.logs());
}

#[test]
fn a_wsgi_file_is_loaded_and_its_app_callable_found() {
    let dir = Scratch::new("py-wsgi-file-app");
    let file = dir.write(
        "site/wsgi.py",
        "def app(environ, start_response):\n    \
         start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
         return [b'from a wsgi file']\n",
    );
    let server = Instance::start(
        "py-wsgi-file",
        &format!(
            "[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {}\nhome = {}\n",
            file.display(),
            venv()
        ),
        &[],
    );
    let response = http_get(&http(&server), "/");
    assert_eq!(response.status, 200, "{}", server.logs());
    assert_eq!(response.text(), "from a wsgi file");
}

#[test]
fn a_python_worker_exits_on_term_even_with_a_greenlet_left_behind_by_harakiri() {
    // The greenlet sleeps on after its 504; once the I/O thread has drained, nobody can take
    // its answer, so it must not hold the worker up (the mercy is longer than the test waits).
    let (mut server, _dir) = plain("py-orphan", "harakiri = 1\nworker-reload-mercy = 120\n");
    assert_eq!(http_get(&http(&server), "/forever").status, 504);
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.logs());
}

#[test]
fn a_uwsgi_request_from_nginx_gets_its_cgi_vars_in_the_environ() {
    let (server, _dir) = plain("py-uwsgi", "socket = 127.0.0.1:0\n");
    let mut vars = nginx_vars("POST", "/from/nginx?x=1", b"abc");
    vars.push(("HTTP_X_TEST".into(), "via-nginx".into()));
    vars.push(("CONTENT_TYPE".into(), "text/plain".into()));
    vars.retain(|(k, v)| k != "CONTENT_TYPE" || !v.is_empty());
    let response = uwsgi_request(&server.target(Proto::Uwsgi), &vars, b"abc");
    assert_eq!(response.status, 200, "{}", server.logs());
    let doc = json(&response.body);
    assert_eq!(doc["REQUEST_METHOD"], "POST");
    assert_eq!(doc["PATH_INFO"], "/from/nginx");
    assert_eq!(doc["QUERY_STRING"], "x=1");
    assert_eq!(doc["SERVER_NAME"], "localhost");
    assert_eq!(doc["SERVER_PORT"], "80");
    assert_eq!(doc["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(doc["CONTENT_TYPE"], "text/plain");
    assert_eq!(doc["HTTP_X_TEST"], "via-nginx");
    assert_eq!(doc["body"], "abc");
}

#[test]
fn harakiri_kills_the_greenlet_it_gave_up_on_and_the_views_cleanup_runs() {
    let (server, _dir) = plain("py-harakiri-kill", "harakiri = 1\n");
    let late = http_get(&http(&server), "/forever");
    assert_eq!(late.status, 504, "{}", server.logs());
    // The view sleeps an hour: only a kill ends it.
    eventually("the greenlet killed", &server, || {
        json(&http_get(&http(&server), "/stats").body)["forever_ended"] == 1
    });
}

#[test]
fn the_watchdog_aborts_a_python_worker_stuck_in_a_loop_logs_its_python_stack_and_respawns_it() {
    let (mut server, _dir) = plain("py-watchdog", "worker-watchdog = 2\n");
    let target = http(&server);
    let stuck = thread::spawn({
        let target = target.clone();
        move || {
            target.try_connect().and_then(|mut c| {
                c.send(b"GET /spin HTTP/1.1\r\nHost: t\r\n\r\n")
                    .try_read_response(false)
            })
        }
    });
    server.wait_for_log("blocked its event loop");
    // faulthandler's dump of the Python stack: the frame of the view that never yields.
    server.wait_for_log("plainapp.py\", line");
    server.wait_for_log("in describe");
    assert!(
        stuck.join().expect("client").is_err(),
        "the stuck request is cut"
    );
    server.wait_for_log_count("worker ready", 2);
    assert_eq!(http_get(&target, "/").status, 200, "{}", server.logs());
}

#[test]
fn the_environ_holds_the_path_as_latin1_text_as_pep_3333_asks() {
    let (server, _dir) = plain("py-latin1", "");
    let response = http_get(&http(&server), "/caf%C3%A9");
    assert_eq!(response.status, 200, "{}", server.logs());
    let doc = json(&response.body);
    assert_eq!(doc["PATH_INFO"], "/caf\u{c3}\u{a9}");
    assert_eq!(doc["path_utf8"], "/caf\u{e9}");
}

#[test]
fn wsgi_input_reads_by_lines_and_a_chunked_body_to_its_end() {
    let (server, _dir) = plain("py-input", "");
    let lines = http_request(
        &http(&server),
        b"POST /lines HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\na\nbb\nccc",
    );
    assert_eq!(lines.status, 200, "{}", server.logs());
    assert_eq!(json(&lines.body), serde_json::json!(["a\n", "bb\n", "ccc"]));
    let chunked = http_request(
        &http(&server),
        b"POST /to-eof HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.status, 200, "{}", server.logs());
    assert_eq!(chunked.text(), "hello world");
}

#[test]
fn wsgi_file_wrapper_sends_the_whole_file() {
    let (server, dir) = plain("py-file-wrapper", "");
    let response = http_get(&http(&server), "/file");
    assert_eq!(response.status, 200, "{}", server.logs());
    let source = std::fs::read(dir.path().join("plainapp.py")).expect("the app's source");
    assert_eq!(response.body, source);
}

#[test]
fn static_map_beside_a_python_app_serves_its_files_and_the_app_everything_else() {
    let files = Scratch::new("py-static-files");
    files.write("hello.txt", "from the disk\n");
    let (server, _dir) = plain(
        "py-static-map",
        &format!("static-map = /static={}\n", files.path().display()),
    );
    let file = http_get(&http(&server), "/static/hello.txt");
    assert_eq!(file.status, 200, "{}", server.logs());
    assert_eq!(file.text(), "from the disk\n");
    let app = http_get(&http(&server), "/elsewhere");
    assert_eq!(app.status, 200);
    assert_eq!(json(&app.body)["PATH_INFO"], "/elsewhere");
}
