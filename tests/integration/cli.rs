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
    for key in ["plugins", "callable", "vhost", "limit-as"] {
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
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprcesses = 4\n",
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
    scratch.write("x.ini", "[uwsgi]\nprocesses = many\n");
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
        "[rcontainer]\nprocesses = 2\nhttp-socket = 127.0.0.1:0\npidfile = %d%n.pid\n",
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
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nasync = 10\n",
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
    assert!(out.stderr.contains("fetch-url"), "{}", out.stderr);
}
