//! [`Server`]: a binary of your own with your handlers and the stock command line.

use std::ffi::OsString;
use std::process::ExitCode;
use std::rc::Rc;

use crate::api::{AppRegistry, Handler};

/// Builds a binary that serves your handlers with rcontainer's whole command line and INI
/// files: the same `--ini`, options, signals and reloads as the stock `rcontainer`.
///
/// The built-in apps (`hello`, `echo`, `sleep`, `panic`, `fetch`) and the static-file server
/// for `static-map` are there too; an app of yours with the same name replaces the built-in
/// one. The INI's `module` and `mount = /prefix=app` lines pick which app serves which path
/// (a `static-map` prefix comes before every mount); use [`Routes`](crate::Routes) to route by
/// method and path inside one app.
///
/// Each worker process gets its own copy of your handlers (they are built before the fork),
/// so a handler's state is per worker: share across workers through an external store.
///
/// ```no_run
/// use rcontainer::{Request, Response, Server};
///
/// fn greet(req: &mut Request) -> Response {
///     let name = req.query_param("name").unwrap_or_else(|| "world".into());
///     Response::text(format!("hello, {name}\n"))
/// }
///
/// fn main() -> std::process::ExitCode {
///     Server::new().app("greet", greet).run()
/// }
/// ```
pub struct Server {
    apps: AppRegistry,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("apps", &self.apps).finish()
    }
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    /// A server with the built-in apps.
    pub fn new() -> Server {
        let mut apps = AppRegistry::default();
        crate::apps::register(&mut apps);
        Server { apps }
    }

    /// Adds the app `name`, served where the configuration's `module` or a `mount` names it.
    pub fn app(mut self, name: &str, handler: impl Handler) -> Server {
        self.apps.insert(name, Rc::new(handler));
        self
    }

    /// Runs the command line of this process; returns the exit code for `main`.
    pub fn run(self) -> ExitCode {
        self.run_with_args(std::env::args_os().collect())
    }

    /// Runs `args` (program name first) as the command line.
    pub fn run_with_args(self, args: Vec<OsString>) -> ExitCode {
        crate::cli::main(args, &self.apps)
    }
}
