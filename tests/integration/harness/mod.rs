//! The integration-test harness: runs the real `rcontainer` binary and talks to it.
//!
//! - [`Scratch`]: a unique temp dir per test, removed on drop (kept when the test fails).
//! - [`Instance`]: the binary started from an inline INI, in its own process group, with its
//!   stdout/stderr captured to files; waits (with a deadline) for a log line; kills its whole
//!   process group on drop and prints the captured logs when the test is failing.
//! - [`run_cli`]: one-shot invocations (`--check-config`, `--help`, ...) with a deadline.
//! - [`client`]: raw HTTP/1.1 and uwsgi clients over TCP and unix sockets.
//!
//! Every wait here has a deadline: a test never hangs, it fails with the log tail.

#![allow(dead_code)] // each test module uses a different part of the harness

pub(crate) mod client;
pub(crate) mod nginx;

use std::fs;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) use client::Target;
pub(crate) use nix::sys::signal::Signal;
use nix::sys::signal::{kill, killpg};
use nix::unistd::Pid;

/// How long any single wait in a test may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(15);

const BIN: &str = env!("CARGO_BIN_EXE_rcontainer");

/// Names another rcontainer binary for the tests to run (CI sets it to the installed
/// `/usr/bin/rcontainer` after installing the package); unset, the tests run cargo's build.
pub(crate) const TEST_BIN_ENV: &str = "RCONTAINER_TEST_BIN";

/// A unique scratch directory for one test; removed on drop unless the test failed.
#[derive(Debug)]
pub(crate) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `$TMPDIR/rcontainer-tests/<name>-<pid>-<n>`.
    pub(crate) fn new(name: &str) -> Scratch {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join("rcontainer-tests")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create scratch dir");
        Scratch { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the scratch dir and returns the full path.
    pub(crate) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let file = self.path.join(name);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent).expect("create parent dir");
        }
        fs::write(&file, contents).expect("write scratch file");
        file
    }

    /// [`Scratch::write`] an executable script (mode 0755); its path, as text for an argument.
    pub(crate) fn write_executable(&self, name: &str, contents: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let script = self.write(name, contents);
        let mut perms = fs::metadata(&script).expect("stat").permissions();
        perms.set_mode(0o755);
        fs::set_permissions(&script, perms).expect("chmod");
        script.to_str().expect("utf-8 path").to_owned()
    }

    /// Makes directory `dir` in the scratch dir and writes `files` (name, text) into it; its
    /// path.
    pub(crate) fn write_dir(&self, dir: &str, files: &[(&str, &str)]) -> PathBuf {
        let path = self.path.join(dir);
        fs::create_dir_all(&path).expect("create the directory");
        for (file, text) in files {
            fs::write(path.join(file), text).expect("write a file");
        }
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("scratch dir kept: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A command for `program` (the real binary, a copy of it, or a peer), with no
/// `RCONTAINER_*` variables leaking in from the environment the tests run in.
fn program_command(program: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RCONTAINER_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// What a one-shot invocation of the binary printed and how it ended.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `rcontainer ARGS` in `dir` to completion (killed and failed after [`DEADLINE`]).
pub(crate) fn run_cli(dir: &Path, args: &[&str]) -> Output {
    run_cli_with_env(dir, args, &[])
}

/// [`run_cli`] with extra environment variables.
pub(crate) fn run_cli_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    run_program_with_env(Instance::binary(), dir, args, env)
}

/// Runs any `program ARGS` in `dir` to completion, as [`run_cli`] runs the binary (a
/// command line taken from a unit file, `/bin/kill`, `logrotate`, ...).
pub(crate) fn run_program(program: &Path, dir: &Path, args: &[&str]) -> Output {
    run_program_with_env(program, dir, args, &[])
}

fn run_program_with_env(program: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let stdout = dir.join(format!("cli-{}.stdout", unique()));
    let stderr = dir.join(format!("cli-{}.stderr", unique()));
    let mut cmd = program_command(program, dir, args);
    cmd.envs(env.iter().copied())
        .stdout(fs::File::create(&stdout).expect("create stdout file"))
        .stderr(fs::File::create(&stderr).expect("create stderr file"))
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn rcontainer");
    let status = wait_with_deadline(&mut child, DEADLINE).unwrap_or_else(|| {
        kill_group(child.id());
        let _ = child.wait();
        panic!(
            "{} {args:?} did not exit within {DEADLINE:?}\nstderr:\n{}",
            program.display(),
            read_lossy(&stderr)
        );
    });
    Output {
        status,
        stdout: read_lossy(&stdout),
        stderr: read_lossy(&stderr),
    }
}

/// A running instance of the real binary, killed (whole process group) on drop.
#[derive(Debug)]
pub(crate) struct Instance {
    child: Option<Child>,
    pub(crate) scratch: Scratch,
    stdout: PathBuf,
    stderr: PathBuf,
    /// The listeners the master announced in its ready line, in order.
    pub(crate) sockets: Vec<Target>,
}

impl Instance {
    /// Writes `ini` to `app.ini` in a fresh scratch dir, starts `rcontainer --ini app.ini
    /// EXTRA_ARGS` and waits for the `rcontainer ready` line.
    pub(crate) fn start(name: &str, ini: &str, extra_args: &[&str]) -> Instance {
        let mut instance = Instance::spawn(name, ini, extra_args);
        let line = instance.wait_for_log("rcontainer ready");
        instance.sockets = parse_ready_sockets(&line);
        instance
    }

    /// Waits for the `rcontainer ready` line and takes the sockets it announces.
    pub(crate) fn wait_ready(&mut self) {
        let line = self.wait_for_log("rcontainer ready");
        self.sockets = parse_ready_sockets(&line);
    }

    /// Like [`Instance::start`] but does not wait for anything.
    pub(crate) fn spawn(name: &str, ini: &str, extra_args: &[&str]) -> Instance {
        Instance::spawn_program(Instance::binary(), name, ini, extra_args, &[])
    }

    /// [`Instance::start`] with extra environment variables.
    pub(crate) fn start_with_env(name: &str, ini: &str, env: &[(&str, &str)]) -> Instance {
        let mut instance = Instance::spawn_with_env(name, ini, env);
        let line = instance.wait_for_log("rcontainer ready");
        instance.sockets = parse_ready_sockets(&line);
        instance
    }

    /// Like [`Instance::spawn`] with extra environment variables.
    pub(crate) fn spawn_with_env(name: &str, ini: &str, env: &[(&str, &str)]) -> Instance {
        Instance::spawn_program(Instance::binary(), name, ini, &[], env)
    }

    /// The path of the binary the tests run: cargo's build, or the one `RCONTAINER_TEST_BIN`
    /// names.
    pub(crate) fn binary() -> &'static Path {
        static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        BINARY.get_or_init(|| match std::env::var_os(TEST_BIN_ENV) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => PathBuf::from(BIN),
        })
    }

    /// The binary of example `name` (`examples/NAME.rs`), built on first use: a plain
    /// `cargo test` has built it already, a filtered run may not have.
    pub(crate) fn example(name: &str) -> PathBuf {
        static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let out = Command::new(env!("CARGO"))
            .args(["build", "--locked", "--quiet", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .output()
            .expect("run cargo build --example");
        assert!(
            out.status.success(),
            "cargo build --example {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Path::new(BIN)
            .parent()
            .expect("the binary's directory")
            .join("examples")
            .join(name)
    }

    /// Like [`Instance::start`], running `program` (a copy of the binary) instead.
    pub(crate) fn start_program(program: &Path, name: &str, ini: &str) -> Instance {
        let mut instance = Instance::spawn_program(program, name, ini, &[], &[]);
        let line = instance.wait_for_log("rcontainer ready");
        instance.sockets = parse_ready_sockets(&line);
        instance
    }

    /// Starts `wrapper[0] wrapper[1..] <binary> --ini app.ini` (a launcher such as
    /// `systemd-socket-activate -l ADDR`) without waiting for anything.
    pub(crate) fn spawn_wrapped(wrapper: &[&str], name: &str, ini: &str) -> Instance {
        let (launcher, launcher_args) = wrapper.split_first().expect("a launcher");
        let mut args: Vec<&str> = launcher_args.to_vec();
        let binary = Instance::binary().to_str().expect("utf-8 binary path");
        args.extend([binary, "--ini", "app.ini"]);
        Instance::spawn_with_args(Path::new(launcher), &args, name, ini, &[])
    }

    fn spawn_program(
        program: &Path,
        name: &str,
        ini: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Instance {
        let mut args = vec!["--ini", "app.ini"];
        args.extend_from_slice(extra_args);
        Instance::spawn_with_args(program, &args, name, ini, env)
    }

    /// Like [`Instance::spawn`] with extra environment variables, the child inheriting `fd`
    /// under the same number (e.g. its end of a socketpair, named by one of `env`).
    pub(crate) fn spawn_inheriting(
        name: &str,
        ini: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
        fd: RawFd,
    ) -> Instance {
        let mut args = vec!["--ini", "app.ini"];
        args.extend_from_slice(extra_args);
        Instance::spawn_full(Instance::binary(), &args, name, ini, env, Some(fd))
    }

    fn spawn_with_args(
        program: &Path,
        args: &[&str],
        name: &str,
        ini: &str,
        env: &[(&str, &str)],
    ) -> Instance {
        Instance::spawn_full(program, args, name, ini, env, None)
    }

    fn spawn_full(
        program: &Path,
        args: &[&str],
        name: &str,
        ini: &str,
        env: &[(&str, &str)],
        inherit: Option<RawFd>,
    ) -> Instance {
        let scratch = Scratch::new(name);
        // Tests refer to the scratch dir as %d in their INI text.
        scratch.write("app.ini", ini);
        Instance::spawn_in(scratch, program, args, env, inherit)
    }

    /// Starts `program ARGS` (any program: a uWSGI emperor, say) in `scratch`, which the test
    /// prepared, without waiting for anything; `inherit`: a descriptor the child keeps under
    /// the same number.
    #[allow(unsafe_code)] // `pre_exec`, to keep one descriptor across the exec
    pub(crate) fn spawn_in(
        scratch: Scratch,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        inherit: Option<RawFd>,
    ) -> Instance {
        let stdout = scratch.path().join("stdout.log");
        let stderr = scratch.path().join("stderr.log");
        let child = spawn_retrying(|| {
            let mut command = program_command(program, scratch.path(), args);
            command
                .envs(env.iter().copied())
                .stdout(fs::File::create(&stdout).expect("create stdout file"))
                .stderr(fs::File::create(&stderr).expect("create stderr file"))
                .process_group(0);
            if let Some(raw) = inherit {
                // SAFETY: the closure runs in the forked child before exec and only calls
                // fcntl, which is async-signal-safe; it allocates nothing.
                unsafe { command.pre_exec(move || clear_cloexec(raw)) };
            }
            command.spawn()
        })
        .expect("spawn rcontainer");
        Instance {
            child: Some(child),
            scratch,
            stdout,
            stderr,
            sockets: Vec::new(),
        }
    }

    /// The first listener of protocol `proto` from the ready line.
    pub(crate) fn target(&self, proto: client::Proto) -> Target {
        self.sockets
            .iter()
            .find(|t| t.proto == proto)
            .unwrap_or_else(|| panic!("no {proto:?} socket in the ready line: {:?}", self.sockets))
            .clone()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("invariant: child present until drop")
            .id()
    }

    /// Everything the instance wrote to stdout and stderr so far.
    pub(crate) fn logs(&self) -> String {
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            read_lossy(&self.stdout),
            read_lossy(&self.stderr)
        )
    }

    /// Waits until a line containing `needle` appears in the logs and returns it; fails the
    /// test with the logs after [`DEADLINE`] or when the process exits first.
    pub(crate) fn wait_for_log(&mut self, needle: &str) -> String {
        self.wait_for_log_count(needle, 1)
    }

    /// Waits until `count` lines contain `needle` and returns the last of them.
    pub(crate) fn wait_for_log_count(&mut self, needle: &str, count: usize) -> String {
        let start = Instant::now();
        loop {
            let logs = self.logs();
            let hits: Vec<&str> = logs.lines().filter(|l| l.contains(needle)).collect();
            if hits.len() >= count {
                return hits[count - 1].to_string();
            }
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "rcontainer exited ({status}) before logging {needle:?}\n{}",
                    self.logs()
                );
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "no log line {needle:?} within {DEADLINE:?}\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the master process.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal)
            .unwrap_or_else(|e| panic!("kill({}, {signal}): {e}", self.pid()));
    }

    /// Waits for the master to exit and returns its status (fails after [`DEADLINE`]).
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let child = self
            .child
            .as_mut()
            .expect("invariant: child present until drop");
        match wait_with_deadline(child, DEADLINE) {
            Some(status) => status,
            None => panic!(
                "rcontainer did not exit within {DEADLINE:?}\n{}",
                self.logs()
            ),
        }
    }

    /// Whether the master process is still alive (not exited, not a zombie).
    pub(crate) fn is_running(&self) -> bool {
        is_alive(u64::from(self.pid()))
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "rcontainer logs ({}):\n{}",
                self.scratch.path().display(),
                self.logs()
            );
        }
    }
}

/// `rcontainer ready pid=1 sockets=uwsgi://127.0.0.1:3031,http:///tmp/x.sock` -> targets.
pub(crate) fn parse_ready_sockets(line: &str) -> Vec<Target> {
    let Some(list) = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sockets="))
    else {
        return Vec::new();
    };
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| Target::parse(s).unwrap_or_else(|| panic!("bad socket in ready line: {s}")))
        .collect()
}

fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waitpid on our own child") {
            return Some(status);
        }
        if start.elapsed() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `spawn` again while it fails with ETXTBSY: a binary a test just copied may still be
/// open for writing in a child another test thread forked (until that child execs).
fn spawn_retrying(mut spawn: impl FnMut() -> std::io::Result<Child>) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Clears `FD_CLOEXEC` on `raw` (in a child about to exec: it keeps that descriptor).
#[allow(unsafe_code)] // raw fcntl: nothing else is async-signal-safe between fork and exec
fn clear_cloexec(raw: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor number touches no memory of this process.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// SIGKILLs the process group led by `pid` (every worker the master forked is in it).
fn kill_group(pid: u32) {
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Whether process `pid` is alive (not exited, not a zombie).
pub(crate) fn is_alive(pid: u64) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some(s) if s != "Z" && s != "X")
}

/// Where each open descriptor of `pid` points (`/proc/PID/fd/*` link targets).
pub(crate) fn fd_targets(pid: u32) -> std::collections::BTreeSet<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the fd table")
        .flatten()
        .filter_map(|entry| fs::read_link(entry.path()).ok())
        .map(|target| target.display().to_string())
        .collect()
}

/// Waits until `check` holds (polling), failing the test with the instance's logs after
/// [`DEADLINE`].
pub(crate) fn eventually(what: &str, instance: &Instance, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < DEADLINE,
            "never happened: {what}\n{}",
            instance.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The stats JSON from the instance's `stats = %dstats.sock` (plain, not `stats-http`).
pub(crate) fn stats(instance: &Instance) -> serde_json::Value {
    use std::io::Read;
    let mut stream =
        std::os::unix::net::UnixStream::connect(instance.scratch.path().join("stats.sock"))
            .expect("connect to the stats socket");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read stats");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("stats is not JSON ({e}): {text}"))
}

/// The JSON a stats socket at `path` writes, or `None` when it cannot be read now (the
/// process behind it is starting, reloading or gone).
pub(crate) fn try_stats_at(path: &Path) -> Option<serde_json::Value> {
    use std::io::Read;
    let mut stream = std::os::unix::net::UnixStream::connect(path).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("stats is not JSON ({e}): {text}")))
}

/// The test virtualenv (`scripts/python-venv.sh`: the Python apps' packages and
/// `prometheus_client`), made on first use; its path. It needs no `python` feature: the
/// stats tests parse `/metrics` with its Python.
pub(crate) fn venv() -> &'static str {
    static VENV: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VENV.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("scripts/python-venv.sh"))
            .output()
            .expect("run scripts/python-venv.sh");
        assert!(
            out.status.success(),
            "scripts/python-venv.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("venv path")
            .trim()
            .to_string()
    })
}

/// Parses a JSON body, failing the test with the body when it is not JSON.
pub(crate) fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn unique() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn ready_line_sockets_are_parsed_in_order() {
    let line = "rcontainer ready pid=42 sockets=uwsgi://127.0.0.1:3031,http://[::1]:8000,uwsgi:///tmp/a.sock";
    let targets = parse_ready_sockets(line);
    assert_eq!(targets.len(), 3);
    assert_eq!(targets[0].to_string(), "uwsgi://127.0.0.1:3031");
    assert_eq!(targets[1].to_string(), "http://[::1]:8000");
    assert_eq!(targets[2].to_string(), "uwsgi:///tmp/a.sock");
}
