//! The Python WSGI app of an instance, as the configuration names it: which one (`module` that
//! is no app of this binary, or `wsgi-file`), its `callable`, the interpreter's setup (`home`,
//! `pythonpath`) and gevent (`gevent`, `gevent-monkey-patch`); and the uWSGI `plugins` names
//! rcontainer has built in.
//!
//! This module only reads and checks the configuration; it runs no Python. A binary built
//! without the `python` feature refuses a Python app here, with one line saying how to build
//! one that has it, before anything starts.
//!
//! Rules (README, "Python WSGI apps"): a `module` naming an app of the binary is that app, any
//! other `pkg.mod` or `pkg.mod:callable` is a Python module; `pkg.mod:name` wins over
//! `callable`; `module` and `wsgi-file` together are an error (one app serves every path);
//! a Python app serves every path no `static-map` claims, so `mount` is an error next to it;
//! `gevent = N` also sets `async` (the requests in flight per worker) unless `async` is given,
//! and both with different numbers are an error; `gevent-monkey-patch` defaults to on when
//! `gevent` is set. Python keys in a configuration without a Python app warn that they have no
//! effect.

use std::path::PathBuf;

use super::error::{ConfigError, Warning};
use super::options::{Config, Setting};
use super::uwsgi::NO_PYTHON;
use super::value::{Kind, ModuleTarget, Plugin, PythonTarget, split_commas};

/// Whether this binary runs Python apps (the cargo feature `python`).
pub(crate) const SUPPORTED: bool = cfg!(feature = "python");

/// `callable` when nothing names one (uWSGI's default, the option table's).
#[cfg(feature = "python")]
pub(crate) const DEFAULT_CALLABLE: &str = "application";

/// The Python WSGI app an instance serves, for the worker that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PythonApp {
    /// Where the app is.
    pub(crate) source: PythonSource,
    /// The WSGI callable's name in it: the one after `module = pkg.mod:`, else `callable`.
    pub(crate) callable: String,
    /// `home`: the virtualenv (or prefix) to run in; `None` means the build machine's Python.
    pub(crate) home: Option<PathBuf>,
    /// `pythonpath`: directories for `sys.path`, in configuration order.
    pub(crate) pythonpath: Vec<PathBuf>,
    /// `gevent = N`: greenlets per worker; `None` when `gevent` is not set. The same number is
    /// in `Config::async_cores` (the I/O thread's cap on requests in flight).
    pub(crate) gevent: Option<usize>,
    /// Whether gevent's `monkey.patch_all()` runs before the app is imported.
    pub(crate) monkey_patch: bool,
}

/// Where a Python app's code is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PythonSource {
    /// `module = project.wsgi`: a module to import (dotted path).
    Module(String),
    /// `wsgi-file = project/wsgi.py`: a file to load as a module (relative to `chdir`).
    File(PathBuf),
}

/// uWSGI plugins whose work rcontainer does itself: `plugins = python3,gevent` loads quietly.
/// `python`, `python3`, `python311`...; `gevent`, `gevent_python3`, `gevent_python311`...;
/// `http` (served as `http-socket`) and `corerouter` (what `http` is built on).
pub(crate) fn is_builtin_plugin(name: &str) -> bool {
    let python = |rest: &str| rest.is_empty() || rest.bytes().all(|b| b.is_ascii_digit());
    let gevent = |rest: &str| {
        rest.is_empty()
            || rest
                .strip_prefix("_python")
                .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(name, "http" | "corerouter")
        || name.strip_prefix("python").is_some_and(python)
        || name.strip_prefix("gevent").is_some_and(gevent)
}

/// A warning for each `plugins` name rcontainer has not built in.
pub(crate) fn check_plugins<'a>(settings_for: &impl Fn(&str) -> Vec<&'a Setting>) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for setting in settings_for("plugins") {
        let Some(text) = setting.value.as_deref() else {
            continue;
        };
        for name in split_commas(text).filter_map(|item| Plugin::parse(item).ok()) {
            if !is_builtin_plugin(&name) {
                warnings.push(Warning::at(
                    &setting.origin,
                    format!("rcontainer has no plugin {name}; ignored"),
                ));
            }
        }
    }
    warnings
}

/// Decides whether `config` serves a Python app and fills in `config.python`; `module` then
/// names no app of the binary and is cleared, and `gevent` sets `async_cores` (see the module
/// docs for the rules). `app_names` are the apps of this binary; `supported` whether it runs
/// Python. Returns the errors (a Python app in a binary without Python is one) and warnings.
pub(crate) fn resolve<'a>(
    config: &mut Config,
    settings_for: &impl Fn(&str) -> Vec<&'a Setting>,
    app_names: &[&str],
    supported: bool,
) -> (Vec<ConfigError>, Vec<Warning>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let last = |key: &str| settings_for(key).last().copied();
    let error_at = |setting: &Setting, message: String| {
        ConfigError::at(&setting.origin, &setting.written, message)
    };

    if let Some(greenlets) = config.gevent {
        match last("async") {
            None => config.async_cores = greenlets,
            Some(cores) if config.async_cores != greenlets => {
                let gevent = last("gevent").expect("invariant: gevent is set");
                errors.push(error_at(
                    gevent,
                    format!(
                        "gevent = {greenlets} and async = {} ({}) both set the requests in \
                         flight per worker: set one",
                        config.async_cores, cores.origin
                    ),
                ));
            }
            Some(_) => {}
        }
    }

    // A module that is no app of this binary and does not parse as Python is left for the
    // app check, which says "no app named".
    let module: Option<ModuleTarget> = (config.module.as_deref())
        .filter(|name| !app_names.contains(name))
        .and_then(|name| PythonTarget::parse(name).ok());
    if let (Some(_), Some(module_setting), Some(file)) =
        (&config.module, last("module"), last("wsgi-file"))
    {
        errors.push(error_at(
            file,
            format!(
                "module = {} ({}) names the app serving every path too: set one of module and \
                 wsgi-file",
                config.module.as_deref().unwrap_or_default(),
                module_setting.origin
            ),
        ));
    }
    let (source, named_by) = match (module, &config.wsgi_file) {
        (Some(target), _) => (
            Some((PythonSource::Module(target.module), target.callable)),
            last("module"),
        ),
        (None, Some(file)) => (
            Some((PythonSource::File(file.clone()), None)),
            last("wsgi-file"),
        ),
        (None, None) => (None, None),
    };
    let Some(((source, callable), named_by)) = source.zip(named_by) else {
        warnings.extend(without_python_app(settings_for));
        return (errors, warnings);
    };
    if matches!(source, PythonSource::Module(_)) {
        // `module` names the Rust app serving every path; this one is Python.
        config.module = None;
    }
    if !supported {
        let value = named_by.value.as_deref().unwrap_or_default().trim();
        errors.push(error_at(named_by, format!("{value} {NO_PYTHON}")));
    }
    for mount in settings_for("mount") {
        let value = mount.value.as_deref().unwrap_or_default().trim();
        errors.push(error_at(
            mount,
            format!(
                "mount = {value}: a Python app ({} = {}) serves every path no static-map \
                 claims, nothing can be mounted beside it",
                named_by.written,
                named_by.value.as_deref().unwrap_or_default().trim()
            ),
        ));
    }
    config.python = Some(PythonApp {
        source,
        callable: callable.unwrap_or_else(|| config.callable.clone()),
        home: config.home.clone(),
        pythonpath: config.pythonpath.clone(),
        gevent: config.gevent,
        monkey_patch: config
            .gevent_monkey_patch
            .unwrap_or(config.gevent.is_some()),
    });
    (errors, warnings)
}

/// The Python keys a configuration without a Python app sets: they have no effect, say so.
fn without_python_app<'a>(settings_for: &impl Fn(&str) -> Vec<&'a Setting>) -> Vec<Warning> {
    ["callable", "home", "pythonpath", "gevent-monkey-patch"]
        .into_iter()
        .flat_map(|key| settings_for(key).into_iter().take(1))
        .map(|setting| {
            Warning::at(
                &setting.origin,
                format!(
                    "{}: no effect without a Python app (module = PKG.MOD or wsgi-file)",
                    setting.written
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::error::Origin;
    use crate::config::options::find_option;

    /// Resolves the options `pairs` (as lines 1, 2, ... of `app.ini`) in a binary whose apps
    /// are `hello` and `echo`.
    fn resolved(pairs: &[(&str, &str)], supported: bool) -> (Config, Vec<String>, Vec<String>) {
        let settings: Vec<Setting> = (pairs.iter().enumerate())
            .map(|(line, (name, value))| Setting {
                key: find_option(name).expect("an option").key,
                written: (*name).to_owned(),
                value: Some((*value).to_owned()),
                origin: Origin::Ini {
                    file: "app.ini".into(),
                    line: line + 1,
                },
            })
            .collect();
        let settings_for =
            |key: &str| -> Vec<&Setting> { settings.iter().filter(|s| s.key == key).collect() };
        let mut config = Config::from_settings(settings_for).expect("values convert");
        let (errors, warnings) = resolve(&mut config, &settings_for, &["hello", "echo"], supported);
        (config, texts(&errors), texts(&warnings))
    }

    fn texts(items: &[impl ToString]) -> Vec<String> {
        items.iter().map(ToString::to_string).collect()
    }

    fn python_app(pairs: &[(&str, &str)]) -> PythonApp {
        let (config, errors, warnings) = resolved(pairs, true);
        assert_eq!((errors, warnings), (vec![], vec![]));
        config.python.expect("a Python app")
    }

    #[test]
    fn a_module_that_is_an_app_of_the_binary_stays_that_app() {
        let (config, errors, _) = resolved(&[("module", "hello")], false);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(config.module.as_deref(), Some("hello"));
        assert_eq!(config.python, None);
    }

    #[test]
    fn any_other_module_is_a_python_app_and_leaves_module_unset() {
        for (module, expected) in [
            ("project.wsgi", "project.wsgi"),
            ("myapp", "myapp"),
            ("pkg.mod:app", "pkg.mod"),
        ] {
            let (config, ..) = resolved(&[("module", module)], true);
            assert_eq!(config.module, None, "{module}");
            let python = config.python.expect("a Python app");
            assert_eq!(python.source, PythonSource::Module(expected.to_owned()));
        }
        let (config, ..) = resolved(&[("module", "my-app")], true);
        assert_eq!(config.python, None, "not Python: left for 'no app named'");
    }

    #[test]
    fn the_callable_after_the_module_wins_over_callable_which_wins_over_the_default() {
        let callable = |pairs: &[(&str, &str)]| python_app(pairs).callable;
        assert_eq!(callable(&[("module", "a.b")]), "application");
        assert_eq!(callable(&[("module", "a.b"), ("callable", "app")]), "app");
        assert_eq!(
            callable(&[("callable", "other"), ("module", "a.b:app")]),
            "app"
        );
        assert_eq!(
            callable(&[("module", "a.b:app"), ("callable", "other")]),
            "app"
        );
        assert_eq!(
            callable(&[("wsgi-file", "wsgi.py"), ("callable", "app")]),
            "app"
        );
    }

    #[test]
    fn the_interpreter_and_gevent_settings_reach_the_python_app() {
        let app = python_app(&[
            ("wsgi-file", "project/wsgi.py"),
            ("venv", "/srv/venv"),
            ("pythonpath", "/srv/a"),
            ("pp", "/srv/b"),
            ("gevent", "50"),
        ]);
        assert_eq!(app.source, PythonSource::File("project/wsgi.py".into()));
        assert_eq!(app.home, Some("/srv/venv".into()));
        assert_eq!(
            app.pythonpath,
            vec![PathBuf::from("/srv/a"), "/srv/b".into()]
        );
        assert_eq!(app.gevent, Some(50));
        assert!(app.monkey_patch, "on by default with gevent");
        let (config, ..) = resolved(&[("module", "a.b"), ("gevent", "50")], true);
        assert_eq!(config.async_cores, 50);
        let off = python_app(&[
            ("module", "a.b"),
            ("gevent", "50"),
            ("gevent-monkey-patch", "false"),
        ]);
        assert!(!off.monkey_patch);
        assert!(!python_app(&[("module", "a.b")]).monkey_patch, "no gevent");
    }

    #[test]
    fn a_binary_without_python_refuses_the_python_app_in_one_error() {
        let (_, errors, _) = resolved(&[("module", "project.wsgi")], false);
        assert_eq!(
            errors,
            vec![format!("app.ini:1: module: project.wsgi {NO_PYTHON}")]
        );
        let (_, errors, _) = resolved(&[("file", "app.py")], false);
        assert_eq!(errors, vec![format!("app.ini:1: file: app.py {NO_PYTHON}")]);
    }

    #[test]
    fn a_python_app_admits_no_second_app_for_every_path_and_no_mount() {
        let (_, errors, _) = resolved(&[("module", "hello"), ("wsgi-file", "app.py")], true);
        assert_eq!(
            errors,
            vec![
                "app.ini:2: wsgi-file: module = hello (app.ini:1) names the app serving every \
                 path too: set one of module and wsgi-file"
                    .to_owned()
            ]
        );
        let (_, errors, _) = resolved(&[("module", "a.b"), ("mount", "/api=echo")], true);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("app.ini:2: mount: mount = /api=echo: a Python app"));
    }

    #[test]
    fn python_and_gevent_plugins_are_built_in_and_others_are_not() {
        for name in [
            "python",
            "python3",
            "python311",
            "gevent",
            "gevent_python3",
            "gevent_python311",
            "http",
            "corerouter",
        ] {
            assert!(is_builtin_plugin(name), "{name}");
        }
        for name in ["php", "asyncio_python3", "python3x", "greenlet", "rack"] {
            assert!(!is_builtin_plugin(name), "{name}");
        }
    }
}
