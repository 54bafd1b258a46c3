//! The uwsgi protocol on `socket`: raw packets as nginx builds them, over TCP and unix sockets.

use crate::harness::client::{Proto, nginx_vars, uwsgi_packet, uwsgi_request};
use crate::harness::{Instance, Target, json};

fn uwsgi(instance: &Instance) -> Target {
    instance.target(Proto::Uwsgi)
}

#[test]
fn an_nginx_packet_with_empty_content_vars_gets_a_raw_http_200() {
    let server = Instance::start(
        "uwsgi-tcp",
        "[rcontainer]\nsocket = 127.0.0.1:0\nmodule = echo\n",
        &[],
    );
    let vars = nginx_vars("GET", "/hello/world?x=1", b"");
    let response = uwsgi_request(&uwsgi(&server), &vars, b"");
    assert_eq!(response.version, "HTTP/1.1");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("transfer-encoding"),
        None,
        "never chunked on uwsgi"
    );
    let doc = json(&response.body);
    assert_eq!(doc["method"], "GET");
    assert_eq!(doc["path"], "/hello/world");
    assert_eq!(doc["query"], "x=1");
    assert_eq!(doc["vars"]["CONTENT_LENGTH"], "");
    assert_eq!(doc["headers"]["host"], "localhost");
    assert_eq!(doc["body_len"], 0);
}

#[test]
fn a_body_follows_the_vars_and_is_read_by_content_length() {
    let server = Instance::start(
        "uwsgi-body",
        "[rcontainer]\nsocket = 127.0.0.1:0\nmodule = echo\n",
        &[],
    );
    let body = b"name=rcontainer&kind=container";
    let vars = nginx_vars("POST", "/form", body);
    let doc = json(&uwsgi_request(&uwsgi(&server), &vars, body).body);
    assert_eq!(doc["body"], "name=rcontainer&kind=container");
    assert_eq!(doc["body_len"], body.len());
}

#[test]
fn a_unix_socket_serves_the_same_protocol() {
    let server = Instance::start(
        "uwsgi-unix",
        "[rcontainer]\nsocket = %dapp.sock\nchmod-socket = 660\nmodule = echo\nvacuum = true\n",
        &[],
    );
    let target = &uwsgi(&server);
    let crate::harness::client::Addr::Unix(path) = &target.addr else {
        panic!("unix socket expected, got {target}");
    };
    assert!(path.ends_with("app.sock"));
    let vars = nginx_vars("GET", "/over/unix", b"");
    let doc = json(&uwsgi_request(target, &vars, b"").body);
    assert_eq!(doc["path"], "/over/unix");
}

#[test]
fn a_ping_gets_a_pong() {
    let server = Instance::start(
        "uwsgi-ping",
        "[rcontainer]\nsocket = 127.0.0.1:0\nmodule = hello\n",
        &[],
    );
    let mut conn = uwsgi(&server).connect();
    conn.send(&[100, 0, 0, 0]);
    assert_eq!(conn.read_to_end(), [100, 0, 0, 1]);
}

#[test]
fn http_sent_to_a_uwsgi_socket_is_refused_with_400_and_logged() {
    let mut server = Instance::start(
        "uwsgi-http",
        "[rcontainer]\nsocket = 127.0.0.1:0\nmodule = hello\n",
        &[],
    );
    let mut conn = uwsgi(&server).connect();
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = conn.read_response();
    assert_eq!(response.status, 400);
    server.wait_for_log("HTTP request on a uwsgi socket");
}

#[test]
fn a_vars_block_over_buffer_size_gets_431_naming_the_option_in_the_log() {
    let mut server = Instance::start(
        "uwsgi-431",
        "[rcontainer]\nsocket = 127.0.0.1:0\nbuffer-size = 4096\nmodule = hello\n",
        &[],
    );
    let mut vars = nginx_vars("GET", "/", b"");
    vars.push(("HTTP_COOKIE".into(), "c".repeat(8000)));
    let response = uwsgi_request(&uwsgi(&server), &vars, b"");
    assert_eq!(response.status, 431);
    server.wait_for_log("raise buffer-size");
    // The worker still serves.
    let ok = uwsgi_request(&uwsgi(&server), &nginx_vars("GET", "/", b""), b"");
    assert_eq!(ok.status, 200);
}

#[test]
fn an_unread_body_is_drained_so_the_answer_arrives() {
    // hello never reads the body; the worker drains it before answering and closing.
    let server = Instance::start(
        "uwsgi-drain",
        "[rcontainer]\nsocket = 127.0.0.1:0\nmodule = hello\n",
        &[],
    );
    let body = vec![b'z'; 3 << 20];
    let vars = nginx_vars("POST", "/", &body);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let packet = uwsgi_packet(&vars, &body);
    let target = &uwsgi(&server);
    let mut conn = target.connect();
    let writer = {
        let mut conn2 = conn.try_clone();
        std::thread::spawn(move || conn2.send(&packet).shutdown_write())
    };
    let response = conn.read_response();
    writer.join().expect("writer thread");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "Hello World")
    );
}

#[test]
fn a_peer_outside_uwsgi_allow_from_is_refused() {
    let mut server = Instance::start(
        "uwsgi-allow",
        "[rcontainer]\nsocket = 127.0.0.1:0\nuwsgi-allow-from = 10.1.2.3\nmodule = hello\n",
        &[],
    );
    let mut conn = uwsgi(&server).connect();
    conn.send(&uwsgi_packet(&[("REQUEST_METHOD", "GET")], b""));
    assert!(conn.is_closed_by_peer());
    server.wait_for_log("not in uwsgi-allow-from");
}

#[test]
fn chown_socket_gives_the_unix_socket_its_owner() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let server = Instance::start(
        "uwsgi-chown",
        "[rcontainer]\nsocket = %dapp.sock\nchown-socket = nobody:nogroup\nchmod-socket = 600\n\
         module = hello\n",
        &[],
    );
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(server.scratch.path().join("app.sock")).expect("socket file");
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
}
