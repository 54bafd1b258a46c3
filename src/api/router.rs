//! Which app serves which path: `mount = /prefix=app` entries and the default `module`.
//!
//! The longest matching prefix wins; a prefix matches at a segment boundary only (`/api`
//! serves `/api` and `/api/users`, never `/apix`). As in uWSGI, the prefix becomes the
//! request's `SCRIPT_NAME` and the rest its path (`PATH_INFO`).
//!
//! Routing looks at the percent-decoded path as bytes, the same on both protocols (HTTP decodes
//! its target; nginx sends `PATH_INFO` decoded), never at a lossy text form: `/api/%ff` is
//! under `/api`, `/api%ff` is not. A static map never serves a path that is not UTF-8 (no file
//! name it could mean is reachable from the text handlers see): such a path under a static map
//! is a 404, not a fall-through to another route.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::options::{AppConfig, AppOption};
use super::{Handler, Request, Response};

/// The checked values of every app option the configuration set (or defaulted), by key.
pub(crate) type OptionValues = BTreeMap<&'static str, Vec<String>>;

/// What the configuration says about routing: the default app, the mounts and the static maps,
/// plus the values of the apps' options. The worker fills it from its `Config`.
#[derive(Debug, Default, Clone)]
pub(crate) struct RouteSettings {
    /// `module`: the app serving every path nothing else claims; without one such paths are
    /// 404 (an instance of static maps only).
    pub(crate) module: Option<String>,
    /// `mount = /prefix=app`, as `(prefix, app name)`.
    pub(crate) mounts: Vec<(String, String)>,
    /// `static-map = /prefix=dir`, as `(prefix, directory)`; checked before the mounts.
    pub(crate) static_maps: Vec<(String, PathBuf)>,
    /// The values of the apps' options.
    pub(crate) options: OptionValues,
}

/// Builds an app from its options, once per worker; fails with a message for the log.
pub(crate) type AppFactory = Rc<dyn Fn(&AppConfig) -> Result<Rc<dyn Handler>, String>>;

/// Builds the handler serving one `static-map` directory (a plain function: a Python worker
/// hands it to its I/O thread).
pub(crate) type StaticFactory = fn(&Path, &AppConfig) -> Rc<dyn Handler>;

/// An app as registered: ready to serve, or built from its options in each worker.
#[derive(Clone)]
pub(crate) enum AppEntry {
    Ready(Rc<dyn Handler>),
    Configured {
        options: Vec<AppOption>,
        factory: AppFactory,
    },
}

/// The apps a binary offers, by name: the built-ins plus the user's own.
#[derive(Default)]
pub(crate) struct AppRegistry {
    apps: BTreeMap<String, AppEntry>,
    /// What serves `static-map` directories, and its options.
    static_files: Option<(Vec<AppOption>, StaticFactory)>,
}

impl fmt::Debug for AppRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.apps.keys()).finish()
    }
}

impl AppRegistry {
    /// Adds (or replaces) the app `name`.
    pub(crate) fn insert(&mut self, name: &str, handler: Rc<dyn Handler>) {
        self.apps.insert(name.to_string(), AppEntry::Ready(handler));
    }

    /// Adds (or replaces) the app `name`, built by each worker from its `options`.
    pub(crate) fn insert_configured(
        &mut self,
        name: &str,
        options: Vec<AppOption>,
        factory: AppFactory,
    ) {
        self.apps
            .insert(name.to_string(), AppEntry::Configured { options, factory });
    }

    /// Sets what serves `static-map` directories, with its options.
    pub(crate) fn set_static_files(&mut self, options: Vec<AppOption>, factory: StaticFactory) {
        self.static_files = Some((options, factory));
    }

    /// What serves `static-map` directories, with its options, if this binary has it.
    #[cfg(feature = "python")]
    pub(crate) fn static_files(&self) -> Option<(Vec<AppOption>, StaticFactory)> {
        self.static_files.clone()
    }

    /// Every option every app declares, with the app that declares it (`static-map` for the
    /// static-file server), in registration order within each app.
    pub(crate) fn options(&self) -> Vec<(&str, &AppOption)> {
        let mut all: Vec<(&str, &AppOption)> = Vec::new();
        for (name, entry) in &self.apps {
            if let AppEntry::Configured { options, .. } = entry {
                all.extend(options.iter().map(|option| (name.as_str(), option)));
            }
        }
        if let Some((options, _)) = &self.static_files {
            all.extend(options.iter().map(|option| ("static-map", option)));
        }
        all
    }

    /// The options app `name` declares (empty for an app without any, or an unknown one).
    pub(crate) fn options_of(&self, name: &str) -> &[AppOption] {
        match self.apps.get(name) {
            Some(AppEntry::Configured { options, .. }) => options,
            _ => &[],
        }
    }

    /// The app named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&AppEntry> {
        self.apps.get(name)
    }

    /// Every app name, sorted (for error messages and `--help`).
    pub(crate) fn names(&self) -> Vec<&str> {
        self.apps.keys().map(String::as_str).collect()
    }

    /// The error for an unknown app name, listing the known ones.
    pub(crate) fn unknown_app(&self, name: &str) -> String {
        format!("no app named '{name}' (apps: {})", self.names().join(", "))
    }

    /// The handler of app `name`, built from its options' `values` if it is a configured app.
    fn build(&self, name: &str, values: &OptionValues) -> Result<Rc<dyn Handler>, String> {
        match self.get(name) {
            None => Err(self.unknown_app(name)),
            Some(AppEntry::Ready(handler)) => Ok(Rc::clone(handler)),
            Some(AppEntry::Configured { options, factory }) => {
                factory(&app_config(options, values)).map_err(|e| format!("app '{name}': {e}"))
            }
        }
    }
}

/// The values of `options` (and only those) out of every app option's `values`.
fn app_config(options: &[AppOption], values: &OptionValues) -> AppConfig {
    let mut config = AppConfig::default();
    for option in options {
        if let Some(values) = values.get(option.key) {
            config.insert(option.key, values.clone());
        }
    }
    config
}

/// Routes a request path to an app.
pub(crate) struct Router {
    /// Static maps, longest prefix first: they take precedence over every mount.
    statics: Vec<(String, Rc<dyn Handler>)>,
    /// Mounts, longest prefix first. A prefix never ends with `/` (except the root, `""`).
    mounts: Vec<(String, Rc<dyn Handler>)>,
    /// Answers a path under a static map that is not UTF-8.
    not_found: Rc<dyn Handler>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field(
                "statics",
                &self.statics.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field(
                "mounts",
                &self.mounts.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
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
    /// A router with `settings.module` serving every path no mount or static map claims. Each
    /// app is built once, however many mounts name it. Fails with a message naming the unknown
    /// app, or the app whose settings are missing.
    pub(crate) fn new(registry: &AppRegistry, settings: &RouteSettings) -> Result<Router, String> {
        let mut built: BTreeMap<&str, Rc<dyn Handler>> = BTreeMap::new();
        let mut lookup = |name: &str| -> Result<Rc<dyn Handler>, String> {
            let name = name.trim();
            if let Some(handler) = built.get(name) {
                return Ok(Rc::clone(handler));
            }
            let handler = registry.build(name, &settings.options)?;
            let key = registry
                .apps
                .get_key_value(name)
                .map(|(k, _)| k.as_str())
                .expect("invariant: build succeeded, so the app is registered");
            built.insert(key, Rc::clone(&handler));
            Ok(handler)
        };
        let root: Rc<dyn Handler> = match &settings.module {
            Some(module) => lookup(module)?,
            None => Rc::new(|_: &mut super::Request<'_>| super::Response::not_found()),
        };
        let mut routes = vec![(String::new(), root)];
        for (prefix, app) in &settings.mounts {
            let prefix = prefix.trim_end_matches('/').to_string();
            routes.retain(|(p, _)| *p != prefix);
            routes.push((prefix, lookup(app)?));
        }
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        let mut statics = Vec::new();
        if !settings.static_maps.is_empty() {
            let Some((options, factory)) = &registry.static_files else {
                return Err("static-map is set but this binary cannot serve static files".into());
            };
            let config = app_config(options, &settings.options);
            for (prefix, dir) in &settings.static_maps {
                let prefix = prefix.trim_end_matches('/').to_string();
                statics.retain(|(p, _)| *p != prefix);
                statics.push((prefix, factory(dir, &config)));
            }
            statics.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        }
        Ok(Router {
            statics,
            mounts: routes,
            not_found: Rc::new(|_: &mut Request<'_>| Response::error(404)),
        })
    }

    /// The app for `path` (percent-decoded `PATH_INFO`, as bytes) and the prefix it is mounted
    /// at: a static map first, then the longest mount.
    pub(crate) fn route(&self, path: &[u8]) -> Route<'_> {
        if let Some((prefix, handler)) = self
            .statics
            .iter()
            .find(|(prefix, _)| matches_prefix(path, prefix))
        {
            let handler = if std::str::from_utf8(path).is_ok() {
                handler
            } else {
                &self.not_found
            };
            return Route {
                handler,
                script_name: prefix,
            };
        }
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

/// Whether `prefix` is `path` or a leading run of whole segments of it, compared as bytes.
fn matches_prefix(path: &[u8], prefix: &str) -> bool {
    match path.strip_prefix(prefix.as_bytes()) {
        Some(rest) => rest.is_empty() || rest.starts_with(b"/") || prefix.is_empty(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OptionKind;

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

    fn settings(module: &str, mounts: &[(String, String)]) -> RouteSettings {
        RouteSettings {
            module: Some(module.to_string()),
            mounts: mounts.to_vec(),
            ..RouteSettings::default()
        }
    }

    fn app_for(router: &Router, path: &str) -> (String, String) {
        app_for_bytes(router, path.as_bytes())
    }

    fn app_for_bytes(router: &Router, path: &[u8]) -> (String, String) {
        let route = router.route(path);
        let mut req = Request::builder("GET", "/").build();
        let (status, _, body) = route.handler.handle(&mut req).into_parts();
        let crate::api::ResponseBody::Bytes(bytes) = body else {
            panic!("bytes expected")
        };
        let body = if status == 200 {
            String::from_utf8(bytes.into_owned()).unwrap()
        } else {
            status.to_string()
        };
        (body, route.script_name.to_string())
    }

    #[test]
    fn routing_compares_decoded_bytes_and_never_a_lossy_form() {
        let mut registry = registry();
        registry.set_static_files(Vec::new(), |_: &Path, _: &AppConfig| {
            Rc::new(|_: &mut Request<'_>| Response::text("static")) as Rc<dyn Handler>
        });
        let mut routes = settings("a", &[("/api".to_string(), "b".to_string())]);
        routes.static_maps = vec![("/s".to_string(), PathBuf::from("/srv"))];
        let router = Router::new(&registry, &routes).unwrap();
        assert_eq!(
            app_for_bytes(&router, b"/api/\xff"),
            ("b".into(), "/api".into())
        );
        assert_eq!(app_for_bytes(&router, b"/api\xff"), ("a".into(), "".into()));
        assert_eq!(app_for_bytes(&router, b"/\xff"), ("a".into(), "".into()));
        assert_eq!(
            app_for_bytes(&router, b"/s/\xff"),
            ("404".into(), "/s".into())
        );
        assert_eq!(
            app_for_bytes(&router, "/s/é".as_bytes()),
            ("static".into(), "/s".into())
        );
        assert_eq!(app_for_bytes(&router, b"/s\xff"), ("a".into(), "".into()));
    }

    #[test]
    fn the_longest_mount_at_a_segment_boundary_wins() {
        let mounts = vec![
            ("/api".to_string(), "b".to_string()),
            ("/api/v2/".to_string(), "c".to_string()),
        ];
        let router = Router::new(&registry(), &settings("a", &mounts)).unwrap();
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
        let err = Router::new(&registry(), &settings("nope", &[])).unwrap_err();
        assert_eq!(err, "no app named 'nope' (apps: a, b, c)");
        let mounts = vec![("/x".to_string(), "zzz".to_string())];
        assert!(
            Router::new(&registry(), &settings("a", &mounts))
                .unwrap_err()
                .contains("'zzz'")
        );
    }

    #[test]
    fn static_maps_take_precedence_over_mounts() {
        let mut registry = registry();
        registry.set_static_files(Vec::new(), |dir: &Path, _: &AppConfig| {
            let body = format!("static {}", dir.display());
            Rc::new(move |_: &mut Request<'_>| Response::text(body.clone())) as Rc<dyn Handler>
        });
        let mut routes = settings("a", &[("/static".to_string(), "b".to_string())]);
        routes.static_maps = vec![("/static/".to_string(), PathBuf::from("/srv"))];
        let router = Router::new(&registry, &routes).unwrap();
        assert_eq!(
            app_for(&router, "/static/x.css"),
            ("static /srv".into(), "/static".into())
        );
        assert_eq!(app_for(&router, "/other"), ("a".into(), "".into()));
    }

    #[test]
    fn configured_apps_are_built_once_from_the_settings() {
        let mut registry = registry();
        let builds = Rc::new(std::cell::Cell::new(0));
        let counter = Rc::clone(&builds);
        let upstream = AppOption::new("cfg-url", OptionKind::Url, "where");
        registry.insert_configured(
            "cfg",
            vec![upstream],
            Rc::new(move |config: &AppConfig| {
                counter.set(counter.get() + 1);
                let url = config.url("cfg-url").ok_or("needs cfg-url")?.to_string();
                assert_eq!(config.text("other-url"), None, "only its own options");
                Ok(
                    Rc::new(move |_: &mut Request<'_>| Response::text(url.clone()))
                        as Rc<dyn Handler>,
                )
            }),
        );
        let mounts = vec![
            ("/x".to_string(), "cfg".to_string()),
            ("/y".to_string(), "cfg".to_string()),
        ];
        let mut routes = settings("cfg", &mounts);
        assert_eq!(
            Router::new(&registry, &routes).unwrap_err(),
            "app 'cfg': needs cfg-url"
        );
        builds.set(0);
        routes.options.insert("cfg-url", vec!["http://u/".into()]);
        routes.options.insert("other-url", vec!["http://v/".into()]);
        let router = Router::new(&registry, &routes).unwrap();
        assert_eq!(app_for(&router, "/y/z").0, "http://u/");
        assert_eq!(builds.get(), 1);
    }
}
