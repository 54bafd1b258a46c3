//! What a request waiting in the worker costs in coroutine stack, on the real binary: a
//! connection's coroutine keeps every stack page it ever touched resident (its stack is
//! pooled, not unmapped), so the deepest point of a request's path is memory that each of
//! thousands of waiting requests holds. Measured from the worker's `/proc/PID/smaps`: the
//! resident size of the coroutine stacks before and after `PARKED` requests are parked, per
//! request. A count, not a time.
//!
//! The bounds are per build, as frames are: an optimized build must stay within 2 pages per
//! request (the 12 KiB per parked request of issue 11 leaves the rest to the heap); a debug
//! build (no inlining, no frame sharing) within what it took when these tests were written, so
//! a new big frame on the path (a buffer or a header array on the stack) fails both.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::harness::client::{Conn, Proto};
use crate::harness::{Instance, eventually, stats};

/// Requests parked at once in each test.
const PARKED: u64 = 32;

/// The most stack a parked request may cost, in KiB: 2 pages optimized.
const OPTIMIZED_KIB: u64 = 8;

/// The worker's pid (one worker).
fn worker_pid(instance: &Instance) -> u32 {
    let pid = stats(instance)["workers"][0]["pid"]
        .as_u64()
        .expect("worker pid in stats");
    u32::try_from(pid).expect("a pid fits u32")
}

/// Resident KiB of the worker's coroutine stacks. With madvise guards (Linux >= 6.13) all
/// stacks are one mapping, the process's largest; with mprotect guards each stack in use is
/// a read-write mapping of exactly the stack size (`stack-size = 128` below), counted too.
fn stack_rss_kib(pid: u32) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    let mut mappings: Vec<(u64, bool, u64)> = Vec::new(); // (size, anonymous, rss KiB)
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let Some((lo, hi)) = fields.first().and_then(|range| range.split_once('-'))
            && let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16))
        {
            mappings.push((hi - lo, fields.len() == 5, 0));
        } else if let (Some(&"Rss:"), Some(kib)) = (fields.first(), fields.get(1))
            && let Some(last) = mappings.last_mut()
        {
            last.2 = kib.parse().expect("Rss in KiB");
        }
    }
    let anonymous = mappings.iter().filter(|m| m.1);
    let largest = anonymous.clone().max_by_key(|m| m.0).map_or(0, |m| m.2);
    let stacks: u64 = anonymous.filter(|m| m.0 == 128 * 1024).map(|m| m.2).sum();
    largest + stacks
}

/// An upstream that reads each request head and never answers, or answers it at once with a
/// chunked body as nginx does; counts the heads it read.
struct Upstream {
    port: u16,
    heads: Arc<AtomicUsize>,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Upstream {
    fn start(answer: bool) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let port = listener.local_addr().expect("addr").port();
        let heads = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (count, keep) = (heads.clone(), held.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (count, keep) = (count.clone(), keep.clone());
                thread::spawn(move || serve_upstream(stream, answer, &count, &keep));
            }
        });
        Upstream {
            port,
            heads,
            _held: held,
        }
    }

    fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }
}

fn serve_upstream(
    stream: TcpStream,
    answer: bool,
    heads: &AtomicUsize,
    held: &Mutex<Vec<TcpStream>>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        heads.fetch_add(1, Ordering::SeqCst);
        if !answer {
            held.lock().expect("lock").push(reader.into_inner());
            return;
        }
        let chunked = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
            Transfer-Encoding: chunked\r\n\r\nf\r\nsearch results\n\r\n0\r\n\r\n";
        if reader.get_mut().write_all(chunked).is_err() {
            return;
        }
    }
}

/// One worker with small stacks, the `fetch` app on `upstream` and `sleep` under `/sleep`.
fn start(name: &str, upstream: &Upstream) -> Instance {
    Instance::start(
        name,
        &format!(
            "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nasync = 64\n\
             stack-size = 128\nstats = %dstats.sock\ndisable-logging = true\n\
             module = fetch\nfetch-url = http://127.0.0.1:{}/\nmount = /sleep=sleep\n",
            upstream.port
        ),
        &[],
    )
}

/// A keep-alive connection whose requests show that the worker ran everything that was
/// ready before: a coroutine runs from its wake-up to its next park without a break, and the
/// worker has one thread.
struct Probe(Conn);

impl Probe {
    fn open(server: &Instance) -> Probe {
        let mut probe = Probe(server.target(Proto::Http).connect());
        probe.round_trip();
        probe
    }

    fn round_trip(&mut self) {
        let response = self
            .0
            .send(b"GET /sleep?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n")
            .read_response();
        assert_eq!(response.status, 200);
    }
}

/// Sends `PARKED` requests for `path`, each on its own connection (kept open).
fn park(server: &Instance, path: &str) -> Vec<Conn> {
    (0..PARKED)
        .map(|i| {
            let mut conn = server.target(Proto::Http).connect();
            conn.send(format!("GET {path}&n={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            conn
        })
        .collect()
}

/// Asserts the stack KiB per request measured between `before` and `after`, against the
/// optimized bound or, in a debug build, `debug_kib`.
fn assert_stack_per_request(what: &str, before: u64, after: u64, debug_kib: u64) {
    let per_request = (after - before) as f64 / PARKED as f64;
    let bound = if cfg!(debug_assertions) {
        debug_kib
    } else {
        OPTIMIZED_KIB
    };
    eprintln!("{what}: {per_request:.1} KiB of coroutine stack per request (bound {bound})");
    assert!(
        per_request >= 4.0,
        "{what}: no stack page measured ({before} -> {after} KiB)"
    );
    assert!(
        per_request <= bound as f64,
        "{what}: {per_request:.1} KiB of coroutine stack per request, over {bound} KiB"
    );
}

#[test]
fn a_parked_sleep_request_holds_at_most_two_pages_of_coroutine_stack() {
    let upstream = Upstream::start(false);
    let server = start("stack-sleep", &upstream);
    let pid = worker_pid(&server);
    let mut probe = Probe::open(&server);
    let before = stack_rss_kib(pid);
    let _parked = park(&server, "/sleep?ms=60000");
    eventually("every sleep request is in the handler", &server, || {
        let workers = stats(&server)["workers"].clone();
        let cores = workers[0]["cores"].as_array().cloned().unwrap_or_default();
        cores.iter().filter(|c| c["in_request"] == 1).count() as u64 == PARKED
    });
    probe.round_trip();
    assert_stack_per_request("parked sleep", before, stack_rss_kib(pid), 16);
}

#[test]
fn a_fetch_request_waiting_on_its_upstream_holds_at_most_two_pages_of_coroutine_stack() {
    let upstream = Upstream::start(false);
    let server = start("stack-fetch", &upstream);
    let pid = worker_pid(&server);
    let mut probe = Probe::open(&server);
    let before = stack_rss_kib(pid);
    let _parked = park(&server, "/?q=rust");
    eventually("every fetch request reached the upstream", &server, || {
        upstream.heads() as u64 == PARKED
    });
    probe.round_trip();
    assert_stack_per_request(
        "fetch waiting on its upstream",
        before,
        stack_rss_kib(pid),
        24,
    );
}

#[test]
fn a_connection_that_made_a_fetch_request_holds_at_most_two_pages_of_coroutine_stack() {
    // The deepest point of the whole exchange counts (the chunked body's decoding included),
    // not only where it waited: the pages stay with the connection's stack.
    let upstream = Upstream::start(true);
    let server = start("stack-fetched", &upstream);
    let pid = worker_pid(&server);
    let mut probe = Probe::open(&server);
    let before = stack_rss_kib(pid);
    let mut conns = park(&server, "/?q=rust");
    for conn in &mut conns {
        let response = conn.read_response();
        assert_eq!(
            (response.status, response.text()),
            (200, "search results\n".to_string())
        );
    }
    probe.round_trip();
    assert_stack_per_request("connection after a fetch", before, stack_rss_kib(pid), 28);
}
