//! Request body decoders: a fixed length (`Content-Length`, or a uwsgi `CONTENT_LENGTH`) and
//! chunked (RFC 9112 §7.1) with extensions skipped and trailers parsed and bounded.
//!
//! A byte-level state machine, like hyper's `decode.rs`: feed whatever bytes arrived, get back
//! how many were used and which of them are body data. Split points never change the result.
//! Chunk lines must end in CRLF (a bare LF there is a classic smuggling vector, so it is
//! refused even though heads accept one), and whitespace after a chunk size is allowed only
//! before an extension's `;`. No I/O, no allocation per byte.

use std::ops::Range;

use super::request::MAX_HEADERS;
use crate::proto::ParseError;

/// The most bytes of chunk extensions one chunk-size line may carry.
pub(crate) const MAX_CHUNK_EXTENSION: usize = 4096;

/// The most bytes the trailer section (all trailer lines and the final CRLF) may take.
pub(crate) const MAX_TRAILER_BYTES: usize = 8192;

/// How a request body is delimited, decided from the head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body (no `Content-Length`/`Transfer-Encoding`, or `Content-Length: 0`).
    #[default]
    Empty,
    /// Exactly this many bytes (never 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl BodyFraming {
    /// The framing of a body of `len` bytes: [`BodyFraming::Empty`] for 0.
    pub(crate) fn from_length(len: u64) -> Self {
        if len == 0 {
            BodyFraming::Empty
        } else {
            BodyFraming::Length(len)
        }
    }
}

/// The outcome of one [`BodyDecoder::decode`] call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// How many input bytes were used; the rest belongs to a later call (or, once `done`, to
    /// the next pipelined request).
    pub(crate) consumed: usize,
    /// The body data among the consumed bytes, as a range of the input (maybe empty).
    pub(crate) data: Range<usize>,
    /// The body is complete: every later byte is not ours.
    pub(crate) done: bool,
}

/// Decodes one request body incrementally.
///
/// ```ignore
/// let mut decoder = BodyDecoder::new(head.framing(), limits.limit_post);
/// while !decoder.is_done() {
///     let d = decoder.decode(&buf)?;          // buf: the bytes read so far, not yet used
///     handler_input.extend_from_slice(&buf[d.data.clone()]);
///     buf.drain(..d.consumed);                // read more from the socket if nothing was used
/// }
/// ```
///
/// Each call returns at most one run of data and always makes progress: unless it is done,
/// it uses either all of the input or some data. Call again with the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BodyDecoder {
    kind: Kind,
    limit: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Length { remaining: u64 },
    Chunked(Chunked),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Chunked {
    state: State,
    /// The chunk size being read, then the data left in the chunk.
    size: u64,
    digits: usize,
    extension_len: usize,
    /// Declared data so far, for `limit-post`.
    received: u64,
    /// The raw trailer section, CRLFs included, bounded by `MAX_TRAILER_BYTES`.
    trailers: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Hex digits of the chunk size.
    Size,
    /// Whitespace after the size: only a `;` may follow.
    SizeWhitespace,
    /// A chunk extension, skipped up to CR.
    Extension,
    /// The LF of the size line.
    SizeLf,
    /// Chunk data.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// The start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// The LF of a trailer line.
    TrailerLf,
    /// The LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`; `limit` is `limit-post` (a declared length is
    /// checked by the head parser already; chunked sizes are checked here as they are read).
    pub(crate) fn new(framing: BodyFraming, limit: Option<u64>) -> Self {
        let kind = match framing {
            BodyFraming::Empty => Kind::Length { remaining: 0 },
            BodyFraming::Length(n) => Kind::Length { remaining: n },
            BodyFraming::Chunked => Kind::Chunked(Chunked {
                state: State::Size,
                size: 0,
                digits: 0,
                extension_len: 0,
                received: 0,
                trailers: Vec::new(),
            }),
        };
        BodyDecoder { kind, limit }
    }

    /// Whether the whole body has been decoded.
    pub(crate) fn is_done(&self) -> bool {
        match &self.kind {
            Kind::Length { remaining } => *remaining == 0,
            Kind::Chunked(c) => c.state == State::Done,
        }
    }

    /// Decodes from the front of `input`.
    ///
    /// # Errors
    /// Chunked framing errors (400), a chunk that takes the body over `limit-post` (413), a
    /// trailer section over `MAX_TRAILER_BYTES` (431). The connection cannot be reused after one.
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<Decoded, ParseError> {
        match &mut self.kind {
            Kind::Length { remaining } => {
                let n = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                *remaining -= n as u64;
                Ok(Decoded {
                    consumed: n,
                    data: 0..n,
                    done: *remaining == 0,
                })
            }
            Kind::Chunked(chunked) => chunked.decode(input, self.limit),
        }
    }

    #[cfg(any(test, fuzzing))]
    /// The trailer fields of a finished chunked body (empty otherwise), names as sent.
    pub(crate) fn trailers(&self) -> Vec<(&str, &[u8])> {
        let Kind::Chunked(c) = &self.kind else {
            return Vec::new();
        };
        if c.state != State::Done {
            return Vec::new();
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(&c.trailers, &mut fields) {
            Ok(httparse::Status::Complete((_, fields))) => {
                fields.iter().map(|f| (f.name, f.value)).collect()
            }
            // Checked when the section ended.
            _ => Vec::new(),
        }
    }
}

impl Chunked {
    fn decode(&mut self, input: &[u8], limit: Option<u64>) -> Result<Decoded, ParseError> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Done => break,
                State::Data => {
                    let available = input.len() - pos;
                    let n = usize::try_from(self.size).map_or(available, |s| s.min(available));
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Decoded {
                        consumed: pos + n,
                        data: pos..pos + n,
                        done: false,
                    });
                }
                _ => {
                    self.step(input[pos], limit)?;
                    pos += 1;
                }
            }
        }
        Ok(Decoded {
            consumed: pos,
            data: pos..pos,
            done: self.state == State::Done,
        })
    }

    /// Advances the framing state by one byte (never called in `Data` or `Done`).
    fn step(&mut self, b: u8, limit: Option<u64>) -> Result<(), ParseError> {
        use State::*;
        self.state = match (self.state, b) {
            (Size, _) if b.is_ascii_hexdigit() => {
                if self.size > u64::MAX >> 4 {
                    return Err(ParseError::ChunkSizeOverflow);
                }
                let digit = (b as char)
                    .to_digit(16)
                    .expect("invariant: checked hex digit");
                self.size = self.size << 4 | u64::from(digit);
                self.digits += 1;
                Size
            }
            (Size | SizeWhitespace, _) if self.digits == 0 => {
                return Err(ParseError::InvalidChunkSize);
            }
            (Size | SizeWhitespace, b' ' | b'\t') => SizeWhitespace,
            (Size | SizeWhitespace, b';') => Extension,
            // Whitespace may only lead to an extension (BWS before `;`, RFC 9112 §7.1.1):
            // `0 \r\n` or `5\t\r\n` is no chunk-size line, and peers disagree on them.
            (Size | Extension, b'\r') => SizeLf,
            (Size | SizeWhitespace | Extension, b'\n') => {
                return Err(ParseError::InvalidChunkLineEnding);
            }
            (Size | SizeWhitespace, _) => return Err(ParseError::InvalidChunkSize),
            (Extension, _) => {
                if b != b'\t' && (b < 0x20 || b == 0x7f) {
                    return Err(ParseError::InvalidChunkSize);
                }
                self.extension_len += 1;
                if self.extension_len > MAX_CHUNK_EXTENSION {
                    return Err(ParseError::ChunkExtensionTooLong);
                }
                Extension
            }
            (SizeLf, b'\n') => self.start_chunk(limit)?,
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size,
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart, b' ' | b'\t') => return Err(ParseError::InvalidTrailer),
            (TrailerStart | Trailer, b'\n') => return Err(ParseError::InvalidChunkLineEnding),
            (Trailer, b'\r') => {
                self.record(b)?;
                TrailerLf
            }
            (TrailerStart | Trailer, _) => {
                self.record(b)?;
                Trailer
            }
            (TrailerLf, b'\n') => {
                self.record(b)?;
                TrailerStart
            }
            (EndLf, b'\n') => {
                // Most bodies have no trailers: nothing to parse (and no parser's field array
                // on the stack of the coroutine that read the body).
                if !self.trailers.is_empty() {
                    self.record(b'\r')?;
                    self.record(b'\n')?;
                    self.check_trailers()?;
                }
                Done
            }
            (SizeLf | DataCr | DataLf | TrailerLf | EndLf, _) => {
                return Err(ParseError::InvalidChunkLineEnding);
            }
            (Data | Done, _) => unreachable!("step is not called for data or after the end"),
        };
        Ok(())
    }

    /// The size line is complete: start the chunk's data, or the trailers after the last one.
    fn start_chunk(&mut self, limit: Option<u64>) -> Result<State, ParseError> {
        let size = self.size;
        self.digits = 0;
        self.extension_len = 0;
        if size == 0 {
            return Ok(State::TrailerStart);
        }
        self.received = self
            .received
            .checked_add(size)
            .ok_or(ParseError::BodyTooLarge)?;
        if limit.is_some_and(|max| self.received > max) {
            return Err(ParseError::BodyTooLarge);
        }
        Ok(State::Data)
    }

    fn record(&mut self, b: u8) -> Result<(), ParseError> {
        if self.trailers.len() >= MAX_TRAILER_BYTES {
            return Err(ParseError::TrailersTooLarge);
        }
        self.trailers.push(b);
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn check_trailers(&self) -> Result<(), ParseError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(&self.trailers, &mut fields) {
            Ok(httparse::Status::Complete((n, _))) if n == self.trailers.len() => Ok(()),
            Err(httparse::Error::TooManyHeaders) => Err(ParseError::TrailersTooLarge),
            _ => Err(ParseError::InvalidTrailer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fed = (Vec<u8>, usize, Vec<(String, Vec<u8>)>);

    /// Feeds `input` in pieces of `step` bytes; returns the body, the bytes used, the trailers.
    fn feed(
        framing: BodyFraming,
        limit: Option<u64>,
        input: &[u8],
        step: usize,
    ) -> Result<Fed, ParseError> {
        let mut decoder = BodyDecoder::new(framing, limit);
        let mut body = Vec::new();
        let mut pos = 0;
        let mut avail = 0;
        while !decoder.is_done() {
            if pos == avail {
                if avail == input.len() {
                    break;
                }
                avail = (avail + step).min(input.len());
            }
            let d = decoder.decode(&input[pos..avail])?;
            body.extend_from_slice(&input[pos..avail][d.data.clone()]);
            pos += d.consumed;
            assert_eq!(d.done, decoder.is_done());
        }
        assert!(decoder.is_done(), "body incomplete");
        let trailers = decoder
            .trailers()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        Ok((body, pos, trailers))
    }

    fn chunked(input: &[u8]) -> Result<(Vec<u8>, usize), ParseError> {
        let whole = feed(BodyFraming::Chunked, None, input, input.len().max(1));
        let bytewise = feed(BodyFraming::Chunked, None, input, 1);
        assert_eq!(whole, bytewise, "split points changed the result");
        whole.map(|(body, used, _)| (body, used))
    }

    #[test]
    fn length_body_stops_at_its_length() {
        let (body, used, _) =
            feed(BodyFraming::Length(5), None, b"helloGET / HTTP/1.1", 3).expect("valid");
        assert_eq!(body, b"hello");
        assert_eq!(used, 5);
    }

    #[test]
    fn empty_body_is_done_at_once() {
        let mut d = BodyDecoder::new(BodyFraming::Empty, None);
        assert!(d.is_done());
        assert_eq!(
            d.decode(b"next"),
            Ok(Decoded {
                consumed: 0,
                data: 0..0,
                done: true
            })
        );
    }

    #[test]
    fn chunked_body_is_decoded_and_the_rest_left_alone() {
        let (body, used) =
            chunked(b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nGET /next").expect("valid");
        assert_eq!(body, b"hello, world");
        assert_eq!(used, 27);
    }

    #[test]
    fn chunk_extensions_are_skipped() {
        let (body, _) =
            chunked(b"5;name=value;x=\"q s\"\r\nhello\r\n3 ; ext\r\nabc\r\n0;last\r\n\r\n")
                .expect("valid");
        assert_eq!(body, b"helloabc");
    }

    #[test]
    fn trailers_are_parsed() {
        let input = b"3\r\nabc\r\n0\r\nX-Sum: 99\r\nX-Other: a b\r\n\r\n";
        let (body, used, trailers) = feed(BodyFraming::Chunked, None, input, 2).expect("valid");
        assert_eq!(body, b"abc");
        assert_eq!(used, input.len());
        assert_eq!(
            trailers,
            vec![
                ("X-Sum".to_string(), b"99".to_vec()),
                ("X-Other".to_string(), b"a b".to_vec())
            ]
        );
    }

    #[test]
    fn uppercase_hex_and_leading_zeros_are_sizes() {
        let (body, _) = chunked(b"00A\r\n0123456789\r\n0\r\n\r\n").expect("valid");
        assert_eq!(body, b"0123456789");
    }

    #[test]
    fn chunked_body_with_bad_size_gets_400() {
        for input in [
            &b"x\r\nabc\r\n0\r\n\r\n"[..],
            b"\r\nabc\r\n0\r\n\r\n",
            b"-1\r\n",
            b"0x3\r\nabc\r\n0\r\n\r\n",
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"3 x\r\nabc\r\n0\r\n\r\n",
            b"0 \r\n\r\n",
            b"5\t\r\nhello\r\n0\r\n\r\n",
            b"3 \t \r\nabc\r\n0\r\n\r\n",
        ] {
            let err = chunked(input).unwrap_err();
            assert_eq!(err, ParseError::InvalidChunkSize, "{input:?}");
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn chunk_size_overflow_gets_400() {
        assert_eq!(
            chunked(b"10000000000000000\r\n"),
            Err(ParseError::ChunkSizeOverflow)
        );
        // The largest size is a valid line; the data just never comes.
        let mut d = BodyDecoder::new(BodyFraming::Chunked, None);
        assert!(d.decode(b"ffffffffffffffff\r\n").is_ok());
    }

    #[test]
    fn bare_lf_in_chunk_lines_gets_400() {
        for input in [
            &b"3\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabc\n0\r\n\r\n",
            b"3\r\nabc\r\n0\n\r\n",
            b"3\r\nabc\r\n0\r\n\n",
            b"3\r\nabc\r\n0\r\nX: y\n\r\n",
            b"3;ext\nabc",
        ] {
            assert_eq!(
                chunked(input),
                Err(ParseError::InvalidChunkLineEnding),
                "{input:?}"
            );
        }
    }

    #[test]
    fn chunk_data_longer_than_its_size_gets_400() {
        assert_eq!(
            chunked(b"3\r\nabcd\r\n0\r\n\r\n"),
            Err(ParseError::InvalidChunkLineEnding)
        );
    }

    #[test]
    fn chunked_body_over_limit_post_gets_413() {
        let input = b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
        assert_eq!(
            feed(BodyFraming::Chunked, Some(9), input, 1),
            Err(ParseError::BodyTooLarge)
        );
        assert!(feed(BodyFraming::Chunked, Some(10), input, 1).is_ok());
    }

    #[test]
    fn long_extensions_and_trailers_are_bounded() {
        let mut input = b"1;".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_CHUNK_EXTENSION + 1));
        assert_eq!(chunked(&input), Err(ParseError::ChunkExtensionTooLong));
        let mut input = b"0\r\n".to_vec();
        for i in 0..1000 {
            input.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        assert_eq!(chunked(&input), Err(ParseError::TrailersTooLarge));
    }

    #[test]
    fn malformed_trailers_get_400() {
        assert_eq!(
            chunked(b"0\r\nNo colon here\r\n\r\n"),
            Err(ParseError::InvalidTrailer)
        );
        assert_eq!(
            chunked(b"0\r\nX: a\r\n folded\r\n\r\n"),
            Err(ParseError::InvalidTrailer)
        );
    }
}
