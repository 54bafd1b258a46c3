//! HTTP/1.1 (and 1.0) server side: request heads, request body decoders, response framing.
//!
//! Split as hyper splits `proto/h1`: `request` parses heads, `body` decodes bodies, `response`
//! encodes. Pure code over byte slices: no I/O.

pub(crate) mod body;
pub(crate) mod request;
pub(crate) mod response;

pub(crate) use body::{BodyDecoder, BodyFraming};
pub(crate) use request::{RequestHead, parse_request_head};
pub(crate) use response::{
    BodyEncoding, CONTINUE_100, LAST_CHUNK, ResponseContext, decide_framing, encode_chunk,
    reason_phrase, write_error_response, write_response_head,
};
