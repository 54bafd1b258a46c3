//! `hello`: the smallest app, and a source of large responses.

use std::io::{self, Read};

use crate::api::{Request, Response};

/// `Hello World`, or `?bytes=N` bytes of `x` streamed with a known length.
pub(crate) fn hello(req: &mut Request<'_>) -> Response {
    match req.query_param("bytes") {
        None => Response::text("Hello World"),
        Some(n) => match n.parse::<u64>() {
            Ok(n) => Response::ok()
                .header("Content-Type", "application/octet-stream")
                .stream(io::repeat(b'x').take(n), Some(n)),
            Err(_) => Response::error(400),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ResponseBody;

    #[test]
    fn hello_says_hello_world() {
        let (status, _, body) = hello(&mut Request::builder("GET", "/").build()).into_parts();
        assert_eq!(status, 200);
        assert!(matches!(body, ResponseBody::Bytes(b) if *b == *b"Hello World"));
    }

    #[test]
    fn bytes_parameter_streams_that_many_bytes() {
        let (_, _, body) = hello(&mut Request::builder("GET", "/?bytes=3").build()).into_parts();
        let ResponseBody::Stream { mut reader, len } = body else {
            panic!("expected a stream");
        };
        assert_eq!(len, Some(3));
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"xxx");
    }

    #[test]
    fn a_bad_bytes_parameter_is_a_400() {
        let r = hello(&mut Request::builder("GET", "/?bytes=lots").build());
        assert_eq!(r.status(), 400);
    }
}
