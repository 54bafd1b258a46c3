//! Command line: argv -> [`Invocation`] -> exit code.
//!
//! Parsing only sorts the arguments: which mode, which `--ini` files, which `--key value`
//! overrides. Whether a key exists and whether its value is good is decided by `config::load`,
//! so that the command line, the environment and INI files share one set of rules and messages.
//! Every message goes to stderr; only `--help`, `--version`, `--print-config` and `--help-man`
//! (the man page in roff, for packaging: `packaging/man/rcontainer.1`) write stdout.
//!
//! Each mode ends in one function ([`run_instance`], [`run_emperor`], [`signal_pidfile`]).
//! Config warnings go to stderr as they are in `--check-config` and `--print-config`; an
//! instance logs them instead (timestamped log lines, once per load: a reloaded master loads
//! its configuration again and logs them again, the check before the reload does not).

use std::ffi::OsString;
use std::iter::Peekable;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::api::AppRegistry;
use crate::api::OptionKind;
use crate::config::app_options::{AppOptionSpec, ValueKind};
use crate::config::error::ConfigError;
use crate::config::options::{self, find_option};
use crate::config::value::{Kind as _, PythonTarget};
use crate::config::{self, CliSetting, Config, IniRef, Loaded, NO_PYTHON, Sources};
use crate::exit;
use crate::master::Instance;
use crate::master::handover::{self, Handover, Launch};
use crate::sys::emperor_link::VASSAL_TABLE;
use crate::sys::pidfile::{self, Identity};
use crate::sys::process::{OsSignal, Pid, send_signal};
use crate::sys::signal::{Answer, request_answer};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invocation {
    /// Run an instance (or an emperor, when the configuration sets `emperor`).
    Serve(ConfigArgs),
    /// `--check-config`: load, print errors and warnings, exit 0 or 1.
    CheckConfig(ConfigArgs),
    /// `--print-config`: load, print every option's effective value and origin.
    PrintConfig(ConfigArgs),
    /// `--reload PIDFILE` and friends: signal a running master.
    SignalPidfile {
        request: PidfileRequest,
        pidfile: PathBuf,
    },
    Help,
    Version,
    /// `--help-man`: the man page rcontainer(1) in roff (not in `--help`: it is for packaging).
    Man,
}

/// The configuration part of a command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConfigArgs {
    pub(crate) ini_files: Vec<IniRef>,
    pub(crate) overrides: Vec<CliSetting>,
    /// `--set KEY=VALUE`: defaults that every other source overrides.
    pub(crate) defaults: Vec<CliSetting>,
}

/// What to ask of the master whose pid is in a pidfile (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PidfileRequest {
    /// `--reload`: SIGHUP, graceful reload.
    Reload,
    /// `--stop`: SIGINT, immediate shutdown (as uWSGI's `--stop`).
    Stop,
    /// `--graceful-stop`: SIGTERM, drain then exit.
    GracefulStop,
    /// `--chain-reload`: the FIFO's `c`, one worker at a time.
    ChainReload,
    /// `--upgrade`: SIGUSR2 to an emperor, which re-executes itself in place (the binary on
    /// disk now), adopts its running vassals and answers (a master refuses at once).
    Upgrade,
}

impl PidfileRequest {
    fn from_flag(name: &str) -> Option<PidfileRequest> {
        Some(match name {
            "reload" => PidfileRequest::Reload,
            "stop" => PidfileRequest::Stop,
            "graceful-stop" => PidfileRequest::GracefulStop,
            "chain-reload" => PidfileRequest::ChainReload,
            "upgrade" => PidfileRequest::Upgrade,
            _ => return None,
        })
    }

    fn flag(self) -> &'static str {
        match self {
            PidfileRequest::Reload => "--reload",
            PidfileRequest::Stop => "--stop",
            PidfileRequest::GracefulStop => "--graceful-stop",
            PidfileRequest::ChainReload => "--chain-reload",
            PidfileRequest::Upgrade => "--upgrade",
        }
    }

    /// The signal that asks the master for it (DESIGN.md §6; URG is the chain reload, USR2 an
    /// emperor's upgrade).
    fn signal(self) -> OsSignal {
        match self {
            PidfileRequest::Reload => OsSignal::SIGHUP,
            PidfileRequest::Stop => OsSignal::SIGINT,
            PidfileRequest::GracefulStop => OsSignal::SIGTERM,
            PidfileRequest::ChainReload => OsSignal::SIGURG,
            PidfileRequest::Upgrade => OsSignal::SIGUSR2,
        }
    }
}

/// Runs the command line `args` (program name first) and returns the process exit code.
pub(crate) fn main(args: Vec<OsString>, apps: &AppRegistry) -> ExitCode {
    match parse_args(&args) {
        Ok(invocation) => run(invocation, apps),
        Err(errors) => {
            for error in errors {
                eprintln!("rcontainer: {error}");
            }
            eprintln!("rcontainer: see rcontainer --help");
            ExitCode::from(exit::CONFIG)
        }
    }
}

fn run(invocation: Invocation, apps: &AppRegistry) -> ExitCode {
    match invocation {
        Invocation::Help => {
            print!("{}", usage(apps));
            ExitCode::from(exit::OK)
        }
        Invocation::Man => {
            print!("{}", man_page(apps));
            ExitCode::from(exit::OK)
        }
        Invocation::Version => {
            println!("rcontainer {}", env!("CARGO_PKG_VERSION"));
            ExitCode::from(exit::OK)
        }
        Invocation::CheckConfig(args) => match load_reporting(args, None, apps, Warnings::Print) {
            Some(_) => ExitCode::from(exit::OK),
            None => ExitCode::from(exit::CONFIG),
        },
        Invocation::PrintConfig(args) => match load_reporting(args, None, apps, Warnings::Print) {
            Some(loaded) => {
                print!("{}", loaded.render_effective());
                ExitCode::from(exit::OK)
            }
            None => ExitCode::from(exit::CONFIG),
        },
        Invocation::Serve(args) => {
            crate::log::init();
            serve(args, apps)
        }
        Invocation::SignalPidfile { request, pidfile } => signal_pidfile(request, &pidfile),
    }
}

/// Where [`load_reporting`] puts the warnings of a load that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Warnings {
    /// On stderr as they are: `--check-config`, `--print-config`.
    Print,
    /// Kept in the [`Loaded`] for the instance to log once its output is set up (its log
    /// file, `logto` or `daemonize`, is where they belong).
    Keep,
}

/// Runs what the configuration asks for. An image started by a reload whose configuration no
/// longer loads goes back to the previous image, which serves on.
fn serve(args: ConfigArgs, apps: &AppRegistry) -> ExitCode {
    let handover = match Handover::from_env() {
        Ok(handover) => handover,
        Err(e) => {
            log::error!("inherited descriptors: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    // A fallback image loads the INI texts of the configuration it goes back to.
    let replay = handover.replaying().map(|(_, texts)| texts.to_vec());
    match load_reporting(args.clone(), replay, apps, Warnings::Keep) {
        // A master's reload whose configuration now runs an emperor: the workers and sockets
        // it was handed would be lost, so the previous image serves on.
        Some(loaded)
            if !loaded.config.emperor.is_empty()
                && handover.can_fall_back()
                && !handover.holds(VASSAL_TABLE) =>
        {
            let why = "the configuration now runs an emperor (start one on its own)";
            log::error!("reload failed: {why}; starting the previous configuration again");
            let error = handover.fall_back(why, &[], &[]);
            log::error!("going back to the previous configuration failed: {error}");
            ExitCode::from(exit::CONFIG)
        }
        Some(loaded) if !loaded.config.emperor.is_empty() => {
            for warning in &loaded.warnings {
                log::warn!("{warning}");
            }
            run_emperor(loaded, handover)
        }
        // An emperor's upgrade whose configuration now runs an instance: the vassals would be
        // lost, so the previous image governs on.
        Some(_) if handover.can_fall_back() && handover.holds(VASSAL_TABLE) => {
            let why = "the configuration no longer runs an emperor";
            log::error!("emperor: upgrade failed: {why}; starting the previous image again");
            let error = handover.fall_back(why, &[], &[]);
            log::error!("going back to the previous image failed: {error}");
            ExitCode::from(exit::CONFIG)
        }
        Some(loaded) => run_instance(loaded, handover, &args, apps),
        None if handover.can_fall_back() => {
            let why = "the configuration does not load";
            if handover.holds(VASSAL_TABLE) {
                log::error!("emperor: upgrade failed: {why}; starting the previous image again");
            } else {
                log::error!("reload failed: {why}; starting the previous configuration again");
            }
            let error = handover.fall_back(why, &[], &[]);
            log::error!("going back to the previous configuration failed: {error}");
            ExitCode::from(exit::CONFIG)
        }
        None => ExitCode::from(exit::CONFIG),
    }
}

/// Loads the configuration (from `replay`'s texts instead of the files, when given), reporting
/// warnings (see [`Warnings`]) and errors (stderr); `None` if it is unusable.
fn load_reporting(
    args: ConfigArgs,
    replay: Option<Vec<(PathBuf, String)>>,
    apps: &AppRegistry,
    warnings: Warnings,
) -> Option<Loaded> {
    let mut sources = match sources_for(&args, apps) {
        Ok(sources) => sources,
        Err(e) => {
            eprintln!("rcontainer: {e}");
            return None;
        }
    };
    sources.replay = replay;
    match load_checked(&sources, apps) {
        Ok(loaded) => {
            if warnings == Warnings::Print {
                for warning in &loaded.warnings {
                    eprintln!("{warning}");
                }
            }
            Some(loaded)
        }
        Err(failed) => {
            for line in failed.warnings.iter().chain(&failed.errors) {
                eprintln!("{line}");
            }
            None
        }
    }
}

/// A load that failed: the errors, and the warnings of the files that were read.
#[derive(Debug)]
struct LoadFailure {
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// Loads the configuration from `sources`, then checks what only this binary can: the apps
/// it names (and their required options) and the routes a worker would build. The one way
/// every start, `--check-config` and the check before a reload load a configuration.
fn load_checked(sources: &Sources, apps: &AppRegistry) -> Result<Loaded, LoadFailure> {
    fn texts(items: &[impl ToString]) -> Vec<String> {
        items.iter().map(ToString::to_string).collect()
    }
    let loaded = config::load(sources).map_err(|failed| LoadFailure {
        errors: texts(&failed.errors),
        warnings: texts(&failed.warnings),
    })?;
    let failure = |errors: Vec<String>| LoadFailure {
        errors,
        warnings: texts(&loaded.warnings),
    };
    let mut app_errors = check_apps(&loaded, apps);
    app_errors.extend(check_client_ca_file(&loaded, &sources.cwd));
    if !app_errors.is_empty() {
        return Err(failure(texts(&app_errors)));
    }
    if let Err(e) = crate::worker::check_routes(&loaded.config, apps) {
        return Err(failure(vec![format!("config: {e}")]));
    }
    Ok(loaded)
}

/// The sources for `args`: this process's environment and directory, and the options the
/// binary's apps declare.
fn sources_for(args: &ConfigArgs, apps: &AppRegistry) -> Result<Sources, String> {
    let mut sources = Sources::from_process(args.ini_files.clone(), args.overrides.clone());
    sources.defaults = args.defaults.clone();
    sources.app_options = app_option_specs(apps)?;
    sources.app_names = apps.names().into_iter().map(str::to_owned).collect();
    Ok(sources)
}

/// The options the apps of this binary declare, for `config::load`. An app may not declare an
/// option rcontainer has, nor one another app declares.
fn app_option_specs(apps: &AppRegistry) -> Result<Vec<AppOptionSpec>, String> {
    let mut specs: Vec<AppOptionSpec> = Vec::new();
    for (app, option) in apps.options() {
        if options::find_option(option.key).is_some() {
            return Err(format!(
                "app '{app}' declares option '{}', which is an option of rcontainer itself",
                option.key
            ));
        }
        if let Some(other) = specs.iter().find(|s| s.key == option.key) {
            return Err(format!(
                "apps '{}' and '{app}' both declare option '{}'",
                other.app, option.key
            ));
        }
        specs.push(AppOptionSpec {
            key: option.key,
            app: app.to_string(),
            kind: match option.kind {
                OptionKind::Text => ValueKind::Text,
                OptionKind::Url => ValueKind::Url,
                OptionKind::Path => ValueKind::Path,
                OptionKind::Integer => ValueKind::Integer,
                OptionKind::Seconds => ValueKind::Seconds,
                OptionKind::Flag => ValueKind::Flag,
            },
            repeatable: option.repeatable,
            default: option.default,
            help: option.help,
            metavar: crate::api::metavar(option.kind),
        });
    }
    Ok(specs)
}

/// An instance must serve something: a `module`, a `wsgi-file`, a `mount` or a `static-map` (a
/// placeholder app silently standing in for a forgotten one is worse than no start). `module`
/// (unless it names a Python app: `config::python` took it) and every `mount` must name an app
/// this binary has; a mount naming a Python module (dotted) or file is refused. Checked before anything
/// starts, with the `file:line` of the entry that names the app.
fn check_apps(loaded: &Loaded, apps: &AppRegistry) -> Vec<ConfigError> {
    let config = &loaded.config;
    let names = || apps.names().join(", ");
    if config.emperor.is_empty()
        && config.module.is_none()
        && config.python.is_none()
        && config.mounts.is_empty()
        && config.static_maps.is_empty()
    {
        return vec![ConfigError::overall(format!(
            "no app configured: set module = APP (apps of this binary: {})",
            names()
        ))];
    }
    loaded
        .effective
        .iter()
        .filter_map(|entry| {
            let value = entry.value.as_deref()?;
            let name = match entry.key {
                "module" if config.module.is_some() => value,
                "mount" => value.split_once('=').map_or(value, |(_, app)| app),
                _ => return None,
            };
            let name = name.trim();
            if apps.get(name).is_some() {
                return missing_option(apps, name, config)
                    .map(|why| ConfigError::at(&entry.origin, entry.key, why));
            }
            // A plain word is a mistyped app (`module = myapp` is Python, a mount cannot be).
            let python = std::path::Path::new(name)
                .extension()
                .is_some_and(|ext| ext == "py" || ext == "wsgi")
                || (name.contains(['.', ':']) && PythonTarget::parse(name).is_ok());
            let message = match (entry.key, python) {
                ("mount", true) if !config::python::SUPPORTED => format!("{name} {NO_PYTHON}"),
                ("mount", true) => format!(
                    "{name}: a Python app cannot be mounted at a prefix: serve it with \
                     module = PKG.MOD or wsgi-file = PATH (apps of this binary: {})",
                    names()
                ),
                _ => apps.unknown_app(name),
            };
            Some(ConfigError::at(&entry.origin, entry.key, message))
        })
        .collect()
}

/// `client-ca-file` must be a PEM bundle of CA certificates, read where the workers will read
/// it (after `chdir`): checked before anything starts, with its `file:line`.
fn check_client_ca_file(loaded: &Loaded, cwd: &std::path::Path) -> Option<ConfigError> {
    let bundle = loaded.config.client_ca_file.as_deref()?;
    let chdir = loaded
        .config
        .chdir
        .as_deref()
        .unwrap_or(std::path::Path::new(""));
    let why = crate::client::read_ca_file(&cwd.join(chdir).join(bundle)).err()?;
    let entry = loaded
        .effective
        .iter()
        .find(|e| e.key == "client-ca-file")?;
    Some(ConfigError::at(&entry.origin, entry.key, why))
}

/// What app `name` (which this instance serves) lacks: its first required option that the
/// configuration does not set.
fn missing_option(apps: &AppRegistry, name: &str, config: &Config) -> Option<String> {
    let option = (apps.options_of(name).iter())
        .find(|option| option.required && !config.app_options.contains_key(option.key))?;
    Some(format!(
        "app '{name}' needs {} = {} ({})",
        option.key,
        crate::api::metavar(option.kind),
        option.help
    ))
}

/// Runs one instance: master and workers. A reload first checks that `args` still load (its
/// warnings are not shown: the reloaded master logs them when it loads the same files).
fn run_instance(
    loaded: Loaded,
    handover: Handover,
    args: &ConfigArgs,
    apps: &AppRegistry,
) -> ExitCode {
    // The master may `chdir` before it reloads: relative `--ini` paths stay relative to the
    // directory the command was started in, as in uWSGI.
    let start_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let recheck = || {
        let mut sources = sources_for(args, apps).map_err(|e| vec![e])?;
        sources.cwd = start_dir.clone();
        load_checked(&sources, apps)
            .map(|loaded| loaded.config)
            .map_err(|failed| failed.errors)
    };
    let instance = Instance {
        config: loaded.config,
        warnings: loaded.warnings.iter().map(ToString::to_string).collect(),
        texts: loaded.texts,
        handover,
    };
    crate::master::run(instance, apps, &recheck)
}

/// The master's hand-over is also the emperor's way back after a failed upgrade.
impl crate::emperor::Ancestry for Handover {
    fn can_fall_back(&self) -> bool {
        Handover::can_fall_back(self)
    }

    fn fall_back(&self, why: &str) -> std::io::Error {
        Handover::fall_back(self, why, &[], &[])
    }

    fn commit(&mut self) {
        Handover::commit(self);
    }
}

/// Runs an emperor over `config.emperor`. Its stats socket is bound here, where sockets are
/// made (`net`), with the same rules as every other listening socket, unless the previous
/// image of an upgraded emperor handed it over. `handover` is what that image passed, and
/// the way back to it.
fn run_emperor(loaded: Loaded, mut handover: Handover) -> ExitCode {
    let config = &loaded.config;
    let mut inherited = handover.take_sockets();
    let stats = match &config.emperor_stats {
        Some(spec) => {
            let handed = [true, false].into_iter().find_map(|unix| {
                let name = crate::emperor::stats::handover_name(unix, &spec.to_string());
                let at = inherited
                    .iter()
                    .position(|f| f.name.as_deref() == Some(&name))?;
                Some((inherited.remove(at).fd, unix))
            });
            adopt_or_bind_emperor_stats(spec, handed)
        }
        None => Ok(None),
    };
    let stats = match stats {
        Ok(stats) => stats,
        Err(e) if handover.can_fall_back() => {
            log::error!("emperor: upgrade failed: {e}; starting the previous image again");
            let error = handover.fall_back(&e, &[], &[]);
            log::error!("going back to the previous image failed: {error}");
            return ExitCode::from(exit::RUNTIME);
        }
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    // The way back for the image after an upgrade: this binary and this launch.
    let launch = Launch {
        argv: std::env::args_os().collect(),
        env: std::env::vars_os().collect(),
        files: loaded.texts.clone(),
    }
    .to_memfd()
    .map_err(|e| log::warn!("an emperor upgrade will have no way back: launch record: {e}"))
    .ok();
    let binary = handover::open_own_binary()
        .map_err(|e| log::warn!("an emperor upgrade will have no way back: /proc/self/exe: {e}"))
        .ok();
    let way_back = match (&launch, &binary) {
        (Some(launch), Some(binary)) => vec![
            (launch.as_raw_fd(), handover::FALLBACK_LAUNCH.to_string()),
            (binary.as_raw_fd(), handover::FALLBACK_BINARY.to_string()),
        ],
        _ => Vec::new(),
    };
    let lineage = crate::emperor::Lineage {
        inherited,
        upgraded: handover.is_reexec(),
        replaying: handover.replaying().map(|(why, _)| why.to_string()),
        way_back,
        ancestry: &mut handover,
    };
    crate::emperor::run(config, stats, lineage)
}

/// The `emperor-stats` listener: the one handed over (its descriptor, and whether it is a
/// unix socket), else bound now.
fn adopt_or_bind_emperor_stats(
    spec: &crate::net::addr::SocketSpec,
    handed: Option<(std::os::fd::OwnedFd, bool)>,
) -> Result<Option<crate::emperor::stats::StatsListener>, String> {
    if let Some((fd, unix)) = handed {
        return Ok(Some(crate::emperor::stats::StatsListener::from_fd(
            fd, unix,
        )));
    }
    {
        {
            let what = format!("emperor-stats {spec}");
            match crate::net::listener::bind_socket(
                spec,
                &what,
                128,
                crate::net::listener::UnixOptions::default(),
            ) {
                Ok((fd, local)) => Ok(Some(crate::emperor::stats::StatsListener::from_fd(
                    fd,
                    matches!(local, crate::net::listener::LocalAddr::Unix(_)),
                ))),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

/// How long `--reload` (`--upgrade`) waits for the master (emperor) to say how it went.
const RELOAD_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Sends `request` to the master whose pid is in `pidfile`, after checking that the pid is an
/// rcontainer master: a stale pidfile's pid may belong to any process by now. Exit 0 once the
/// signal is sent (a reload or an upgrade: once the master or emperor says it is done), 1 when
/// nothing was signalled or the request was refused, 2 when a reload or upgrade got no answer.
fn signal_pidfile(request: PidfileRequest, pidfile: &std::path::Path) -> ExitCode {
    let flag = request.flag();
    let pid = match pidfile::read_running_pid(pidfile) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("rcontainer: {flag}: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let refusal = match pidfile::identify(pid) {
        Identity::Rcontainer => None,
        Identity::Other(exe) => Some(format!(
            "is not an rcontainer master (it is {})",
            exe.display()
        )),
        Identity::Unknown(why) => Some(format!(
            "cannot be checked to be an rcontainer master ({why})"
        )),
    };
    if let Some(refusal) = refusal {
        eprintln!(
            "rcontainer: {flag}: pid {pid} (from {}) {refusal}: not signalled",
            pidfile.display()
        );
        return ExitCode::from(exit::CONFIG);
    }
    let signal = request.signal();
    let outcome = if matches!(request, PidfileRequest::Reload | PidfileRequest::Upgrade) {
        request_answer(pid, signal, RELOAD_ANSWER_WAIT).map(|answer| match answer {
            Some(Answer::Done) => Outcome::Done,
            Some(Answer::Refused) => Outcome::Refused,
            None => Outcome::NoAnswer,
        })
    } else {
        send_signal(pid, signal).map(|()| Outcome::Sent)
    };
    match outcome {
        Ok(outcome) => report_outcome(request, pid, outcome),
        Err(e) => {
            eprintln!("rcontainer: {flag}: signal {signal} to pid {pid}: {e}");
            ExitCode::from(exit::CONFIG)
        }
    }
}

/// What became of a request once its signal was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Sent; nothing more is known (every request but a reload).
    Sent,
    /// The master said the reload is done: the new workers accept.
    Done,
    /// The master refused the reload (the new configuration or binary cannot start, its log
    /// says why) and keeps serving as it was.
    Refused,
    /// A reload was asked for and no answer came in time.
    NoAnswer,
}

/// Prints what became of `request` and returns the exit code.
fn report_outcome(request: PidfileRequest, pid: Pid, outcome: Outcome) -> ExitCode {
    let flag = request.flag();
    let signal = request.signal();
    match outcome {
        Outcome::Sent => {
            eprintln!("rcontainer: sent {signal} to master pid {pid} ({flag})");
            ExitCode::from(exit::OK)
        }
        Outcome::Done if request == PidfileRequest::Upgrade => {
            eprintln!(
                "rcontainer: emperor pid {pid} upgraded in place: its new image governs every \
                 vassal ({flag})"
            );
            ExitCode::from(exit::OK)
        }
        Outcome::Done => {
            eprintln!("rcontainer: master pid {pid} reloaded ({flag})");
            ExitCode::from(exit::OK)
        }
        Outcome::Refused if request == PidfileRequest::Upgrade => {
            eprintln!(
                "rcontainer: {flag}: pid {pid} did not upgrade: it is no emperor, or it is \
                 stopping, or the new binary or configuration cannot start (its log says why); \
                 it runs on as it was"
            );
            ExitCode::from(exit::CONFIG)
        }
        Outcome::Refused => {
            eprintln!(
                "rcontainer: {flag}: master pid {pid} refused the reload: the new configuration \
                 or binary cannot start (its log says why); it keeps serving as it was"
            );
            ExitCode::from(exit::CONFIG)
        }
        Outcome::NoAnswer => {
            eprintln!(
                "rcontainer: {flag}: sent {signal} to pid {pid}, no answer within {}s \
                 (see its log)",
                RELOAD_ANSWER_WAIT.as_secs()
            );
            ExitCode::from(exit::RUNTIME)
        }
    }
}

/// Sorts `args` (program name first) into an [`Invocation`]; `Err` holds usage errors.
pub(crate) fn parse_args(args: &[OsString]) -> Result<Invocation, Vec<String>> {
    let mut parser = Parser::default();
    let mut words = Vec::with_capacity(args.len());
    for arg in args.iter().skip(1) {
        match arg.to_str() {
            Some(word) => words.push(word),
            None => parser.error(format!("argument {arg:?} is not valid UTF-8")),
        }
    }
    let mut words = words.into_iter().peekable();
    while let Some(word) = words.next() {
        match word.strip_prefix("--").filter(|body| !body.is_empty()) {
            Some(body) => {
                let (name, inline) = match body.split_once('=') {
                    Some((name, value)) => (name, Some(value.to_owned())),
                    None => (body, None),
                };
                parser.option(name, inline, &mut words);
            }
            None if word == "-h" => parser.help = true,
            None if word == "-V" => parser.version = true,
            None => parser.error(format!(
                "unexpected argument '{word}' (options start with --)"
            )),
        }
    }
    parser.finish()
}

/// What the words read so far ask for.
#[derive(Debug, Default)]
struct Parser {
    config: ConfigArgs,
    help: bool,
    version: bool,
    man: bool,
    check: bool,
    print: bool,
    signal: Option<(PidfileRequest, PathBuf)>,
    errors: Vec<String>,
}

impl Parser {
    fn error(&mut self, message: String) {
        self.errors.push(message);
    }

    /// Handles `--name[=inline]`, taking a separate value from `words` when it needs one.
    fn option<'a>(
        &mut self,
        name: &str,
        inline: Option<String>,
        words: &mut Peekable<impl Iterator<Item = &'a str>>,
    ) {
        let switch = match name {
            "help" => Some(&mut self.help),
            "version" => Some(&mut self.version),
            "help-man" => Some(&mut self.man),
            "check-config" => Some(&mut self.check),
            "print-config" => Some(&mut self.print),
            _ => None,
        };
        if let Some(switch) = switch {
            *switch = true;
            if inline.is_some() {
                self.error(format!("--{name} takes no value"));
            }
            return;
        }
        // A file name never starts with "--", so `--ini --processes 2` is a missing file.
        let mut required = || {
            inline
                .clone()
                .or_else(|| words.next_if(|w| !w.starts_with("--")).map(str::to_owned))
                .filter(|v| !v.is_empty())
        };
        if name == "ini" {
            match required() {
                Some(file) => self.config.ini_files.push(IniRef::parse(&file)),
                None => self.error("--ini needs a file".to_owned()),
            }
            return;
        }
        if name == "set" {
            let pair = required().and_then(|pair| {
                let (key, value) = pair.split_once('=')?;
                let key = key.trim();
                (!key.is_empty()).then(|| CliSetting {
                    name: key.to_owned(),
                    value: Some(value.to_owned()),
                })
            });
            match pair {
                Some(setting) => self.config.defaults.push(setting),
                None => self.error("--set needs KEY=VALUE".to_owned()),
            }
            return;
        }
        if let Some(request) = PidfileRequest::from_flag(name) {
            match (required(), &self.signal) {
                (Some(pidfile), None) => self.signal = Some((request, PathBuf::from(pidfile))),
                (Some(_), Some(_)) => self.error(format!(
                    "{} cannot be combined with another pidfile request",
                    request.flag()
                )),
                (None, _) => self.error(format!("{} needs a pidfile", request.flag())),
            }
            return;
        }
        let value = inline.or_else(|| take_value(name, words));
        self.config.overrides.push(CliSetting {
            name: name.to_owned(),
            value,
        });
    }

    fn finish(mut self) -> Result<Invocation, Vec<String>> {
        if self.help {
            return Ok(Invocation::Help);
        }
        if self.version {
            return Ok(Invocation::Version);
        }
        if self.man {
            return Ok(Invocation::Man);
        }
        let has_config = !self.config.ini_files.is_empty()
            || !self.config.overrides.is_empty()
            || !self.config.defaults.is_empty();
        if let Some((request, _)) = &self.signal {
            if self.check || self.print || has_config {
                let flag = request.flag();
                self.error(format!("{flag} takes a pidfile and nothing else"));
            }
        } else if self.check && self.print {
            self.error("--check-config and --print-config exclude each other".to_owned());
        } else if !has_config && self.errors.is_empty() {
            self.error(
                "nothing to run: give --ini FILE, --emperor DIR or options such as --http-socket"
                    .to_owned(),
            );
        }
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        Ok(match self.signal {
            Some((request, pidfile)) => Invocation::SignalPidfile { request, pidfile },
            None if self.check => Invocation::CheckConfig(self.config),
            None if self.print => Invocation::PrintConfig(self.config),
            None => Invocation::Serve(self.config),
        })
    }
}

/// Takes the separate value of `--name` from the following words, if it has one: flags take
/// none (`--vacuum`), an option with a bare meaning (`--chmod-socket`) takes the next word only
/// when it is not an option, any other option takes the next word unless it is clearly another
/// option (then `load` reports "needs a value"). Unknown names take a following non-option word,
/// so that `--prcesses 4` yields one error, not two.
fn take_value<'a>(
    name: &str,
    words: &mut Peekable<impl Iterator<Item = &'a str>>,
) -> Option<String> {
    let spec = find_option(name);
    let next = match spec {
        Some(spec) if spec.is_flag() => None,
        Some(spec) if spec.bare.is_some() => words.next_if(|w| !w.starts_with('-')),
        Some(_) => words.next_if(|w| !w.starts_with("--")),
        None => words.next_if(|w| !w.starts_with('-')),
    };
    next.map(str::to_owned)
}

/// `--help`: usage, then every option generated from the table.
pub(crate) fn usage(apps: &AppRegistry) -> String {
    let app_options = match app_option_specs(apps) {
        Ok(specs) if !specs.is_empty() => format!(
            "\nOptions of this binary's apps (they take effect where the app is served):\n{}",
            config::app_options::render_help(&specs)
        ),
        Ok(_) => String::new(),
        Err(e) => format!("\n{e}\n"),
    };
    format!(
        "rcontainer {version}: a uWSGI-style application container

Usage:
  rcontainer --ini FILE[:SECTION] [--KEY VALUE | --FLAG ...]   run an instance
  rcontainer --emperor DIR|GLOB [--KEY VALUE ...]               run an emperor
  rcontainer --reload PIDFILE | --stop PIDFILE | --graceful-stop PIDFILE | --chain-reload PIDFILE
  rcontainer --upgrade PIDFILE              an emperor re-executes itself in place (the binary
                                            on disk now, SIGUSR2 or master-fifo R); its
                                            vassals keep running and are adopted; exit 0 once
                                            the new image governs, 1 if refused
  rcontainer --ini FILE --check-config      validate, print nothing but errors, exit 0/1
  rcontainer --ini FILE --print-config      effective value of every key and where it came from
  rcontainer --help | --version

--ini may be repeated; a file's [rcontainer] section is read, else its [uwsgi] section.
Every option below is also an INI key and an environment variable RCONTAINER_<KEY>
(upper case, '-' as '_'). Later sources win: default < --set < INI files in order <
environment < command line. Repeatable options accumulate across all of them. Flags take no
separate value: --vacuum, --vacuum=false.
--set KEY=VALUE (repeatable) gives option KEY a default that every other source overrides
(uWSGI's --set before --ini; an emperor passes its vassal-set lines so), or defines the
placeholder %(KEY) when KEY is no option; in an INI file, set = KEY=VALUE is KEY = VALUE.
Python WSGI apps (module = PKG.MOD[:CALLABLE] naming no app of this binary, or wsgi-file):
{python}.

Options:
{options}{app_options}",
        version = env!("CARGO_PKG_VERSION"),
        python = if config::python::SUPPORTED {
            "this build has the python feature"
        } else {
            "not in this build (cargo build --release --features python makes one with them)"
        },
        options = options::render_help(),
    )
}

/// `--help-man`: the man page rcontainer(1), in roff with man(7) macros. The options come from
/// the table and the apps of this binary, as in `--help`; the committed
/// `packaging/man/rcontainer.1` is the stock binary's (a test fails when it is stale).
pub(crate) fn man_page(apps: &AppRegistry) -> String {
    let app_options = match app_option_specs(apps) {
        Ok(specs) if !specs.is_empty() => format!(
            ".SS Options of this binary's apps\nThey take effect where the app is served.\n{}",
            config::app_options::render_man_items(&specs)
        ),
        Ok(_) => String::new(),
        Err(e) => format!(".PP\n{}\n", options::roff_escape(&e)),
    };
    format!(
        r#".\" Generated by rcontainer --help-man from the option table (src/config/options.rs).
.\" Regenerate: RCONTAINER_BLESS=1 cargo test man_page_is_current
.TH RCONTAINER 1 "" "rcontainer {version}" "User Commands"
.SH NAME
rcontainer \- a uWSGI\-style application container
.SH SYNOPSIS
.B rcontainer
.B \-\-ini
.IR FILE [: SECTION ]
.RI [ \-\-KEY " " VALUE " | " \-\-FLAG " ...]"
.br
.B rcontainer
.B \-\-emperor
.IR DIR | GLOB
.RI [ \-\-KEY " " VALUE " ...]"
.br
.B rcontainer
.RB {{ \-\-reload | \-\-stop | \-\-graceful\-stop | \-\-chain\-reload | \-\-upgrade }}
.I PIDFILE
.br
.B rcontainer
.B \-\-ini
.I FILE
.RB {{ \-\-check\-config | \-\-print\-config }}
.br
.B rcontainer
.RB {{ \-\-help | \-\-version }}
.SH DESCRIPTION
.B rcontainer
runs applications the way uWSGI does: a master process reads an INI file with
uWSGI\-compatible keys, binds the listening sockets once, pre\-forks workers and supervises
them (respawn with back\-off, recycling, watchdog, graceful reloads that keep the sockets).
Each worker runs an event loop with stackful coroutines, one per request in flight, so that
handlers written in blocking style run concurrently.
It speaks the uwsgi protocol (behind nginx's
.BR uwsgi_pass )
and HTTP/1.1.
With
.BR \-\-emperor ,
it runs one instance per INI file of a directory (the vassals), reloads an instance when its
file changes and stops it when the file goes away.
.PP
.B \-\-ini
may be repeated; a file's [rcontainer] section is read, else its [uwsgi] section.
Every option below is also an INI key and an environment variable
.BI RCONTAINER_ KEY
(upper case, \- as _).
Later sources win: default < \-\-set < INI files in order < environment < command line.
Repeatable options accumulate across all of them.
Flags take no separate value:
.BR \-\-vacuum ,
.BR \-\-vacuum=false .
Python WSGI apps (module = PKG.MOD[:CALLABLE] naming no app of this binary, or wsgi\-file)
need a build with the python feature (the package rcontainer\-python); another build refuses
them in one line.
.SH COMMANDS
.TP
\fB\-\-ini\fR \fIFILE\fR[:\fISECTION\fR]
Read the configuration from an INI file (repeatable).
.TP
\fB\-\-set\fR \fIKEY\fR=\fIVALUE\fR
Give option KEY a default that every other source overrides, or define the placeholder
%(KEY) when KEY is no option (repeatable).
.TP
\fB\-\-check\-config\fR
Validate the configuration, print nothing but errors and warnings, exit 0 or 1.
.TP
\fB\-\-print\-config\fR
Print the effective value of every option and where it came from.
.TP
\fB\-\-reload\fR \fIPIDFILE\fR
Graceful reload of the master whose pid is in PIDFILE (SIGHUP).
.TP
\fB\-\-stop\fR \fIPIDFILE\fR
Immediate shutdown (SIGINT).
.TP
\fB\-\-graceful\-stop\fR \fIPIDFILE\fR
Graceful shutdown: in\-flight requests finish (SIGTERM).
.TP
\fB\-\-chain\-reload\fR \fIPIDFILE\fR
Reload one worker after another (SIGURG).
.TP
\fB\-\-upgrade\fR \fIPIDFILE\fR
An emperor re\-executes itself in place (the binary on disk now); its vassals keep running and
are adopted. Exit 0 once the new image governs, 1 if refused.
.TP
\fB\-\-help\fR, \fB\-h\fR
Usage and every option.
.TP
\fB\-\-version\fR, \fB\-V\fR
The version.
.SH OPTIONS
{options}{app_options}.SH SIGNALS
The master of an instance:
.TP
.B HUP
Graceful reload: re\-exec in place, replace every worker; the old ones drain once replaced.
.TP
.B TERM
Graceful shutdown: workers finish their requests, then exit 0.
.TP
.BR INT ", " QUIT
Immediate shutdown.
.TP
.B USR1
Reopen the log files, then log a stats line.
.TP
.B USR2
Log what every worker core is doing.
.TP
.BR TTIN " / " TTOU
One worker more / fewer.
.TP
.B TSTP
Pause / resume accepting.
.TP
.B URG
Chain reload.
.PP
The emperor: HUP reloads every vassal one after another, TERM stops them gracefully and exits,
INT and QUIT stop them at once, USR1 reopens the log file, USR2 re\-executes the emperor in
place (its vassals keep running).
The master FIFO
.RB ( master\-fifo )
takes the same commands as single bytes (r, q, Q, l, s, +, \-, p, c, R, w, W, E).
.SH EXIT STATUS
.TP
.B 0
Success.
.TP
.B 1
Configuration or usage error (reported as file:line: key: message before anything starts).
.TP
.B 2
Runtime failure.
.TP
.B 3
Worker boot failure (a worker failed at boot five times in a row).
.SH ENVIRONMENT
.TP
.BI RCONTAINER_ KEY
The option KEY (upper case, \- as _), between the INI files and the command line.
.TP
.B RUST_LOG
Log filter of the server log (as env_logger reads it).
.SH FILES
.TP
.I /etc/rcontainer/apps/NAME.ini
The configuration of the instance rcontainer@NAME.service.
.TP
.I /etc/rcontainer/vassals/
The vassals of rcontainer\-emperor.service: one instance per *.ini file.
.TP
.I /run/rcontainer/
Sockets, pidfiles and FIFOs of the packaged units.
.TP
.I /var/log/rcontainer/
Logs of the packaged units (rotated by logrotate).
.SH SEE ALSO
.BR systemd.service (5),
.BR systemd.socket (5),
.BR nginx (8),
.BR logrotate (8),
.BR uwsgi (1).
.PP
The operations guide and example configurations in
.I /usr/share/doc/rcontainer/
(or
.I /usr/share/doc/rcontainer\-python/
for that package).
"#,
        version = env!("CARGO_PKG_VERSION"),
        options = options::render_man_options(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// The registry of the stock binary.
    fn builtin_apps() -> AppRegistry {
        let mut apps = AppRegistry::default();
        crate::apps::register(&mut apps);
        apps
    }

    /// Regenerates the README block with `RCONTAINER_BLESS=1 cargo test readme`: rcontainer's
    /// options, then those of the built-in apps.
    #[test]
    fn readme_options_table_is_current() {
        const BEGIN: &str = "<!-- options:begin -->\n";
        const END: &str = "<!-- options:end -->";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).expect("README.md is readable");
        let start = readme.find(BEGIN).expect("README has the begin marker") + BEGIN.len();
        let end = readme.find(END).expect("README has the end marker");
        let specs = app_option_specs(&builtin_apps()).expect("the built-in apps' options");
        let table =
            options::render_markdown_table() + &config::app_options::render_markdown_rows(&specs);
        if std::env::var("RCONTAINER_BLESS").as_deref() == Ok("1") {
            let blessed = format!("{}{table}{}", &readme[..start], &readme[end..]);
            std::fs::write(&path, blessed).expect("README.md is writable");
            return;
        }
        assert!(
            readme[start..end] == table,
            "README.md options table is stale: run RCONTAINER_BLESS=1 cargo test readme_options_table_is_current"
        );
    }

    /// The same for the man page, with `RCONTAINER_BLESS=1 cargo test man_page_is_current`. The
    /// page does not depend on the features, so the python package ships the same one.
    #[test]
    fn man_page_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man/rcontainer.1");
        let page = man_page(&builtin_apps());
        if std::env::var("RCONTAINER_BLESS").as_deref() == Ok("1") {
            std::fs::write(&path, &page).expect("packaging/man/rcontainer.1 is writable");
            return;
        }
        let committed =
            std::fs::read_to_string(&path).expect("packaging/man/rcontainer.1 is readable");
        assert!(
            committed == page,
            "packaging/man/rcontainer.1 is stale: run RCONTAINER_BLESS=1 cargo test man_page_is_current"
        );
    }

    #[test]
    fn the_man_page_has_one_item_per_option_and_no_unescaped_hyphen() {
        let page = man_page(&builtin_apps());
        for spec in options::OPTIONS {
            let head = format!("\\fB\\-\\-{}\\fR", spec.key.replace('-', "\\-"));
            assert!(
                page.contains(&format!(".TP\n{head}")),
                "no item for {}",
                spec.key
            );
        }
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "SIGNALS",
            "FILES",
            "EXIT STATUS",
            "SEE ALSO",
        ] {
            assert!(
                page.contains(&format!("\n.SH {section}\n")),
                "no section {section}"
            );
        }
        let text: String = page.lines().filter(|l| !l.starts_with(".\\\"")).collect();
        let bare_hyphens = text
            .match_indices('-')
            .filter(|(at, _)| !text[..*at].ends_with('\\'));
        assert_eq!(bare_hyphens.count(), 0, "a hyphen is not written \\-");
        assert!(page.is_ascii(), "the page needs no preprocessor");
    }

    #[test]
    fn the_exit_codes_sys_uses_by_number_are_the_runtime_failure() {
        // `sys` imports nothing of the crate, so it spells these out.
        assert_eq!(
            crate::sys::fault::OVERFLOW_EXIT_CODE,
            i32::from(exit::RUNTIME)
        );
        assert_eq!(crate::sys::process::CHILD_SETUP_FAILED, exit::RUNTIME);
    }

    #[test]
    fn the_built_in_apps_declare_the_options_design_section_5_gives_them() {
        let specs = app_option_specs(&builtin_apps()).expect("no clash");
        let keys: Vec<(&str, &str)> = specs.iter().map(|s| (s.key, s.app.as_str())).collect();
        assert!(keys.contains(&("fetch-url", "fetch")), "{keys:?}");
        assert!(keys.contains(&("static-index", "static-map")), "{keys:?}");
    }

    #[test]
    fn an_app_may_not_declare_an_option_of_rcontainer_or_of_another_app() {
        use crate::api::{AppOption, Handler};
        let build = || {
            Rc::new(|_: &crate::api::AppConfig| {
                Ok(
                    Rc::new(|_: &mut crate::Request<'_>| crate::Response::text("x"))
                        as Rc<dyn Handler>,
                )
            })
        };
        let mut apps = builtin_apps();
        apps.insert_configured(
            "mine",
            vec![AppOption::new("socket", OptionKind::Text, "clash")],
            build(),
        );
        let error = app_option_specs(&apps).expect_err("socket is rcontainer's");
        assert!(error.contains("'socket'"), "{error}");
        let mut apps = builtin_apps();
        apps.insert_configured(
            "mine",
            vec![AppOption::new("fetch-url", OptionKind::Url, "clash")],
            build(),
        );
        let error = app_option_specs(&apps).expect_err("fetch-url is fetch's");
        assert!(
            error.contains("'fetch'") && error.contains("'mine'"),
            "{error}"
        );
    }

    fn parse(args: &[&str]) -> Result<Invocation, Vec<String>> {
        let args: Vec<OsString> = std::iter::once("rcontainer")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        parse_args(&args)
    }

    fn setting(name: &str, value: Option<&str>) -> CliSetting {
        CliSetting {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        }
    }

    #[test]
    fn ini_files_accumulate_with_overrides() {
        let got = parse(&[
            "--ini",
            "a.ini",
            "--processes",
            "8",
            "--ini=b.ini:prod",
            "--vacuum",
        ])
        .unwrap();
        assert_eq!(
            got,
            Invocation::Serve(ConfigArgs {
                ini_files: vec![IniRef::parse("a.ini"), IniRef::parse("b.ini:prod")],
                overrides: vec![setting("processes", Some("8")), setting("vacuum", None)],
                defaults: Vec::new(),
            })
        );
    }

    #[test]
    fn set_takes_key_value_pairs_as_defaults_and_refuses_anything_else() {
        let got = parse(&["--set", "processes=4", "--set=env=A=1", "--ini", "a.ini"]).unwrap();
        let Invocation::Serve(args) = got else {
            panic!("{got:?}")
        };
        assert_eq!(
            args.defaults,
            vec![setting("processes", Some("4")), setting("env", Some("A=1"))]
        );
        assert!(args.overrides.is_empty());
        assert!(parse(&["--set", "processes", "--ini", "a.ini"]).is_err());
        assert!(parse(&["--set", "=4", "--ini", "a.ini"]).is_err());
        assert!(parse(&["--set"]).is_err());
        assert!(matches!(
            parse(&["--set", "http-socket=:0", "--set", "module=hello"]),
            Ok(Invocation::Serve(_))
        ));
    }

    #[test]
    fn flags_take_no_separate_value_but_accept_an_inline_one() {
        let got = parse(&["--vacuum", "--vacuum=false", "--http-socket", ":8000"]).unwrap();
        let Invocation::Serve(args) = got else {
            panic!("{got:?}")
        };
        assert_eq!(
            args.overrides,
            vec![
                setting("vacuum", None),
                setting("vacuum", Some("false")),
                setting("http-socket", Some(":8000")),
            ]
        );
    }

    #[test]
    fn chmod_socket_may_be_bare_or_take_a_mode() {
        let got = parse(&[
            "--chmod-socket",
            "--chmod-socket",
            "660",
            "--socket",
            "/a.sock",
        ])
        .unwrap();
        let Invocation::Serve(args) = got else {
            panic!("{got:?}")
        };
        assert_eq!(args.overrides[0], setting("chmod-socket", None));
        assert_eq!(args.overrides[1], setting("chmod-socket", Some("660")));
    }

    #[test]
    fn options_without_a_value_are_left_for_load_to_report() {
        let got = parse(&["--socket", "--processes", "2"]).unwrap();
        let Invocation::Serve(args) = got else {
            panic!("{got:?}")
        };
        assert_eq!(args.overrides[0], setting("socket", None));
    }

    #[test]
    fn an_unknown_option_swallows_its_value() {
        let got = parse(&["--prcesses", "4", "--http-socket", ":0"]).unwrap();
        let Invocation::Serve(args) = got else {
            panic!("{got:?}")
        };
        assert_eq!(args.overrides[0], setting("prcesses", Some("4")));
        assert_eq!(args.overrides.len(), 2);
    }

    #[test]
    fn check_and_print_config_are_modes() {
        assert!(matches!(
            parse(&["--ini", "a.ini", "--check-config"]),
            Ok(Invocation::CheckConfig(_))
        ));
        assert!(matches!(
            parse(&["--print-config", "--ini", "a.ini"]),
            Ok(Invocation::PrintConfig(_))
        ));
        assert!(parse(&["--ini", "a.ini", "--check-config", "--print-config"]).is_err());
    }

    #[test]
    fn help_man_is_a_mode_of_its_own() {
        assert_eq!(parse(&["--help-man"]), Ok(Invocation::Man));
        assert_eq!(
            parse(&["--help-man", "--ini", "a.ini"]),
            Ok(Invocation::Man)
        );
    }

    #[test]
    fn emperor_is_an_option_that_selects_the_mode_after_loading() {
        let got = parse(&["--emperor", "/etc/vassals"]).unwrap();
        let Invocation::Serve(args) = got else {
            panic!("{got:?}")
        };
        assert_eq!(
            args.overrides,
            vec![setting("emperor", Some("/etc/vassals"))]
        );
    }

    #[test]
    fn pidfile_requests_take_one_pidfile_and_nothing_else() {
        for (flag, request) in [
            ("--reload", PidfileRequest::Reload),
            ("--stop", PidfileRequest::Stop),
            ("--graceful-stop", PidfileRequest::GracefulStop),
            ("--chain-reload", PidfileRequest::ChainReload),
        ] {
            assert_eq!(
                parse(&[flag, "/run/app.pid"]),
                Ok(Invocation::SignalPidfile {
                    request,
                    pidfile: PathBuf::from("/run/app.pid")
                })
            );
        }
        assert!(parse(&["--reload"]).is_err());
        assert!(parse(&["--reload", "a.pid", "--processes", "2"]).is_err());
        assert!(parse(&["--reload", "a.pid", "--stop", "a.pid"]).is_err());
    }

    #[test]
    fn a_refused_reload_exits_1_no_answer_2_and_a_done_or_sent_request_0() {
        let pid = Pid::from_raw(42);
        let code = |outcome| report_outcome(PidfileRequest::Reload, pid, outcome);
        assert_eq!(code(Outcome::Refused), ExitCode::from(exit::CONFIG));
        assert_eq!(code(Outcome::NoAnswer), ExitCode::from(exit::RUNTIME));
        assert_eq!(code(Outcome::Done), ExitCode::from(exit::OK));
        assert_eq!(code(Outcome::Sent), ExitCode::from(exit::OK));
    }

    #[test]
    fn help_and_version_win_over_everything() {
        assert_eq!(parse(&["--ini", "x", "--help"]), Ok(Invocation::Help));
        assert_eq!(parse(&["-h"]), Ok(Invocation::Help));
        assert_eq!(parse(&["--version"]), Ok(Invocation::Version));
    }

    #[test]
    fn nothing_to_do_and_stray_words_are_usage_errors() {
        assert!(parse(&[]).is_err());
        assert_eq!(
            parse(&["app.ini"]).unwrap_err(),
            vec!["unexpected argument 'app.ini' (options start with --)".to_owned()]
        );
        assert!(parse(&["--ini"]).is_err());
        assert!(parse(&["--ini", "a.ini", "--check-config=yes"]).is_err());
    }

    #[test]
    fn usage_lists_the_modes_and_every_option() {
        let text = usage(&builtin_apps());
        assert!(
            text.contains("--fetch-url URL") && text.contains("app fetch"),
            "the built-in apps' options are listed"
        );
        assert!(text.contains("--check-config"));
        assert!(text.contains("--emperor DIR|GLOB"));
        assert!(text.contains("--processes N, --workers"));
    }
}
