//! Python WSGI apps (cargo feature `python`): the app's settings ([`AppSpec`]), loading the app
//! into CPython on the worker's main thread, the gevent hub that runs one greenlet per request
//! there ([`serve`]), and the bridge between that thread and the worker's I/O thread.
//!
//! The I/O thread (the unchanged mio + coroutine runtime) owns every socket. Its handler for the
//! app ([`handler`]) hands each request to the Python thread through the [`bridge`] (a queue
//! plus a pipe that a gevent `loop.io` watcher watches) and parks its coroutine until the
//! greenlet answers; the request body and the response cross a piece at a time, with
//! back-pressure both ways. Python runs only on the main thread's own stack, never on the I/O
//! thread or a coroutine stack (`reference/python-wsgi.md` §4 E3 shows why that corrupts
//! CPython).

mod bridge;
mod handler;

use std::ffi::CString;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyModule;

pub(crate) use bridge::{PyBridge, bridge};

/// The Python source of the WSGI side: loading, the hub loop, environ, `start_response`.
const WSGI_PY: &str = include_str!("wsgi.py");

/// Which Python app a worker serves and how to load it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AppSpec {
    /// `module`: `pkg.mod` or `pkg.mod:callable`.
    pub(crate) module: Option<String>,
    /// `callable`; `None` looks for `application`, then `app`.
    pub(crate) callable: Option<String>,
    /// `wsgi-file`: a file to load instead of a module.
    pub(crate) wsgi_file: Option<PathBuf>,
    /// `home`: a virtualenv whose site-packages are added to `sys.path`.
    pub(crate) home: Option<PathBuf>,
    /// `pythonpath`: directories put first on `sys.path`.
    pub(crate) pythonpath: Vec<PathBuf>,
    /// `gevent-monkey-patch`: `monkey.patch_all()` before the app is imported.
    pub(crate) monkey_patch: bool,
}

/// A loaded app: the WSGI callable and the Python module that serves it.
#[derive(Debug)]
pub(crate) struct LoadedApp {
    app: Py<PyAny>,
    host: Py<PyModule>,
}

/// Starts CPython on the calling thread (the worker's main thread; no Python signal handlers),
/// runs gevent's monkey patching unless turned off, then imports the app. The error is the
/// Python traceback, for the log.
pub(crate) fn load(spec: &AppSpec) -> Result<LoadedApp, String> {
    Python::initialize();
    Python::attach(|py| {
        let host = PyModule::from_code(
            py,
            &CString::new(WSGI_PY).expect("invariant: the source has no NUL"),
            c"rcontainer_wsgi.py",
            c"rcontainer_wsgi",
        )
        .map_err(|e| traceback(py, &e))?;
        let path_text = |p: &PathBuf| p.to_string_lossy().into_owned();
        let app = host
            .call_method1(
                "load",
                (
                    spec.module.clone().unwrap_or_default(),
                    spec.callable.clone(),
                    spec.wsgi_file.as_ref().map(path_text),
                    spec.home.as_ref().map(path_text),
                    spec.pythonpath.iter().map(path_text).collect::<Vec<_>>(),
                    spec.monkey_patch,
                ),
            )
            .map_err(|e| traceback(py, &e))?;
        Ok(LoadedApp {
            app: app.unbind(),
            host: host.unbind(),
        })
    })
}

/// Runs gevent's hub on the calling thread, one greenlet per request (the I/O thread admits at
/// most `async` at once), until the I/O side closes the bridge and the last greenlet has
/// finished.
pub(crate) fn serve(app: LoadedApp, bridge: PyBridge) -> Result<(), String> {
    Python::attach(|py| {
        let bridge = Py::new(py, bridge).map_err(|e| traceback(py, &e))?;
        (app.host.bind(py))
            .call_method1("serve", (bridge, app.app.bind(py)))
            .map(|_| ())
            .map_err(|e| traceback(py, &e))
    })
}

/// Logs `intro`, then the traceback a line a record, as Python prints it (the log escapes line
/// breaks inside a record, so one record would be a single unreadable line).
pub(crate) fn log_traceback(intro: &str, traceback: &str) {
    log::error!("{intro}");
    for line in traceback.trim_end().lines() {
        log::error!("{line}");
    }
}

/// The traceback of `e` as Python prints it.
fn traceback(py: Python<'_>, e: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        let lines = tb.call_method1("format_exception", (e.value(py),))?;
        let text: String = ""
            .into_pyobject(py)?
            .call_method1("join", (lines,))?
            .extract()?;
        Ok(text)
    });
    formatted.unwrap_or_else(|_| e.to_string())
}
