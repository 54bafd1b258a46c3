//! Behind a real nginx (Debian's package) with `uwsgi_pass` and the stock `uwsgi_params`.

use std::thread;

use crate::harness::client::{Proto, http_get, http_request};
use crate::harness::nginx::Nginx;
use crate::harness::{Instance, Target, json};

fn behind_nginx(name: &str, extra_ini: &str) -> (Instance, Nginx) {
    let server = Instance::start(
        name,
        &format!(
            "[rcontainer]\nsocket = 127.0.0.1:0\nmodule = echo\nmount = /hello=hello\n\
             mount = /sleep=sleep\n{extra_ini}"
        ),
        &[],
    );
    let upstream = server.target(Proto::Uwsgi);
    let nginx = Nginx::uwsgi_proxy(&server.scratch, &upstream, "");
    (server, nginx)
}

fn post(target: &Target, path: &str, body: &[u8]) -> serde_json::Value {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let response = http_request(target, &raw);
    assert_eq!(response.status, 200, "{}", response.text());
    json(&response.body)
}

#[test]
fn requests_and_responses_of_every_shape_cross_nginx_intact() {
    let (_server, nginx) = behind_nginx("nginx-shapes", "");
    let front = &nginx.target;

    let doc = json(&http_get(front, "/api/items?id=7").body);
    assert_eq!(
        (doc["path"].as_str(), doc["query"].as_str()),
        (Some("/api/items"), Some("id=7"))
    );
    assert_eq!(doc["vars"]["REQUEST_SCHEME"], "http");

    let mib: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let doc = post(front, "/upload", &mib);
    assert_eq!(doc["body_len"], 1 << 20);

    let mut chunked = b"POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\
                        Connection: close\r\n\r\n"
        .to_vec();
    for _ in 0..100 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'c'; 0x400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let response = http_request(front, &chunked);
    assert_eq!(response.status, 200);
    assert_eq!(json(&response.body)["body_len"], 100 * 1024);

    let cookie = "k".repeat(32 * 1024);
    let raw = format!(
        "GET /cookie HTTP/1.1\r\nHost: test\r\nCookie: c={cookie}\r\nConnection: close\r\n\r\n"
    );
    let doc = json(&http_request(front, raw.as_bytes()).body);
    assert_eq!(
        doc["headers"]["cookie"].as_str().map(str::len),
        Some(32 * 1024 + 2)
    );

    let mut conn = front.connect();
    conn.send(b"HEAD /hello HTTP/1.1\r\nHost: test\r\n\r\n");
    let head = conn.read_head_response();
    assert_eq!(head.status, 200);
    conn.send(b"GET /hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    assert_eq!(conn.read_response().text(), "Hello World");

    let big = http_get(front, "/hello?bytes=10485760");
    assert_eq!(big.status, 200);
    assert_eq!(big.body.len(), 10 << 20);
    assert!(big.body.iter().all(|&b| b == b'x'));

    let log = nginx.error_log();
    assert!(!log.contains("upstream prematurely closed"), "{log}");
    assert!(!log.contains("reset by peer"), "{log}");
}

#[test]
fn two_hundred_concurrent_sleeps_through_nginx_all_succeed_on_one_worker() {
    let (_server, nginx) = behind_nginx("nginx-concurrent", "processes = 1\nasync = 200\n");
    let front = nginx.target.clone();
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let front = front.clone();
            thread::spawn(move || http_get(&front, "/sleep?ms=500").status)
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let failures = statuses.iter().filter(|&&s| s != 200).count();
    assert_eq!(failures, 0, "statuses: {statuses:?}\n{}", nginx.error_log());
    let log = nginx.error_log();
    assert!(!log.contains("[error]"), "nginx logged errors:\n{log}");
}

#[test]
fn nginx_reaches_rcontainer_over_a_unix_socket() {
    let server = Instance::start(
        "nginx-unix",
        "[rcontainer]\nsocket = %dapp.sock\nchmod-socket = 666\nmodule = echo\n",
        &[],
    );
    let upstream = server.target(Proto::Uwsgi);
    let nginx = Nginx::uwsgi_proxy(&server.scratch, &upstream, "");
    let doc = json(&http_get(&nginx.target, "/over/unix?x=1").body);
    assert_eq!(doc["path"], "/over/unix");
    assert_eq!(doc["query"], "x=1");
    assert_eq!(doc["vars"]["SERVER_PROTOCOL"], "HTTP/1.1");
}
