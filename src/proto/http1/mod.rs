//! HTTP/1.1 (and 1.0): the server side (request heads, request body decoders, response
//! framing) and the client side (request encoding, response heads and their framing).
//!
//! Split as hyper splits `proto/h1`: `request` parses heads, `body` decodes bodies (of requests
//! and of responses alike), `response` encodes, `client` is the other role. Pure code over byte
//! slices: no I/O.

pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod request;
pub(crate) mod response;

pub(crate) use body::{BodyDecoder, BodyFraming};
#[cfg(any(test, fuzzing))]
pub(crate) use request::parse_request_head;
pub(crate) use request::{HeadSpans, RequestHead, parse_request_head_into};
pub(crate) use response::{
    BodyEncoding, CONTINUE_100, LAST_CHUNK, ResponseContext, decide_framing, encode_chunk,
    reason_phrase, write_error_response, write_response_head,
};
