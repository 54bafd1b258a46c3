//! Request conformance on both protocols: what a request's bytes route to (`%ff` paths under
//! mounts and static maps), request-target forms (CONNECT, absolute-form, fragments), chunk
//! sizes, a chunked body over `limit-post`, repeated `Content-Type`, and static directories
//! holding what is not a file.

use std::fs;
use std::path::Path;

use crate::harness::client::{Proto, Response, http_get, http_request, uwsgi_packet_raw};
use crate::harness::{Instance, Scratch, Target, json};

fn http(instance: &Instance) -> Target {
    instance.target(Proto::Http)
}

fn uwsgi(instance: &Instance) -> Target {
    instance.target(Proto::Uwsgi)
}

/// A GET over uwsgi with `path` as PATH_INFO (raw bytes) and `uri` as REQUEST_URI.
fn uwsgi_get(target: &Target, uri: &str, path: &[u8]) -> Response {
    let packet = uwsgi_packet_raw(
        &[
            (b"QUERY_STRING", b""),
            (b"REQUEST_METHOD", b"GET"),
            (b"CONTENT_TYPE", b""),
            (b"CONTENT_LENGTH", b""),
            (b"REQUEST_URI", uri.as_bytes()),
            (b"PATH_INFO", path),
            (b"SERVER_PROTOCOL", b"HTTP/1.1"),
            (b"REMOTE_ADDR", b"127.0.0.1"),
            (b"REMOTE_PORT", b"40000"),
            (b"SERVER_NAME", b"localhost"),
            (b"HTTP_HOST", b"localhost"),
        ],
        b"",
    );
    target.connect().send(&packet).read_response()
}

fn is_echo(response: &Response) -> bool {
    response.status == 200 && response.header("content-type") == Some("application/json")
}

fn is_hello(response: &Response) -> bool {
    response.status == 200 && response.text() == "Hello World"
}

fn static_dir(scratch: &Scratch) -> &Path {
    let dir = scratch.path();
    fs::write(dir.join("ok.txt"), "plain file").expect("write ok.txt");
    dir
}

// ----- static directories serve regular files only -------------------------------------------

#[test]
fn a_fifo_in_a_static_dir_is_a_404_and_never_blocks_the_offload_threads() {
    let www = Scratch::new("static-fifo-www");
    let dir = static_dir(&www);
    nix::unistd::mkfifo(
        &dir.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    let server = Instance::start(
        "static-fifo",
        &format!(
            "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\noffload-threads = 2\n\
             static-map = /s={}\n",
            dir.display()
        ),
        &[],
    );
    // More refusals than offload threads: an open() blocking on the FIFO would take them all.
    for round in 0..4 {
        assert_eq!(
            http_get(&http(&server), "/s/pipe").status,
            404,
            "round {round}"
        );
        let file = http_get(&http(&server), "/s/ok.txt");
        assert_eq!(
            (file.status, file.text().as_str()),
            (200, "plain file"),
            "round {round}"
        );
    }
}

// ----- routing on the decoded bytes, the same on both protocols --------------------------------

#[test]
fn a_percent_ff_path_under_a_mount_reaches_the_mount_on_both_protocols() {
    let server = Instance::start(
        "route-ff-mount",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nsocket = 127.0.0.1:0\nmodule = hello\n\
         mount = /api=echo\n",
        &[],
    );
    let over_http = http_get(&http(&server), "/api/%ff");
    assert!(is_echo(&over_http), "http /api/%ff: {over_http:?}");
    let over_uwsgi = uwsgi_get(&uwsgi(&server), "/api/%ff", b"/api/\xff");
    assert!(is_echo(&over_uwsgi), "uwsgi /api/\\xff: {over_uwsgi:?}");
    assert_eq!(
        json(&over_uwsgi.body)["path"],
        json(&over_http.body)["path"]
    );
    // A byte that breaks the prefix is not under the mount, on either protocol.
    let over_http = http_get(&http(&server), "/api%ff");
    assert!(is_hello(&over_http), "http /api%ff: {over_http:?}");
    let over_uwsgi = uwsgi_get(&uwsgi(&server), "/api%ff", b"/api\xff");
    assert!(is_hello(&over_uwsgi), "uwsgi /api\\xff: {over_uwsgi:?}");
}

#[test]
fn a_percent_ff_path_under_a_static_map_is_a_404_on_both_protocols() {
    let www = Scratch::new("route-ff-static-www");
    let dir = static_dir(&www);
    // The name a lossy conversion of `\xff` would give: it must not be served for `%ff`.
    fs::write(dir.join("\u{FFFD}"), "replacement").expect("write file");
    let server = Instance::start(
        "route-ff-static",
        &format!(
            "[rcontainer]\nhttp-socket = 127.0.0.1:0\nsocket = 127.0.0.1:0\nmodule = hello\n\
             static-map = /s={}\n",
            dir.display()
        ),
        &[],
    );
    assert_eq!(http_get(&http(&server), "/s/%ff").status, 404);
    assert_eq!(uwsgi_get(&uwsgi(&server), "/s/%ff", b"/s/\xff").status, 404);
    // A real UTF-8 name is still served, and plain files too.
    let named = http_get(&http(&server), "/s/%EF%BF%BD");
    assert_eq!((named.status, named.text().as_str()), (200, "replacement"));
    assert_eq!(
        uwsgi_get(&uwsgi(&server), "/s/ok.txt", b"/s/ok.txt").status,
        200
    );
}

// ----- request targets, chunk sizes, repeated Content-Type -------------------------------------

fn echo_server(name: &str) -> Instance {
    Instance::start(
        name,
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nsocket = 127.0.0.1:0\nmodule = echo\n",
        &[],
    )
}

#[test]
fn connect_is_answered_501_and_the_connection_closed() {
    let server = echo_server("connect-501");
    let mut conn = http(&server).connect();
    conn.send(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n");
    let response = conn.read_response();
    assert_eq!(response.status, 501);
    assert!(conn.is_closed_by_peer(), "closed after refusing CONNECT");
    let packet = uwsgi_packet_raw(
        &[
            (b"REQUEST_METHOD", b"CONNECT"),
            (b"REQUEST_URI", b"a.test:443"),
        ],
        b"",
    );
    let over_uwsgi = uwsgi(&server).connect().send(&packet).read_response();
    assert_eq!(over_uwsgi.status, 501);
}

#[test]
fn an_absolute_form_target_wins_over_the_host_header() {
    let server = echo_server("absolute-form-host");
    let response = http_request(
        &http(&server),
        b"GET http://target.test:8080/p/q?x=1 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let doc = json(&response.body);
    assert_eq!(doc["vars"]["SERVER_NAME"], "target.test");
    assert_eq!(doc["vars"]["HTTP_HOST"], "target.test:8080");
    assert_eq!(doc["headers"]["host"], "target.test:8080");
    assert_eq!(doc["vars"]["PATH_INFO"], "/p/q");
    assert_eq!(doc["vars"]["QUERY_STRING"], "x=1");
}

#[test]
fn fragments_and_invalid_absolute_uris_get_400() {
    let server = echo_server("target-400");
    for raw in [
        &b"GET /p#frag HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
        b"GET /p?x=1#frag HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"PUT s://]ufd/: HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        b"GET http://user@a.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        b"GET http:///p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET http://a.test:8x/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    ] {
        let response = http_request(&http(&server), raw);
        assert_eq!(response.status, 400, "{}", String::from_utf8_lossy(raw));
    }
    assert_eq!(http_get(&http(&server), "/still/serving").status, 200);
}

#[test]
fn chunk_sizes_with_trailing_whitespace_get_400() {
    let server = echo_server("chunk-size-ws");
    for body in [
        &b"0 \r\n\r\n"[..],
        b"5\t\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
    ] {
        let mut raw =
            b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(body);
        let response = http_request(&http(&server), &raw);
        assert_eq!(response.status, 400, "{}", String::from_utf8_lossy(body));
    }
    // Whitespace before an extension is still fine (RFC 9112 §7.1.1 BWS).
    let ok = http_request(
        &http(&server),
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5 ;ext=1\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(
        (ok.status, json(&ok.body)["body"].as_str()),
        (200, Some("hello"))
    );
}

#[test]
fn a_repeated_content_type_gets_400_on_both_protocols() {
    let server = echo_server("content-type-twice");
    let response = http_request(
        &http(&server),
        b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Type: application/json\r\n\
          Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(response.status, 400);
    let packet = uwsgi_packet_raw(
        &[
            (b"REQUEST_METHOD", b"POST"),
            (b"PATH_INFO", b"/f"),
            (b"CONTENT_TYPE", b"text/plain"),
            (b"CONTENT_LENGTH", b""),
            (b"HTTP_CONTENT_TYPE", b"text/plain"),
            (b"HTTP_CONTENT_TYPE", b"application/json"),
        ],
        b"",
    );
    assert_eq!(
        uwsgi(&server)
            .connect()
            .send(&packet)
            .read_response()
            .status,
        400
    );
    // One Content-Type is fine on both.
    let one = http_request(
        &http(&server),
        b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
          Connection: close\r\n\r\nhi",
    );
    assert_eq!(json(&one.body)["vars"]["CONTENT_TYPE"], "text/plain");
}

#[test]
fn a_chunked_body_over_limit_post_answers_413_instead_of_the_app_and_is_logged() {
    // hello never reads the body: the worker's drain finds it too large, and that, not the
    // app's 200, answers (the request log records the 413 too).
    let mut server = Instance::start(
        "chunked-over-limit",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nlimit-post = 10\nmodule = hello\n",
        &[],
    );
    let mut conn = http(&server).connect();
    conn.send(
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          14\r\n01234567890123456789\r\n0\r\n\r\n",
    );
    let response = conn.read_response();
    assert_eq!(response.status, 413);
    assert!(
        conn.is_closed_by_peer(),
        "the stream is out of sync: closed"
    );
    server.wait_for_log("status=413 reason=body larger than limit-post");
    server.wait_for_log("POST /up => generated");
    assert!(
        server.logs().contains("(HTTP/1.1 413)"),
        "{}",
        server.logs()
    );
}
