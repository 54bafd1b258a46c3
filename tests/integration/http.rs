//! HTTP/1.1 on `http-socket`: the built-in apps answered over real TCP connections.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::client::{Proto, http_get, http_request};
use crate::harness::{Instance, Signal, Target, json};

fn echo_server(name: &str, extra: &str) -> Instance {
    Instance::start(
        name,
        &format!("[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = echo\n{extra}"),
        &[],
    )
}

fn http(instance: &Instance) -> Target {
    instance.target(Proto::Http)
}

#[test]
fn echo_describes_a_get_with_a_query() {
    let server = echo_server("echo-get", "");
    let response = http_get(&http(&server), "/some/path?a=1&b=two");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let doc = json(&response.body);
    assert_eq!(doc["method"], "GET");
    assert_eq!(doc["uri"], "/some/path?a=1&b=two");
    assert_eq!(doc["path"], "/some/path");
    assert_eq!(doc["query"], "a=1&b=two");
    assert_eq!(doc["protocol"], "HTTP/1.1");
    assert_eq!(doc["headers"]["host"], "test");
    assert_eq!(doc["vars"]["REQUEST_METHOD"], "GET");
    assert_eq!(doc["vars"]["PATH_INFO"], "/some/path");
    assert_eq!(doc["vars"]["QUERY_STRING"], "a=1&b=two");
    assert_eq!(doc["body_len"], 0);
    assert_eq!(doc["worker"], 1);
}

#[test]
fn echo_reads_bodies_framed_by_length_and_by_chunks() {
    let server = echo_server("echo-post", "");
    let target = &http(&server);
    let by_length = http_request(
        target,
        b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world",
    );
    assert_eq!(by_length.status, 200);
    let doc = json(&by_length.body);
    assert_eq!(
        (doc["body_len"].as_u64(), doc["body"].as_str()),
        (Some(11), Some("hello world"))
    );

    let chunked = http_request(
        target,
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
    );
    assert_eq!(chunked.status, 200);
    let doc = json(&chunked.body);
    assert_eq!(doc["body"], "hello world");
}

#[test]
fn pipelined_keep_alive_requests_are_answered_in_order_on_one_connection() {
    let server = echo_server("pipelined", "");
    let mut conn = http(&server).connect();
    conn.send(
        b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /second HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
          GET /third HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let paths: Vec<String> = (0..3)
        .map(|_| {
            let r = conn.read_response();
            assert_eq!(r.status, 200);
            assert_eq!(
                r.header("connection"),
                None,
                "keep-alive is the 1.1 default"
            );
            json(&r.body)["path"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(paths, ["/first", "/second", "/third"]);
    // Still open for a fourth.
    conn.send(b"GET /fourth HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let last = conn.read_response();
    assert_eq!(json(&last.body)["path"], "/fourth");
    assert_eq!(last.header("connection"), Some("close"));
    assert!(conn.is_closed_by_peer());
}

#[test]
fn http10_requests_are_answered_and_closed_unless_keep_alive_is_asked() {
    let server = echo_server("http10", "");
    let target = &http(&server);
    let mut conn = target.connect();
    conn.send(b"GET /old HTTP/1.0\r\n\r\n");
    let r = conn.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(json(&r.body)["protocol"], "HTTP/1.0");
    assert!(conn.is_closed_by_peer());

    let mut conn = target.connect();
    conn.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = conn.read_response();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    conn.send(b"GET /b HTTP/1.0\r\n\r\n");
    assert_eq!(json(&conn.read_response().body)["path"], "/b");
}

#[test]
fn hello_answers_hello_world_and_large_bodies_intact() {
    let server = Instance::start(
        "hello",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\n",
        &[],
    );
    let target = &http(&server);
    let r = http_get(target, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello World"));
    let big = http_get(target, "/?bytes=3000000");
    assert_eq!(big.header("content-length"), Some("3000000"));
    assert_eq!(big.body.len(), 3_000_000);
    assert!(big.body.iter().all(|&b| b == b'x'));
}

#[test]
fn head_gets_the_headers_of_get_and_no_body() {
    let server = Instance::start(
        "head",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\n",
        &[],
    );
    let mut conn = http(&server).connect();
    conn.send(b"HEAD /?bytes=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = conn.read_head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1000"));
    // The connection is in sync: the next answer starts right away.
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(conn.read_response().text(), "Hello World");
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let server = echo_server("continue", "");
    let mut conn = http(&server).connect();
    conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let interim = conn.read_response();
    assert_eq!(interim.status, 100);
    conn.send(b"data");
    let r = conn.read_response();
    assert_eq!(json(&r.body)["body"], "data");
}

#[test]
fn a_panicking_handler_costs_one_500_and_the_worker_keeps_serving() {
    let server = Instance::start(
        "panic",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nmount = /boom=panic\n",
        &[],
    );
    let target = &http(&server);
    let pid_before = server.pid();
    for _ in 0..3 {
        assert_eq!(http_get(target, "/boom/now").status, 500);
        assert_eq!(http_get(target, "/").text(), "Hello World");
    }
    assert_eq!(server.pid(), pid_before);
    let mut server = server;
    server.wait_for_log("handler panicked method=GET uri=/boom/now");
}

#[test]
fn mounts_route_by_prefix_and_strip_it_from_the_path() {
    let server = Instance::start(
        "mounts",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nmount = /api=echo\n",
        &[],
    );
    let target = &http(&server);
    let doc = json(&http_get(target, "/api/users?id=3").body);
    assert_eq!(doc["path"], "/users");
    assert_eq!(doc["uri"], "/api/users?id=3");
    assert_eq!(http_get(target, "/apix").text(), "Hello World");
}

#[test]
fn a_hundred_concurrent_sleeps_run_at_once_on_one_worker() {
    let server = Instance::start(
        "concurrent-sleep",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nasync = 100\nmodule = sleep\n",
        &[],
    );
    let target = &http(&server);
    let started = Instant::now();
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let target = target.clone();
            thread::spawn(move || http_get(&target, "/?ms=1000").status)
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    eprintln!("100 concurrent 1 s sleeps took {:?}", started.elapsed());
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
}

#[test]
fn harakiri_cancels_only_the_slow_request_with_a_504() {
    let server = Instance::start(
        "harakiri",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nmount = /sleep=sleep\nharakiri = 1\n",
        &[],
    );
    let target = &http(&server);
    let slow = {
        let target = target.clone();
        thread::spawn(move || http_get(&target, "/sleep?ms=30000"))
    };
    // Meanwhile the worker serves others.
    assert_eq!(http_get(target, "/").status, 200);
    let slow = slow.join().expect("slow client");
    assert_eq!(slow.status, 504);
    assert_eq!(http_get(target, "/").status, 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_socket_timeout() {
    let server = echo_server("idle-timeout", "socket-timeout = 1\n");
    let mut conn = http(&server).connect();
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(conn.read_response().status, 200);
    // No second request: the server hangs up by itself (the client's read deadline is far
    // longer than socket-timeout).
    assert!(conn.is_closed_by_peer());
}

#[test]
fn term_lets_the_request_in_flight_finish_then_the_worker_exits_0() {
    let mut server = Instance::start(
        "term-drain",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = sleep\n",
        &[],
    );
    let target = http(&server);
    let in_flight = thread::spawn(move || http_get(&target, "/?ms=1500"));
    thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGTERM);
    let response = in_flight.join().expect("client");
    assert_eq!(response.status, 200);
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", server.logs());
}

#[test]
fn a_client_that_disconnects_mid_response_is_logged_and_the_worker_goes_on() {
    let server = Instance::start(
        "disconnect",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\n",
        &[],
    );
    let target = &http(&server);
    {
        let mut conn = target.connect();
        conn.send(b"GET /?bytes=50000000 HTTP/1.1\r\nHost: t\r\n\r\n");
        // Read nothing and hang up.
    }
    let mut server = server;
    server.wait_for_log("client gone mid-response");
    assert_eq!(http_get(target, "/").status, 200);
    let _ = std::io::stderr().flush();
}
