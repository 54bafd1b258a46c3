//! The master: binds the listeners, starts the workers, reports readiness.
//!
//! For now it binds every configured socket and runs worker 1 in its own process (no fork):
//! supervision, reloads and signals beyond the worker's own come with the master issue.

use std::process::ExitCode;

use crate::api::AppRegistry;
use crate::config::Config;
use crate::exit;
use crate::net::listener::{Listener, Protocol, UnixOptions};
use crate::worker::{self, WorkerSpec};

/// Runs one instance of `config` with `apps`; returns the process exit code.
pub(crate) fn run(config: &Config, apps: &AppRegistry) -> ExitCode {
    crate::log::set_role_master();
    let listeners = match bind_listeners(config) {
        Ok(listeners) => listeners,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    let urls: Vec<String> = listeners.iter().map(Listener::url).collect();
    log::info!(
        "rcontainer ready pid={} sockets={}",
        std::process::id(),
        urls.join(",")
    );
    let code = worker::run(WorkerSpec {
        id: 1,
        config,
        listeners: &listeners,
        apps,
    });
    if config.vacuum {
        listeners.iter().for_each(Listener::remove_socket_file);
    }
    ExitCode::from(code)
}

/// Binds `socket` (uwsgi) and `http-socket` listeners, in that order.
fn bind_listeners(config: &Config) -> std::io::Result<Vec<Listener>> {
    let unix = UnixOptions {
        mode: config.chmod_socket,
    };
    let backlog = config.listen as u32;
    let specs = config
        .sockets
        .iter()
        .map(|s| (s, Protocol::Uwsgi))
        .chain(config.http_sockets.iter().map(|s| (s, Protocol::Http)));
    specs
        .map(|(spec, protocol)| Listener::bind(spec, protocol, backlog, unix))
        .collect()
}
