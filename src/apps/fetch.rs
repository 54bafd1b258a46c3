//! `fetch`: GETs `fetch-url` through `rcontainer::client` and answers with the upstream's
//! status, `Content-Type` and body: the "call a search API from the view" case.
//!
//! The request's query string is appended to `fetch-url` (after `?`, or after `&` when the
//! URL already has a query), so `/?q=rust` with `fetch-url = http://127.0.0.1:9000/s` asks the
//! upstream for `/s?q=rust`. The request's path is not forwarded. An unreachable or broken
//! upstream is a `502` (logged), one slower than the client's time limit a `504` (logged); the
//! request's `harakiri` deadline ends a slow call too, and the worker answers `504`.

use std::rc::Rc;

use crate::api::{AppConfig, AppOption, Handler, OptionKind, Request, Response};
use crate::client::{Client, ClientResponse, Error, ErrorKind};

/// `fetch-url`: the upstream.
const URL: &str = "fetch-url";

/// The options of `fetch`.
pub(crate) fn options() -> Vec<AppOption> {
    vec![
        AppOption::new(
            URL,
            OptionKind::Url,
            "Upstream URL of the built-in fetch app.",
        )
        .required(),
    ]
}

/// Builds the app from `fetch-url` (required).
pub(crate) fn configure(config: &AppConfig) -> Result<Rc<dyn Handler>, String> {
    let upstream = config
        .url(URL)
        .ok_or("needs fetch-url = http(s)://host:port/path")?
        .to_string();
    Ok(Rc::new(Fetch {
        upstream,
        client: Client::new(),
    }))
}

struct Fetch {
    upstream: String,
    client: Client,
}

impl Handler for Fetch {
    fn handle(&self, req: &mut Request<'_>) -> Response {
        let url = upstream_url(&self.upstream, req.query());
        match self.client.get(&url).send() {
            Ok(answer) => relay(answer),
            Err(e) => upstream_failed(&url, &e),
        }
    }
}

/// The upstream's answer as ours: its status, `Content-Type` and body. Never inlined, like
/// [`upstream_failed`]: the frame that waits for the upstream stays small, and every byte of
/// stack a parked request reaches is resident memory of the worker.
#[inline(never)]
fn relay(answer: ClientResponse) -> Response {
    let mut response = Response::new(answer.status());
    if let Some(content_type) = answer.header("content-type") {
        response = response.header("Content-Type", content_type.to_string());
    }
    response.body(answer.into_body())
}

/// The answer when the upstream call failed: 504 for a timeout, else 502 (logged). Never
/// inlined: the log line's formatting stays out of the frame that waits for the upstream.
#[cold]
#[inline(never)]
fn upstream_failed(url: &str, e: &Error) -> Response {
    let status = if e.kind() == ErrorKind::Timeout {
        504
    } else {
        502
    };
    log::warn!("fetch: upstream failed url={url} status={status} error={e}");
    Response::error(status)
}

/// `upstream` with `query` appended (see the module docs).
fn upstream_url(upstream: &str, query: &str) -> String {
    let upstream = upstream.split_once('#').map_or(upstream, |(url, _)| url);
    match (query.is_empty(), upstream.contains('?')) {
        (true, _) => upstream.to_string(),
        (false, false) => format!("{upstream}?{query}"),
        (false, true) => format!("{upstream}&{query}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_string_is_appended_to_the_upstream_url() {
        assert_eq!(upstream_url("http://u/s", ""), "http://u/s");
        assert_eq!(upstream_url("http://u/s", "q=1"), "http://u/s?q=1");
        assert_eq!(upstream_url("http://u/s?k=v", "q=1"), "http://u/s?k=v&q=1");
    }

    #[test]
    fn fetch_needs_its_url() {
        assert!(configure(&AppConfig::default()).is_err());
    }

    #[test]
    fn an_unreachable_upstream_is_a_502() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/");
        let app = configure(&AppConfig::from_values([(URL, url)])).unwrap();
        let response = app.handle(&mut Request::builder("GET", "/?q=1").build());
        assert_eq!(response.status(), 502);
    }
}
