//! Cores, connections and spawned tasks under pressure: slow clients (slowloris heads, drip-fed
//! bodies, idle keep-alive) do not hold the `async` cores, handlers that fan out have their own
//! task budget, a worker orphaned by `kill -9` of its master frees the port at once, and a big
//! head sent one byte at a time is still answered.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::client::{Addr, Conn, Proto, http_get, uwsgi_packet};
use crate::harness::{DEADLINE, Instance, Signal, Target, eventually, json, stats};

fn http(instance: &Instance) -> Target {
    instance.target(Proto::Http)
}

fn tcp_addr(target: &Target) -> SocketAddr {
    match &target.addr {
        Addr::Tcp(addr) => *addr,
        Addr::Unix(path) => panic!("expected a TCP listener, got {}", path.display()),
    }
}

fn busy_cores(instance: &Instance) -> usize {
    stats(instance)["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .flat_map(|w| w["cores"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["in_request"] == 1)
        .count()
}

/// Clients that each started a request head (or body) and then send one more byte every
/// `every` until stopped: the slowloris attack.
struct Drip {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<()>,
}

impl Drip {
    fn start(conns: Vec<TcpStream>, every: Duration) -> Drip {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut conns = conns;
            while !flag.load(Ordering::Relaxed) {
                thread::sleep(every);
                // A connection the server closed fails its write: it stops dripping.
                conns.retain_mut(|c| c.write_all(b"a").is_ok());
            }
        });
        Drip { stop, handle }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("drip thread");
    }
}

fn raw_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads what the server sends until it closes: the whole answer of a closing connection.
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading until the server closes: {e} (read so far: {out:?})"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_hundred_slowloris_connections_do_not_keep_normal_requests_from_their_200s() {
    let server = Instance::start(
        "slowloris",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nasync = 100\nmodule = hello\n",
        &[],
    );
    let target = http(&server);
    let addr = tcp_addr(&target);
    // 100 heads begun and never finished: one more header byte every second, well inside any
    // per-read timeout.
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut c = raw_connect(addr);
            c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .expect("start a head");
            c
        })
        .collect();
    let drip = Drip::start(slow, Duration::from_secs(1));
    // Accepted after the slow ones (the kernel queues connections in order): each must
    // still be answered within the client's deadline.
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(http_get(&target, "/").status, 200);
    }
    let mut keep_alive = target.connect();
    for _ in 0..3 {
        keep_alive.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(keep_alive.read_response().text(), "Hello World");
    }
    eprintln!(
        "13 requests beside 100 slowloris connections took {:?}",
        started.elapsed()
    );
    drip.stop();
}

#[test]
fn idle_keep_alive_connections_do_not_hold_cores() {
    let server = Instance::start(
        "idle-keep-alive",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nasync = 2\nmodule = hello\n",
        &[],
    );
    let target = http(&server);
    // Five keep-alive connections on a worker with two cores, each idle after its answer.
    let mut idle: Vec<Conn> = Vec::new();
    for _ in 0..5 {
        let mut conn = target.connect();
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(conn.read_response().status, 200);
        idle.push(conn);
    }
    assert_eq!(http_get(&target, "/").status, 200);
    // And every idle one can still bring its next request.
    for conn in &mut idle {
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(conn.read_response().status, 200);
    }
}

#[test]
fn worker_connections_bounds_the_connections_a_worker_takes() {
    let server = Instance::start(
        "worker-connections",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nworker-connections = 1\nmodule = hello\n",
        &[],
    );
    let target = http(&server);
    let mut first = target.connect();
    first.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(first.read_response().status, 200);
    // The only connection slot is taken by the idle first connection: the second client
    // waits in the kernel's backlog, unanswered, until the first one goes.
    let mut second = raw_connect(tcp_addr(&target));
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send");
    second
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let early = second.peek(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "answered while the connection budget was full: {early:?}"
    );
    drop(first);
    second.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let answer = read_until_closed(&mut second);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[test]
fn a_request_head_that_trickles_in_gets_408_after_http_header_timeout() {
    let server = Instance::start(
        "header-timeout",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nhttp-header-timeout = 2\n",
        &[],
    );
    let mut conn = raw_connect(tcp_addr(&http(&server)));
    conn.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .expect("start a head");
    let drip = Drip::start(
        vec![conn.try_clone().expect("clone")],
        Duration::from_millis(300),
    );
    let answer = read_until_closed(&mut conn);
    drip.stop();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}

#[test]
fn a_drip_fed_body_gets_408_and_a_close() {
    let server = Instance::start(
        "drip-body",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = echo\nsocket-timeout = 2\n",
        &[],
    );
    let mut conn = raw_connect(tcp_addr(&http(&server)));
    conn.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nstart")
        .expect("send the head");
    // One byte every 300 ms never trips the per-read socket-timeout of 2 s.
    let drip = Drip::start(
        vec![conn.try_clone().expect("clone")],
        Duration::from_millis(300),
    );
    let answer = read_until_closed(&mut conn);
    drip.stop();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}

#[test]
fn a_body_that_stalls_past_socket_timeout_gets_408_not_400() {
    let server = Instance::start(
        "stalled-body",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = echo\nsocket-timeout = 1\n",
        &[],
    );
    let mut conn = raw_connect(tcp_addr(&http(&server)));
    conn.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhalf")
        .expect("send half a request");
    let answer = read_until_closed(&mut conn);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}

#[test]
fn a_uwsgi_packet_that_trickles_in_is_closed_after_http_header_timeout() {
    let server = Instance::start(
        "uwsgi-packet-timeout",
        "[rcontainer]\nsocket = 127.0.0.1:0\nmodule = hello\nhttp-header-timeout = 2\n",
        &[],
    );
    let packet = uwsgi_packet(&[("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")], b"");
    let mut conn = raw_connect(tcp_addr(&server.target(Proto::Uwsgi)));
    // The header announces the whole vars block; only the first part of it comes.
    conn.write_all(&packet[..8]).expect("start a packet");
    let drip = Drip::start(
        vec![conn.try_clone().expect("clone")],
        Duration::from_millis(300),
    );
    let answer = read_until_closed(&mut conn);
    drip.stop();
    assert_eq!(answer, "", "closed without an answer");
}

#[test]
fn seventy_requests_that_each_spawn_three_tasks_all_get_200_and_none_is_reset() {
    let server = Instance::start(
        "fan-out",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nasync = 100\nmodule = sleep\n",
        &[],
    );
    let target = http(&server);
    let barrier = Arc::new(Barrier::new(70));
    let clients: Vec<_> = (0..70)
        .map(|_| {
            let target = target.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let raw = b"GET /?ms=2000&spawn=3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
                target
                    .try_connect()
                    .and_then(|mut c| c.send(raw).try_read_response(false))
                    .map(|r| (r.status, r.text()))
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let outcomes: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok((200, _))))
        .collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
}

#[test]
fn an_exhausted_spawn_budget_is_a_clear_error_the_handler_sees() {
    let server = Instance::start(
        "spawn-limit",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = sleep\nspawn-limit = 5\n",
        &[],
    );
    let target = http(&server);
    assert_eq!(http_get(&target, "/?ms=10&spawn=5").status, 200);
    let refused = http_get(&target, "/?ms=10&spawn=6");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.text().contains("spawn-limit"), "{}", refused.text());
    // The budget is given back: the same fan-out works again.
    assert_eq!(http_get(&target, "/?ms=10&spawn=5").status, 200);
}

#[test]
fn kill_9_of_the_master_frees_the_port_at_once_and_the_request_in_flight_completes() {
    let mut server = Instance::start(
        "orphan",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nmodule = sleep\nstats = %dstats.sock\n",
        &[],
    );
    let addr = tcp_addr(&http(&server));
    let mut in_flight = raw_connect(addr);
    in_flight
        .write_all(b"GET /?ms=4000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send");
    eventually("the slow request in flight", &server, || {
        busy_cores(&server) == 1
    });
    server.signal(Signal::SIGKILL);
    server.wait_exit();
    // The orphaned workers close their listeners: new clients are refused, not left hanging.
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, DEADLINE).is_ok() {
        assert!(
            start.elapsed() < DEADLINE,
            "the port still accepts after the master died\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // ... before the request in flight is answered, not after.
    in_flight.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let early = in_flight.peek(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "the port was freed only once the request in flight ended: {early:?}"
    );
    in_flight.set_nonblocking(false).expect("blocking");
    // A new instance binds the same port while the orphan finishes.
    let restarted = Instance::start(
        "orphan-restart",
        &format!("[rcontainer]\nhttp-socket = {addr}\nmodule = hello\n"),
        &[],
    );
    assert_eq!(http_get(&http(&restarted), "/").status, 200);
    let answer = read_until_closed(&mut in_flight);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.ends_with("slept 4000 ms\n"), "{answer:?}");
}

#[test]
fn a_60_kb_head_sent_one_byte_at_a_time_is_answered() {
    let server = Instance::start(
        "byte-at-a-time",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = echo\nhttp-header-timeout = 300\n",
        &[],
    );
    let mut head = String::from("GET /big?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for i in 0..60 {
        head.push_str(&format!("X-Fill-{i:02}: {}\r\n", "v".repeat(990)));
    }
    head.push_str("\r\n");
    assert!(head.len() > 60_000 && head.len() < 65_535, "{}", head.len());
    let mut conn = raw_connect(tcp_addr(&http(&server)));
    for byte in head.as_bytes() {
        conn.write_all(std::slice::from_ref(byte))
            .expect("send one byte");
    }
    let answer = read_until_closed(&mut conn);
    let (status_line, rest) = answer.split_once("\r\n").expect("a status line");
    assert_eq!(status_line, "HTTP/1.1 200 OK");
    let body = rest.split_once("\r\n\r\n").expect("a body").1;
    let doc = json(body.as_bytes());
    assert_eq!(doc["uri"], "/big?x=1");
    assert_eq!(
        doc["headers"]["x-fill-59"].as_str().map(str::len),
        Some(990),
        "{doc}"
    );
}
