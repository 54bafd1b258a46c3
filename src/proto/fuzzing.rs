//! Fuzz entry points: each one runs a parser on arbitrary bytes and asserts the properties
//! that must hold for every input: no panic, the same answer however the bytes are split,
//! encoders and parsers that round-trip.
//!
//! Compiled for the fuzz crate (`cfg(fuzzing)`, see `fuzz/`) and for unit tests, which replay
//! the corpus and every committed crash input (`tests/data/fuzz/`) through the same checks.
//! No I/O.
#![cfg_attr(not(fuzzing), allow(unreachable_pub))]

use super::cgi::{ConnInfo, vars_from_head};
use super::http1::request::Version;
use super::http1::{
    BodyDecoder, BodyFraming, HeadSpans, RequestHead, ResponseContext, decide_framing,
    parse_request_head, parse_request_head_into, write_response_head,
};
use super::uwsgi::{self, Modifier1, Packet};
use super::{Limits, ParseError};

/// Limits picked by the first input byte, so small `buffer-size` and `limit-post` get
/// exercised too.
fn limits_from(selector: u8) -> Limits {
    match selector % 4 {
        0 => Limits::default(),
        1 => Limits {
            buffer_size: 64 + usize::from(selector) * 4,
            max_uri: 32 + usize::from(selector),
            limit_post: Some(u64::from(selector)),
        },
        2 => Limits {
            limit_post: Some(1 << (selector >> 3)),
            ..Limits::default()
        },
        _ => Limits {
            buffer_size: 4096,
            ..Limits::default()
        },
    }
}

/// The prefix lengths to re-parse: all of them for short inputs, about 64 spread ones (plus
/// the ends) for long ones, so a run stays fast.
fn prefix_lengths(len: usize) -> impl Iterator<Item = usize> {
    let stride = (len / 64).max(1);
    (0..len)
        .step_by(stride)
        .chain(len.saturating_sub(4)..len)
        .chain([len])
}

/// Checks that parsing every prefix of `input` agrees with parsing all of it: a prefix may
/// only say "need more" or give the same final answer.
fn check_prefixes<T: PartialEq + std::fmt::Debug>(
    input: &[u8],
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, ParseError>,
) -> Result<Option<(T, usize)>, ParseError> {
    let whole = parse(input);
    for len in prefix_lengths(input.len()) {
        let part = parse(&input[..len]);
        let complete_within = matches!(&whole, Ok(Some((_, n))) if *n <= len);
        if complete_within {
            assert_eq!(part, whole, "prefix {len} of {}", input.len());
        } else {
            assert!(
                part == Ok(None) || (part.is_err() && part == whole),
                "prefix {len} of {} gave {part:?}, whole gave {whole:?}",
                input.len()
            );
        }
    }
    whole
}

/// Fuzz target `uwsgi_packet`: the first byte picks the limits, the rest is a packet.
pub fn uwsgi_packet(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let limits = limits_from(selector);
    let whole = check_prefixes(input, |b| uwsgi::parse_packet(b, &limits));
    if let Ok(Some((Packet::Request(req), _))) = whole {
        let wire = uwsgi::encode_packet(Modifier1::Request, req.modifier2(), req.vars().iter())
            .expect("invariant: parsed vars fit their u16 lengths");
        match uwsgi::parse_packet(&wire, &limits) {
            Ok(Some((Packet::Request(again), n))) => {
                assert_eq!(n, wire.len());
                assert_eq!(again, req);
            }
            other => panic!("re-encoded packet did not parse: {other:?}"),
        }
        let _ = req.scheme();
    }
}

/// Fuzz target `http_head`: the first byte picks the limits, the rest is a request stream.
/// Whatever follows an accepted head is decoded as its body, whole and byte by byte.
pub fn http_head(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let limits = limits_from(selector);
    // Compared by what the parser found (a prefix's head borrows the prefix).
    let whole = check_prefixes(input, |b| {
        let mut spans = HeadSpans::default();
        let parsed = parse_request_head_into(b, &limits, &mut spans)?;
        Ok(parsed.map(|len| (spans, len)))
    });
    let Ok(Some((spans, consumed))) = whole else {
        return;
    };
    let head = RequestHead::new(input, &spans);
    assert_eq!(consumed, head.len());
    assert_eq!(
        parse_request_head(input, &limits),
        Ok(Some((head.clone(), consumed)))
    );
    let (_, _, _) = (head.path(), head.query(), head.is_head());
    let vars = vars_from_head(&head, &ConnInfo::default());
    assert_eq!(vars.get("REQUEST_METHOD"), Some(head.method().as_bytes()));
    if head.version() == Version::Http10 {
        assert!(!head.expects_continue());
    }
    if head.framing() == BodyFraming::Empty {
        assert!(!head.expects_continue());
    }
    for status in [100, 200, 204, 304, 404, 500] {
        for body_len in [None, Some(0), Some(7)] {
            let ctx = ResponseContext {
                version: head.version(),
                is_head: head.is_head(),
                keep_alive: head.keep_alive(),
            };
            let framing = decide_framing(ctx, status, body_len);
            assert!(!framing.keep_alive || head.keep_alive());
            let mut out = Vec::new();
            write_response_head(
                &mut out,
                head.version(),
                status,
                None,
                head.headers(),
                &framing,
            )
            .unwrap_or_default();
        }
    }
    body_stream(head.framing(), limits.limit_post, &input[consumed..]);
}

/// Fuzz target `body_decoder`: the first byte picks the framing and limit, the second the
/// split pattern, the rest is the body stream.
pub fn body_decoder(data: &[u8]) {
    let [selector, split, input @ ..] = data else {
        return;
    };
    let framing = match selector % 3 {
        0 => BodyFraming::Chunked,
        1 => BodyFraming::Length(u64::from(selector >> 2)),
        _ => BodyFraming::Empty,
    };
    let limit = (selector & 0x80 != 0).then_some(u64::from(*split) * 4);
    body_stream(framing, limit, input);
    // A split pattern driven by the input itself.
    let mut sizes = input.iter().cycle().map(|b| usize::from(b ^ split) % 7 + 1);
    let whole = feed_body(framing, limit, input, &mut || input.len().max(1));
    let patterned = feed_body(framing, limit, input, &mut || sizes.next().unwrap_or(1));
    assert_eq!(whole, patterned);
}

/// Decodes `input` whole and byte by byte and checks both give the same outcome.
fn body_stream(framing: BodyFraming, limit: Option<u64>, input: &[u8]) {
    let whole = feed_body(framing, limit, input, &mut || input.len().max(1));
    let bytewise = feed_body(framing, limit, input, &mut || 1);
    assert_eq!(whole, bytewise);
}

/// The body bytes, and then either (bytes used, done, trailers) or the error.
type BodyOutcome = (
    Vec<u8>,
    Result<(usize, bool, Vec<(String, Vec<u8>)>), ParseError>,
);

/// Feeds `input` to a decoder in pieces whose sizes `next_size` gives.
pub(crate) fn feed_body(
    framing: BodyFraming,
    limit: Option<u64>,
    input: &[u8],
    next_size: &mut dyn FnMut() -> usize,
) -> BodyOutcome {
    let mut decoder = BodyDecoder::new(framing, limit);
    let mut body = Vec::new();
    let (mut pos, mut avail) = (0, 0);
    while !decoder.is_done() {
        if pos == avail {
            if avail == input.len() {
                break;
            }
            avail = (avail + next_size()).min(input.len());
        }
        let piece = &input[pos..avail];
        let decoded = match decoder.decode(piece) {
            Ok(d) => d,
            Err(e) => return (body, Err(e)),
        };
        assert!(decoded.consumed <= piece.len());
        assert!(decoded.data.end <= decoded.consumed);
        assert!(
            decoded.done || decoded.consumed == piece.len() || !decoded.data.is_empty(),
            "no progress"
        );
        body.extend_from_slice(&piece[decoded.data]);
        pos += decoded.consumed;
    }
    let trailers = decoder
        .trailers()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
    (body, Ok((pos, decoder.is_done(), trailers)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every file under `dir` (recursively) with one of `extensions`.
    fn files(dir: &Path, extensions: &[&str]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e} (it is part of the repository)", dir.display()));
        for entry in entries {
            let path = entry.expect("readable dir").path();
            if path.is_dir() {
                out.extend(files(&path, extensions));
            } else if path
                .extension()
                .is_some_and(|e| extensions.iter().any(|x| e == *x))
            {
                out.push(std::fs::read(&path).expect("readable file"));
            }
        }
        out
    }

    fn data_dir(sub: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(sub)
    }

    #[test]
    fn fuzz_checks_hold_for_the_corpus_under_every_limit() {
        let http = files(&data_dir("http"), &["http"]);
        let uwsgi = files(&data_dir("uwsgi"), &["bin"]);
        assert!(!http.is_empty() && !uwsgi.is_empty());
        for selector in [0u8, 1, 2, 3, 13, 130] {
            for input in &http {
                let mut data = vec![selector];
                data.extend_from_slice(input);
                http_head(&data);
            }
            for input in &uwsgi {
                let mut data = vec![selector];
                data.extend_from_slice(input);
                uwsgi_packet(&data);
            }
        }
    }

    #[test]
    fn committed_fuzz_crashes_no_longer_crash() {
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 3] = [
            ("fuzz/uwsgi_packet", uwsgi_packet),
            ("fuzz/http_head", http_head),
            ("fuzz/body_decoder", body_decoder),
        ];
        for (dir, target) in targets {
            let inputs = files(&data_dir(dir), &["bin"]);
            assert!(!inputs.is_empty(), "no inputs in tests/data/{dir}");
            for input in inputs {
                target(&input);
            }
        }
    }
}
