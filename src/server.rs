//! [`Server`]: a binary of your own with your handlers and the stock command line.

use std::ffi::OsString;
use std::process::ExitCode;
use std::rc::Rc;

use crate::api::{AppConfig, AppOption, AppRegistry, Handler};

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

    /// Adds the app `name` with options of its own (see [`AppOption`]): they are read from
    /// the INI, the command line and the environment like rcontainer's own options, checked
    /// when the configuration loads (`file:line` errors, `--check-config`), and listed by
    /// `--help` and `--print-config`. Each worker calls `build` once with their values; an
    /// `Err` stops the worker's start with that message (`--check-config` runs `build` too).
    ///
    /// ```no_run
    /// use rcontainer::{AppConfig, AppOption, OptionKind, Request, Response, Server, client};
    ///
    /// fn main() -> std::process::ExitCode {
    ///     Server::new()
    ///         .app_with_options(
    ///             "proxy",
    ///             vec![AppOption::new("proxy-upstream", OptionKind::Url, "Where to send requests.")
    ///                 .required()],
    ///             |config: &AppConfig| {
    ///                 let upstream = config.url("proxy-upstream").unwrap_or_default().to_string();
    ///                 Ok(move |req: &mut Request| match client::get(&format!("{upstream}{}", req.uri())) {
    ///                     Ok(answer) => Response::new(answer.status()).body(answer.into_body()),
    ///                     Err(_) => Response::error(502),
    ///                 })
    ///             },
    ///         )
    ///         .run()
    /// }
    /// ```
    pub fn app_with_options<H, B>(mut self, name: &str, options: Vec<AppOption>, build: B) -> Server
    where
        H: Handler,
        B: Fn(&AppConfig) -> Result<H, String> + 'static,
    {
        let factory = move |config: &AppConfig| -> Result<Rc<dyn Handler>, String> {
            build(config).map(|handler| Rc::new(handler) as Rc<dyn Handler>)
        };
        self.apps.insert_configured(name, options, Rc::new(factory));
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
