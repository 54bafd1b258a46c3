//! A Python worker (feature `python`): the main thread loads the app into CPython and runs
//! gevent's hub; the worker's usual runtime ([`serve`](super::serve), unchanged) runs on a
//! second thread, the I/O thread, which owns every socket and whose one app is the bridge to
//! Python.
//!
//! Signals: the main thread keeps the worker's signals blocked (a forked worker starts with
//! them blocked, and they are blocked again here for a worker started otherwise), so TERM, INT,
//! QUIT and USR1 always reach the I/O thread, which installs the worker's signal handling as
//! any worker does; Python installs no handlers of its own (it is initialised without them).
//! When the I/O thread's loop ends (drained after TERM, `max-requests`, or INT), it closes the
//! bridge (every request it waited for is answered or given up by then); the hub kills the
//! greenlets still running, which nobody waits for, and returns, and the worker exits with the
//! I/O thread's code.
//!
//! Watchdog: the I/O thread stamps the worker's heartbeat only while the Python thread keeps up
//! with its work (the bridge's `python_responsive`),
//! so a greenlet that never yields (a CPU loop, C code holding the thread) stops the heartbeat
//! and the master's `worker-watchdog` aborts the worker, which prints every thread's Python
//! stack to the log as it goes.

use std::rc::Rc;

use super::{Apps, WorkerSpec, serve};
use crate::config::python::{DEFAULT_CALLABLE, PythonApp, PythonSource};
use crate::exit;
use crate::python::{self, AppSpec};
use crate::scoreboard::AliveCheck;

/// The one app of a Python worker's router.
const APP_NAME: &str = "python";

/// What the Python side needs of the configuration's app. `callable` left at its default
/// (`application`) lets the loader also find `app`, the name Flask apps use.
pub(super) fn app_spec(app: &PythonApp) -> AppSpec {
    let (module, wsgi_file) = match &app.source {
        PythonSource::Module(module) => (Some(module.clone()), None),
        PythonSource::File(file) => (None, Some(file.clone())),
    };
    AppSpec {
        module,
        callable: (app.callable != DEFAULT_CALLABLE).then(|| app.callable.clone()),
        wsgi_file,
        home: app.home.clone(),
        pythonpath: app.pythonpath.clone(),
        monkey_patch: app.monkey_patch,
    }
}

/// Runs a Python worker serving `app`; returns the process exit code.
pub(super) fn run(spec: WorkerSpec<'_>, app: AppSpec) -> u8 {
    if let Err(e) = crate::sys::signal::block_master_signals() {
        log::error!("worker failed to start: blocking signals: {e}");
        return exit::WORKER_BOOT;
    }
    // Loaded before the I/O thread exists: monkey patching wants no other threads yet.
    let loaded = match python::load(&app) {
        Ok(loaded) => loaded,
        Err(traceback) => {
            python::log_traceback("the Python app failed to load:", &traceback);
            return exit::WORKER_BOOT;
        }
    };
    let (io_bridge, py_bridge) = match python::bridge() {
        Ok(pair) => pair,
        Err(e) => {
            log::error!("worker failed to start: {e}");
            return exit::WORKER_BOOT;
        }
    };
    // `static-map` directories are served on the I/O thread, before the app sees a request.
    let static_files = spec.apps.static_files();
    let mut config = spec.config.clone();
    config.module = Some(APP_NAME.to_string());
    config.mounts.clear();
    let WorkerSpec {
        id,
        listeners,
        slot,
        ..
    } = spec;
    let watched = io_bridge.clone();
    let slot = slot
        .map(|slot| slot.with_alive_check(AliveCheck::new(move || watched.python_responsive())));
    let closer = io_bridge.clone();
    let io_thread = std::thread::Builder::new()
        .name("io".to_string())
        .spawn(move || {
            // Counted on this thread, the slot's one writer.
            let counter = slot.clone();
            let count_exception = Rc::new(move || {
                if let Some(slot) = &counter {
                    slot.count_exception();
                }
            });
            let mut apps = Apps::default();
            apps.insert(APP_NAME, Rc::new(io_bridge.handler(count_exception)));
            if let Some((options, factory)) = static_files {
                apps.set_static_files(options, factory);
            }
            let code = match serve(WorkerSpec {
                id,
                config: &config,
                listeners,
                apps: &apps,
                slot,
            }) {
                Ok(code) => code,
                Err(e) => {
                    log::error!("worker failed to start: {e}");
                    exit::WORKER_BOOT
                }
            };
            io_bridge.close();
            code
        });
    let io_thread = match io_thread {
        Ok(handle) => handle,
        Err(e) => {
            log::error!("worker failed to start: the I/O thread: {e}");
            return exit::WORKER_BOOT;
        }
    };
    if let Err(traceback) = python::serve(loaded, py_bridge) {
        // The hub is gone: the I/O thread answers what is left with errors and drains.
        python::log_traceback("the gevent hub failed:", &traceback);
        closer.close();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGTERM);
    }
    match io_thread.join() {
        Ok(code) => code,
        Err(_) => exit::RUNTIME,
    }
}
