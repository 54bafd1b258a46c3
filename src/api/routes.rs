//! [`Routes`]: method-and-path routing inside one app.
//!
//! The INI's `mount` lines pick an app per path prefix; `Routes` picks a handler per method and
//! path within an app, so one binary can serve `/search`, `/health` and `/items/*` without a
//! hand-written `match`.

use std::fmt;
use std::rc::Rc;

use super::{Handler, Request, Response};

/// A handler that dispatches on method and path (the path below the app's mount point).
///
/// A pattern is an exact path (`/search`) or a prefix ending in `/*` (`/files/*` matches
/// `/files/a/b` and `/files`). The first route that matches the path and the method wins. A
/// path that matches only with other methods gets `405` with `Allow`; no match at all gets
/// the fallback, or `404`.
///
/// ```
/// use rcontainer::{Request, Response, Routes};
///
/// let app = Routes::new()
///     .get("/health", |_: &mut Request| Response::text("ok"))
///     .post("/items", |req: &mut Request| {
///         let body = req.read_body(1 << 20).unwrap_or_default();
///         Response::new(201).body(body)
///     })
///     .get("/static/*", |req: &mut Request| Response::text(req.path().to_string()));
///
/// # use rcontainer::Handler;
/// let mut req = Request::builder("GET", "/health").build();
/// assert_eq!(app.handle(&mut req).status(), 200);
/// let mut req = Request::builder("DELETE", "/health").build();
/// assert_eq!(app.handle(&mut req).status(), 405);
/// let mut req = Request::builder("GET", "/nope").build();
/// assert_eq!(app.handle(&mut req).status(), 404);
/// ```
///
/// Register it like any handler: `Server::new().app("api", routes)`.
#[derive(Default)]
pub struct Routes {
    routes: Vec<Route>,
    fallback: Option<Rc<dyn Handler>>,
}

struct Route {
    /// `None`: any method.
    method: Option<String>,
    pattern: Pattern,
    handler: Rc<dyn Handler>,
}

enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(pattern: &str) -> Pattern {
        match pattern.strip_suffix("/*") {
            Some(prefix) => Pattern::Prefix(prefix.to_string()),
            None => Pattern::Exact(pattern.to_string()),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Exact(exact) => path == exact,
            Pattern::Prefix(prefix) => path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                let path = match &r.pattern {
                    Pattern::Exact(p) => p.clone(),
                    Pattern::Prefix(p) => format!("{p}/*"),
                };
                format!("{} {path}", r.method.as_deref().unwrap_or("*"))
            })
            .collect();
        f.debug_struct("Routes")
            .field("routes", &routes)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Routes {
    /// No routes: every request gets `404` until some are added.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Routes `method` (any method if `"*"`) requests for `pattern` to `handler`.
    pub fn route(mut self, method: &str, pattern: &str, handler: impl Handler) -> Routes {
        self.routes.push(Route {
            method: (method != "*").then(|| method.to_ascii_uppercase()),
            pattern: Pattern::parse(pattern),
            handler: Rc::new(handler),
        });
        self
    }

    /// Routes `GET` (and `HEAD`) requests for `pattern` to `handler`.
    pub fn get(self, pattern: &str, handler: impl Handler) -> Routes {
        self.route("GET", pattern, handler)
    }

    /// Routes `POST` requests for `pattern` to `handler`.
    pub fn post(self, pattern: &str, handler: impl Handler) -> Routes {
        self.route("POST", pattern, handler)
    }

    /// Serves every request no route matches (instead of `404`).
    pub fn fallback(mut self, handler: impl Handler) -> Routes {
        self.fallback = Some(Rc::new(handler));
        self
    }
}

impl Handler for Routes {
    fn handle(&self, req: &mut Request<'_>) -> Response {
        let method = req.method().to_string();
        let mut allowed: Vec<&str> = Vec::new();
        for route in self.routes.iter().filter(|r| r.pattern.matches(req.path())) {
            match &route.method {
                None => return route.handler.handle(req),
                Some(m) if *m == method || (m == "GET" && method == "HEAD") => {
                    return route.handler.handle(req);
                }
                Some(m) => allowed.push(m),
            }
        }
        if let Some(fallback) = &self.fallback {
            return fallback.handle(req);
        }
        if allowed.is_empty() {
            Response::error(404)
        } else {
            allowed.dedup();
            Response::error(405).header("Allow", allowed.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(routes: &Routes, method: &str, uri: &str) -> (u16, Option<String>) {
        let response = routes.handle(&mut Request::builder(method, uri).build());
        (
            response.status(),
            response.header_value("allow").map(str::to_string),
        )
    }

    #[test]
    fn routes_match_method_and_path_and_explain_misses() {
        let routes = Routes::new()
            .get("/a", |_: &mut Request<'_>| Response::text("a"))
            .post("/a", |_: &mut Request<'_>| Response::new(201))
            .route("*", "/any", |_: &mut Request<'_>| Response::new(202))
            .get("/files/*", |_: &mut Request<'_>| Response::new(203));
        assert_eq!(status(&routes, "GET", "/a"), (200, None));
        assert_eq!(status(&routes, "HEAD", "/a"), (200, None));
        assert_eq!(status(&routes, "POST", "/a"), (201, None));
        assert_eq!(
            status(&routes, "PUT", "/a"),
            (405, Some("GET, POST".to_string()))
        );
        assert_eq!(status(&routes, "DELETE", "/any"), (202, None));
        assert_eq!(status(&routes, "GET", "/files/x/y"), (203, None));
        assert_eq!(status(&routes, "GET", "/files"), (203, None));
        assert_eq!(status(&routes, "GET", "/filesx"), (404, None));
        let with_fallback = Routes::new().fallback(|_: &mut Request<'_>| Response::new(299));
        assert_eq!(status(&with_fallback, "GET", "/zzz"), (299, None));
    }
}
