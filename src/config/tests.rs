//! Tests of `config::load` end to end: INI files in a temp dir, an injected environment and
//! command-line settings, checked for precedence, expansion, errors and warnings.

use super::*;
use crate::net::addr::{Host, SocketSpec};
use app_options::AppOptionSpec;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A unique temp dir per test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rcontainer-config-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sources(ini_files: &[&Path], env: &[(&str, &str)], cli: &[(&str, Option<&str>)]) -> Sources {
    Sources {
        ini_files: ini_files
            .iter()
            .map(|p| IniRef::parse(&p.to_string_lossy()))
            .collect(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        cli: cli
            .iter()
            .map(|(name, value)| CliSetting {
                name: (*name).to_owned(),
                value: value.map(str::to_owned),
            })
            .collect(),
        defaults: Vec::new(),
        cwd: PathBuf::from("/"),
        cpu_count: 3,
        somaxconn: None,
        app_options: Vec::new(),
        // The stock binary's apps, as the command line passes them.
        app_names: ["echo", "fetch", "hello", "panic", "sleep"]
            .map(str::to_owned)
            .to_vec(),
        replay: None,
    }
}

fn load_ok(sources: &Sources) -> Loaded {
    match load(sources) {
        Ok(loaded) => loaded,
        Err(failed) => panic!("load failed: {:#?}", failed.errors),
    }
}

fn load_errors(sources: &Sources) -> Vec<String> {
    match load(sources) {
        Ok(loaded) => panic!("load succeeded: {:?}", loaded.config),
        Err(failed) => failed.errors.iter().map(ToString::to_string).collect(),
    }
}

fn origin_of(loaded: &Loaded, key: &str) -> Vec<String> {
    loaded
        .effective
        .iter()
        .filter(|e| e.key == key)
        .map(|e| e.origin.to_string())
        .collect()
}

const LISTENER: &str = "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\n";

#[test]
fn defaults_apply_when_nothing_is_set() {
    let loaded = load_ok(&Sources::with_cli(&[("http-socket", ":8000")]));
    let config = &loaded.config;
    assert_eq!(config.processes, 1);
    assert_eq!(config.async_cores, 100);
    assert_eq!(config.listen, 1024);
    assert_eq!(config.buffer_size, 65535);
    assert_eq!(config.socket_timeout, Duration::from_secs(30));
    assert_eq!(config.worker_watchdog, Duration::from_secs(30));
    assert_eq!(config.worker_reload_mercy, Duration::from_secs(60));
    assert_eq!(config.module, None, "no placeholder app");
    assert!(config.master);
    assert!(!config.vacuum);
    assert_eq!(config.pidfile, None);
    assert_eq!(origin_of(&loaded, "processes"), vec!["default"]);
    assert!(loaded.warnings.is_empty());
}

#[test]
fn ini_values_are_typed_into_the_config() {
    let dir = TempDir::new();
    let ini = dir.write(
        "app.ini",
        "[rcontainer]\nworkers = 4\ngevent = 500\nsocket = 127.0.0.1:3031\nsocket = /run/app.sock\n\
         http-socket = :8000\nchmod-socket\nvacuum\nharakiri = 30\nlog-slow = 250\nlimit-post = 1m\n\
         stack-size = 64k\nenv = LANG=C.UTF-8\nmodule = hello\nmount = /api=echo\n\
         static-map = /static=/srv/www\n\
         uwsgi-allow-from = 10.0.0.1, 10.0.0.2\nstats = :9191\n",
    );
    let config = load_ok(&sources(&[&ini], &[], &[])).config;
    assert_eq!(config.processes, 4);
    assert_eq!(config.async_cores, 500);
    assert_eq!(config.sockets.len(), 2);
    assert_eq!(config.sockets[1], SocketSpec::Unix("/run/app.sock".into()));
    assert_eq!(
        config.http_sockets,
        vec![SocketSpec::Tcp {
            host: Host::Any,
            port: 8000
        }]
    );
    assert_eq!(config.chmod_socket, Some(0o666));
    assert!(config.vacuum);
    assert_eq!(config.harakiri, Duration::from_secs(30));
    assert_eq!(config.log_slow, Duration::from_millis(250));
    assert_eq!(config.limit_post, 1 << 20);
    assert_eq!(config.stack_size, 64 * 1024);
    assert_eq!(config.env[0].name, "LANG");
    assert_eq!(config.module.as_deref(), Some("hello"));
    assert_eq!(config.mounts[0].prefix, "/api");
    assert_eq!(config.static_maps[0].target, "/srv/www");
    assert_eq!(config.uwsgi_allow_from.len(), 2);
    assert!(config.stats.is_some());
}

fn app_option(key: &'static str, kind: app_options::ValueKind) -> AppOptionSpec {
    AppOptionSpec {
        key,
        app: "myapp".into(),
        kind,
        repeatable: false,
        default: None,
        help: "an app option",
        metavar: "X",
    }
}

#[test]
fn app_options_load_from_every_source_checked_and_stored() {
    use app_options::ValueKind;
    let dir = TempDir::new();
    let ini = dir.write(
        "app.ini",
        "[rcontainer]\nhttp-socket = :0\nmodule = myapp\nmy-url = http://u:9/\n\
         my-pause = 2s\nmy-flag\nmy-list = a\nmy-list = b\n",
    );
    let mut sources = sources(&[&ini], &[("RCONTAINER_MY_COUNT", "7")], &[]);
    sources.app_options = vec![
        app_option("my-url", ValueKind::Url),
        app_option("my-pause", ValueKind::Seconds),
        app_option("my-flag", ValueKind::Flag),
        app_option("my-count", ValueKind::Integer),
        AppOptionSpec {
            repeatable: true,
            ..app_option("my-list", ValueKind::Text)
        },
        AppOptionSpec {
            default: Some("fallback"),
            ..app_option("my-default", ValueKind::Text)
        },
    ];
    let loaded = load_ok(&sources);
    let values = &loaded.config.app_options;
    let get = |key: &str| values.get(key).cloned().unwrap_or_default();
    assert_eq!(get("my-url"), ["http://u:9/"]);
    assert_eq!(get("my-pause"), ["2000ms"]);
    assert_eq!(get("my-flag"), ["true"]);
    assert_eq!(get("my-count"), ["7"]);
    assert_eq!(get("my-list"), ["a", "b"]);
    assert_eq!(get("my-default"), ["fallback"]);
    assert_eq!(origin_of(&loaded, "my-count"), vec!["RCONTAINER_MY_COUNT"]);
    // A bad value is an error at its line, like any option's.
    let bad = dir.write(
        "bad.ini",
        "[rcontainer]\nhttp-socket = :0\nmodule = myapp\nmy-url = ftp://u/\n",
    );
    let mut sources_bad = self::sources(&[&bad], &[], &[]);
    sources_bad.app_options = vec![app_option("my-url", ValueKind::Url)];
    let errors = load(&sources_bad).expect_err("a bad url").errors;
    let text = errors[0].to_string();
    assert!(text.contains("bad.ini:4: my-url:"), "{text}");
}

#[test]
fn precedence_is_default_then_ini_then_env_then_cli() {
    let dir = TempDir::new();
    let ini = dir.write(
        "app.ini",
        &format!("{LISTENER}processes = 2\nlisten = 100\nharakiri = 5\n"),
    );
    let loaded = load_ok(&sources(
        &[&ini],
        &[("RCONTAINER_PROCESSES", "3"), ("RCONTAINER_LISTEN", "200")],
        &[("processes", Some("8"))],
    ));
    assert_eq!(loaded.config.processes, 8);
    assert_eq!(loaded.config.listen, 200);
    assert_eq!(loaded.config.harakiri, Duration::from_secs(5));
    assert_eq!(loaded.config.max_requests, 0);
    assert_eq!(origin_of(&loaded, "processes"), vec!["--processes"]);
    assert_eq!(origin_of(&loaded, "listen"), vec!["RCONTAINER_LISTEN"]);
    let file = ini.to_string_lossy();
    assert_eq!(origin_of(&loaded, "harakiri"), vec![format!("{file}:6")]);
    assert_eq!(origin_of(&loaded, "max-requests"), vec!["default"]);
}

#[test]
fn later_ini_files_override_earlier_ones() {
    let dir = TempDir::new();
    let base = dir.write("base.ini", &format!("{LISTENER}processes = 2\n"));
    let site = dir.write("site.ini", "[rcontainer]\nprocesses = 6\n");
    let loaded = load_ok(&sources(&[&base, &site], &[], &[]));
    assert_eq!(loaded.config.processes, 6);
}

#[test]
fn list_options_accumulate_across_every_source() {
    let dir = TempDir::new();
    let ini = dir.write(
        "app.ini",
        "[rcontainer]\nsocket = :1\nsocket = :2\nenv = A=1\nmodule = hello\n",
    );
    let loaded = load_ok(&sources(
        &[&ini],
        &[("RCONTAINER_SOCKET", ":3"), ("RCONTAINER_ENV", "B=2")],
        &[("uwsgi-socket", Some(":4")), ("env", Some("C=3"))],
    ));
    let ports: Vec<String> = loaded
        .config
        .sockets
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ports, vec![":1", ":2", ":3", ":4"]);
    let names: Vec<&str> = loaded.config.env.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["A", "B", "C"]);
    assert_eq!(origin_of(&loaded, "socket").len(), 4);
}

#[test]
fn list_defaults_are_replaced_by_the_first_explicit_value() {
    let loaded = load_ok(&Sources::with_cli(&[
        ("http-socket", ":0"),
        ("uwsgi-allow-from", "*"),
    ]));
    assert_eq!(
        loaded.config.uwsgi_allow_from,
        vec![value::AllowedPeer::Any]
    );
}

#[test]
fn boolean_flags_may_be_bare_or_explicit_on_every_source() {
    let dir = TempDir::new();
    let ini = dir.write("app.ini", &format!("{LISTENER}vacuum\nstats-http = yes\n"));
    let loaded = load_ok(&sources(&[&ini], &[], &[("vacuum", Some("false"))]));
    assert!(!loaded.config.vacuum);
    assert!(loaded.config.stats_http);
    let loaded = load_ok(&sources(
        &[&ini],
        &[("RCONTAINER_DISABLE_LOGGING", "")],
        &[],
    ));
    assert!(loaded.config.disable_logging);
}

#[test]
fn placeholders_expand_in_ini_values() {
    let dir = TempDir::new();
    let ini = dir.write(
        "site.ini",
        "[rcontainer]\nchdir = %d\nsocket = /tmp/%n.sock\npidfile = $(RUNDIR)/%n.pid\n\
         processes = %k\nlogto = %(chdir)log/%n.log\nlog-format = %(method) %(uri) 100%%\n\
         module = hello\n",
    );
    let loaded = load_ok(&sources(&[&ini], &[("RUNDIR", "/run/x")], &[]));
    let config = &loaded.config;
    let dir_text = format!("{}/", std::fs::canonicalize(&dir.0).unwrap().display());
    assert_eq!(config.chdir, Some(PathBuf::from(&dir_text)));
    assert_eq!(config.sockets[0], SocketSpec::Unix("/tmp/site.sock".into()));
    assert_eq!(config.pidfile, Some(PathBuf::from("/run/x/site.pid")));
    assert_eq!(config.processes, 3);
    assert_eq!(
        config.logto,
        Some(PathBuf::from(format!("{dir_text}log/site.log")))
    );
    assert_eq!(
        config.log_format.as_ref().map(|f| f.source()),
        Some("%(method) %(uri) 100%")
    );
    let shown: Vec<_> = loaded
        .effective
        .iter()
        .filter(|e| e.key == "pidfile")
        .map(|e| e.value.clone())
        .collect();
    assert_eq!(shown, vec![Some("/run/x/site.pid".to_owned())]);
}

#[test]
fn p_expands_to_the_absolute_path_of_the_file() {
    let dir = TempDir::new();
    let ini = dir.write("a.ini", &format!("{LISTENER}req-logger = file:%p.log\n"));
    let config = load_ok(&sources(&[&ini], &[], &[])).config;
    let absolute = std::fs::canonicalize(&ini).unwrap();
    assert_eq!(
        config.req_logger,
        Some(PathBuf::from(format!("{}.log", absolute.display())))
    );
}

#[test]
fn placeholders_may_refer_to_keys_of_earlier_files_and_ignored_uwsgi_keys() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.0.join("app")).unwrap();
    let base = dir.write(
        "base.ini",
        &format!("[uwsgi]\nhome = {}\nsocket = :1\n", dir.0.display()),
    );
    let site = dir.write(
        "site.ini",
        "[uwsgi]\nchdir = %(home)/app\nmaster-fifo = %(socket)\nmodule = hello\n",
    );
    let config = load_ok(&sources(&[&base, &site], &[], &[])).config;
    assert_eq!(config.chdir, Some(dir.0.join("app")));
    assert_eq!(config.master_fifo, Some(PathBuf::from(":1")));
}

#[test]
fn keys_used_as_placeholders_are_the_users_own_and_load_without_a_warning() {
    let dir = TempDir::new();
    let ini = dir.write(
        "app.ini",
        "[uwsgi]\nproject = shop\nbase = /srv/%(project)\nsocket = %(base)/%(project).sock\n\
         module = hello\n",
    );
    let loaded = load_ok(&sources(&[&ini], &[], &[]));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        loaded.config.sockets,
        vec![SocketSpec::Unix("/srv/shop/shop.sock".into())]
    );
}

#[test]
fn a_placeholder_may_be_defined_in_a_later_file_than_the_one_using_it() {
    let dir = TempDir::new();
    let first = dir.write(
        "a.ini",
        "[uwsgi]\nsocket = /run/%(tier).sock\nmodule = hello\n",
    );
    let second = dir.write(
        "b.ini",
        "[uwsgi]\ntier = blue\nstats = /run/%(tier)-stats.sock\n",
    );
    let loaded = load_ok(&sources(&[&first, &second], &[], &[]));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // Expansion reads earlier lines only, as uWSGI does: the first use stays as written.
    assert_eq!(
        loaded.config.sockets,
        vec![SocketSpec::Unix("/run/%(tier).sock".into())]
    );
    assert_eq!(
        loaded.config.stats,
        Some(SocketSpec::Unix("/run/blue-stats.sock".into()))
    );
}

#[test]
fn set_placeholder_and_set_ph_define_placeholders() {
    let dir = TempDir::new();
    let ini = dir.write(
        "app.ini",
        "[uwsgi]\nset-placeholder = tier=blue\nset-ph = zone = eu\n\
         socket = /run/%(tier)-%(zone).sock\nmodule = hello\nset-ph = broken\n",
    );
    let errors = load_errors(&sources(&[&ini], &[], &[]));
    assert_eq!(
        errors,
        vec![format!("{}:6: set-ph: needs NAME=VALUE", ini.display())]
    );
    let ini = dir.write(
        "ok.ini",
        "[uwsgi]\nset-ph = tier=blue\nsocket = /run/%(tier).sock\nmodule = hello\n",
    );
    let loaded = load_ok(&sources(&[&ini], &[], &[]));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        loaded.config.sockets,
        vec![SocketSpec::Unix("/run/blue.sock".into())]
    );
}

#[test]
fn an_unknown_key_nobody_refers_to_is_still_an_error() {
    let dir = TempDir::new();
    let ini = dir.write(
        "app.ini",
        "[uwsgi]\nproject = shop\nsocket = /run/%(project).sock\nprocesess = 2\n",
    );
    assert_eq!(
        load_errors(&sources(&[&ini], &[], &[])),
        vec![format!(
            "{}:4: procesess: unknown option (did you mean processes?)",
            ini.display()
        )]
    );
}

#[test]
fn http_becomes_an_http_socket_with_one_warning() {
    let dir = TempDir::new();
    let ini = dir.write("app.ini", "[uwsgi]\nhttp = :8000\nmodule = hello\n");
    let loaded = load_ok(&sources(&[&ini], &[], &[("http", Some(":8001"))]));
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec![
            format!(
                "{}:2: http = :8000 served as http-socket (rcontainer has no separate HTTP router process)",
                ini.display()
            ),
            "--http: http = :8001 served as http-socket (rcontainer has no separate HTTP router process)"
                .to_owned(),
        ]
    );
    let ports: Vec<String> = loaded
        .config
        .http_sockets
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ports, vec![":8000", ":8001"]);
}

#[test]
#[cfg(not(feature = "python"))]
fn a_python_app_in_a_build_without_python_is_one_error_where_the_winning_value_is() {
    let dir = TempDir::new();
    let ini = dir.write(
        "app.ini",
        "[uwsgi]\nhttp-socket = :0\nwsgi-file = project/wsgi.py\ncallable = app\n",
    );
    let errors = load_errors(&sources(&[&ini], &[], &[("wsgi-file", Some("x.py"))]));
    assert_eq!(
        errors,
        vec![format!("--wsgi-file: x.py {}", crate::config::NO_PYTHON)]
    );
}

#[test]
fn gevent_sets_async_unless_async_is_given_and_a_different_async_is_an_error() {
    let cli = |more: &[(&'static str, Option<&'static str>)]| {
        let mut pairs = vec![("http-socket", Some(":0")), ("module", Some("hello"))];
        pairs.extend_from_slice(more);
        sources(&[], &[], &pairs)
    };
    let gevent = load_ok(&cli(&[("gevent", Some("30"))]));
    assert_eq!(gevent.config.async_cores, 30);
    assert_eq!(gevent.config.gevent, Some(30));
    assert_eq!(gevent.config.python, None, "a Rust app: gevent is async");
    let both = load_ok(&cli(&[("gevent", Some("30")), ("async", Some("30"))]));
    assert_eq!(both.config.async_cores, 30);
    let errors = load_errors(&cli(&[("gevent", Some("30")), ("async", Some("20"))]));
    assert_eq!(
        errors,
        vec![
            "--gevent: gevent = 30 and async = 20 (--async) both set the requests in flight \
             per worker: set one"
                .to_owned()
        ]
    );
}

#[test]
fn chdir_must_be_an_existing_directory() {
    let dir = TempDir::new();
    let ini = dir.write("app.ini", &format!("{LISTENER}chdir = %dmissing\n"));
    let missing = std::fs::canonicalize(&dir.0).unwrap().join("missing");
    assert_eq!(
        load_errors(&sources(&[&ini], &[], &[])),
        vec![format!(
            "{}:4: chdir: {}: no such directory",
            ini.display(),
            missing.display()
        )]
    );
    let errors = load_errors(&sources(&[&ini], &[], &[("chdir", Some("/etc/hostname"))]));
    assert_eq!(
        errors,
        vec!["--chdir: /etc/hostname: not a directory".to_owned()]
    );
    let relative = sources(
        &[],
        &[],
        &[("http-socket", Some(":0")), ("chdir", Some("tmp"))],
    );
    assert!(
        load(&relative).is_ok(),
        "relative to the working directory, /"
    );
}

#[test]
fn a_daemonize_log_must_be_able_to_be_a_file() {
    let dir = TempDir::new();
    let ini = dir.write("app.ini", &format!("{LISTENER}daemonize = %d\n"));
    let errors = load_errors(&sources(&[&ini], &[], &[]));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("{}:4: daemonize: ", ini.display()))
            && errors[0].ends_with("is a directory, not a log file"),
        "{errors:?}"
    );
    let fine = dir.write("ok.ini", &format!("{LISTENER}daemonize = %dapp.log\n"));
    assert!(load(&sources(&[&fine], &[], &[])).is_ok());
}

#[test]
fn a_listen_backlog_above_somaxconn_is_clamped_with_a_warning() {
    let dir = TempDir::new();
    let ini = dir.write("app.ini", &format!("{LISTENER}listen = 16384\n"));
    let mut with_limit = sources(&[&ini], &[], &[]);
    with_limit.somaxconn = Some(4096);
    let loaded = load_ok(&with_limit);
    assert_eq!(loaded.config.listen, 4096);
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec![format!(
            "{}:4: listen = 16384 is above net.core.somaxconn (4096): the kernel grants a \
             backlog of 4096 (raise net.core.somaxconn with sysctl for more)",
            ini.display()
        )]
    );
    let mut old_kernel = sources(&[], &[], &[("http-socket", Some(":0"))]);
    old_kernel.somaxconn = Some(128);
    let loaded = load_ok(&old_kernel);
    assert_eq!(loaded.config.listen, 128, "the default is cut too");
    assert!(loaded.warnings.is_empty(), "but not warned about");
}

#[test]
fn an_unset_environment_variable_is_an_error_at_its_line() {
    let dir = TempDir::new();
    let ini = dir.write("app.ini", &format!("{LISTENER}chdir = $(NO_SUCH_VAR)/x\n"));
    let errors = load_errors(&sources(&[&ini], &[], &[]));
    assert_eq!(
        errors,
        vec![format!(
            "{}:4: chdir: environment variable NO_SUCH_VAR is not set",
            ini.display()
        )]
    );
}

#[test]
fn an_unknown_key_is_an_error_with_a_suggestion() {
    let dir = TempDir::new();
    let ini = dir.write(
        "x.ini",
        "[rcontainer]\nhttp-socket = :0\nprcesses = 4\nmodule = hello\n",
    );
    let errors = load_errors(&sources(&[&ini], &[], &[]));
    assert_eq!(
        errors,
        vec![format!(
            "{}:3: prcesses: unknown option (did you mean processes?)",
            ini.display()
        )]
    );
}

#[test]
fn every_error_of_a_file_is_reported_not_just_the_first() {
    let dir = TempDir::new();
    let ini = dir.write(
        "x.ini",
        "[rcontainer]\nhttp-socket = :0\nprocesses = many\nnot a key\nharakiri = soon\nzzzz = 1\n\
         module = hello\n",
    );
    let errors = load_errors(&sources(&[&ini], &[], &[]));
    let file = ini.display();
    assert_eq!(
        errors,
        vec![
            format!("{file}:3: processes: 'many' is not a whole number"),
            format!("{file}:4: 'not a key' is not a key (expected 'key = value' or a bare key)"),
            format!("{file}:5: harakiri: 'soon' is not a duration (like 30, 500ms, 2s, 1m)"),
            format!("{file}:6: zzzz: unknown option"),
        ]
    );
}

#[test]
fn bad_values_name_their_source() {
    let errors = load_errors(&sources(
        &[],
        &[("RCONTAINER_LISTEN", "0")],
        &[
            ("http-socket", Some(":0")),
            ("workers", Some("zero")),
            ("prcesses", Some("2")),
        ],
    ));
    assert_eq!(
        errors,
        vec![
            "RCONTAINER_LISTEN: 0 is out of range (1 to 65535)".to_owned(),
            "--prcesses: unknown option (did you mean --processes?)".to_owned(),
            "--workers: 'zero' is not a whole number".to_owned(),
        ]
    );
}

#[test]
fn a_missing_file_or_section_is_an_error_naming_the_file() {
    let dir = TempDir::new();
    let missing = dir.0.join("missing.ini");
    assert_eq!(
        load_errors(&sources(&[&missing], &[], &[("http-socket", Some(":0"))])),
        vec![format!("{}: cannot read: no such file", missing.display())]
    );
    let ini = dir.write("app.ini", LISTENER);
    let mut with_section = sources(&[], &[], &[]);
    with_section.ini_files = vec![IniRef::parse(&format!("{}:prod", ini.display()))];
    assert_eq!(
        load_errors(&with_section),
        vec![format!("{}: no [prod] section", ini.display())]
    );
}

#[test]
fn a_named_section_is_read_instead_of_the_default_one() {
    let dir = TempDir::new();
    let ini = dir.write(
        "app.ini",
        &format!("{LISTENER}processes = 2\n[prod]\nhttp-socket = :0\nprocesses = 9\n"),
    );
    let mut s = sources(&[], &[], &[]);
    s.ini_files = vec![IniRef::parse(&format!("{}:prod", ini.display()))];
    assert_eq!(load_ok(&s).config.processes, 9);
}

#[test]
fn uwsgi_only_keys_load_with_one_warning_each() {
    let dir = TempDir::new();
    let ini = dir.write(
        "uwsgi.ini",
        "[uwsgi]\nmaster = true\nprocesses = 4\nsocket = 127.0.0.1:3031\nchmod-socket = 660\n\
         vacuum = true\ndaemonize = /tmp/app.log\npidfile = /tmp/app.pid\nbuffer-size = 32768\n\
         gevent = 100\nmax-requests = 5000\nlimit-as = 512\nreload-mercy = 8\n\
         touch-reload = /tmp/reload\nchdir = %d\nmodule = hello\nplugins = python3\n\
         enable-threads\nvhost\nworkers = 2\nhome = /venv\n",
    );
    let loaded = load_ok(&sources(&[&ini], &[], &[]));
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    let file = ini.display();
    assert_eq!(
        warnings,
        vec![
            format!("{file}:12: ignored: uWSGI option 'limit-as' has no effect in rcontainer"),
            format!(
                "{file}:18: ignored: uWSGI option 'enable-threads' has no effect in rcontainer"
            ),
            format!("{file}:19: ignored: uWSGI option 'vhost' has no effect in rcontainer"),
            format!(
                "{file}:21: home: no effect without a Python app (module = PKG.MOD or wsgi-file)"
            ),
        ]
    );
    assert_eq!(loaded.config.processes, 2);
    assert_eq!(loaded.config.chmod_socket, Some(0o660));
    assert_eq!(loaded.config.worker_reload_mercy, Duration::from_secs(8));
}

#[test]
fn uwsgi_only_keys_on_the_command_line_warn_too() {
    let loaded = load_ok(&sources(
        &[],
        &[],
        &[("http-socket", Some(":0")), ("enable-threads", None)],
    ));
    assert_eq!(
        loaded.warnings[0].to_string(),
        "--enable-threads: ignored: uWSGI option 'enable-threads' has no effect in rcontainer"
    );
}

#[test]
fn mistyped_environment_variables_warn_and_others_are_ignored() {
    let loaded = load_ok(&sources(
        &[],
        &[
            ("RCONTAINER_PROCESES", "4"),
            ("RCONTAINER_BLESS", "1"),
            ("HOME", "/root"),
        ],
        &[("http-socket", Some(":0"))],
    ));
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec!["RCONTAINER_PROCESES: not an option, ignored (did you mean RCONTAINER_PROCESSES?)"]
    );
    assert_eq!(loaded.config.processes, 1);
}

#[test]
fn a_config_without_any_listener_is_rejected_unless_it_runs_an_emperor() {
    assert_eq!(
        load_errors(&sources(&[], &[], &[("processes", Some("2"))])),
        vec!["config: no listener: set socket or http-socket (or emperor)".to_owned()]
    );
    let loaded = load_ok(&sources(&[], &[], &[("emperor", Some("/etc/vassals"))]));
    assert_eq!(loaded.config.emperor, ["/etc/vassals"]);
}

#[test]
fn print_config_shows_every_key_with_value_and_origin() {
    let dir = TempDir::new();
    let ini = dir.write("app.ini", &format!("{LISTENER}processes = 2\n"));
    let loaded = load_ok(&sources(&[&ini], &[], &[("processes", Some("8"))]));
    let text = loaded.render_effective();
    for spec in OPTIONS {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(spec.key)),
            "{}",
            spec.key
        );
    }
    let row = |key: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("processes"), vec!["processes", "8", "--processes"]);
    assert_eq!(
        row("http-socket"),
        vec![
            "http-socket".to_owned(),
            "127.0.0.1:0".to_owned(),
            format!("{}:2", ini.display())
        ]
    );
    assert_eq!(row("pidfile"), vec!["pidfile", "-", "unset"]);
    assert_eq!(row("master"), vec!["master", "true", "default"]);
}

#[test]
fn ini_paths_with_a_section_suffix_split_at_the_last_colon() {
    assert_eq!(
        IniRef::parse("conf/app.ini:prod"),
        IniRef {
            path: "conf/app.ini".into(),
            section: Some("prod".into())
        }
    );
    assert_eq!(IniRef::parse("conf/app.ini").section, None);
    assert_eq!(IniRef::parse("/odd:dir/app.ini").section, None);
}

#[test]
fn the_texts_read_are_kept_and_a_replay_is_loaded_instead_of_the_files() {
    let dir = TempDir::new();
    let path = dir.write(
        "app.ini",
        "[rcontainer]\nhttp-socket = :0\nmodule = echo\nprocesses = 2\n",
    );
    let loaded = load(&sources(&[&path], &[], &[])).expect("loads");
    assert_eq!(loaded.config.processes, 2);
    assert_eq!(loaded.texts.len(), 1);
    assert_eq!(loaded.texts[0].0, path);
    // The file changes on disk; the replay still loads what was read before.
    std::fs::write(&path, "[rcontainer]\nprcesses = broken\n").expect("rewrite");
    let mut replayed = sources(&[&path], &[], &[]);
    replayed.replay = Some(loaded.texts.clone());
    let again = load(&replayed).expect("the replay loads");
    assert_eq!(again.config.processes, 2);
    assert!(
        load(&sources(&[&path], &[], &[])).is_err(),
        "the file itself no longer does"
    );
}
