//! Parser throughput for `src/proto`: a typical nginx uwsgi packet, a typical browser GET head,
//! and chunked and fixed-length bodies (decoded and copied out, as the worker does). Prints
//! calls/s and MB/s. Run with `cargo bench --bench proto`.

use std::hint::black_box;
use std::time::{Duration, Instant};

// `proto` is a leaf module (it imports nothing else from the crate), so the bench compiles it
// on its own rather than widening the library's public API.
#[path = "../src/proto/mod.rs"]
#[allow(dead_code, unused_imports)] // the binary uses a part of the module
mod proto;

use proto::Limits;
use proto::Vars;
use proto::http1::{BodyDecoder, BodyFraming, HeadSpans, parse_request_head_into};
use proto::uwsgi;

const NGINX_PACKET: &[u8] = include_bytes!("../tests/data/uwsgi/001-nginx-get.bin");
const BROWSER_GET: &[u8] = include_bytes!("../tests/data/http/valid/001-get-browser.http");

/// Runs `f` repeatedly for about a second and prints its rate for `bytes` bytes per call.
fn measure(name: &str, bytes: usize, mut f: impl FnMut()) {
    for _ in 0..1000 {
        f();
    }
    let budget = Duration::from_secs(1);
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        for _ in 0..1000 {
            f();
        }
        calls += 1000;
    }
    let secs = start.elapsed().as_secs_f64();
    let per_sec = calls as f64 / secs;
    let mb_per_sec = per_sec * bytes as f64 / 1e6;
    println!(
        "{name:<38} {bytes:>7} B  {per_sec:>12.0} /s  {mb_per_sec:>9.1} MB/s  {:>8.0} ns/op",
        1e9 / per_sec
    );
}

fn chunked_body(total: usize, chunk: usize) -> Vec<u8> {
    let mut wire = Vec::with_capacity(total + total / chunk * 8 + 8);
    let data = vec![b'x'; chunk];
    for _ in 0..total / chunk {
        wire.extend_from_slice(format!("{chunk:x}\r\n").as_bytes());
        wire.extend_from_slice(&data);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    wire
}

/// Decodes a whole body, copying the data out as a worker copies it to the handler.
fn decode_all(framing: BodyFraming, wire: &[u8], sink: &mut Vec<u8>) -> usize {
    sink.clear();
    let mut decoder = BodyDecoder::new(framing, None);
    let mut pos = 0;
    while !decoder.is_done() {
        let d = decoder.decode(&wire[pos..]).expect("valid body");
        sink.extend_from_slice(&wire[pos..][d.data]);
        pos += d.consumed;
    }
    sink.len()
}

fn main() {
    let limits = Limits::default();
    println!("proto parser throughput (one core, release build)");

    // As the worker parses: into vars and spans reused from one request to the next.
    let mut vars = Vars::default();
    measure("uwsgi: nginx GET packet", NGINX_PACKET.len(), || {
        let wire = black_box(NGINX_PACKET);
        assert!(matches!(uwsgi::packet_ready(wire, &limits), Ok(Some(_))));
        let parsed = uwsgi::parse_request_into(wire, &limits, &mut vars);
        assert!(matches!(parsed, Ok(0)));
    });

    let mut spans = HeadSpans::default();
    measure("http1: browser GET head", BROWSER_GET.len(), || {
        let parsed = parse_request_head_into(black_box(BROWSER_GET), &limits, &mut spans);
        assert!(matches!(parsed, Ok(Some(_))));
    });

    let mut sink = Vec::with_capacity(1 << 20);
    for chunk in [256, 4096, 65536] {
        let wire = chunked_body(1 << 20, chunk);
        measure(
            &format!("http1: 1 MiB chunked, {chunk} B chunks"),
            wire.len(),
            || {
                let n = decode_all(BodyFraming::Chunked, black_box(&wire), &mut sink);
                assert_eq!(n, 1 << 20);
            },
        );
    }

    let wire = vec![b'x'; 1 << 20];
    measure("http1: 1 MiB content-length body", wire.len(), || {
        let n = decode_all(BodyFraming::Length(1 << 20), black_box(&wire), &mut sink);
        assert_eq!(n, 1 << 20);
    });
}
