//! Python WSGI apps (cargo feature `python`): the app's settings ([`AppSpec`]), loading the app
//! into CPython on the worker's main thread, the gevent hub that runs one greenlet per request
//! there ([`serve`]), and the bridge between that thread and the worker's I/O thread.
//!
//! The I/O thread (the unchanged mio + coroutine runtime) owns every socket. Its handler for the
//! app, [`WsgiHandler`], reads the whole request, hands it to the Python thread through the
//! [`Bridge`] (a queue plus a pipe that a gevent `loop.io` watcher watches) and parks its
//! coroutine in [`rt::wait_remote`](crate::coro::wait_remote) until the greenlet hands the
//! answer back. Python runs only on the main thread's own stack, never on the I/O thread or a
//! coroutine stack (`reference/python-wsgi.md` §4 E3 shows why that corrupts CPython).
//!
//! This slice buffers: `wsgi.input` is a `BytesIO` of the whole body and the response body is
//! joined before it is sent. Streaming both ways over the bridge is the next step.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyModule};

use crate::api::{Handler, Request, Response};
use crate::coro::{Completion, wait_remote};

/// The Python source of the WSGI side: loading, the hub loop, environ, `start_response`.
const WSGI_PY: &str = include_str!("wsgi.py");

/// The largest request body handed to the app in one piece (`limit-post` limits it further).
const MAX_BODY: usize = 1 << 30;

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

/// Runs gevent's hub on the calling thread with at most `cap` requests in flight, until the
/// I/O side closes the bridge and the last greenlet has finished.
pub(crate) fn serve(app: LoadedApp, bridge: PyBridge, cap: usize) -> Result<(), String> {
    Python::attach(|py| {
        let bridge = Py::new(py, bridge).map_err(|e| traceback(py, &e))?;
        (app.host.bind(py))
            .call_method1("serve", (bridge, app.app.bind(py), cap.max(1)))
            .map(|_| ())
            .map_err(|e| traceback(py, &e))
    })
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

/// One request on its way to the app: its CGI variables, its body, and where its answer goes.
#[pyclass(module = "rcontainer_wsgi")]
struct Job {
    vars: Vec<(String, String)>,
    scheme: String,
    body: Vec<u8>,
    done: Option<Completion<Answer>>,
}

#[pymethods]
impl Job {
    #[getter]
    fn vars(&self) -> Vec<(String, String)> {
        self.vars.clone()
    }

    #[getter]
    fn scheme(&self) -> &str {
        &self.scheme
    }

    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.body)
    }

    /// The app's answer: `status` as in `start_response` ("200 OK"), its headers and body.
    fn respond(&mut self, status: &str, headers: Vec<(String, String)>, body: &[u8]) {
        if let Some(done) = self.done.take() {
            done.complete(Answer::Reply {
                status: status.to_string(),
                headers,
                body: body.to_vec(),
            });
        }
    }

    /// The app raised: its traceback.
    fn fail(&mut self, traceback: String) {
        if let Some(done) = self.done.take() {
            done.complete(Answer::Raised(traceback));
        }
    }
}

/// What comes back from the Python thread.
#[derive(Debug)]
enum Answer {
    Reply {
        status: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    Raised(String),
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

struct BridgeInner {
    queue: Mutex<Queue>,
    /// A byte per handed-over job (and one at close) wakes the Python thread's watcher.
    wake: OwnedFd,
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BridgeInner {
    fn poke(&self) {
        // A full pipe already wakes the reader; nothing is lost by a failed write.
        let _ = nix::unistd::write(self.wake.as_fd(), &[1]);
    }
}

/// The I/O thread's end of the bridge.
#[derive(Clone)]
pub(crate) struct IoBridge(Arc<BridgeInner>);

impl std::fmt::Debug for IoBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoBridge").finish_non_exhaustive()
    }
}

/// The Python thread's end of the bridge (a Python object: `fileno`, `take`, `log`).
#[pyclass(module = "rcontainer_wsgi")]
pub(crate) struct PyBridge {
    inner: Arc<BridgeInner>,
    readable: OwnedFd,
}

impl std::fmt::Debug for PyBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyBridge").finish_non_exhaustive()
    }
}

/// A new bridge: the I/O end and the Python end.
pub(crate) fn bridge() -> io::Result<(IoBridge, PyBridge)> {
    use nix::fcntl::OFlag;
    let (readable, writable) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let inner = Arc::new(BridgeInner {
        queue: Mutex::new(Queue::default()),
        wake: writable,
    });
    Ok((IoBridge(inner.clone()), PyBridge { inner, readable }))
}

impl IoBridge {
    fn submit(&self, job: Job) -> io::Result<()> {
        let mut queue = lock(&self.0.queue);
        if queue.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the Python thread stopped",
            ));
        }
        queue.jobs.push_back(job);
        drop(queue);
        self.0.poke();
        Ok(())
    }

    /// No more requests: the Python thread finishes those it has, then its hub loop returns.
    pub(crate) fn close(&self) {
        lock(&self.0.queue).closed = true;
        self.0.poke();
    }

    /// The handler that serves the app's requests from the I/O thread; `count_exception` is
    /// called there for each request the app raised on (stats `exceptions`).
    pub(crate) fn handler(&self, count_exception: Box<dyn Fn()>) -> WsgiHandler {
        WsgiHandler {
            bridge: self.clone(),
            count_exception,
        }
    }
}

#[pymethods]
impl PyBridge {
    /// The descriptor the hub watches for readability.
    fn fileno(&self) -> i32 {
        self.readable.as_raw_fd()
    }

    /// The jobs handed over so far (maybe none: a wake-up raced with an earlier take), or
    /// `None` once the bridge is closed and empty.
    fn take(&self) -> Option<Vec<Job>> {
        let mut buf = [0u8; 512];
        while matches!(nix::unistd::read(self.readable.as_fd(), &mut buf), Ok(n) if n > 0) {}
        let mut queue = lock(&self.inner.queue);
        if queue.jobs.is_empty() && queue.closed {
            return None;
        }
        Some(queue.jobs.drain(..).collect())
    }

    /// A line for the log (`wsgi.errors`).
    fn log(&self, line: &str) {
        log::error!("{line}");
    }
}

impl Drop for PyBridge {
    fn drop(&mut self) {
        // The Python side is gone: later requests fail at once instead of waiting.
        let mut queue = lock(&self.inner.queue);
        queue.closed = true;
        queue.jobs.clear();
    }
}

/// The app's handler on the I/O thread: hands each request to the Python thread and parks the
/// coroutine until its answer comes back.
pub(crate) struct WsgiHandler {
    bridge: IoBridge,
    count_exception: Box<dyn Fn()>,
}

impl std::fmt::Debug for WsgiHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsgiHandler").finish_non_exhaustive()
    }
}

impl Handler for WsgiHandler {
    fn handle(&self, req: &mut Request<'_>) -> Response {
        let body = match req.read_body(MAX_BODY) {
            Ok(body) => body,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Response::error(413),
            Err(e) => {
                log::warn!("request body not read: {e}");
                return Response::error(400);
            }
        };
        let job = |done| Job {
            vars: environ_vars(req),
            scheme: req.scheme().to_string(),
            body,
            done: Some(done),
        };
        match wait_remote(|done| self.bridge.submit(job(done))) {
            Ok(Answer::Reply {
                status,
                headers,
                body,
            }) => reply(&status, headers, body),
            Ok(Answer::Raised(traceback)) => {
                (self.count_exception)();
                log::error!("the app raised an exception:\n{}", traceback.trim_end());
                Response::error(500)
            }
            Err(e) => {
                log::error!("no answer from the app: {e}");
                Response::error(500)
            }
        }
    }
}

/// The response for the app's `status` line, headers and body. Framing headers are the
/// worker's (the body is complete, so it sets the length itself).
fn reply(status: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> Response {
    let code = status
        .get(..3)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..=999).contains(c));
    let Some(code) = code else {
        log::error!("the app answered with a bad status line {status:?}");
        return Response::error(500);
    };
    let mut response = Response::new(code);
    for (name, value) in headers {
        let framing = ["content-length", "transfer-encoding", "connection"];
        if !framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            response = response.header(name, value);
        }
    }
    response.body(body)
}

/// The CGI variables of PEP 3333's environ: those derived from the request, then the request's
/// own vars (a uwsgi packet's, from the proxy) over them, except the routing pair
/// (`SCRIPT_NAME`, `PATH_INFO`), which the mount decided.
fn environ_vars(req: &Request<'_>) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match vars.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value.to_string(),
        None => vars.push((name.to_string(), value.to_string())),
    };
    let host = req.header("host").unwrap_or("localhost");
    let (server_name, server_port) = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, port),
        _ => (host, if req.scheme() == "https" { "443" } else { "80" }),
    };
    set("SERVER_NAME", server_name);
    set("SERVER_PORT", server_port);
    set("SERVER_PROTOCOL", req.protocol());
    set("REQUEST_METHOD", req.method());
    set("QUERY_STRING", req.query());
    set("REQUEST_URI", req.uri());
    if let Some(peer) = req.remote_addr() {
        set("REMOTE_ADDR", &peer.ip().to_string());
        set("REMOTE_PORT", &peer.port().to_string());
    }
    for (name, value) in req.headers() {
        let key = match name.to_ascii_lowercase().as_str() {
            "content-type" => "CONTENT_TYPE".to_string(),
            "content-length" => "CONTENT_LENGTH".to_string(),
            _ => format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_")),
        };
        set(&key, value);
    }
    // PEP 3333 has no HTTP_CONTENT_TYPE or HTTP_CONTENT_LENGTH (they are set above); an empty
    // var (an HTTP request's SERVER_PORT) keeps what the request itself says.
    let not_taken = [
        "SCRIPT_NAME",
        "PATH_INFO",
        "HTTP_CONTENT_TYPE",
        "HTTP_CONTENT_LENGTH",
    ];
    for (name, value) in req.vars() {
        if !not_taken.contains(&name.as_str()) && !value.is_empty() {
            set(name, value);
        }
    }
    set("SCRIPT_NAME", req.script_name());
    set("PATH_INFO", req.path());
    vars
}
