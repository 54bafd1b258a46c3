//! The public handler API: the only public surface of the crate besides [`crate::rt`].
//!
//! A handler is any `Fn(&mut Request) -> Response`. It runs on a coroutine: it may read the
//! request body, sleep, or call upstream services in plain blocking style (through
//! `rcontainer::rt` and `rcontainer::client`), and the worker serves other requests meanwhile.
//! The same [`Request`] model is used for both protocols: over HTTP the CGI-style `vars` are
//! derived from the request head, so a handler never needs to know which socket it came from.
//!
//! This module must not know about sockets, processes or configuration: the worker builds a
//! [`Request`] and consumes a [`Response`].

mod options;
mod request;
mod response;
mod router;
mod routes;

/// HTTP dates for apps that send `Last-Modified` or read `If-Modified-Since`.
pub(crate) use crate::proto::date::{format_http_date, parse_http_date};
pub(crate) use options::metavar;
pub use options::{AppConfig, AppOption, OptionKind};
pub use request::{Body, Request, RequestBuilder};
pub(crate) use request::{Field, PeerText, RequestData, TextFields, range_within};
pub use response::{HeaderField, Headers, IntoBytes, Response, ResponseBody, reason_phrase};
pub(crate) use router::{AppRegistry, RouteSettings, Router};
pub use routes::Routes;

/// Serves requests: implemented for every `Fn(&mut Request) -> Response + 'static`.
///
/// A handler that panics gets a `500 Internal Server Error` for its request; the worker logs
/// the panic, counts it in the stats `exceptions` and goes on serving.
///
/// ```
/// use rcontainer::{Request, Response};
///
/// fn hello(_req: &mut Request) -> Response {
///     Response::text("Hello World")
/// }
/// # let _: &dyn rcontainer::Handler = &hello;
/// ```
pub trait Handler: 'static {
    /// Answers one request.
    fn handle(&self, req: &mut Request<'_>) -> Response;
}

impl<F> Handler for F
where
    F: Fn(&mut Request<'_>) -> Response + 'static,
{
    fn handle(&self, req: &mut Request<'_>) -> Response {
        self(req)
    }
}
