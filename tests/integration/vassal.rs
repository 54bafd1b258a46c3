//! An instance under an emperor (a vassal): the master's side of uWSGI's emperor protocol.
//!
//! The emperor here is the test itself: one end of a socketpair, the other passed to the
//! instance as `UWSGI_EMPEROR_FD` (as uWSGI's emperor and rcontainer's do), read and written one
//! byte at a time.

use std::collections::BTreeSet;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::client::{Target, http_get};
use crate::harness::{
    DEADLINE, Instance, Signal, eventually, fd_targets, is_alive, json, parse_ready_sockets, stats,
};
use crate::master::{http, ini, worker_pids};

/// Vassal -> emperor (uWSGI's bytes).
const SPAWNED: u8 = 1;
const ACCEPTING: u8 = 5;
const LOYAL: u8 = 17;
const LEAVING: u8 = 22;
const HEARTBEAT: u8 = 26;
/// Emperor -> vassal.
const STOP_NOW: u8 = 0;
const RELOAD: u8 = 1;
const STOP: u8 = 2;

/// The emperor's end of the link to one vassal.
struct FakeEmperor {
    stream: UnixStream,
    /// The descriptor number the vassal got (and `UWSGI_EMPEROR_FD` names).
    fd: i32,
    /// What the vassal's end is, as `/proc/PID/fd/N` shows it (`socket:[inode]`).
    vassal_end: String,
}

impl FakeEmperor {
    /// Starts `ini` as a vassal of a new fake emperor, without waiting for anything.
    fn spawn(name: &str, ini: &str, env: &[(&str, &str)]) -> (Instance, FakeEmperor) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let fd = theirs.as_raw_fd();
        let vassal_end = fs::read_link(format!("/proc/self/fd/{fd}"))
            .expect("the vassal's end")
            .display()
            .to_string();
        let value = fd.to_string();
        let mut all = vec![("UWSGI_EMPEROR_FD", value.as_str())];
        all.extend_from_slice(env);
        let server = Instance::spawn_inheriting(name, ini, &[], &all, fd);
        // Only the vassal holds its end now: its exit closes the link.
        drop(theirs);
        ours.set_read_timeout(Some(DEADLINE)).expect("read timeout");
        let emperor = FakeEmperor {
            stream: ours,
            fd,
            vassal_end,
        };
        (server, emperor)
    }

    /// Starts `ini` as a vassal and waits for its ready line.
    fn start(name: &str, ini: &str) -> (Instance, FakeEmperor) {
        let (mut server, emperor) = FakeEmperor::spawn(name, ini, &[]);
        server.wait_ready();
        (server, emperor)
    }

    /// [`FakeEmperor::start`], then the vassal's first reports: spawned, accepting.
    fn start_accepting(name: &str, ini: &str) -> (Instance, FakeEmperor) {
        let (server, mut emperor) = FakeEmperor::start(name, ini);
        emperor.expect(&[SPAWNED, ACCEPTING], &server);
        (server, emperor)
    }

    /// Where descriptor [`FakeEmperor::fd`] of process `pid` points (the vassal's end of this
    /// link, as long as `pid` keeps it).
    fn link_in(&self, pid: u32) -> Option<String> {
        fs::read_link(format!("/proc/{pid}/fd/{}", self.fd))
            .map(|t| t.display().to_string())
            .ok()
    }

    /// The next byte the vassal sends (fails after the deadline or when the link closes).
    fn next_byte(&mut self, server: &Instance) -> u8 {
        let mut byte = [0u8];
        loop {
            match self.stream.read(&mut byte) {
                Ok(1) => return byte[0],
                Ok(_) => panic!("the vassal closed the link\n{}", server.logs()),
                // A signal for another test's sake (the test binary is shared).
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("no message from the vassal: {e}\n{}", server.logs()),
            }
        }
    }

    /// The next bytes are exactly `wanted`.
    fn expect(&mut self, wanted: &[u8], server: &Instance) {
        let got: Vec<u8> = wanted.iter().map(|_| self.next_byte(server)).collect();
        assert_eq!(got, wanted, "messages from the vassal\n{}", server.logs());
    }

    /// What the vassal sent within `wait` (to check that something was not sent).
    fn sent_within(&mut self, wait: Duration) -> Vec<u8> {
        thread::sleep(wait);
        self.stream.set_nonblocking(true).expect("nonblocking");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("reading the link: {e}"),
            }
        }
        self.stream.set_nonblocking(false).expect("blocking");
        got
    }

    /// Everything the vassal sends until it closes the link (fails after the deadline).
    fn read_until_closed(&mut self, server: &Instance) -> Vec<u8> {
        let mut got = Vec::new();
        match self.stream.read_to_end(&mut got) {
            Ok(_) => got,
            Err(e) => panic!("the link stayed open: {e} (got {got:?})\n{}", server.logs()),
        }
    }

    fn send(&mut self, byte: u8) {
        self.stream.write_all(&[byte]).expect("write to the vassal");
    }
}

/// Waits until some worker core of `server` is in a request.
fn wait_in_flight(server: &Instance) {
    eventually("a request in flight", server, || {
        let doc = stats(server);
        let workers = doc["workers"].as_array().cloned().unwrap_or_default();
        workers
            .iter()
            .any(|w| (w["cores"].as_array().into_iter().flatten()).any(|c| c["in_request"] == 1))
    });
}

/// A slow request to `server` from another thread, once it is in flight; joins to its status
/// (0 if it got no response).
fn slow_request_in_flight(server: &Instance, ms: u64) -> thread::JoinHandle<u16> {
    let target = http(server);
    let request = thread::spawn(move || {
        let mut conn = target.connect();
        let raw = format!("GET /sleep?ms={ms} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        conn.send(raw.as_bytes());
        conn.try_read_response(false).map_or(0, |r| r.status)
    });
    wait_in_flight(server);
    request
}

/// `NAME=value` of process `pid`'s initial environment (what its exec got).
fn exec_env(pid: u32) -> BTreeSet<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    raw.split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// What the worker serving a request sees of `UWSGI_EMPEROR_FD` (`echo`'s `?env=`).
fn worker_sees_the_link_variable(server: &Instance) -> bool {
    let doc: Value = json(&http_get(&http(server), "/?env=UWSGI_EMPEROR_FD").body);
    doc["env"]["UWSGI_EMPEROR_FD"].is_string()
}

#[test]
fn a_vassal_reports_spawned_then_accepting_then_once_loyal_after_its_first_request() {
    let (mut server, mut emperor) = FakeEmperor::start_accepting("vassal-reports", &ini(""));
    server.wait_for_log("running under an emperor (UWSGI_EMPEROR_FD=");
    assert_eq!(
        emperor.sent_within(Duration::from_millis(300)),
        Vec::<u8>::new(),
        "no loyalty before a request, no heartbeat without heartbeat = N"
    );
    assert_eq!(http_get(&http(&server), "/").status, 200);
    emperor.expect(&[LOYAL], &server);
    assert_eq!(http_get(&http(&server), "/").status, 200);
    assert_eq!(
        emperor.sent_within(Duration::from_millis(300)),
        Vec::<u8>::new(),
        "loyal once"
    );
}

#[test]
fn heartbeat_n_tells_the_emperor_every_n_seconds_that_the_vassal_lives() {
    let (server, mut emperor) = FakeEmperor::start("vassal-heartbeat", &ini("heartbeat = 1\n"));
    let mut beats = 0;
    let mut others = Vec::new();
    while beats < 3 {
        match emperor.next_byte(&server) {
            HEARTBEAT => beats += 1,
            other => others.push(other),
        }
    }
    assert_eq!(others, [SPAWNED, ACCEPTING], "{}", server.logs());
}

#[test]
fn the_emperors_stop_lets_the_request_in_flight_finish_and_hears_no_leaving() {
    let (mut server, mut emperor) =
        FakeEmperor::start_accepting("vassal-stop", &ini("processes = 2\n"));
    let slow = slow_request_in_flight(&server, 1500);
    emperor.send(STOP);
    assert_eq!(slow.join().expect("client"), 200);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.logs());
    let after = emperor.read_until_closed(&server);
    assert!(!after.contains(&LEAVING), "the emperor asked: {after:?}");
    server.wait_for_log("the emperor says: Stop");
    server.wait_for_log("graceful shutdown");
}

#[test]
fn the_emperors_stop_now_stops_at_once_dropping_the_request_in_flight() {
    let (mut server, mut emperor) = FakeEmperor::start_accepting("vassal-stop-now", &ini(""));
    let slow = slow_request_in_flight(&server, 60_000);
    emperor.send(STOP_NOW);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.logs());
    assert_ne!(slow.join().expect("client"), 200);
    let after = emperor.read_until_closed(&server);
    assert!(!after.contains(&LEAVING), "the emperor asked: {after:?}");
    server.wait_for_log("immediate shutdown");
}

#[test]
fn the_emperors_reload_and_a_hup_reexec_in_place_keeping_the_link_and_the_loyalty() {
    let (mut server, mut emperor) =
        FakeEmperor::start_accepting("vassal-reload", &ini("processes = 2\n"));
    assert_eq!(http_get(&http(&server), "/").status, 200);
    emperor.expect(&[LOYAL], &server);
    let link_variable = format!("UWSGI_EMPEROR_FD={}", emperor.fd);
    let mut generation = 1;
    for reload in ["the emperor's reload", "a HUP"] {
        let before = worker_pids(&server);
        if generation == 1 {
            emperor.send(RELOAD);
        } else {
            server.signal(Signal::SIGHUP);
        }
        generation += 1;
        server.wait_for_log_count("rcontainer ready", generation);
        emperor.expect(&[SPAWNED, ACCEPTING], &server);
        eventually("new workers only", &server, || {
            let now = worker_pids(&server);
            now.len() == 2 && now.is_disjoint(&before)
        });
        assert_eq!(
            stats(&server)["pid"].as_u64(),
            Some(u64::from(server.pid()))
        );
        let master = server.pid();
        assert_eq!(
            emperor.link_in(master),
            Some(emperor.vassal_end.clone()),
            "after {reload}: the same link under the same number"
        );
        assert!(
            exec_env(master).contains(&link_variable),
            "after {reload}: the new image got {link_variable}"
        );
        for pid in worker_pids(&server) {
            assert!(
                !fd_targets(pid as u32).contains(&emperor.vassal_end),
                "after {reload}: worker {pid} holds the emperor link"
            );
        }
        assert!(
            !worker_sees_the_link_variable(&server),
            "after {reload}: workers do not get UWSGI_EMPEROR_FD"
        );
        assert_eq!(
            emperor.sent_within(Duration::from_millis(300)),
            Vec::<u8>::new(),
            "after {reload}: a vassal is loyal once (the new workers served a request)"
        );
    }
}

#[test]
fn a_reload_the_emperor_asks_for_that_is_refused_reports_accepting_again() {
    let (mut server, mut emperor) = FakeEmperor::start_accepting("vassal-refused", &ini(""));
    let good = fs::read_to_string(server.scratch.path().join("app.ini")).expect("the ini");
    server
        .scratch
        .write("app.ini", &format!("{good}prcesses = 2\n"));
    emperor.send(RELOAD);
    server.wait_for_log("reload refused");
    emperor.expect(&[ACCEPTING], &server);
    assert_eq!(http_get(&http(&server), "/").status, 200);
}

#[test]
fn a_reload_whose_workers_cannot_boot_falls_back_on_the_same_link() {
    let (mut server, mut emperor) =
        FakeEmperor::start_accepting("vassal-fallback", &ini("processes = 2\n"));
    // A million cores of 64 MiB stacks cannot be reserved: the new workers fail at boot.
    server.scratch.write(
        "app.ini",
        &ini("processes = 2\nasync = 1000000\nstack-size = 65536\n"),
    );
    emperor.send(RELOAD);
    server.wait_for_log("serving the previous configuration again");
    let mut got = Vec::new();
    while got.last() != Some(&ACCEPTING) {
        got.push(emperor.next_byte(&server));
    }
    assert!(
        got.iter().all(|b| [SPAWNED, ACCEPTING].contains(b)) && got.contains(&SPAWNED),
        "{got:?}"
    );
    let master = server.pid();
    assert_eq!(
        emperor.link_in(master),
        Some(emperor.vassal_end.clone()),
        "the previous configuration serves on the same link"
    );
    assert_eq!(http_get(&http(&server), "/").status, 200);
    emperor.send(STOP);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.logs());
}

#[test]
fn a_stop_by_hand_term_or_fifo_q_tells_the_emperor_the_vassal_is_leaving() {
    for (case, how) in [("term", "TERM"), ("fifo", "q"), ("fifo-now", "Q")] {
        let (mut server, mut emperor) = FakeEmperor::start_accepting(
            &format!("vassal-leaving-{case}"),
            &ini("master-fifo = %dfifo\n"),
        );
        if how == "TERM" {
            server.signal(Signal::SIGTERM);
        } else {
            fs::write(server.scratch.path().join("fifo"), how).expect("write to the fifo");
        }
        assert_eq!(server.wait_exit().code(), Some(0), "{}", server.logs());
        assert_eq!(emperor.read_until_closed(&server), [LEAVING], "{how}");
    }
}

#[test]
fn the_vassal_stops_gracefully_when_its_emperor_is_gone() {
    let (mut server, emperor) = FakeEmperor::start("vassal-orphan", &ini(""));
    let slow = slow_request_in_flight(&server, 1500);
    drop(emperor);
    assert_eq!(slow.join().expect("client"), 200);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.logs());
    server.wait_for_log("the emperor is gone");
}

#[test]
fn unknown_bytes_from_the_emperor_are_logged_and_ignored() {
    let (mut server, mut emperor) = FakeEmperor::start_accepting("vassal-unknown", &ini(""));
    emperor.send(9);
    emperor.send(200);
    server.wait_for_log("unknown message 200");
    assert!(server.logs().contains("unknown message 9"));
    assert!(server.is_running());
    assert_eq!(http_get(&http(&server), "/").status, 200);
    emperor.send(STOP);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.logs());
}

#[test]
fn a_uwsgi_emperor_fd_that_names_no_open_descriptor_is_a_start_error() {
    for (value, message) in [
        ("banana", "UWSGI_EMPEROR_FD=banana: not a file descriptor"),
        ("987", "UWSGI_EMPEROR_FD=987"),
    ] {
        let mut server =
            Instance::spawn_with_env("vassal-bad-fd", &ini(""), &[("UWSGI_EMPEROR_FD", value)]);
        assert_eq!(server.wait_exit().code(), Some(2), "{}", server.logs());
        let logs = server.logs();
        assert!(logs.contains(message), "{message}: {logs}");
        assert!(!logs.contains("rcontainer ready"), "{logs}");
    }
}

#[test]
fn daemonize_under_an_emperor_stays_in_the_foreground_logging_to_its_file() {
    let (server, mut emperor) = FakeEmperor::spawn(
        "vassal-daemonize",
        &ini("daemonize = %dapp.log\npidfile = %dapp.pid\n"),
        &[],
    );
    emperor.expect(&[SPAWNED, ACCEPTING], &server);
    let log = server.scratch.path().join("app.log");
    let text = fs::read_to_string(&log).unwrap_or_default();
    let ready = (text.lines())
        .find(|l| l.contains("rcontainer ready"))
        .unwrap_or_else(|| panic!("the ready line is in the daemonize file: {text}"));
    assert!(text.contains("not detaching under an emperor"), "{text}");
    assert!(
        server.is_running(),
        "the process the emperor started serves"
    );
    let pid = fs::read_to_string(server.scratch.path().join("app.pid")).expect("pidfile");
    assert_eq!(
        pid.trim(),
        server.pid().to_string(),
        "no fork: the same pid"
    );
    let target = parse_ready_sockets(ready).remove(0);
    assert_eq!(http_get(&target, "/").status, 200);
    let deadline = Instant::now() + DEADLINE;
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("GET /")
    {
        assert!(
            Instant::now() < deadline,
            "the request log goes to the file"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Set by `.ci/run`: there the uWSGI interoperability test must run, not be skipped.
const REQUIRE_UWSGI_ENV: &str = "RCONTAINER_TEST_REQUIRE_UWSGI";

/// Debian's uWSGI (package uwsgi-core), or `None` (with the reason printed) when it is not
/// installed and the run does not require it.
fn debian_uwsgi() -> Option<&'static Path> {
    let uwsgi = Path::new("/usr/bin/uwsgi");
    if uwsgi.exists() {
        return Some(uwsgi);
    }
    assert!(
        std::env::var_os(REQUIRE_UWSGI_ENV).is_none(),
        "{REQUIRE_UWSGI_ENV} is set but /usr/bin/uwsgi is not installed (apt-get install uwsgi-core)"
    );
    eprintln!("skipped: /usr/bin/uwsgi is not installed (apt-get install uwsgi-core)");
    None
}

/// A TCP port nothing listens on now (the vassal binds it: uWSGI's emperor cannot tell the
/// test a port the vassal chose).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Reads the whole JSON document served on the unix socket `path`.
fn read_json_socket(path: &Path, server: &Instance) -> Value {
    let mut stream = UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("connect {}: {e}\n{}", path.display(), server.logs()));
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read stats");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The first vassal of uWSGI's emperor stats, if any.
fn uwsgi_vassal(stats: &Path, server: &Instance) -> Option<Value> {
    read_json_socket(stats, server)["vassals"]
        .as_array()
        .and_then(|vassals| vassals.first().cloned())
}

#[test]
fn uwsgis_emperor_runs_reloads_on_touch_and_stops_on_removal_an_rcontainer_vassal() {
    let Some(uwsgi) = debian_uwsgi() else {
        return;
    };
    let scratch = crate::harness::Scratch::new("uwsgi-emperor");
    let port = free_port();
    let vassal = scratch.write(
        "vassals/app.ini",
        &format!(
            "[rcontainer]\nhttp-socket = 127.0.0.1:{port}\nstats = %dapp-stats.sock\n\
             module = echo\nprocesses = 2\n"
        ),
    );
    let emperor_stats = scratch.path().join("emperor-stats.sock");
    let vassal_stats = scratch.path().join("vassals/app-stats.sock");
    let vassals = scratch.path().join("vassals").display().to_string();
    let stats_arg = emperor_stats.display().to_string();
    let binary = Instance::binary().display().to_string();
    let args = [
        "--emperor",
        vassals.as_str(),
        "--emperor-wrapper",
        binary.as_str(),
        "--emperor-stats",
        stats_arg.as_str(),
    ];
    let mut server = Instance::spawn_in(scratch, uwsgi, &args, &[], None);
    server.wait_for_log("rcontainer ready");
    let target = Target::parse(&format!("http://127.0.0.1:{port}")).expect("target");
    assert_eq!(http_get(&target, "/").status, 200);
    eventually(
        "uWSGI's emperor sees the vassal ready, accepting and loyal",
        &server,
        || {
            uwsgi_vassal(&emperor_stats, &server).is_some_and(|v| {
                v["ready"] == 1 && v["accepting"] == 1 && v["loyal"] == 1 && v["id"] == "app.ini"
            })
        },
    );
    let master = uwsgi_vassal(&emperor_stats, &server).expect("the vassal")["pid"]
        .as_u64()
        .expect("its pid");
    let workers = |server: &Instance| -> BTreeSet<u64> {
        (read_json_socket(&vassal_stats, server)["workers"]
            .as_array()
            .into_iter()
            .flatten())
        .filter_map(|w| w["pid"].as_u64())
        .filter(|&pid| pid != 0)
        .collect()
    };
    let before = workers(&server);
    assert_eq!(before.len(), 2);

    // uWSGI compares modification times in whole seconds: the touch moves it ahead.
    let load = crate::master::Load::start(target.clone());
    let later = std::time::SystemTime::now() + Duration::from_secs(2);
    fs::File::options()
        .write(true)
        .open(&vassal)
        .and_then(|f| f.set_modified(later))
        .expect("touch the vassal file");
    server.wait_for_log_count("rcontainer ready", 2);
    eventually("the reload replaced every worker", &server, || {
        let now = workers(&server);
        now.len() == 2 && now.is_disjoint(&before)
    });
    let (ok, failures) = load.finish();
    assert!(failures.is_empty(), "the vassal kept serving: {failures:?}");
    assert!(ok > 0);
    assert_eq!(
        read_json_socket(&vassal_stats, &server)["pid"].as_u64(),
        Some(master),
        "reloaded in place"
    );
    eventually("uWSGI's emperor sees it accepting again", &server, || {
        uwsgi_vassal(&emperor_stats, &server)
            .is_some_and(|v| v["ready"] == 1 && v["accepting"] == 1 && v["pid"] == master)
    });

    fs::remove_file(&vassal).expect("remove the vassal file");
    eventually("the vassal's master is gone", &server, || !is_alive(master));
    eventually("uWSGI's emperor lists no vassal", &server, || {
        uwsgi_vassal(&emperor_stats, &server).is_none()
    });
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing serves on the vassal's port"
    );
}

/// `--print-config` rows as (key, value, origin).
fn effective(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let key = words.next()?.to_owned();
            let value = words.next()?.to_owned();
            Some((key, value, words.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

#[test]
fn set_gives_defaults_that_ini_files_the_environment_and_other_options_override() {
    let scratch = crate::harness::Scratch::new("set-defaults");
    scratch.write(
        "app.ini",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nprocesses = 2\n",
    );
    let out = crate::harness::run_cli_with_env(
        scratch.path(),
        &[
            "--set",
            "processes=5",
            "--set",
            "harakiri=7",
            "--set=listen=99",
            "--set",
            "socket-timeout=9",
            "--set",
            "http-socket=127.0.0.1:0",
            "--ini",
            "app.ini",
            "--listen",
            "77",
            "--print-config",
        ],
        &[("RCONTAINER_SOCKET_TIMEOUT", "11")],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let rows = effective(&out.stdout);
    let row = |key: &str| -> Vec<(String, String)> {
        (rows.iter().filter(|(k, _, _)| k == key))
            .map(|(_, value, origin)| (value.clone(), origin.clone()))
            .collect()
    };
    let one = |value: &str, origin: &str| vec![(value.to_owned(), origin.to_owned())];
    assert_eq!(row("processes"), one("2", "app.ini:4"), "the INI file wins");
    assert_eq!(
        row("harakiri"),
        one("7", "--set harakiri"),
        "nothing else sets it"
    );
    assert_eq!(
        row("listen"),
        one("77", "--listen"),
        "the command line wins"
    );
    assert_eq!(
        row("socket-timeout"),
        one("11", "RCONTAINER_SOCKET_TIMEOUT"),
        "the environment wins"
    );
    assert_eq!(
        row("http-socket"),
        [
            ("127.0.0.1:0".to_owned(), "--set http-socket".to_owned()),
            ("127.0.0.1:0".to_owned(), "app.ini:2".to_owned()),
        ],
        "list options accumulate, the default first"
    );

    let unknown = crate::harness::run_cli(
        scratch.path(),
        &["--set", "prcesses=3", "--ini", "app.ini", "--check-config"],
    );
    assert_eq!(unknown.code(), Some(1));
    assert!(
        unknown
            .stderr
            .contains("--set prcesses: unknown option (did you mean processes?)"),
        "{}",
        unknown.stderr
    );
    let no_value =
        crate::harness::run_cli(scratch.path(), &["--set", "processes", "--ini", "app.ini"]);
    assert_eq!(no_value.code(), Some(1));
    assert!(
        no_value.stderr.contains("--set needs KEY=VALUE"),
        "{}",
        no_value.stderr
    );
}

#[test]
fn set_defines_a_placeholder_the_ini_uses_and_set_in_an_ini_sets_an_option_in_place() {
    let scratch = crate::harness::Scratch::new("set-placeholder");
    scratch.write(
        "app.ini",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\n\
         pidfile = %d%(project).pid\nset = processes=3\nset-placeholder = four=4\n\
         set = harakiri=%(four)\n",
    );
    let out = crate::harness::run_cli(
        scratch.path(),
        &[
            "--set",
            "project=shop",
            "--ini",
            "app.ini",
            "--print-config",
        ],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let rows = effective(&out.stdout);
    let find = |key: &str| rows.iter().find(|(k, _, _)| k == key).cloned();
    let pidfile = find("pidfile").expect("pidfile row");
    assert!(pidfile.1.ends_with("/shop.pid"), "{pidfile:?}");
    let processes = find("processes").expect("processes row");
    assert_eq!(
        (processes.1.as_str(), processes.2.as_str()),
        ("3", "app.ini:5")
    );
    let harakiri = find("harakiri").expect("harakiri row");
    assert_eq!(
        (harakiri.1.as_str(), harakiri.2.as_str()),
        ("4", "app.ini:7")
    );
    assert!(
        !out.stderr.contains("ignored: uWSGI option 'set'"),
        "{}",
        out.stderr
    );

    scratch.write(
        "typo.ini",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\nset = prcesses=3\nset = nothing\n",
    );
    let typo = crate::harness::run_cli(scratch.path(), &["--ini", "typo.ini", "--check-config"]);
    assert_eq!(typo.code(), Some(1));
    assert!(
        typo.stderr
            .contains("typo.ini:4: prcesses: unknown option (did you mean processes?)"),
        "{}",
        typo.stderr
    );
    assert!(
        typo.stderr.contains("typo.ini:5: set: needs KEY=VALUE"),
        "{}",
        typo.stderr
    );
}

#[test]
fn a_stop_now_answering_a_leaving_vassal_lets_its_drain_finish() {
    // uWSGI's emperor answers `22` with `0` (its emperor_stop): for a vassal draining after a
    // TERM by hand, that is an acknowledgement, not a reason to drop the requests in flight.
    let (mut server, mut emperor) = FakeEmperor::start_accepting("vassal-leaving-ack", &ini(""));
    let slow = slow_request_in_flight(&server, 1500);
    server.signal(Signal::SIGTERM);
    emperor.expect(&[LEAVING], &server);
    emperor.send(STOP_NOW);
    server.wait_for_log("draining on");
    assert_eq!(slow.join().expect("client"), 200);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.logs());
}
