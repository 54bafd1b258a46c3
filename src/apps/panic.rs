//! `panic`: a handler that panics, to show (and test) that a panic becomes a 500 for that
//! request only and the worker goes on serving.

use crate::api::{Request, Response};

pub(crate) fn panic(req: &mut Request<'_>) -> Response {
    panic!("the panic app was asked for {}", req.uri());
}
