//! Client tests against tiny std-thread HTTP servers, both inside a coroutine runtime and
//! outside one (plain blocking calls).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::coro::{Runtime, RuntimeConfig};

/// A server answering each request with `answer(request_line)`; counts connections. With
/// `close_after_one`, it closes every connection after its first response without saying so.
struct Upstream {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Upstream {
    fn start(close_after_one: bool, answer: fn(&str) -> Vec<u8>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || serve(stream, close_after_one, answer));
            }
        });
        Upstream { port, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn serve(stream: TcpStream, close_after_one: bool, answer: fn(&str) -> Vec<u8>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header == "\r\n" {
                break;
            }
            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        if writer.write_all(&answer(line.trim_end())).is_err() || close_after_one {
            return;
        }
    }
}

fn ok_with_path(line: &str) -> Vec<u8> {
    let path = line.split(' ').nth(1).unwrap_or("");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
        path.len()
    )
    .into_bytes()
}

fn chunked(_: &str) -> Vec<u8> {
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Up: yes\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec()
}

fn in_runtime<T: 'static>(f: impl FnOnce() -> T + 'static) -> T {
    let mut rt = Runtime::new(RuntimeConfig {
        stack_size: 128 * 1024,
        max_coroutines: 16,
        max_tasks: 16,
        offload_threads: 1,
    })
    .unwrap();
    rt.block_on(f).unwrap()
}

#[test]
fn a_get_outside_a_coroutine_reads_a_length_framed_body() {
    let upstream = Upstream::start(false, ok_with_path);
    let response = get(&upstream.url("/a?b=1")).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text(), "/a?b=1");
    assert_eq!(response.header("content-length"), Some("6"));
}

#[test]
fn a_get_inside_a_coroutine_reads_a_chunked_body() {
    let upstream = Upstream::start(false, chunked);
    let url = upstream.url("/");
    let response = in_runtime(move || get(&url).unwrap());
    assert_eq!(response.status(), 201);
    assert_eq!(response.body(), b"hello world");
    assert_eq!(response.header("x-up"), Some("yes"));
}

#[test]
fn keep_alive_reuses_one_connection_for_sequential_requests() {
    let upstream = Upstream::start(false, ok_with_path);
    let url = upstream.url("/k");
    let bodies = in_runtime(move || {
        let client = Client::new();
        (0..3)
            .map(|_| client.get(&url).send().unwrap().text())
            .collect::<Vec<_>>()
    });
    assert_eq!(bodies, ["/k", "/k", "/k"]);
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_replaced() {
    let upstream = Upstream::start(true, ok_with_path);
    let url = upstream.url("/s");
    for _ in 0..3 {
        // The upstream closes silently after each response; the pool notices (or the retry
        // does) and every request still succeeds.
        assert_eq!(get(&url).unwrap().text(), "/s");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 3);
    assert_eq!(pool::idle_count("127.0.0.1", upstream.port), 1);
}

#[test]
fn a_silent_upstream_hits_the_time_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let started = Instant::now();
    let err = in_runtime(move || {
        Client::new()
            .timeout(Duration::from_millis(200))
            .get(&url)
            .send()
            .unwrap_err()
    });
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(listener);
}

#[test]
fn a_closed_port_is_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = get(&format!("http://127.0.0.1:{port}/")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[test]
fn https_is_refused_saying_there_is_no_tls() {
    let err = get("https://example.com/").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedScheme);
    assert!(err.to_string().contains("no TLS"), "{err}");
}

fn redirect(line: &str) -> Vec<u8> {
    if line.contains("/old") {
        b"HTTP/1.1 302 Found\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n".to_vec()
    } else {
        ok_with_path(line)
    }
}

#[test]
fn redirects_are_returned_unless_the_client_follows_them() {
    let upstream = Upstream::start(false, redirect);
    let response = get(&upstream.url("/old")).unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.header("location"), Some("/new"));
    let followed = Client::new()
        .redirects(2)
        .get(&upstream.url("/old"))
        .send()
        .unwrap();
    assert_eq!((followed.status(), followed.text().as_str()), (200, "/new"));
}

fn echo_post(_: &str) -> Vec<u8> {
    b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
}

#[test]
fn posts_send_their_form_body_and_no_body_comes_back_on_204() {
    let upstream = Upstream::start(false, echo_post);
    let response = Client::new()
        .post(&upstream.url("/f"))
        .form(&[("a", "1 2"), ("b", "&")])
        .send()
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.body().is_empty());
    assert_eq!(encode_form(&[("a", "1 2"), ("b", "&")]), "a=1+2&b=%26");
}

fn slow_300ms(line: &str) -> Vec<u8> {
    thread::sleep(Duration::from_millis(300));
    ok_with_path(line)
}

#[test]
fn three_upstream_calls_fanned_out_with_spawn_and_join_all_overlap() {
    let upstream = Upstream::start(false, slow_300ms);
    let urls: Vec<String> = (1..=3)
        .map(|n| upstream.url(&format!("/part{n}")))
        .collect();
    let started = Instant::now();
    let bodies = in_runtime(move || {
        let calls: Vec<_> = urls
            .into_iter()
            .map(|url| coro::spawn(move || get(&url).map(|r| r.text())))
            .collect();
        coro::join_all(calls)
    });
    let elapsed = started.elapsed();
    eprintln!(
        "three 300 ms upstream calls with spawn + join_all took {elapsed:?} (sequential: ~900 ms)"
    );
    let bodies: Vec<String> = bodies
        .into_iter()
        .map(|r| r.expect("joined").expect("fetched"))
        .collect();
    assert_eq!(bodies, ["/part1", "/part2", "/part3"]);
}

fn interim_then_close_delimited(_: &str) -> Vec<u8> {
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"
        .to_vec()
}

#[test]
fn interim_responses_are_skipped_and_a_close_delimited_body_is_read_to_the_end() {
    let upstream = Upstream::start(true, interim_then_close_delimited);
    let response = get(&upstream.url("/")).unwrap();
    assert_eq!(
        (response.status(), response.text().as_str()),
        (200, "until close")
    );
    // Such a connection cannot carry another request: it is not pooled.
    assert_eq!(pool::idle_count("127.0.0.1", upstream.port), 0);
}
