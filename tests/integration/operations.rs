//! Operating an instance: the pidfile and the commands that read it, daemonized starts that
//! fail, start-up errors that say what was being done, config warnings in the log.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::harness::client::{Proto, http_get};
use crate::harness::{Instance, Scratch, Signal, run_cli};

/// A process that is not rcontainer (`sleep 30`), killed on drop.
struct Bystander(Child);

impl Bystander {
    fn sleep() -> Bystander {
        let child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        Bystander(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn is_alive(&mut self) -> bool {
        self.0
            .try_wait()
            .expect("waitpid on our own child")
            .is_none()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The scratch dir as `%d` expands it (canonical, no trailing slash).
fn canonical(dir: &Path) -> PathBuf {
    dir.canonicalize().expect("canonical scratch dir")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Starts `ini` (not daemonized), expects the start to fail with code 2 and returns the logs.
fn failed_start(name: &str, ini: &str) -> (String, PathBuf) {
    let mut server = Instance::spawn(name, ini, &[]);
    let status = server.wait_exit();
    let logs = server.logs();
    assert_eq!(status.code(), Some(2), "{logs}");
    (logs, canonical(server.scratch.path()))
}

#[test]
fn symlinks_planted_at_the_old_temp_names_do_not_redirect_the_pidfile_write() {
    // The shell waits for `go`, then becomes rcontainer: the master's pid is the shell's pid,
    // known before the pidfile is written, as a local attacker could guess it.
    let ini = "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\npidfile = %dapp.pid\n";
    let wait_then_exec = "while [ ! -e go ]; do sleep 0.05; done; exec \"$0\" \"$@\"";
    let mut server = Instance::spawn_wrapped(&["sh", "-c", wait_then_exec], "pidfile-symlink", ini);
    let dir = server.scratch.path().to_path_buf();
    let victim = dir.join("victim");
    fs::write(&victim, "precious\n").expect("victim");
    let pid = server.pid();
    // Every name the old code could pick: `.app.pid.<master pid>.tmp`.
    symlink(&victim, dir.join(format!(".app.pid.{pid}.tmp"))).expect("plant");
    fs::write(dir.join("go"), "").expect("go");
    server.wait_for_log("rcontainer ready");
    assert_eq!(
        fs::read_to_string(&victim).expect("victim"),
        "precious\n",
        "the symlink's target was overwritten"
    );
    let pidfile = dir.join("app.pid");
    let kind = fs::symlink_metadata(&pidfile).expect("pidfile").file_type();
    assert!(kind.is_file(), "the pidfile is a plain file: {kind:?}");
    assert_eq!(
        fs::read_to_string(&pidfile).expect("pidfile"),
        format!("{pid}\n")
    );
}

#[test]
fn pidfile_commands_refuse_a_pid_that_is_not_an_rcontainer_master() {
    let scratch = Scratch::new("stop-bystander");
    let mut sleeper = Bystander::sleep();
    let pidfile = scratch.write("app.pid", &format!("{}\n", sleeper.pid()));
    for flag in ["--stop", "--reload", "--graceful-stop", "--chain-reload"] {
        let out = run_cli(scratch.path(), &[flag, path_arg(&pidfile)]);
        assert_eq!(out.code(), Some(1), "{flag}: {}", out.stderr);
        let expected = format!(
            "rcontainer: {flag}: pid {} (from {}) is not an rcontainer master (it is ",
            sleeper.pid(),
            pidfile.display()
        );
        assert!(
            out.stderr.contains(&expected) && out.stderr.contains("sleep): not signalled"),
            "{flag}: {}",
            out.stderr
        );
        assert!(sleeper.is_alive(), "{flag} signalled the bystander");
    }
}

#[test]
fn pidfile_commands_signal_a_master_of_another_binary_built_on_the_library() {
    let bin_dir = Scratch::new("own-binary-bin");
    let program = bin_dir.path().join("myapp");
    fs::copy(Instance::binary(), &program).expect("copy the binary");
    let mut server = Instance::start_program(
        &program,
        "own-binary",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\npidfile = %dapp.pid\n",
    );
    let pidfile = server.scratch.path().join("app.pid");
    let out = run_cli(
        server.scratch.path(),
        &["--graceful-stop", path_arg(&pidfile)],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.logs());
}

#[test]
fn a_pidfile_that_is_a_fifo_is_refused_instead_of_blocking_the_command() {
    let scratch = Scratch::new("stop-fifo");
    let fifo = scratch.path().join("app.pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let out = run_cli(scratch.path(), &["--stop", path_arg(&fifo)]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("pidfile {}: not a regular file", fifo.display())),
        "{}",
        out.stderr
    );
}

#[test]
fn a_daemonized_start_on_a_port_in_use_prints_why_on_the_terminal() {
    let scratch = Scratch::new("daemon-port-in-use");
    let taken = TcpListener::bind("127.0.0.1:0").expect("take a port");
    let addr = taken.local_addr().expect("addr");
    scratch.write(
        "app.ini",
        &format!("[rcontainer]\nhttp-socket = {addr}\nmodule = hello\ndaemonize = %dapp.log\n"),
    );
    let out = run_cli(scratch.path(), &["--ini", "app.ini"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("http-socket {addr}: bind: address already in use")),
        "the reason on the terminal: {}",
        out.stderr
    );
}

#[test]
fn a_daemonized_start_with_a_pidfile_in_a_missing_directory_prints_why_on_the_terminal() {
    let scratch = Scratch::new("daemon-pidfile-dir");
    scratch.write(
        "app.ini",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\ndaemonize = %dapp.log\n\
         pidfile = %dmissing/app.pid\n",
    );
    let out = run_cli(scratch.path(), &["--ini", "app.ini"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let pidfile = canonical(scratch.path()).join("missing/app.pid");
    assert!(
        out.stderr.contains(&format!(
            "pidfile {}: create: no such file or directory",
            pidfile.display()
        )),
        "the reason on the terminal: {}",
        out.stderr
    );
}

#[test]
fn start_up_errors_name_the_option_the_address_or_path_and_the_operation() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("take a port");
    let addr = taken.local_addr().expect("addr");
    let base = "[rcontainer]\nmodule = hello\n";
    let (logs, _) = failed_start(
        "error-port-in-use",
        &format!("{base}http-socket = {addr}\n"),
    );
    assert!(
        logs.contains(&format!("http-socket {addr}: bind: address already in use")),
        "{logs}"
    );
    let cases = [
        (
            "socket = %dmissing/app.sock\n",
            "socket {dir}/missing/app.sock: bind: no such file or directory",
        ),
        (
            "http-socket = 127.0.0.1:0\npidfile = %dmissing/app.pid\n",
            "pidfile {dir}/missing/app.pid: create: no such file or directory",
        ),
        (
            "http-socket = 127.0.0.1:0\nmaster-fifo = %dmissing/fifo\n",
            "master-fifo {dir}/missing/fifo: mkfifo: no such file or directory",
        ),
    ];
    for (i, (extra, expected)) in cases.into_iter().enumerate() {
        let (logs, dir) = failed_start(&format!("error-{i}"), &format!("{base}{extra}"));
        let expected = expected.replace("{dir}", &dir.display().to_string());
        assert!(logs.contains(&expected), "expected {expected:?} in\n{logs}");
        assert!(!logs.contains("os error"), "a bare errno: {logs}");
    }
}

/// `net.core.somaxconn` of this machine.
fn somaxconn() -> u32 {
    fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("read somaxconn")
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn a_listen_backlog_above_somaxconn_is_clamped_with_one_warning() {
    let limit = somaxconn();
    let listen = if limit < 16384 { 16384 } else { limit + 1 };
    assert!(listen <= 65535, "somaxconn {limit} leaves nothing to test");
    let ini =
        format!("[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nlisten = {listen}\n");
    let scratch = Scratch::new("listen-check");
    scratch.write("app.ini", &ini);
    let out = run_cli(scratch.path(), &["--ini", "app.ini", "--check-config"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let warning = format!("listen = {listen} is above net.core.somaxconn ({limit})");
    assert_eq!(
        out.stderr.lines().filter(|l| l.contains(&warning)).count(),
        1,
        "{}",
        out.stderr
    );
    let server = Instance::start("listen-clamped", &ini, &[]);
    assert_eq!(http_get(&server.target(Proto::Http), "/").status, 200);
    let logs = server.logs();
    assert_eq!(
        logs.lines().filter(|l| l.contains(&warning)).count(),
        1,
        "{logs}"
    );
}

/// `2026-11-23T17:45:01.123Z warn ...`: a line of the logger, not a bare print.
fn is_a_warning_log_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let timestamp = words.next().unwrap_or_default();
    timestamp.len() >= 20
        && timestamp.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && timestamp.contains('T')
        && timestamp.ends_with('Z')
        && words.next() == Some("warn")
}

#[test]
fn config_warnings_are_logged_once_per_load_with_a_timestamp() {
    let ini = "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nlimit-as = 512\n";
    let mut server = Instance::start("warnings-once", ini, &[]);
    let needle = "ignored: uWSGI option 'limit-as' has no effect in rcontainer";
    let warnings = |server: &Instance| -> Vec<String> {
        server
            .logs()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    };
    let first = warnings(&server);
    assert_eq!(first.len(), 1, "{}", server.logs());
    assert!(is_a_warning_log_line(&first[0]), "{}", first[0]);
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("rcontainer ready", 2);
    let after = warnings(&server);
    assert_eq!(
        after.len(),
        2,
        "once more for the new load: {}",
        server.logs()
    );
    assert!(after.iter().all(|l| is_a_warning_log_line(l)), "{after:?}");
}

#[test]
fn config_warnings_of_a_first_start_land_in_the_logto_file() {
    let ini = "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nlimit-as = 512\n\
               logto = %dserver.log\n";
    let server = Instance::spawn("warnings-logto", ini, &[]);
    let path = server.scratch.path().join("server.log");
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    crate::harness::eventually("the ready line in the log file", &server, || {
        read().contains("rcontainer ready")
    });
    let log = read();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ignored: uWSGI option 'limit-as'"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(is_a_warning_log_line(lines[0]), "{}", lines[0]);
    assert!(
        !server.logs().contains("limit-as"),
        "not on the terminal: {}",
        server.logs()
    );
}
