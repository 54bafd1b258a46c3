//! THE option table: every key rcontainer understands, its aliases, value kind, default and
//! one-line help, and the typed [`Config`] built from it.
//!
//! One macro invocation below is the single source for parsing (which keys exist, which are
//! lists, which take no value), validation (the kind's parser), `--help`, `--print-config`, the
//! README table and the fields of [`Config`]. To add an option, add one line to the table and
//! use the new field; the tests check the rest (unique names, docs, defaults that parse).
//!
//! Shapes: `one` options always have a value (their default if nobody set one); `maybe` options
//! are `Option<_>` (no default); `list` options are `Vec<_>` and accumulate across every source,
//! while for the others the last source wins (see `config::load`).

use std::fmt::Write as _;

use super::error::{ConfigError, Origin};
use super::value::{self, Kind};
use super::value::{
    AppName, Count, Flag, Group, Int, KeyValue, KiB, LogFormat, Millis, Mode, Owner, Path, Peer,
    Plugin, Prefixed, PyName, ReqLogger, Seconds, Size, Socket, SocketMode, Text, User,
};

/// How many values an option holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Exactly one; the default applies when unset.
    One,
    /// Zero or one; unset by default.
    Maybe,
    /// Any number, accumulated in source order; the defaults apply only when nothing was set.
    List,
}

/// One row of the table.
#[derive(Debug)]
pub(crate) struct OptionSpec {
    /// Canonical key, as in INI files and `--key`.
    pub(crate) key: &'static str,
    /// Other names for the same option (`workers` for `processes`).
    pub(crate) aliases: &'static [&'static str],
    pub(crate) shape: Shape,
    /// Default values as text, parsed like user input (one for `One`, none for `Maybe`).
    pub(crate) defaults: &'static [&'static str],
    /// How `--help` shows the value; empty for boolean flags.
    pub(crate) metavar: &'static str,
    /// The value a bare key means (`true` for flags).
    pub(crate) bare: Option<&'static str>,
    /// One line for `--help` and the README.
    pub(crate) help: &'static str,
}

impl OptionSpec {
    /// Whether this is a boolean flag (takes no separate value on the command line).
    pub(crate) fn is_flag(&self) -> bool {
        self.metavar.is_empty()
    }

    /// Whether `name` is this option's key or one of its aliases.
    pub(crate) fn is_named(&self, name: &str) -> bool {
        self.key == name || self.aliases.contains(&name)
    }

    /// The canonical key and every alias.
    pub(crate) fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.key).chain(self.aliases.iter().copied())
    }
}

/// One value as a source gave it, before conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    /// The canonical key of the option.
    pub(crate) key: &'static str,
    /// The name as written (`workers`), for messages.
    pub(crate) written: String,
    /// The text after placeholder expansion; `None` when the key was given bare.
    pub(crate) value: Option<String>,
    pub(crate) origin: Origin,
}

impl Setting {
    /// The text to parse: the value, or the option's bare value for a bare (or empty) key.
    pub(crate) fn text<'s>(&'s self, spec: &OptionSpec) -> Result<&'s str, ConfigError> {
        match self.value.as_deref() {
            Some(text) if !text.trim().is_empty() => Ok(text),
            _ => spec
                .bare
                .ok_or_else(|| ConfigError::at(&self.origin, &self.written, "needs a value")),
        }
    }
}

macro_rules! field_type {
    (one, $kind:ty) => { <$kind as Kind>::Out };
    (maybe, $kind:ty) => { Option<<$kind as Kind>::Out> };
    (list, $kind:ty) => { Vec<<$kind as Kind>::Out> };
}

macro_rules! shape_of {
    (one) => {
        Shape::One
    };
    (maybe) => {
        Shape::Maybe
    };
    (list) => {
        Shape::List
    };
}

macro_rules! convert {
    (one, $kind:ty, $($args:tt)*) => { convert_one::<$kind>($($args)*) };
    (maybe, $kind:ty, $($args:tt)*) => { convert_maybe::<$kind>($($args)*) };
    (list, $kind:ty, $($args:tt)*) => { convert_list::<$kind>($($args)*) };
}

/// Declares the option table and the matching [`Config`] struct.
///
/// `field: shape Kind = "key" | "alias" ..., [defaults...], "help";`
macro_rules! option_table {
    ($(
        $field:ident: $shape:ident $kind:ty = $key:literal $(| $alias:literal)*,
            [$($default:literal),*], $help:literal;
    )*) => {
        /// Every option rcontainer understands, in `--help` order.
        pub(crate) static OPTIONS: &[OptionSpec] = &[$(
            OptionSpec {
                key: $key,
                aliases: &[$($alias),*],
                shape: shape_of!($shape),
                defaults: &[$($default),*],
                metavar: <$kind as Kind>::METAVAR,
                bare: <$kind as Kind>::BARE,
                help: $help,
            },
        )*];

        /// The validated, immutable configuration of one instance. A reload loads a new one.
        ///
        /// Durations use `Duration::ZERO` for "off" where the help says `0 = off`; sizes are in
        /// bytes; `stack_size` is in bytes although it is written in KiB.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) struct Config {
            $(
                #[doc = $help]
                pub(crate) $field: field_type!($shape, $kind),
            )*
            /// The options the binary's apps declare, checked (see `config::app_options`).
            pub(crate) app_options: super::app_options::AppValues,
            /// The Python WSGI app this instance serves, if any (see `config::python`): then
            /// `module` is `None`, as it names only apps of the binary.
            pub(crate) python: Option<super::python::PythonApp>,
        }

        impl Config {
            /// Converts every option: `settings_for(key)` returns the settings of `key` in
            /// precedence order; a single-valued option takes the last, a list takes them all.
            pub(crate) fn from_settings<'a>(
                settings_for: impl Fn(&str) -> Vec<&'a Setting>,
            ) -> Result<Config, Vec<ConfigError>> {
                let mut errors = Vec::new();
                let mut specs = OPTIONS.iter();
                $(
                    let spec = specs.next().expect("invariant: one spec per field");
                    debug_assert_eq!(spec.key, $key);
                    let $field = convert!($shape, $kind, spec, &settings_for(spec.key), &mut errors);
                )*
                if !errors.is_empty() {
                    return Err(errors);
                }
                Ok(Config {
                    $($field: $field.expect("invariant: no error means every field converted"),)*
                    app_options: super::app_options::AppValues::new(),
                    python: None,
                })
            }
        }
    };
}

option_table! {
    master: one Flag = "master",
        ["true"], "Accepted for uWSGI files; the master always runs.";
    processes: one Count<1, 4096> = "processes" | "workers",
        ["1"], "Worker processes.";
    async_cores: one Count<1, 1_000_000> = "async",
        ["100"], "Coroutine cores per worker: the most requests one worker has in flight.";
    gevent: maybe Count<1, 1_000_000> = "gevent",
        [], "uWSGI's gevent = N: N greenlets per worker for a Python app; for any app it also sets async = N unless async is given.";
    worker_connections: one Count<0, 1_000_000> = "worker-connections",
        ["0"], "Most client connections one worker holds, idle keep-alive included (more wait in the listen backlog); 0 = 4 x async, at least 1024.";
    spawn_limit: one Count<0, 1_000_000> = "spawn-limit",
        ["0"], "Most tasks a worker's handlers may run at once with rt::spawn, apart from the cores (beyond: rt::try_spawn fails); 0 = 4 x async, at least 1024.";
    sockets: list Socket = "socket" | "uwsgi-socket",
        [], "uwsgi-protocol listener: host:port, :port, a unix path or fd://N (IPv6 in brackets).";
    http_sockets: list Socket = "http-socket",
        [], "HTTP/1.1 listener (keep-alive), same address forms as socket.";
    chmod_socket: maybe SocketMode = "chmod-socket" | "chmod",
        [], "Octal mode of unix sockets; 666 when given bare.";
    chown_socket: maybe Owner = "chown-socket",
        [], "Owner of unix sockets: user or user:group.";
    umask: maybe Mode = "umask",
        [], "Octal umask of the master and its workers.";
    listen: one Count<1, 65535> = "listen",
        ["1024"], "Listen backlog of each socket (at most net.core.somaxconn: a larger value is cut to it with a warning).";
    uwsgi_allow_from: list Peer = "uwsgi-allow-from",
        ["127.0.0.1", "::1"], "Peers allowed on TCP uwsgi sockets: IP addresses (comma-separated) or *.";
    vacuum: one Flag = "vacuum",
        ["false"], "Remove unix sockets and the pidfile on exit.";
    module: maybe AppName = "module" | "wsgi",
        [], "The app serving every path no mount claims: an app of this binary, else a Python WSGI module pkg.mod or pkg.mod:callable (an instance needs module, wsgi-file, mount or static-map).";
    callable: one PyName = "callable",
        ["application"], "Name of the WSGI callable in a Python app's module or wsgi-file (module = pkg.mod:name wins).";
    wsgi_file: maybe Path = "wsgi-file" | "file",
        [], "Python file holding the WSGI app serving every path (instead of module).";
    home: maybe Path = "home" | "virtualenv" | "venv" | "pyhome",
        [], "Python virtualenv (or prefix) of a Python app.";
    pythonpath: list Path = "pythonpath" | "python-path" | "pp",
        [], "Directory added to a Python app's module search path (sys.path).";
    gevent_monkey_patch: maybe Flag = "gevent-monkey-patch" | "gevent-early-monkey-patch",
        [], "Run gevent's monkey.patch_all() before the Python app is imported; default: on when gevent is set.";
    plugins: list Plugin = "plugins" | "plugin",
        [], "uWSGI plugins to load: python, python3, pythonNN, gevent, gevent_pythonNN, http and corerouter are built in (no warning); other names warn.";
    mounts: list Prefixed = "mount",
        [], "Serve a path prefix with an app: /prefix=app.";
    static_maps: list Prefixed = "static-map",
        [], "Serve a path prefix from a directory, before any app: /prefix=dir.";
    chdir: maybe Path = "chdir",
        [], "Working directory, entered before the apps start.";
    env: list KeyValue = "env",
        [], "Environment variable for the workers: NAME=VALUE.";
    uid: maybe User = "uid",
        [], "User (name or id) to run as once the sockets are bound.";
    gid: maybe Group = "gid",
        [], "Group (name or id) to run as once the sockets are bound.";
    daemonize: maybe Path = "daemonize",
        [], "Detach from the terminal and log to this file.";
    logto: maybe Path = "logto",
        [], "Log to this file instead of stderr.";
    req_logger: maybe ReqLogger = "req-logger" | "logger-req",
        [], "Where request log lines go (file:PATH), if not with the server log.";
    disable_logging: one Flag = "disable-logging",
        ["false"], "Do not log requests.";
    log_format: maybe LogFormat = "log-format" | "logformat",
        [], "Request log line with uWSGI's variables (%(method) %(uri) %(status) %(msecs) %(rsize) %(addr) ...; unknown ones are errors), or json.";
    log_4xx: one Flag = "log-4xx",
        ["false"], "Log 4xx responses even when request logging is disabled.";
    log_5xx: one Flag = "log-5xx",
        ["false"], "Log 5xx responses even when request logging is disabled.";
    log_slow: one Millis = "log-slow",
        ["0"], "Log requests slower than this (plain number: ms) even when request logging is disabled; 0 = off.";
    pidfile: maybe Path = "pidfile",
        [], "Write the master pid here once the sockets are bound.";
    max_requests: one Int<0, { u64::MAX }> = "max-requests",
        ["0"], "Recycle a worker after this many requests; 0 = never.";
    max_requests_delta: one Int<0, { u64::MAX }> = "max-requests-delta",
        ["0"], "Per-worker jitter added to max-requests, so workers do not recycle together.";
    max_worker_lifetime: one Seconds = "max-worker-lifetime",
        ["0"], "Recycle a worker after it has run this long; 0 = never.";
    reload_on_rss: one Int<0, { u64::MAX }> = "reload-on-rss",
        ["0"], "Recycle a worker whose resident memory exceeds this many MB; 0 = never.";
    harakiri: one Seconds = "harakiri",
        ["0"], "Per-request deadline: the request is cancelled (504 if nothing was sent); 0 = none.";
    worker_watchdog: one Seconds = "worker-watchdog",
        ["30"], "Kill a worker whose event loop has been blocked this long; 0 = off.";
    worker_reload_mercy: one Seconds = "worker-reload-mercy" | "reload-mercy",
        ["60"], "How long a stopping worker may drain its requests before SIGKILL.";
    touch_reload: list Path = "touch-reload",
        [], "Gracefully reload when this file's modification time changes.";
    touch_chain_reload: list Path = "touch-chain-reload",
        [], "Chain-reload (one worker at a time) when this file's modification time changes.";
    touch_workers_reload: list Path = "touch-workers-reload",
        [], "Reload only the workers when this file's modification time changes.";
    touch_logreopen: list Path = "touch-logreopen",
        [], "Reopen the log files when this file's modification time changes.";
    buffer_size: one Size<512, { 16 << 20 }> = "buffer-size",
        ["65535"], "Largest uwsgi vars block or HTTP request head, in bytes (431 beyond).";
    limit_post: one Size<0, { u64::MAX }> = "limit-post",
        ["0"], "Largest request body, in bytes (413 beyond); 0 = no limit.";
    socket_timeout: one Seconds = "socket-timeout",
        ["30"], "Idle read/write timeout on client connections, keep-alive included.";
    http_header_timeout: one Seconds = "http-header-timeout",
        ["20"], "Deadline for a whole request head (or uwsgi packet) from its first byte: 408 and close (uwsgi: close); 0 = none.";
    body_min_rate: one Size<0, { u64::MAX }> = "body-min-rate",
        ["1k"], "Slowest request body taken, bytes/s: waiting for it may total socket-timeout + 1 s per this many bytes received, then 408 and close; 0 = off.";
    stats: maybe Socket = "stats" | "stats-server",
        [], "Serve uwsgitop-compatible stats JSON on this address.";
    stats_http: one Flag = "stats-http",
        ["false"], "Answer on the stats address with an HTTP response.";
    stats_minified: one Flag = "stats-minified" | "stats-min",
        ["false"], "Write the stats JSON without whitespace.";
    master_fifo: maybe Path = "master-fifo",
        [], "FIFO the master reads one-letter commands from.";
    offload_threads: one Count<1, 1024> = "offload-threads" | "offload-thread",
        ["4"], "Threads per worker that run blocking calls for coroutines.";
    stack_size: one KiB<64, 65536> = "stack-size",
        ["256"], "Coroutine stack size in KiB (at least 64).";
    client_ca_file: maybe Path = "client-ca-file",
        [], "PEM bundle of CA certificates the HTTPS client trusts besides the system store (private CAs).";
    emperor: list Text = "emperor",
        [], "Run an emperor over this directory (its *.ini files) or glob of vassal INI files.";
    emperor_freq: one Seconds = "emperor-freq",
        ["3"], "How often the emperor rescans its directories and globs, besides inotify events.";
    emperor_max_throttle: one Seconds = "emperor-max-throttle",
        ["180"], "Longest delay before the emperor respawns a vassal that keeps dying (1 s, doubling).";
    emperor_brutal_shutdown: one Flag = "emperor-brutal-shutdown",
        ["false"], "Stop a vassal whose file is removed at once, not letting its requests finish.";
    emperor_required_heartbeat: one Seconds = "emperor-required-heartbeat",
        ["30"], "A vassal that sent heartbeats, then none for this long, is reloaded (killed if silent as long again); 0 = off.";
    emperor_wrapper: maybe Path = "emperor-wrapper" | "binary-path",
        [], "The program the emperor runs for each vassal as PROGRAM --ini FILE (default: its own binary).";
    vassal_set: list KeyValue = "vassal-set",
        [], "A default option for every vassal, KEY=VALUE (passed as --set KEY=VALUE; its INI wins).";
    emperor_stats: maybe Socket = "emperor-stats" | "emperor-stats-server",
        [], "Serve the emperor's stats JSON (uWSGI's emperor format) on this address.";
    heartbeat: one Seconds = "heartbeat",
        ["0"], "Under an emperor: tell it every this many seconds that the instance is alive; 0 = never.";
}

fn parse_one<K: Kind>(
    spec: &OptionSpec,
    setting: &Setting,
    errors: &mut Vec<ConfigError>,
) -> Option<K::Out> {
    let parsed = setting.text(spec).and_then(|text| {
        K::parse(text).map_err(|why| ConfigError::at(&setting.origin, &setting.written, why))
    });
    parsed.map_err(|error| errors.push(error)).ok()
}

fn parse_default<K: Kind>(
    spec: &OptionSpec,
    text: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<K::Out> {
    // Only a broken table gets here; the unit tests parse every default.
    K::parse(text)
        .map_err(|why| errors.push(ConfigError::at(&Origin::Default, spec.key, why)))
        .ok()
}

fn convert_one<K: Kind>(
    spec: &OptionSpec,
    settings: &[&Setting],
    errors: &mut Vec<ConfigError>,
) -> Option<K::Out> {
    match settings.last() {
        Some(setting) => parse_one::<K>(spec, setting, errors),
        None => {
            let default = spec.defaults.first().copied().unwrap_or_default();
            parse_default::<K>(spec, default, errors)
        }
    }
}

fn convert_maybe<K: Kind>(
    spec: &OptionSpec,
    settings: &[&Setting],
    errors: &mut Vec<ConfigError>,
) -> Option<Option<K::Out>> {
    match settings.last() {
        Some(setting) => parse_one::<K>(spec, setting, errors).map(Some),
        None => Some(None),
    }
}

fn convert_list<K: Kind>(
    spec: &OptionSpec,
    settings: &[&Setting],
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<K::Out>> {
    let before = errors.len();
    let mut out = Vec::new();
    if settings.is_empty() {
        out.extend(
            spec.defaults
                .iter()
                .filter_map(|d| parse_default::<K>(spec, d, errors)),
        );
    }
    for setting in settings {
        let text = match setting.text(spec) {
            Ok(text) => text,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        let items: Vec<&str> = if K::COMMA_LIST {
            value::split_commas(text).collect()
        } else {
            vec![text]
        };
        for item in items {
            match K::parse(item) {
                Ok(parsed) => out.push(parsed),
                Err(why) => errors.push(ConfigError::at(&setting.origin, &setting.written, why)),
            }
        }
    }
    (errors.len() == before).then_some(out)
}

/// The option named `name` (its key or an alias).
pub(crate) fn find_option(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|spec| spec.is_named(name))
}

/// The closest option name to a misspelt `name`, if one is close enough to be a likely typo.
pub(crate) fn suggest_option(name: &str) -> Option<&'static str> {
    OPTIONS
        .iter()
        .flat_map(OptionSpec::names)
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, candidate)| {
            // Short names tolerate fewer edits, or everything would suggest `env`.
            *distance <= 2.min(candidate.len() / 3).max(1)
                || (*distance <= 3 && candidate.len() >= 12)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, counting a swap of two neighbours as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// The default as `--help` and the README show it.
fn shown_default(spec: &OptionSpec) -> Option<String> {
    (!spec.defaults.is_empty()).then(|| spec.defaults.join(", "))
}

/// The option part of `--help`: every option with its aliases, value, default and help line.
pub(crate) fn render_help() -> String {
    let mut out = String::new();
    for spec in OPTIONS {
        let mut head = format!("  --{}", spec.key);
        if !spec.metavar.is_empty() {
            let _ = write!(head, " {}", spec.metavar);
        }
        for alias in spec.aliases {
            let _ = write!(head, ", --{alias}");
        }
        let mut notes = Vec::new();
        if let Some(default) = shown_default(spec) {
            notes.push(format!("default: {default}"));
        }
        if spec.shape == Shape::List {
            notes.push("repeatable".to_owned());
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" [{}]", notes.join("; "))
        };
        let _ = writeln!(out, "{head}\n          {}{notes}", spec.help);
    }
    out
}

/// The README's options table, in Markdown (the command line's test adds the apps' rows).
#[cfg_attr(not(test), allow(dead_code))] // only the README test writes it
pub(crate) fn render_markdown_table() -> String {
    let mut out = String::from("| key | aliases | default | meaning |\n|---|---|---|---|\n");
    for spec in OPTIONS {
        let aliases: Vec<String> = spec.aliases.iter().map(|a| format!("`{a}`")).collect();
        let default = shown_default(spec).map_or_else(|| "—".to_owned(), |d| format!("`{d}`"));
        let repeat = if spec.shape == Shape::List {
            " Repeatable."
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {default} | {}{repeat} |",
            spec.key,
            aliases.join(", "),
            spec.help.replace('|', "\\|"),
        );
    }
    out
}

/// `text` as roff (man(7)) input: backslashes and hyphens escaped (`\-` is the ASCII minus a
/// reader can copy into a shell), a leading `.` or `'` neutralized, other characters than ASCII
/// as `\[uXXXX]` so that the page needs no preprocessor.
pub(crate) fn roff_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    if text.starts_with(['.', '\'']) {
        out.push_str("\\&");
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c if c.is_ascii() => out.push(c),
            c => {
                let _ = write!(out, "\\[u{:04X}]", u32::from(c));
            }
        }
    }
    out
}

/// The OPTIONS section of the man page: one `.TP` per option with its aliases, value, default
/// and help, like `--help`.
pub(crate) fn render_man_options() -> String {
    let mut out = String::new();
    for spec in OPTIONS {
        let mut head = format!("\\fB\\-\\-{}\\fR", roff_escape(spec.key));
        if !spec.metavar.is_empty() {
            let _ = write!(head, " \\fI{}\\fR", roff_escape(spec.metavar));
        }
        for alias in spec.aliases {
            let _ = write!(head, ", \\fB\\-\\-{}\\fR", roff_escape(alias));
        }
        let mut body = roff_escape(spec.help);
        if let Some(default) = shown_default(spec) {
            let _ = write!(body, " Default: \\fB{}\\fR.", roff_escape(&default));
        }
        if spec.shape == Shape::List {
            body.push_str(" Repeatable.");
        }
        let _ = writeln!(out, ".TP\n{head}\n{body}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::uwsgi;
    use std::collections::HashSet;

    #[test]
    fn keys_and_aliases_are_unique_across_the_table_and_the_uwsgi_list() {
        let mut seen = HashSet::new();
        for name in OPTIONS.iter().flat_map(OptionSpec::names) {
            assert!(seen.insert(name), "{name} is named twice in the table");
            assert!(
                !uwsgi::is_ignored_uwsgi_option(name),
                "{name} is both implemented and in the ignored uWSGI list"
            );
        }
    }

    #[test]
    fn every_option_has_a_one_line_help_ending_with_a_period() {
        for spec in OPTIONS {
            assert!(!spec.help.is_empty(), "{}", spec.key);
            assert!(!spec.help.contains('\n'), "{}", spec.key);
            assert!(spec.help.ends_with('.'), "{}", spec.key);
        }
    }

    #[test]
    fn every_default_parses_and_shapes_have_the_right_number_of_defaults() {
        for spec in OPTIONS {
            match spec.shape {
                Shape::One => assert_eq!(spec.defaults.len(), 1, "{}", spec.key),
                Shape::Maybe => assert!(spec.defaults.is_empty(), "{}", spec.key),
                Shape::List => {}
            }
        }
        let config = Config::from_settings(|_| Vec::new()).expect("every default converts");
        assert_eq!(config.processes, 1);
        assert_eq!(config.async_cores, 100);
        assert_eq!(config.stack_size, 256 * 1024);
        assert_eq!(config.harakiri, std::time::Duration::ZERO);
        assert_eq!(config.uwsgi_allow_from.len(), 2);
        assert!(config.sockets.is_empty());
    }

    #[test]
    fn every_bare_value_parses_and_other_options_need_a_value() {
        for spec in OPTIONS {
            let bare = Setting {
                key: spec.key,
                written: spec.key.to_owned(),
                value: None,
                origin: Origin::Cli(format!("--{}", spec.key)),
            };
            let result = Config::from_settings(|key| {
                if key == spec.key {
                    vec![&bare]
                } else {
                    Vec::new()
                }
            });
            match (spec.bare, result) {
                (Some(_), Ok(_)) => {}
                (None, Err(errors)) => {
                    assert_eq!(errors.len(), 1, "{}", spec.key);
                    assert_eq!(
                        errors[0].to_string(),
                        format!("--{}: needs a value", spec.key)
                    );
                }
                (bare, result) => panic!("{}: bare {bare:?} gave {result:?}", spec.key),
            }
        }
    }

    #[test]
    fn keys_are_lowercase_kebab_case() {
        for name in OPTIONS.iter().flat_map(OptionSpec::names) {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}"
            );
        }
    }

    #[test]
    fn design_section_5_keys_are_all_present() {
        for key in [
            "master",
            "processes",
            "workers",
            "async",
            "gevent",
            "socket",
            "uwsgi-socket",
            "http-socket",
            "chmod-socket",
            "chown-socket",
            "umask",
            "listen",
            "uwsgi-allow-from",
            "vacuum",
            "module",
            "mount",
            "static-map",
            "chdir",
            "env",
            "uid",
            "gid",
            "daemonize",
            "logto",
            "req-logger",
            "disable-logging",
            "log-format",
            "log-4xx",
            "log-5xx",
            "log-slow",
            "pidfile",
            "max-requests",
            "max-requests-delta",
            "max-worker-lifetime",
            "reload-on-rss",
            "harakiri",
            "worker-watchdog",
            "worker-reload-mercy",
            "reload-mercy",
            "touch-reload",
            "touch-chain-reload",
            "touch-workers-reload",
            "touch-logreopen",
            "buffer-size",
            "limit-post",
            "socket-timeout",
            "stats",
            "stats-http",
            "stats-minified",
            "master-fifo",
            "offload-threads",
            "stack-size",
            "emperor",
        ] {
            assert!(find_option(key).is_some(), "{key}");
        }
        // `static-index` and `fetch-url` are options of the built-in apps (the command line's
        // tests check them).
    }

    #[test]
    fn aliases_find_their_option() {
        assert_eq!(find_option("workers").map(|s| s.key), Some("processes"));
        assert_eq!(find_option("gevent").map(|s| s.key), Some("gevent"));
        assert_eq!(find_option("virtualenv").map(|s| s.key), Some("home"));
        assert_eq!(find_option("pp").map(|s| s.key), Some("pythonpath"));
        assert_eq!(find_option("file").map(|s| s.key), Some("wsgi-file"));
        assert_eq!(find_option("wsgi").map(|s| s.key), Some("module"));
        assert_eq!(find_option("uwsgi-socket").map(|s| s.key), Some("socket"));
        assert!(find_option("nope").is_none());
    }

    #[test]
    fn typos_suggest_the_nearest_option() {
        assert_eq!(suggest_option("prcesses"), Some("processes"));
        assert_eq!(suggest_option("proceses"), Some("processes"));
        assert_eq!(suggest_option("htpp-socket"), Some("http-socket"));
        assert_eq!(suggest_option("harikiri"), Some("harakiri"));
        assert_eq!(suggest_option("max-request"), Some("max-requests"));
        assert_eq!(suggest_option("completely-different"), None);
        assert_eq!(suggest_option("xyz"), None);
    }

    #[test]
    fn flags_take_no_value_and_others_do() {
        assert!(find_option("vacuum").unwrap().is_flag());
        assert!(!find_option("processes").unwrap().is_flag());
        assert_eq!(find_option("chmod-socket").unwrap().bare, Some("666"));
    }

    #[test]
    fn help_lists_every_option_with_aliases_and_defaults() {
        let help = render_help();
        for spec in OPTIONS {
            assert!(help.contains(&format!("--{}", spec.key)), "{}", spec.key);
        }
        assert!(help.contains("  --processes N, --workers\n"));
        assert!(help.contains("Worker processes. [default: 1]"));
    }
}
