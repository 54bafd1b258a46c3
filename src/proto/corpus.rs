//! Replays the wire corpus in `tests/data/` (formats in `tests/data/README.md`) through the
//! parsers, whole and split at every byte, as a connection loop would feed them. Tests only.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::http1::{BodyDecoder, BodyFraming, RequestHead, parse_request_head};
use super::uwsgi::{Packet, parse_packet};
use super::{Limits, ParseError};

/// The limits the corpus is written for (README.md says the same).
const CORPUS_LIMITS: Limits = Limits {
    buffer_size: 16384,
    max_uri: 8192,
    limit_post: Some(1 << 20),
};

fn data_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(sub)
}

/// The `(wire file, sibling with `sibling_ext`)` pairs in `dir`, sorted.
fn cases(dir: &Path, wire_ext: &str, sibling_ext: &str) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(dir)
        .expect("corpus dir exists")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == wire_ext))
        .filter_map(|p| {
            let sibling = std::fs::read_to_string(p.with_extension(sibling_ext)).ok()?;
            Some((p, sibling))
        })
        .collect();
    out.sort();
    out
}

/// Escapes bytes the way the expectation files write them.
fn esc(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..0x7f => out.push(b as char),
            _ => write!(out, "\\x{b:02x}").expect("write to string"),
        }
    }
    out
}

/// Steps to feed a file with: all at once, byte by byte (for files small enough that the
/// quadratic re-parse stays fast), and a few odd strides.
fn steps(len: usize) -> Vec<usize> {
    let mut steps = vec![len.max(1), 7, 100];
    if len <= 8192 {
        steps.push(1);
    } else {
        steps.push(997);
    }
    steps
}

/// One HTTP exchange as the corpus expectation format renders it, or the error that ended
/// the stream.
fn render_request(head: &RequestHead, body: &[u8], decoder: &BodyDecoder) -> String {
    let mut out = String::from("request\n");
    writeln!(out, "method {}", head.method()).expect("write");
    writeln!(out, "target {}", head.target()).expect("write");
    writeln!(out, "version {}", head.version().as_str()).expect("write");
    for (name, value) in head.headers() {
        writeln!(out, "header {name}: {}", esc(value)).expect("write");
    }
    let framing = match head.framing() {
        BodyFraming::Empty => "none".to_string(),
        BodyFraming::Length(n) => format!("length {n}"),
        BodyFraming::Chunked => "chunked".to_string(),
    };
    writeln!(out, "framing {framing}").expect("write");
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    writeln!(out, "keep-alive {}", yes_no(head.keep_alive())).expect("write");
    writeln!(out, "continue {}", yes_no(head.expects_continue())).expect("write");
    if !body.is_empty() {
        writeln!(out, "body {}", esc(body)).expect("write");
    }
    for (name, value) in decoder.trailers() {
        writeln!(out, "trailer {name}: {}", esc(value)).expect("write");
    }
    out.push_str("end\n");
    out
}

/// Drives head parser and body decoder over `input` as a connection loop does, with reads of
/// `step` bytes. Returns the rendered requests, the error that stopped it, and bytes left.
fn replay_http(input: &[u8], step: usize) -> (String, Option<ParseError>, usize) {
    let mut rendered = String::new();
    let (mut pos, mut avail) = (0, 0);
    let more = |avail: &mut usize| {
        if *avail == input.len() {
            return false;
        }
        *avail = (*avail + step).min(input.len());
        true
    };
    loop {
        let head = match parse_request_head(&input[pos..avail], &CORPUS_LIMITS) {
            Ok(Some((head, n))) => {
                pos += n;
                head
            }
            Ok(None) if more(&mut avail) => continue,
            Ok(None) => return (rendered, None, input.len() - pos),
            Err(e) => return (rendered, Some(e), input.len() - pos),
        };
        let mut decoder = BodyDecoder::new(head.framing(), CORPUS_LIMITS.limit_post);
        let mut body = Vec::new();
        while !decoder.is_done() {
            if pos == avail && !more(&mut avail) {
                return (rendered, None, input.len() - pos);
            }
            match decoder.decode(&input[pos..avail]) {
                Ok(d) => {
                    body.extend_from_slice(&input[pos..avail][d.data]);
                    pos += d.consumed;
                }
                Err(e) => return (rendered, Some(e), input.len() - pos),
            }
        }
        rendered.push_str(&render_request(&head, &body, &decoder));
    }
}

/// Drops `#` comment lines.
fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `"400 Variant"` -> (`"400"`, `"Variant"`).
fn status_line(text: &str) -> (String, String) {
    let mut words = text.split_whitespace();
    let status = words.next().expect("a status").to_string();
    let variant = words.next().expect("a ParseError variant").to_string();
    (status, variant)
}

fn check_error(path: &Path, err: Option<ParseError>, status: &str, variant: &str) {
    let err = err.unwrap_or_else(|| panic!("{}: accepted", path.display()));
    assert_eq!(format!("{err:?}"), variant, "{}", path.display());
    if status != "close" {
        assert_eq!(err.status().to_string(), status, "{}", path.display());
    }
}

#[test]
fn corpus_has_at_least_forty_files_of_each_kind() {
    let valid = cases(&data_dir("http/valid"), "http", "expect").len();
    let invalid = cases(&data_dir("http/invalid"), "http", "status").len();
    let uwsgi = cases(&data_dir("uwsgi"), "bin", "expect").len()
        + cases(&data_dir("uwsgi"), "bin", "status").len();
    assert!(valid >= 20 && invalid >= 20 && uwsgi >= 15);
    assert!(valid + invalid + uwsgi >= 40);
}

#[test]
fn every_valid_http_file_parses_as_expected_at_every_split() {
    for (path, expect) in cases(&data_dir("http/valid"), "http", "expect") {
        let input = std::fs::read(&path).expect("readable");
        for step in steps(input.len()) {
            let (rendered, err, left) = replay_http(&input, step);
            assert_eq!(err, None, "{} step {step}", path.display());
            assert_eq!(left, 0, "{} step {step}: bytes left over", path.display());
            assert_eq!(
                rendered,
                strip_comments(&expect),
                "{} step {step}",
                path.display()
            );
        }
    }
}

#[test]
fn every_invalid_http_file_gets_its_status_at_every_split() {
    for (path, status) in cases(&data_dir("http/invalid"), "http", "status") {
        let input = std::fs::read(&path).expect("readable");
        let (status, variant) = status_line(&status);
        for step in steps(input.len()) {
            let (_, err, _) = replay_http(&input, step);
            check_error(&path, err, &status, &variant);
        }
    }
}

fn render_packet(packet: &Packet, body: &[u8]) -> String {
    let Packet::Request(req) = packet else {
        return "packet ping\nend\n".to_string();
    };
    let mut out = String::from("packet request\n");
    writeln!(out, "modifier2 {}", req.modifier2()).expect("write");
    for (key, value) in req.vars().iter() {
        writeln!(out, "var {}={}", esc(key), esc(value)).expect("write");
    }
    writeln!(out, "content-length {}", req.content_length()).expect("write");
    writeln!(out, "scheme {}", req.scheme()).expect("write");
    if !body.is_empty() {
        writeln!(out, "body {}", esc(body)).expect("write");
    }
    out.push_str("end\n");
    out
}

/// Parses one packet and its body from `input` in reads of `step` bytes.
fn replay_uwsgi(input: &[u8], step: usize) -> Result<(String, usize), ParseError> {
    let mut avail = 0;
    let (packet, mut pos) = loop {
        match parse_packet(&input[..avail], &CORPUS_LIMITS)? {
            Some(done) => break done,
            None if avail < input.len() => avail = (avail + step).min(input.len()),
            None => return Ok((String::new(), input.len())),
        }
    };
    let framing = match &packet {
        Packet::Request(req) => req.body_framing(),
        Packet::Ping => BodyFraming::Empty,
    };
    let mut decoder = BodyDecoder::new(framing, CORPUS_LIMITS.limit_post);
    let mut body = Vec::new();
    while !decoder.is_done() {
        if pos == avail {
            if avail == input.len() {
                break;
            }
            avail = (avail + step).min(input.len());
        }
        let d = decoder.decode(&input[pos..avail])?;
        body.extend_from_slice(&input[pos..avail][d.data]);
        pos += d.consumed;
    }
    Ok((render_packet(&packet, &body), input.len() - pos))
}

#[test]
fn every_valid_uwsgi_file_parses_as_expected_at_every_split() {
    for (path, expect) in cases(&data_dir("uwsgi"), "bin", "expect") {
        let input = std::fs::read(&path).expect("readable");
        for step in steps(input.len()) {
            let (rendered, left) = replay_uwsgi(&input, step)
                .unwrap_or_else(|e| panic!("{} step {step}: {e:?}", path.display()));
            assert_eq!(left, 0, "{} step {step}: bytes left over", path.display());
            assert_eq!(
                rendered,
                strip_comments(&expect),
                "{} step {step}",
                path.display()
            );
        }
    }
}

#[test]
fn every_invalid_uwsgi_file_gets_its_status_at_every_split() {
    for (path, status) in cases(&data_dir("uwsgi"), "bin", "status") {
        let input = std::fs::read(&path).expect("readable");
        let (status, variant) = status_line(&status);
        for step in steps(input.len()) {
            check_error(&path, replay_uwsgi(&input, step).err(), &status, &variant);
        }
    }
}
