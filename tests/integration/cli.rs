//! The command line and configuration as a user meets them: `--check-config`, `--print-config`,
//! `--help`, `--version`, and the errors a bad INI file gets.

use crate::harness::{Scratch, run_cli, run_cli_with_env};

/// The repository's own example configs.
fn repo_file(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_example_config_passes_check_config_silently() {
    let scratch = Scratch::new("check-example");
    let out = run_cli(
        scratch.path(),
        &["--ini", &repo_file("conf/app.ini"), "--check-config"],
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(
        out.stdout, "",
        "check-config prints nothing when all is well"
    );
}

#[test]
fn every_example_config_passes_check_config() {
    let scratch = Scratch::new("check-all-examples");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("conf dir") {
        let path = entry.expect("entry").path();
        // Configs of the example binaries name apps the stock binary does not have.
        let for_an_example = std::fs::read_to_string(&path).is_ok_and(|t| t.contains("--example"));
        if path.extension().is_some_and(|e| e == "ini") && !for_an_example {
            let out = run_cli(
                scratch.path(),
                &["--ini", path.to_str().expect("utf-8"), "--check-config"],
            );
            assert_eq!(out.code(), Some(0), "{}: {}", path.display(), out.stderr);
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} example configs");
}

#[test]
fn a_migrated_uwsgi_file_loads_with_one_warning_per_ignored_key() {
    let scratch = Scratch::new("check-migrated");
    let ini = repo_file("conf/uwsgi-migrated.ini");
    let out = run_cli(scratch.path(), &["--ini", &ini, "--check-config"]);
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert!(
        !out.stderr.contains("plugins"),
        "plugins = python3 is built in: {}",
        out.stderr
    );
    for key in ["vhost", "limit-as"] {
        let warnings = out
            .stderr
            .lines()
            .filter(|l| l.contains(&format!("ignored: uWSGI option '{key}'")))
            .count();
        assert_eq!(warnings, 1, "one warning for {key}; stderr: {}", out.stderr);
    }
}

#[test]
fn a_typo_in_a_key_exits_1_with_file_line_and_a_suggestion() {
    let scratch = Scratch::new("typo");
    scratch.write(
        "x.ini",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprcesses = 4\nmodule = hello\n",
    );
    let out = run_cli(scratch.path(), &["--ini", "x.ini", "--check-config"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr
            .contains("x.ini:3: prcesses: unknown option (did you mean processes?)"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn a_bad_value_exits_1_naming_file_line_and_key() {
    let scratch = Scratch::new("bad-value");
    scratch.write("x.ini", "[uwsgi]\nprocesses = many\nmodule = hello\n");
    let out = run_cli(scratch.path(), &["--ini", "x.ini", "--check-config"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("x.ini:2: processes:"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn a_missing_ini_file_exits_1() {
    let scratch = Scratch::new("missing-ini");
    let out = run_cli(scratch.path(), &["--ini", "nope.ini", "--check-config"]);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("nope.ini"), "stderr: {}", out.stderr);
}

#[test]
fn print_config_shows_cli_winning_over_the_ini_and_placeholders_expanded() {
    let scratch = Scratch::new("print-config");
    scratch.write(
        "app.ini",
        "[rcontainer]\nprocesses = 2\nhttp-socket = 127.0.0.1:0\npidfile = %d%n.pid\nmodule = hello\n",
    );
    let out = run_cli(
        scratch.path(),
        &["--ini", "app.ini", "--processes", "8", "--print-config"],
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let line_of = |key: &str| {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} line in:\n{}", out.stdout))
            .to_string()
    };
    let processes = line_of("processes");
    assert!(
        processes.contains('8') && processes.contains("--processes"),
        "{processes}"
    );
    let pidfile = line_of("pidfile");
    let dir = scratch
        .path()
        .canonicalize()
        .expect("canonical scratch dir");
    let expected = format!("{}/app.pid", dir.display());
    assert!(
        pidfile.contains(&expected),
        "{pidfile} should contain {expected}"
    );
    assert!(
        pidfile.contains("app.ini:4"),
        "origin of pidfile: {pidfile}"
    );
    assert!(line_of("harakiri").contains("default"));
}

#[test]
fn environment_variables_override_the_ini_and_lose_to_the_cli() {
    let scratch = Scratch::new("env-precedence");
    scratch.write(
        "app.ini",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nasync = 10\nmodule = hello\n",
    );
    let out = run_cli_with_env(
        scratch.path(),
        &["--ini", "app.ini", "--async", "30", "--print-config"],
        &[("RCONTAINER_PROCESSES", "5"), ("RCONTAINER_ASYNC", "20")],
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let line = |key: &str| {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("processes").contains("RCONTAINER_PROCESSES"),
        "{}",
        line("processes")
    );
    assert!(line("async").contains("--async"), "{}", line("async"));
}

#[test]
fn help_lists_every_option_with_its_default() {
    let scratch = Scratch::new("help");
    let out = run_cli(scratch.path(), &["--help"]);
    assert_eq!(out.code(), Some(0));
    for flag in [
        "--ini",
        "--processes",
        "--http-socket",
        "--harakiri",
        "--stack-size",
    ] {
        assert!(out.stdout.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn version_prints_the_package_version() {
    let scratch = Scratch::new("version");
    let out = run_cli(scratch.path(), &["--version"]);
    assert_eq!(out.code(), Some(0));
    assert!(
        out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        out.stdout
    );
}

#[test]
fn an_unknown_command_line_flag_exits_1() {
    let scratch = Scratch::new("bad-flag");
    let out = run_cli(scratch.path(), &["--prcesses", "4"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("processes"),
        "a suggestion: {}",
        out.stderr
    );
}

#[test]
fn the_fetch_app_without_fetch_url_is_refused_before_anything_starts() {
    let scratch = Scratch::new("fetch-needs-url");
    scratch.write(
        "app.ini",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = fetch\n",
    );
    let out = run_cli(scratch.path(), &["--ini", "app.ini", "--check-config"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr
            .contains("app.ini:3: module: app 'fetch' needs fetch-url = URL"),
        "{}",
        out.stderr
    );
}

/// `--check-config` of `ini` (written as `app.ini`): exit code and stderr.
fn check(name: &str, ini: &str) -> (Option<i32>, String) {
    let scratch = Scratch::new(name);
    scratch.write("app.ini", ini);
    let out = run_cli(scratch.path(), &["--ini", "app.ini", "--check-config"]);
    (out.code(), out.stderr)
}

#[test]
fn a_config_without_an_app_is_refused_at_check_config_and_at_start() {
    let ini = "[rcontainer]\nhttp-socket = 127.0.0.1:0\n";
    let expected = "config: no app configured: set module = APP \
                    (apps of this binary: echo, fetch, hello, panic, sleep)";
    let (code, stderr) = check("no-app", ini);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.trim_end(), expected);
    let scratch = Scratch::new("no-app-start");
    scratch.write("app.ini", ini);
    let out = run_cli(scratch.path(), &["--ini", "app.ini"]);
    assert_eq!(out.code(), Some(1), "nothing starts: {}", out.stderr);
    assert_eq!(out.stderr.trim_end(), expected);
}

#[test]
fn an_instance_serving_only_static_maps_needs_no_app_and_answers_404_elsewhere() {
    use crate::harness::Instance;
    use crate::harness::client::{Proto, http_get};
    let server = Instance::start(
        "static-only",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nstatic-map = /files=%d\n",
        &[],
    );
    let target = server.target(Proto::Http);
    assert_eq!(http_get(&target, "/files/app.ini").status, 200);
    assert_eq!(http_get(&target, "/other").status, 404);
}

#[test]
fn keys_used_as_placeholders_are_accepted_without_a_warning() {
    let scratch = Scratch::new("placeholders");
    scratch.write(
        "app.ini",
        "[uwsgi]\nproject = shop\nbase = /srv/%(project)\nsocket = %(base)/%(project).sock\n\
         module = hello\nset-placeholder = tier=blue\nset-ph = zone=eu\n\
         stats = /run/%(tier)-%(zone).sock\n",
    );
    let out = run_cli(scratch.path(), &["--ini", "app.ini", "--print-config"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stderr, "", "no warnings");
    let value_of = |key: &str| -> String {
        let line = (out.stdout.lines())
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} in {}", out.stdout));
        line.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(value_of("socket"), "/srv/shop/shop.sock");
    assert_eq!(value_of("stats"), "/run/blue-eu.sock");
}

#[test]
fn an_unknown_key_nobody_refers_to_is_still_an_error_with_a_suggestion() {
    let (code, stderr) = check(
        "unreferenced",
        "[uwsgi]\nproject = shop\nsocket = /tmp/%(project).sock\nmodule = hello\nprocesess = 2\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "app.ini:5: procesess: unknown option (did you mean processes?)"
    );
}

#[test]
fn http_is_served_as_an_http_socket_with_one_warning() {
    use crate::harness::Instance;
    use crate::harness::client::{Proto, http_get};
    let ini = "[uwsgi]\nhttp = 127.0.0.1:0\nmodule = hello\nhttp-to = 127.0.0.1:3031\n";
    let (code, stderr) = check("http-router", ini);
    assert_eq!(code, Some(0), "{stderr}");
    let served = "app.ini:2: http = 127.0.0.1:0 served as http-socket \
                  (rcontainer has no separate HTTP router process)";
    assert_eq!(
        stderr.lines().filter(|l| *l == served).count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("app.ini:4: ignored: uWSGI option 'http-to'"),
        "{stderr}"
    );
    let server = Instance::start("http-router-start", ini, &[]);
    assert_eq!(http_get(&server.target(Proto::Http), "/").status, 200);
}

#[test]
fn a_missing_chdir_is_an_error_at_check_config() {
    let (code, stderr) = check(
        "chdir-missing",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nchdir = %dmissing\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("app.ini:4: chdir: ") && stderr.contains("missing: no such directory"),
        "{stderr}"
    );
    let (code, stderr) = check(
        "chdir-file",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nchdir = %p\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("app.ini:4: chdir: ") && stderr.contains("app.ini: not a directory"),
        "{stderr}"
    );
}

#[test]
fn a_daemonize_log_that_is_not_a_regular_file_is_an_error_at_check_config() {
    for (value, why) in [
        ("%d", "is a directory"),
        ("/proc/app.log", "is on /proc"),
        ("/dev/zero", "not a regular file"),
    ] {
        let (code, stderr) = check(
            "daemonize-path",
            &format!(
                "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\ndaemonize = {value}\n"
            ),
        );
        assert_eq!(code, Some(1), "{value}: {stderr}");
        assert!(
            stderr.contains("app.ini:4: daemonize: ") && stderr.contains(why),
            "{value}: {stderr}"
        );
    }
    let (code, stderr) = check(
        "daemonize-devnull",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\ndaemonize = /dev/null\n",
    );
    assert_eq!(code, Some(0), "/dev/null discards the log: {stderr}");
}

#[test]
fn bad_req_logger_chown_socket_uid_gid_mount_and_module_values_fail_check_config_at_their_line() {
    for (line, expected) in [
        (
            "req-logger = syslog:app",
            "app.ini:4: req-logger: only file:PATH is supported",
        ),
        (
            "chown-socket = no-such-user-rc",
            "app.ini:4: chown-socket: no such user 'no-such-user-rc'",
        ),
        (
            "uid = no-such-user-rc",
            "app.ini:4: uid: no such user 'no-such-user-rc'",
        ),
        (
            "gid = no-such-group-rc",
            "app.ini:4: gid: no such group 'no-such-group-rc'",
        ),
        ("mount = /api", "app.ini:4: mount:"),
        ("mount = /api=nope", "app.ini:4: mount: no app named 'nope'"),
        (
            "module = two words",
            "app.ini:4: module: 'two words' is not an app name",
        ),
    ] {
        let (code, stderr) = check(
            "bad-typed-values",
            &format!("[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\n{line}\n"),
        );
        assert_eq!(code, Some(1), "{line}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{line}: expected {expected:?} in {stderr}"
        );
    }
}
