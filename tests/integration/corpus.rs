//! The wire corpus (`tests/data`, see its README) replayed against the real server: every
//! valid request is answered 200, every invalid one gets its documented status or a closed
//! connection, and the worker serves the next request either way.

use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::client::{Proto, http_get};
use crate::harness::{Instance, Target};

/// The limits the corpus was written for (tests/data/README.md).
const CORPUS_INI: &str = "[rcontainer]\nhttp-socket = 127.0.0.1:0\nsocket = 127.0.0.1:0\n\
                          module = echo\nbuffer-size = 16384\nlimit-post = 1048576\n";

fn corpus_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// `(name, bytes, sibling text)` for every `*.{ext}` file with a `.{sibling}` next to it.
fn cases(rel: &str, ext: &str, sibling: &str) -> Vec<(String, Vec<u8>, String)> {
    let mut cases: Vec<_> = fs::read_dir(corpus_dir(rel))
        .expect("corpus dir")
        .filter_map(|entry| {
            let path = entry.expect("dir entry").path();
            if path.extension()? != ext {
                return None;
            }
            let text = fs::read_to_string(path.with_extension(sibling)).ok()?;
            let bytes = fs::read(&path).expect("corpus file");
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some((name, bytes, text))
        })
        .collect();
    cases.sort();
    cases
}

/// Sends `bytes` and returns the status of the answer, or `None` if the server closed
/// without one.
fn first_status(target: &Target, bytes: &[u8]) -> Option<u16> {
    status_of(target, bytes, false)
}

/// [`first_status`] for a request that may be a HEAD (`head`: read no body).
fn status_of(target: &Target, bytes: &[u8], head: bool) -> Option<u16> {
    let mut conn = target.connect();
    conn.send(bytes);
    conn.shutdown_write();
    conn.try_read_response(head).ok().map(|r| r.status)
}

#[test]
fn every_invalid_http_request_gets_its_status_or_a_close_and_the_worker_lives() {
    let server = Instance::start("corpus-http-invalid", CORPUS_INI, &[]);
    let http = server.target(Proto::Http);
    let cases = cases("http/invalid", "http", "status");
    assert!(cases.len() >= 20, "corpus too small: {}", cases.len());
    for (name, bytes, expected) in cases {
        let expected: u16 = expected
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name}: bad .status file"));
        // A closed connection (no status) is an acceptable refusal too.
        if let Some(status) = first_status(&http, &bytes) {
            assert_eq!(status, expected, "{name}");
        }
        assert_eq!(
            http_get(&http, "/").status,
            200,
            "worker still serves after {name}"
        );
    }
}

#[test]
fn every_valid_http_stream_gets_one_200_per_request() {
    let server = Instance::start("corpus-http-valid", CORPUS_INI, &[]);
    let http = server.target(Proto::Http);
    for (name, bytes, expect) in cases("http/valid", "http", "expect") {
        let requests = expect.lines().filter(|l| l.trim() == "request").count();
        let keep_alive_last = expect
            .lines()
            .rfind(|l| l.starts_with("keep-alive "))
            .is_some_and(|l| l.ends_with("yes"));
        let mut conn = http.connect();
        conn.send(&bytes);
        for i in 0..requests {
            let is_head = expect
                .split("request")
                .nth(i + 1)
                .is_some_and(|block| block.contains("method HEAD"));
            let response = conn
                .try_read_response(is_head)
                .unwrap_or_else(|e| panic!("{name}: answer {} of {requests}: {e}", i + 1));
            assert!(
                response.status == 200 || response.status == 100,
                "{name}: status {}",
                response.status
            );
            if response.status == 100 {
                let final_response = conn.read_response();
                assert_eq!(final_response.status, 200, "{name}");
            }
        }
        if !keep_alive_last {
            assert!(
                conn.is_closed_by_peer(),
                "{name}: closed after a non-keep-alive request"
            );
        }
    }
}

#[test]
fn every_uwsgi_packet_gets_200_its_status_or_a_close() {
    let server = Instance::start("corpus-uwsgi", CORPUS_INI, &[]);
    let uwsgi = server.target(Proto::Uwsgi);
    for (name, bytes, expect) in cases("uwsgi", "bin", "expect") {
        if expect.starts_with("packet ping") {
            let mut conn = uwsgi.connect();
            conn.send(&bytes);
            assert_eq!(conn.read_to_end(), [100, 0, 0, 1], "{name}");
            continue;
        }
        let head = expect.contains("var REQUEST_METHOD=HEAD");
        assert_eq!(status_of(&uwsgi, &bytes, head), Some(200), "{name}");
    }
    for (name, bytes, status) in cases("uwsgi", "bin", "status") {
        let expected = status.split_whitespace().next().unwrap_or_default();
        match (first_status(&uwsgi, &bytes), expected) {
            (None, _) => {}
            // HTTP on a uwsgi socket: we answer 400 where uWSGI only closes.
            (Some(status), "close") => assert_eq!(status, 400, "{name}"),
            (Some(status), expected) => assert_eq!(status.to_string(), expected, "{name}"),
        }
    }
    assert_eq!(http_get(&server.target(Proto::Http), "/").status, 200);
}
