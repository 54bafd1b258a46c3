//! Which app serves which path: `mount = /prefix=app` entries and the default `module`.
//!
//! The longest matching prefix wins; a prefix matches at a segment boundary only (`/api`
//! serves `/api` and `/api/users`, never `/apix`). As in uWSGI, the prefix becomes the
//! request's `SCRIPT_NAME` and the rest its path (`PATH_INFO`).

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use super::Handler;

/// The apps a binary offers, by name: the built-ins plus the user's own.
#[derive(Default)]
pub(crate) struct AppRegistry {
    apps: BTreeMap<String, Rc<dyn Handler>>,
}

impl fmt::Debug for AppRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.apps.keys()).finish()
    }
}

impl AppRegistry {
    /// Adds (or replaces) the app `name`.
    pub(crate) fn insert(&mut self, name: &str, handler: Rc<dyn Handler>) {
        self.apps.insert(name.to_string(), handler);
    }

    /// The app named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Rc<dyn Handler>> {
        self.apps.get(name).cloned()
    }

    /// Every app name, sorted (for error messages and `--help`).
    pub(crate) fn names(&self) -> Vec<&str> {
        self.apps.keys().map(String::as_str).collect()
    }

    /// The error for an unknown app name, listing the known ones.
    pub(crate) fn unknown_app(&self, name: &str) -> String {
        format!("no app named '{name}' (apps: {})", self.names().join(", "))
    }
}

/// Routes a request path to an app.
pub(crate) struct Router {
    /// Mounts, longest prefix first. A prefix never ends with `/` (except the root, `""`).
    mounts: Vec<(String, Rc<dyn Handler>)>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.mounts.iter().map(|(p, _)| p))
            .finish()
    }
}

/// Where a path was routed.
pub(crate) struct Route<'r> {
    pub(crate) handler: &'r Rc<dyn Handler>,
    /// The mount prefix (`SCRIPT_NAME`), `""` for the default app.
    pub(crate) script_name: &'r str,
}

impl Router {
    /// A router with `default` serving every path no mount claims, plus `mounts` as
    /// `(prefix, app name)`. Fails with a message naming the unknown app.
    pub(crate) fn new(
        registry: &AppRegistry,
        default: &str,
        mounts: &[(String, String)],
    ) -> Result<Router, String> {
        let lookup = |name: &str| registry.get(name).ok_or_else(|| registry.unknown_app(name));
        let mut routes = vec![(String::new(), lookup(default)?)];
        for (prefix, app) in mounts {
            let prefix = prefix.trim_end_matches('/').to_string();
            routes.retain(|(p, _)| *p != prefix);
            routes.push((prefix, lookup(app)?));
        }
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(Router { mounts: routes })
    }

    /// The app for `path` and the prefix it is mounted at.
    pub(crate) fn route(&self, path: &str) -> Route<'_> {
        let (prefix, handler) = self
            .mounts
            .iter()
            .find(|(prefix, _)| matches_prefix(path, prefix))
            .expect("invariant: the root mount \"\" matches every path");
        Route {
            handler,
            script_name: prefix,
        }
    }
}

fn matches_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Request, Response};

    fn registry() -> AppRegistry {
        let mut registry = AppRegistry::default();
        for name in ["a", "b", "c"] {
            let body = name.to_string();
            registry.insert(
                name,
                Rc::new(move |_: &mut Request<'_>| Response::text(body.clone())),
            );
        }
        registry
    }

    fn app_for(router: &Router, path: &str) -> (String, String) {
        let route = router.route(path);
        let mut req = Request::builder("GET", "/").build();
        let (_, _, body) = route.handler.handle(&mut req).into_parts();
        let crate::api::ResponseBody::Bytes(bytes) = body else {
            panic!("bytes expected")
        };
        (
            String::from_utf8(bytes).unwrap(),
            route.script_name.to_string(),
        )
    }

    #[test]
    fn the_longest_mount_at_a_segment_boundary_wins() {
        let mounts = vec![
            ("/api".to_string(), "b".to_string()),
            ("/api/v2/".to_string(), "c".to_string()),
        ];
        let router = Router::new(&registry(), "a", &mounts).unwrap();
        assert_eq!(app_for(&router, "/"), ("a".into(), "".into()));
        assert_eq!(app_for(&router, "/apix"), ("a".into(), "".into()));
        assert_eq!(app_for(&router, "/api"), ("b".into(), "/api".into()));
        assert_eq!(app_for(&router, "/api/users"), ("b".into(), "/api".into()));
        assert_eq!(
            app_for(&router, "/api/v2/x"),
            ("c".into(), "/api/v2".into())
        );
    }

    #[test]
    fn an_unknown_app_is_an_error_listing_the_known_ones() {
        let err = Router::new(&registry(), "nope", &[]).unwrap_err();
        assert_eq!(err, "no app named 'nope' (apps: a, b, c)");
        let mounts = vec![("/x".to_string(), "zzz".to_string())];
        assert!(
            Router::new(&registry(), "a", &mounts)
                .unwrap_err()
                .contains("'zzz'")
        );
    }
}
