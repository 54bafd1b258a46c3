//! The configuration of Python WSGI apps as uWSGI users write it (`module = project.wsgi`,
//! `wsgi-file`, `callable`, `home`, `pythonpath`, `gevent`, `plugins`). Built without the
//! `python` feature (the default), the stock binary loads every key and refuses a Python app
//! in one error line saying how to build a binary that runs it, before anything starts; the
//! tests of that are left out of a build with the feature.

use crate::harness::{Scratch, run_cli};

/// The tail of the one error a Python app gets from a binary without Python.
const NO_PYTHON: &str = "is a Python WSGI app; this rcontainer was built without Python \
                         support (build it with cargo build --release --features python)";

/// `--check-config` of `ini` (written as `app.ini` in a fresh scratch dir): exit code, stderr.
fn check(name: &str, ini: &str) -> (Option<i32>, String) {
    let scratch = Scratch::new(name);
    scratch.write("app.ini", ini);
    let out = run_cli(scratch.path(), &["--ini", "app.ini", "--check-config"]);
    (out.code(), out.stderr)
}

#[cfg(not(feature = "python"))]
/// Starting an instance from `ini`: exit code and stderr (a config error exits before anything
/// starts, so this returns at once).
fn start(name: &str, ini: &str) -> (Option<i32>, String) {
    let scratch = Scratch::new(name);
    scratch.write("app.ini", ini);
    let out = run_cli(scratch.path(), &["--ini", "app.ini"]);
    (out.code(), out.stderr)
}

#[test]
#[cfg(not(feature = "python"))]
fn a_python_module_fails_check_config_and_start_with_one_line_saying_how_to_build_python() {
    let ini = "[uwsgi]\nhttp-socket = 127.0.0.1:0\nmodule = project.wsgi\n";
    let expected = format!("app.ini:3: module: project.wsgi {NO_PYTHON}");
    for (code, stderr) in [check("py-module", ini), start("py-module-start", ini)] {
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.trim_end(), expected);
    }
    for module in ["pkg.mod:app", "myapp"] {
        let (code, stderr) = check(
            "py-module-forms",
            &format!("[uwsgi]\nhttp-socket = 127.0.0.1:0\nmodule = {module}\n"),
        );
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("app.ini:3: module: {module} {NO_PYTHON}")
        );
    }
}

#[test]
#[cfg(not(feature = "python"))]
fn wsgi_file_fails_check_config_and_start_instead_of_serving_something_else() {
    let ini = "[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = project/wsgi.py\n";
    let expected = format!("app.ini:3: wsgi-file: project/wsgi.py {NO_PYTHON}");
    for (code, stderr) in [check("wsgi-file", ini), start("wsgi-file-start", ini)] {
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.trim_end(), expected);
    }
    // uWSGI's alias.
    let (code, stderr) = check(
        "wsgi-file-alias",
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nfile = app.py\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("app.ini:3: file: app.py {NO_PYTHON}")
    );
}

#[test]
#[cfg(not(feature = "python"))]
fn a_uwsgi_django_ini_loads_every_key_and_fails_only_for_want_of_python() {
    let ini = "\
[uwsgi]
chdir = %d
module = project.wsgi
plugins = python
master = true
processes = 4
socket = %dproject.sock
vacuum = true
daemonize = %dproject.log
pidfile = %dproject.pid
buffer-size = 32768
gevent = 100
home = %dvenv
pythonpath = %d
";
    let (code, stderr) = check("django-ini", ini);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("app.ini:3: module: project.wsgi {NO_PYTHON}"),
        "one error, no warning"
    );
}

#[test]
#[cfg(not(feature = "python"))]
fn a_uwsgi_flask_ini_loads_every_key_and_fails_only_for_want_of_python() {
    let ini = "\
[uwsgi]
module = myapp
callable = app
plugins = python3,gevent_python3
master = true
workers = 2
gevent = 100
gevent-monkey-patch = true
virtualenv = /srv/flask/venv
python-path = /srv/flask
pp = /srv/flask/lib
socket = /tmp/rcontainer-flask-test.sock
vacuum = true
pidfile = /tmp/rcontainer-flask-test.pid
touch-reload = %p
max-requests = 1000
";
    let (code, stderr) = check("flask-ini", ini);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("app.ini:2: module: myapp {NO_PYTHON}"),
        "one error, no warning"
    );
}

#[test]
fn a_python_app_next_to_a_mount_or_another_module_is_an_error() {
    let (code, stderr) = check(
        "python-and-module",
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nwsgi-file = app.py\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "app.ini:4: wsgi-file: module = hello (app.ini:3) names the app serving every \
             path too: set one of module and wsgi-file"
        ),
        "{stderr}"
    );
    let (code, stderr) = check(
        "python-and-mount",
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nmodule = project.wsgi\nmount = /api=echo\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "app.ini:4: mount: mount = /api=echo: a Python app (module = project.wsgi) serves \
             every path no static-map claims, nothing can be mounted beside it"
        ),
        "{stderr}"
    );
    // A mount naming a Python module is refused the same way as module.
    let (code, stderr) = check(
        "python-mount",
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nmount = /legacy=legacy.wsgi\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    let why = if cfg!(feature = "python") {
        "legacy.wsgi: a Python app cannot be mounted at a prefix: serve it with module = \
         PKG.MOD or wsgi-file = PATH (apps of this binary: echo, fetch, hello, panic, sleep)"
            .to_owned()
    } else {
        format!("legacy.wsgi {NO_PYTHON}")
    };
    assert_eq!(stderr.trim_end(), format!("app.ini:4: mount: {why}"));
}

#[test]
fn builtin_plugins_load_quietly_and_another_plugin_warns_once() {
    let (code, stderr) = check(
        "plugins",
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nmodule = hello\n\
         plugins = python3, gevent_python3, http\nplugin = python311\nplugins = php\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "app.ini:6: rcontainer has no plugin php; ignored"
    );
}

#[test]
fn python_keys_next_to_a_rust_app_warn_that_they_have_no_effect() {
    let (code, stderr) = check(
        "python-keys-rust-app",
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nmodule = hello\ncallable = app\nvenv = /v\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "app.ini:4: callable: no effect without a Python app (module = PKG.MOD or wsgi-file)",
            "app.ini:5: venv: no effect without a Python app (module = PKG.MOD or wsgi-file)",
        ]
    );
}

#[test]
fn print_config_shows_the_python_keys() {
    let scratch = Scratch::new("python-print-config");
    scratch.write(
        "app.ini",
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nmodule = hello\ngevent = 50\nplugins = python3\n",
    );
    let out = run_cli(scratch.path(), &["--ini", "app.ini", "--print-config"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let row = |key: &str| -> Vec<String> {
        let line = (out.stdout.lines())
            .find(|line| line.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} row: {}", out.stdout));
        line.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(row("callable"), ["callable", "application", "default"]);
    assert_eq!(row("gevent"), ["gevent", "50", "app.ini:4"]);
    assert_eq!(
        row("async"),
        ["async", "50", "app.ini:4"],
        "gevent sets async"
    );
    assert_eq!(row("plugins"), ["plugins", "python3", "app.ini:5"]);
    for key in ["wsgi-file", "home", "pythonpath", "gevent-monkey-patch"] {
        assert_eq!(row(key), [key, "-", "unset"]);
    }
}
