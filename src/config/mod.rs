//! Configuration: INI files, `RCONTAINER_*` environment variables and command-line options,
//! merged into one validated, immutable [`Config`].
//!
//! Loading has two phases (STYLE.md 4). First every source is read into [`options::Setting`]s,
//! in precedence order: `--set` defaults < INI files (in the order given) < environment <
//! command line. The INI lexer (`ini`) only tokenizes; placeholders (`expand`) are replaced at
//! this step, and unknown keys are rejected here (uWSGI-only keys from `uwsgi` merely warn). A
//! key of no option that some value of the loaded files uses as `%(key)` is the user's own
//! placeholder, as in uWSGI (`project = shop`, `socket = /run/%(project).sock`), and so are
//! `set-placeholder` / `set-ph = key=value`; `set = key=value` (and `--set`) sets option `key`
//! (or that placeholder, when `key` is no option). Then [`Config::from_settings`] walks the
//! option table (`options`): a single-valued option takes the last setting (so the command
//! line wins), a list option takes all of them in order (so sockets accumulate), and each value
//! goes through its kind's parser (`value`). Last come the checks that need more than one value
//! or the file system (a listener is set, `chdir` exists, the `daemonize` log can be one,
//! `listen` fits the kernel's limit).
//! Every error of every source is reported, not just the first.
//!
//! Nothing here starts anything or mutates a live config: a reload calls [`load`] again and gets
//! a new [`Config`].
//!
//! ```text
//! let sources = Sources::from_process(ini_files, cli_overrides);
//! match config::load(&sources) {
//!     Ok(loaded) => { /* loaded.config.processes, loaded.warnings */ }
//!     Err(failed) => { /* failed.errors: "conf/app.ini:3: prcesses: unknown option ..." */ }
//! }
//! ```

pub(crate) mod app_options;
pub(crate) mod error;
mod expand;
pub(crate) mod ini;
pub(crate) mod options;
pub(crate) mod python;
mod uwsgi;
pub(crate) mod value;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use app_options::AppOptionSpec;
use error::Position;
pub(crate) use error::{ConfigError, Origin, Warning};
pub(crate) use options::Config;
use options::{OPTIONS, OptionSpec, Setting, Shape, find_option, suggest_option};
pub(crate) use uwsgi::NO_PYTHON;

/// The prefix of environment variables that set options: `RCONTAINER_PROCESSES=4`.
pub(crate) const ENV_PREFIX: &str = "RCONTAINER_";

/// Everything `load` reads besides the files themselves.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    /// `--ini` arguments, in command-line order.
    pub(crate) ini_files: Vec<IniRef>,
    /// The process environment: `$(VAR)` expansion and `RCONTAINER_*` options. Injected so that
    /// tests never touch the real environment.
    pub(crate) env: BTreeMap<String, String>,
    /// `--key value` options, in command-line order.
    pub(crate) cli: Vec<CliSetting>,
    /// `--set KEY=VALUE` defaults, in command-line order: read before every other source, so
    /// that each of them overrides a single-valued option (list options accumulate).
    pub(crate) defaults: Vec<CliSetting>,
    /// The options the binary's apps declare: loaded like the table's.
    pub(crate) app_options: Vec<AppOptionSpec>,
    /// The names of the binary's apps: a `module` naming none of them is a Python app.
    pub(crate) app_names: Vec<String>,
    /// The text of each INI file as an earlier load read it, to use instead of the files on
    /// disk (a master falling back to the configuration it ran before a failed reload).
    pub(crate) replay: Option<Vec<(PathBuf, String)>>,
    /// Where relative INI paths are resolved: to read them, and for `%d` and `%p`.
    pub(crate) cwd: PathBuf,
    /// The value of `%k`.
    pub(crate) cpu_count: usize,
    /// The kernel's largest listen backlog (`net.core.somaxconn`), when known: `listen` is
    /// clamped to it.
    pub(crate) somaxconn: Option<u32>,
}

/// One `--ini FILE[:SECTION]` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IniRef {
    pub(crate) path: PathBuf,
    /// The section asked for; `None` means `[rcontainer]`, else `[uwsgi]`.
    pub(crate) section: Option<String>,
}

/// One `--key [value]` from the command line, not yet checked against the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliSetting {
    /// The name after `--`, as written.
    pub(crate) name: String,
    /// `None` for a bare flag (`--vacuum`).
    pub(crate) value: Option<String>,
}

impl IniRef {
    /// Splits `conf/app.ini:staging` into a path and a section. A colon only starts a section
    /// when what follows has no `/`, so odd paths still work.
    pub(crate) fn parse(arg: &str) -> IniRef {
        match arg.rsplit_once(':') {
            Some((path, section))
                if !path.is_empty() && !section.is_empty() && !section.contains('/') =>
            {
                IniRef {
                    path: PathBuf::from(path),
                    section: Some(section.to_owned()),
                }
            }
            _ => IniRef {
                path: PathBuf::from(arg),
                section: None,
            },
        }
    }
}

impl Sources {
    /// Sources for this process: its environment, working directory and CPU count.
    pub(crate) fn from_process(ini_files: Vec<IniRef>, cli: Vec<CliSetting>) -> Sources {
        Sources {
            ini_files,
            // Variables that are not UTF-8 cannot name options or be expanded into text.
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            cli,
            defaults: Vec::new(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            cpu_count: std::thread::available_parallelism().map_or(1, usize::from),
            somaxconn: crate::net::listener::kernel_backlog_limit(),
            app_options: Vec::new(),
            app_names: Vec::new(),
            replay: None,
        }
    }

    /// Sources made of command-line options only, with an empty environment: the short way
    /// to build a [`Config`] in a unit test (`Sources::with_cli(&[("http-socket", ":0")])`).
    #[allow(dead_code)] // for the unit tests of the modules that consume Config
    pub(crate) fn with_cli(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            cli: pairs
                .iter()
                .map(|(name, value)| CliSetting {
                    name: (*name).to_owned(),
                    value: Some((*value).to_owned()),
                })
                .collect(),
            cwd: PathBuf::from("/"),
            cpu_count: 1,
            ..Sources::default()
        }
    }
}

/// A successful load.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) config: Config,
    /// Ignored uWSGI keys and likely-mistyped `RCONTAINER_*` variables; print them, go on.
    pub(crate) warnings: Vec<Warning>,
    /// Every option's effective value and origin, in table order, for `--print-config`.
    pub(crate) effective: Vec<Effective>,
    /// The text of each INI file as it was read, by its `--ini` path: what a later fallback
    /// replays ([`Sources::replay`]).
    pub(crate) texts: Vec<(PathBuf, String)>,
}

/// A failed load: nothing may start. Warnings are kept so that they can be shown too.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<Warning>,
}

/// One row of `--print-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Effective {
    pub(crate) key: &'static str,
    /// The text in effect after expansion; `None` when the option is unset.
    pub(crate) value: Option<String>,
    pub(crate) origin: Origin,
}

/// Reads every source, validates every value and builds the [`Config`].
pub(crate) fn load(sources: &Sources) -> Result<Loaded, Failed> {
    let mut gathered = Gathered::default();
    let files: Vec<IniFile> = (sources.ini_files.iter())
        .filter_map(|ini| gathered.lex_ini(ini, sources))
        .collect();
    // Placeholders may be used before (or in another file than) the line that defines them.
    let referenced: HashSet<&str> = (files.iter())
        .flat_map(|file| &file.entries)
        .filter_map(|entry| entry.value.as_deref())
        .flat_map(expand::referenced_keys)
        .collect();
    let mut earlier = HashMap::new();
    gathered.read_defaults(sources, &referenced, &mut earlier);
    for file in &files {
        gathered.read_ini(file, sources, &referenced, &mut earlier);
    }
    gathered.read_env(&sources.env, &sources.app_options);
    gathered.read_cli(&sources.cli, &sources.app_options);
    let Gathered {
        settings,
        mut warnings,
        mut errors,
    } = gathered;

    let mut by_key: HashMap<&'static str, Vec<&Setting>> = HashMap::new();
    for setting in &settings {
        by_key.entry(setting.key).or_default().push(setting);
    }
    let settings_for = |key: &str| by_key.get(key).cloned().unwrap_or_default();
    let mut config = match Config::from_settings(settings_for) {
        Ok(config) => Some(config),
        Err(value_errors) => {
            errors.extend(value_errors);
            None
        }
    };
    let app_values = app_options::convert(&sources.app_options, settings_for, &mut errors);
    if let Some(config) = config.as_mut() {
        config.app_options = app_values;
    }
    // Only judge the combination of a config whose parts are all fine, or a file that failed
    // to load would also be reported as "no listener".
    warnings.extend(python::check_plugins(&settings_for));
    if let Some(config) = config.as_mut().filter(|_| errors.is_empty()) {
        let app_names: Vec<&str> = (sources.app_names.iter().map(String::as_str))
            .chain(sources.app_options.iter().map(|option| option.app.as_str()))
            .collect();
        let (python_errors, python_warnings) =
            python::resolve(config, &settings_for, &app_names, python::SUPPORTED);
        errors.extend(python_errors);
        warnings.extend(python_warnings);
        errors.extend(check_combination(config));
        errors.extend(check_paths(config, &settings_for, &sources.cwd));
        warnings.extend(clamp_backlog(config, &settings_for, sources.somaxconn));
    }
    errors.sort_by_key(|error| reading_order(error.position(), &sources.ini_files));
    match config {
        Some(config) if errors.is_empty() => Ok(Loaded {
            config,
            warnings,
            effective: OPTIONS
                .iter()
                .flat_map(|spec| {
                    let mut settings = settings_for(spec.key);
                    if spec.key == "async" && settings.is_empty() {
                        // `gevent = N` is `async = N` when `async` is not given.
                        settings = settings_for("gevent");
                    }
                    effective_rows(spec, &settings)
                })
                .chain(app_options::effective_rows(
                    &sources.app_options,
                    settings_for,
                ))
                .collect(),
            texts: (files.iter())
                .map(|file| (file.path.clone(), file.text.clone()))
                .collect(),
        }),
        _ => Err(Failed { errors, warnings }),
    }
}

impl Config {
    /// Who the workers run as (`uid`, `gid`): the user's primary group unless `gid` is set.
    pub(crate) fn credentials(&self) -> crate::sys::privilege::Credentials {
        let mut credentials = self
            .uid
            .as_ref()
            .map(|user| user.credentials.clone())
            .unwrap_or_default();
        if let Some(group) = &self.gid {
            credentials.gid = Some(group.gid);
        }
        credentials
    }
}

/// Files in command-line order and by line, then the environment, the command line, the rest.
/// The sort is stable, so errors at the same place keep the order they were found in.
fn reading_order(position: &Position, ini_files: &[IniRef]) -> (usize, usize) {
    let files = ini_files.len();
    match position {
        Position::File { file, line } => {
            let index = ini_files
                .iter()
                .position(|ini| *ini.path.to_string_lossy() == **file)
                .unwrap_or(files);
            (index, *line)
        }
        Position::Env => (files + 1, 0),
        Position::Cli => (files + 2, 0),
        Position::Overall => (files + 3, 0),
    }
}

/// Rules that involve more than one option.
fn check_combination(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if config.emperor.is_empty() && config.sockets.is_empty() && config.http_sockets.is_empty() {
        errors.push(ConfigError::overall(
            "no listener: set socket or http-socket (or emperor)",
        ));
    }
    errors
}

/// Paths that must exist before anything starts: `chdir` (a directory) and the `daemonize`
/// log, which must be able to be a log file (see `sys::daemon::check_log_path`). Paths that
/// start-up creates (pidfile, sockets, FIFO) are checked when they are created; the
/// `client-ca-file` bundle by the command line, which knows the HTTP client.
fn check_paths<'a>(
    config: &Config,
    settings_for: &impl Fn(&str) -> Vec<&'a Setting>,
    cwd: &std::path::Path,
) -> Vec<ConfigError> {
    let at = |key: &str, message: String| -> ConfigError {
        match settings_for(key).last() {
            Some(setting) => ConfigError::at(&setting.origin, &setting.written, message),
            None => ConfigError::overall(format!("{key}: {message}")),
        }
    };
    let mut errors = Vec::new();
    if let Some(dir) = &config.chdir {
        let shown = dir.display();
        match std::fs::metadata(cwd.join(dir)) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => errors.push(at("chdir", format!("{shown}: not a directory"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                errors.push(at("chdir", format!("{shown}: no such directory")));
            }
            Err(e) => errors.push(at("chdir", format!("{shown}: {}", describe(&e)))),
        }
    }
    if let Some(log) = &config.daemonize
        && let Err(why) = crate::sys::daemon::check_log_path(&cwd.join(log))
    {
        errors.push(at("daemonize", why));
    }
    errors
}

/// `listen(2)` silently cuts a backlog to `net.core.somaxconn`: say so once when the user asked
/// for more, and use what the kernel grants. The default is cut without a word (an old kernel's
/// limit of 128 is no fault of the configuration).
fn clamp_backlog<'a>(
    config: &mut Config,
    settings_for: &impl Fn(&str) -> Vec<&'a Setting>,
    somaxconn: Option<u32>,
) -> Option<Warning> {
    let limit = usize::try_from(somaxconn?).ok()?.max(1);
    if config.listen <= limit {
        return None;
    }
    let asked = config.listen;
    config.listen = limit;
    let setting = settings_for("listen").last().copied()?;
    Some(Warning::at(
        &setting.origin,
        format!(
            "listen = {asked} is above net.core.somaxconn ({limit}): the kernel grants a \
             backlog of {limit} (raise net.core.somaxconn with sysctl for more)"
        ),
    ))
}

fn effective_rows(spec: &OptionSpec, settings: &[&Setting]) -> Vec<Effective> {
    let from_setting = |setting: &&Setting| Effective {
        key: spec.key,
        value: setting.text(spec).ok().map(str::to_owned),
        origin: setting.origin.clone(),
    };
    let defaults = || -> Vec<Effective> {
        if spec.defaults.is_empty() {
            return vec![Effective {
                key: spec.key,
                value: None,
                origin: Origin::Default,
            }];
        }
        spec.defaults
            .iter()
            .map(|d| Effective {
                key: spec.key,
                value: Some((*d).to_owned()),
                origin: Origin::Default,
            })
            .collect()
    };
    match (spec.shape, settings.last()) {
        (_, None) => defaults(),
        (Shape::List, Some(_)) => settings.iter().map(from_setting).collect(),
        (Shape::One | Shape::Maybe, Some(last)) => vec![from_setting(last)],
    }
}

impl Loaded {
    /// `--print-config`: one aligned row per value: key, value (`-` when unset), origin.
    pub(crate) fn render_effective(&self) -> String {
        let key_width = self
            .effective
            .iter()
            .map(|e| e.key.len())
            .max()
            .unwrap_or(0);
        let value_width = self
            .effective
            .iter()
            .map(|e| e.value.as_deref().map_or(1, str::len))
            .max()
            .unwrap_or(0)
            .min(48);
        let mut out = String::new();
        for row in &self.effective {
            let value = row.value.as_deref().unwrap_or("-");
            let origin = match (&row.value, &row.origin) {
                (None, Origin::Default) => "unset".to_owned(),
                (_, origin) => origin.to_string(),
            };
            let _ = writeln!(
                out,
                "{:key_width$}  {value:value_width$}  {origin}",
                row.key
            );
        }
        out
    }
}

/// One INI file, read and tokenized: the entries of its selected section.
#[derive(Debug)]
struct IniFile {
    path: PathBuf,
    /// The path as the user wrote it, for messages.
    file: Arc<str>,
    /// The whole text as read.
    text: String,
    entries: Vec<ini::Entry>,
}

/// What the first phase collected.
#[derive(Debug, Default)]
struct Gathered {
    settings: Vec<Setting>,
    warnings: Vec<Warning>,
    errors: Vec<ConfigError>,
}

impl Gathered {
    /// Reads and tokenizes one INI file, keeping the entries of its selected section.
    fn lex_ini(&mut self, ini: &IniRef, sources: &Sources) -> Option<IniFile> {
        let file: Arc<str> = ini.path.to_string_lossy().into();
        let replayed = (sources.replay.iter().flatten())
            .find(|(path, _)| *path == ini.path)
            .map(|(_, text)| Ok(text.clone()));
        // A relative path is relative to `cwd` (where the command started), not to wherever
        // the process is now (a master reloading after `chdir`).
        let read = replayed.unwrap_or_else(|| std::fs::read_to_string(sources.cwd.join(&ini.path)));
        let text = match read {
            Ok(text) => text,
            Err(error) => {
                self.errors.push(ConfigError::in_file(
                    &file,
                    format!("cannot read: {}", describe(&error)),
                ));
                return None;
            }
        };
        let lexed = ini::lex(&text);
        let selected = match lexed.select(ini.section.as_deref()) {
            Ok(selected) => selected,
            Err(why) => {
                self.errors.push(ConfigError::in_file(&file, why));
                return None;
            }
        };
        for error in &selected.errors {
            self.errors.push(ConfigError::at_line(
                &file,
                error.line,
                error.message.clone(),
            ));
        }
        let entries = selected.entries.into_iter().cloned().collect();
        Some(IniFile {
            path: ini.path.clone(),
            entries,
            file,
            text,
        })
    }

    /// Reads the entries of one INI file; `earlier` holds the values `%(key)` may refer to,
    /// across files, and `referenced` every name some value refers to.
    fn read_ini(
        &mut self,
        ini: &IniFile,
        sources: &Sources,
        referenced: &HashSet<&str>,
        earlier: &mut HashMap<String, String>,
    ) {
        let magic = expand::FileMagic::for_file(&ini.path, &sources.cwd);
        for entry in &ini.entries {
            let origin = Origin::Ini {
                file: Arc::clone(&ini.file),
                line: entry.line,
            };
            let context = expand::Context {
                file: &magic,
                env: &sources.env,
                earlier,
                cpu_count: sources.cpu_count,
            };
            let expanded = entry
                .value
                .as_deref()
                .map(|value| expand::expand(value, &context))
                .transpose();
            let key = entry.key.as_str();
            let apps = &sources.app_options;
            let Some(known) = Known::find(key, apps) else {
                match expanded {
                    Ok(value) => {
                        self.read_foreign_key(&origin, key, value, apps, referenced, earlier);
                    }
                    Err(why) => self.errors.push(ConfigError::at(&origin, key, why)),
                }
                continue;
            };
            match expanded {
                Ok(value) => self.read_option(known, key, value, origin, earlier),
                Err(why) => self.errors.push(ConfigError::at(&origin, key, why)),
            }
        }
    }

    /// One value of a known option, `written` as the user wrote its name: a setting, and a
    /// value later lines may refer to as `%(written)` or `%(key)`.
    fn read_option(
        &mut self,
        known: Known<'_>,
        written: &str,
        value: Option<String>,
        origin: Origin,
        earlier: &mut HashMap<String, String>,
    ) {
        if let Some(text) = value.as_deref().filter(|v| !v.is_empty()).or(known.bare()) {
            earlier.insert(written.to_owned(), text.to_owned());
            earlier.insert(known.key().to_owned(), text.to_owned());
        }
        self.settings.push(Setting {
            key: known.key(),
            written: written.to_owned(),
            value,
            origin,
        });
    }

    /// `set = NAME=VALUE` (INI) and `--set NAME=VALUE`, as in uWSGI: option NAME takes VALUE
    /// at that place among the sources; a NAME that is no option but that the files refer to
    /// as `%(NAME)` is a placeholder; any other NAME is an unknown option.
    fn read_set(
        &mut self,
        origin: Origin,
        pair: (&str, &str),
        apps: &[AppOptionSpec],
        referenced: &HashSet<&str>,
        earlier: &mut HashMap<String, String>,
    ) {
        let (name, text) = (pair.0.trim(), pair.1.trim());
        match Known::find(name, apps) {
            Some(known) => self.read_option(known, name, Some(text.to_owned()), origin, earlier),
            None if referenced.contains(name) => {
                earlier.insert(name.to_owned(), text.to_owned());
            }
            None => self.errors.push(unknown_option(&origin, name, "")),
        }
    }

    /// An INI key that is no option of the table: `set`, a placeholder definition, a uWSGI key
    /// served as an option of ours, a Python app (refused), an ignored uWSGI key, a key used as
    /// `%(key)` (the user's placeholder), or else an unknown option. `value` is expanded.
    fn read_foreign_key(
        &mut self,
        origin: &Origin,
        key: &str,
        value: Option<String>,
        apps: &[AppOptionSpec],
        referenced: &HashSet<&str>,
        earlier: &mut HashMap<String, String>,
    ) {
        if key == "set" {
            match value.as_deref().and_then(|v| v.split_once('=')) {
                Some(pair) if !pair.0.trim().is_empty() => {
                    self.read_set(origin.clone(), pair, apps, referenced, earlier);
                }
                _ => self
                    .errors
                    .push(ConfigError::at(origin, key, "needs KEY=VALUE")),
            }
            return;
        }
        if key == "set-placeholder" || key == "set-ph" {
            match value.as_deref().and_then(|v| v.split_once('=')) {
                Some((name, text)) if !name.trim().is_empty() => {
                    earlier.insert(name.trim().to_owned(), text.trim().to_owned());
                }
                _ => self
                    .errors
                    .push(ConfigError::at(origin, key, "needs NAME=VALUE")),
            }
            return;
        }
        if let Some(value) = &value {
            earlier.insert(key.to_owned(), value.clone());
        }
        if self.read_served_as(origin, key, value.clone()) {
            return;
        }
        if uwsgi::names_a_python_app(key) {
            self.errors.push(python_app(origin, key));
        } else if uwsgi::is_ignored_uwsgi_option(key) {
            // A uWSGI file may build paths from an ignored key (`%(home)/lib`): kept above.
            self.warnings.push(ignored_uwsgi_option(origin, key));
        } else if !referenced.contains(key) {
            self.errors.push(unknown_option(origin, key, ""));
        }
    }

    /// `http = :8000` and the like: a uWSGI key taken as one of our options, with a warning.
    /// Returns whether `key` was one.
    fn read_served_as(&mut self, origin: &Origin, key: &str, value: Option<String>) -> bool {
        let Some((target, why)) = uwsgi::served_as(key) else {
            return false;
        };
        let spec = find_option(target).expect("invariant: served_as names an option");
        let shown = value.as_deref().unwrap_or_default();
        self.warnings.push(Warning::at(
            origin,
            format!("{key} = {shown} served as {target} ({why})"),
        ));
        self.settings.push(Setting {
            key: spec.key,
            written: key.to_owned(),
            value,
            origin: origin.clone(),
        });
        true
    }

    /// Reads `RCONTAINER_<KEY>` variables (upper case, `-` as `_`). Other `RCONTAINER_*`
    /// variables may belong to tools around rcontainer, so they only warn when they look like a
    /// misspelt option.
    fn read_env(&mut self, env: &BTreeMap<String, String>, apps: &[AppOptionSpec]) {
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace('_', "-");
            let origin = Origin::Env(name.clone());
            match Known::find(&key, apps) {
                Some(known) => self.settings.push(Setting {
                    key: known.key(),
                    written: key,
                    value: Some(value.clone()).filter(|v| !v.is_empty()),
                    origin,
                }),
                None => {
                    if let Some(near) = suggest_option(&key) {
                        let near = format!(
                            "{ENV_PREFIX}{}",
                            near.to_ascii_uppercase().replace('-', "_")
                        );
                        self.warnings.push(Warning::at(
                            &origin,
                            format!("not an option, ignored (did you mean {near}?)"),
                        ));
                    }
                }
            }
        }
    }

    /// `--set KEY=VALUE`, before every other source (see [`Gathered::read_set`]); the origin
    /// (and the place an error names) is `--set KEY`.
    fn read_defaults(
        &mut self,
        sources: &Sources,
        referenced: &HashSet<&str>,
        earlier: &mut HashMap<String, String>,
    ) {
        for option in &sources.defaults {
            let origin = Origin::Cli(format!("--set {}", option.name));
            let pair = (
                option.name.as_str(),
                option.value.as_deref().unwrap_or_default(),
            );
            self.read_set(origin, pair, &sources.app_options, referenced, earlier);
        }
    }

    fn read_cli(&mut self, cli: &[CliSetting], apps: &[AppOptionSpec]) {
        for option in cli {
            let origin = Origin::Cli(format!("--{}", option.name));
            match Known::find(&option.name, apps) {
                Some(known) => self.settings.push(Setting {
                    key: known.key(),
                    written: option.name.clone(),
                    value: option.value.clone(),
                    origin,
                }),
                None if self.read_served_as(&origin, &option.name, option.value.clone()) => {}
                None if uwsgi::names_a_python_app(&option.name) => {
                    self.errors.push(python_app(&origin, &option.name));
                }
                None if uwsgi::is_ignored_uwsgi_option(&option.name) => {
                    self.warnings
                        .push(ignored_uwsgi_option(&origin, &option.name));
                }
                None => self
                    .errors
                    .push(unknown_option(&origin, &option.name, "--")),
            }
        }
    }
}

/// An option of the table, or one an app declares.
#[derive(Debug, Clone, Copy)]
enum Known<'s> {
    Table(&'static OptionSpec),
    App(&'s AppOptionSpec),
}

impl<'s> Known<'s> {
    fn find(name: &str, apps: &'s [AppOptionSpec]) -> Option<Known<'s>> {
        find_option(name)
            .map(Known::Table)
            .or_else(|| apps.iter().find(|app| app.key == name).map(Known::App))
    }

    fn key(self) -> &'static str {
        match self {
            Known::Table(spec) => spec.key,
            Known::App(app) => app.key,
        }
    }

    fn bare(self) -> Option<&'static str> {
        match self {
            Known::Table(spec) => spec.bare,
            Known::App(app) => app.bare(),
        }
    }
}

fn ignored_uwsgi_option(origin: &Origin, key: &str) -> Warning {
    Warning::at(
        origin,
        format!("ignored: uWSGI option '{key}' has no effect in rcontainer"),
    )
}

fn python_app(origin: &Origin, key: &str) -> ConfigError {
    ConfigError::at(
        origin,
        key,
        "uWSGI's way of loading a Python app with it is not supported (name the app with \
         module = PKG.MOD[:CALLABLE] or wsgi-file = PATH)",
    )
}

fn unknown_option(origin: &Origin, key: &str, dashes: &str) -> ConfigError {
    let message = match suggest_option(key) {
        Some(near) => format!("unknown option (did you mean {dashes}{near}?)"),
        None => "unknown option".to_owned(),
    };
    ConfigError::at(origin, key, message)
}

fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        _ => crate::sys::error::describe(error),
    }
}

#[cfg(test)]
mod tests;
