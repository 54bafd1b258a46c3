//! The master as an operator meets it: several workers, respawn, signals, reloads without a
//! refused request, recycling, the watchdog, pidfile commands, daemonizing, touch files.

use std::collections::BTreeSet;
use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::client::{Proto, http_get};
use crate::harness::{DEADLINE, Instance, Scratch, Signal, Target, eventually, run_cli, stats};

pub(crate) fn http(instance: &Instance) -> Target {
    instance.target(Proto::Http)
}

pub(crate) fn worker_pids(instance: &Instance) -> BTreeSet<u64> {
    stats(instance)["workers"]
        .as_array()
        .expect("workers array")
        .iter()
        .filter_map(|w| w["pid"].as_u64())
        .filter(|&pid| pid != 0)
        .collect()
}

pub(crate) fn ini(extra: &str) -> String {
    format!(
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nstats = %dstats.sock\nmodule = echo\nmount = /sleep=sleep\n{extra}"
    )
}

/// Sends requests from a thread until stopped; returns how many failed.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(usize, Vec<String>)>,
}

impl Load {
    pub(crate) fn start(target: Target) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let (mut ok, mut failures) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                let raw = b"GET /load HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
                match target
                    .try_connect()
                    .and_then(|mut c| c.send(raw).try_read_response(false))
                {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (ok, failures)
        });
        Load { stop, handle }
    }

    pub(crate) fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("load thread")
    }
}

#[test]
fn processes_workers_are_forked_and_a_killed_one_is_respawned() {
    let mut server = Instance::start("respawn", &ini("processes = 2\n"), &[]);
    let pids = worker_pids(&server);
    assert_eq!(pids.len(), 2, "{pids:?}");
    let victim = *pids.iter().next().expect("a worker");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim as i32), Signal::SIGKILL)
        .expect("kill a worker");
    server.wait_for_log(&format!(
        "worker died id=1 pid={victim} cause=signal:KILL action=respawn"
    ));
    eventually("a new worker replaces the killed one", &server, || {
        let now = worker_pids(&server);
        now.len() == 2 && !now.contains(&victim)
    });
    assert_eq!(http_get(&http(&server), "/").status, 200);
    let doc = stats(&server);
    assert_eq!(doc["pid"].as_u64(), Some(u64::from(server.pid())));
    assert!(
        doc["workers"][0]["cores"]
            .as_array()
            .is_some_and(|c| c.len() == 100)
    );
}

#[test]
fn sighup_replaces_every_worker_pid_keeps_the_master_pid_and_refuses_no_request() {
    let mut server = Instance::start("sighup", &ini("processes = 2\n"), &[]);
    let before = worker_pids(&server);
    let load = Load::start(http(&server));
    thread::sleep(Duration::from_millis(200));
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("rcontainer ready", 2);
    eventually("old workers gone", &server, || {
        worker_pids(&server).is_disjoint(&before)
    });
    thread::sleep(Duration::from_millis(200));
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        ok + failures.len()
    );
    assert!(ok > 0);
    let doc = stats(&server);
    assert_eq!(
        doc["pid"].as_u64(),
        Some(u64::from(server.pid())),
        "same master pid"
    );
    assert_eq!(worker_pids(&server).len(), 2);
}

#[test]
fn a_reload_with_a_broken_config_keeps_the_old_one_running() {
    let mut server = Instance::start("bad-reload", &ini(""), &[]);
    let target = http(&server);
    server
        .scratch
        .write("app.ini", "[rcontainer]\nprcesses = 2\n");
    server.signal(Signal::SIGHUP);
    server.wait_for_log("reload refused");
    assert_eq!(http_get(&target, "/").status, 200);
}

#[test]
fn fifo_chain_reload_replaces_workers_one_at_a_time() {
    let mut server = Instance::start("chain", &ini("processes = 2\nmaster-fifo = %dfifo\n"), &[]);
    let before = worker_pids(&server);
    let load = Load::start(http(&server));
    fs::write(server.scratch.path().join("fifo"), "c\n").expect("write to the fifo");
    server.wait_for_log("chain reload of 2 workers");
    eventually("every worker replaced", &server, || {
        let now = worker_pids(&server);
        now.len() == 2 && now.is_disjoint(&before)
    });
    let (_, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn ttin_and_ttou_add_and_remove_a_worker() {
    let mut server = Instance::start("ttin", &ini("processes = 1\n"), &[]);
    server.signal(Signal::SIGTTIN);
    eventually("two workers", &server, || worker_pids(&server).len() == 2);
    server.signal(Signal::SIGTTOU);
    eventually("back to one worker", &server, || {
        worker_pids(&server).len() == 1
    });
    server.wait_for_log("removing a worker: target=1");
}

#[test]
fn sigterm_drains_the_request_in_flight_removes_the_pidfile_and_exits_0() {
    let mut server = Instance::start("term", &ini("processes = 2\npidfile = %dapp.pid\n"), &[]);
    let pidfile = server.scratch.path().join("app.pid");
    let pid: u32 = fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    assert_eq!(pid, server.pid());
    let target = http(&server);
    let slow = thread::spawn(move || http_get(&target, "/sleep?ms=1500").status);
    thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGTERM);
    assert_eq!(slow.join().expect("client"), 200);
    assert_eq!(server.wait_exit().code(), Some(0));
    assert!(!pidfile.exists(), "pidfile removed on exit");
}

#[test]
fn sigint_stops_at_once() {
    let mut server = Instance::start("int", &ini(""), &[]);
    server.signal(Signal::SIGINT);
    assert_eq!(server.wait_exit().code(), Some(0));
    server.wait_for_log("immediate shutdown");
}

#[test]
fn a_worker_that_cannot_boot_stops_the_master_with_code_3_not_a_hot_loop() {
    // A million cores of 64 MiB stacks cannot be reserved: every worker fails at boot.
    let mut server = Instance::spawn(
        "boot-failure",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nasync = 1000000\nstack-size = 65536\nmodule = hello\n",
        &[],
    );
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(3), "{}", server.logs());
    let logs = server.logs();
    assert!(logs.contains("giving up"), "{logs}");
    assert!(
        logs.matches("worker failed to start").count() <= 5,
        "{logs}"
    );
}

#[test]
fn max_requests_recycles_workers_without_failing_requests() {
    let mut server = Instance::start("recycle", &ini("processes = 1\nmax-requests = 5\n"), &[]);
    let first = worker_pids(&server);
    let target = http(&server);
    for i in 0..20 {
        assert_eq!(http_get(&target, "/").status, 200, "request {i}");
    }
    server.wait_for_log("recycling worker");
    eventually("a new worker", &server, || {
        worker_pids(&server).is_disjoint(&first)
    });
}

#[test]
fn the_watchdog_aborts_a_worker_whose_loop_is_blocked_and_respawns_it() {
    let mut server = Instance::start("watchdog", &ini("worker-watchdog = 1\n"), &[]);
    let target = http(&server);
    let before = worker_pids(&server);
    let blocked = thread::spawn({
        let target = target.clone();
        move || {
            target.try_connect().and_then(|mut c| {
                c.send(b"GET /sleep?ms=20000&block=1 HTTP/1.1\r\nHost: t\r\n\r\n")
                    .try_read_response(false)
            })
        }
    });
    server.wait_for_log("blocked its event loop");
    server.wait_for_log("cause=signal:ABRT");
    assert!(
        blocked.join().expect("client").is_err(),
        "the blocked request is cut"
    );
    eventually("a fresh worker", &server, || {
        let now = worker_pids(&server);
        now.len() == 1 && now.is_disjoint(&before)
    });
    assert_eq!(http_get(&target, "/").status, 200);
}

#[test]
fn touching_the_reload_file_reloads_gracefully() {
    let mut server = Instance::start("touch", &ini("touch-reload = %dreload.touch\n"), &[]);
    let before = worker_pids(&server);
    thread::sleep(Duration::from_millis(1100)); // let the master take the file's first look
    server.scratch.write("reload.touch", "now");
    server.wait_for_log_count("rcontainer ready", 2);
    eventually("workers replaced", &server, || {
        worker_pids(&server).is_disjoint(&before)
    });
}

#[test]
fn pidfile_commands_reload_and_stop_the_master() {
    let mut server = Instance::start("pidfile-cmds", &ini("pidfile = %dapp.pid\n"), &[]);
    let pidfile = server.scratch.path().join("app.pid");
    let pidfile_arg = pidfile.to_str().expect("utf-8 path").to_string();
    let out = run_cli(server.scratch.path(), &["--reload", &pidfile_arg]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    server.wait_for_log_count("rcontainer ready", 2);
    let out = run_cli(server.scratch.path(), &["--graceful-stop", &pidfile_arg]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(server.wait_exit().code(), Some(0));
    let missing = run_cli(server.scratch.path(), &["--stop", &pidfile_arg]);
    assert_eq!(missing.code(), Some(1));
    assert!(missing.stderr.contains("app.pid"), "{}", missing.stderr);
}

#[test]
fn upgrade_of_a_masters_pidfile_is_refused_at_once_and_the_master_serves_on() {
    let mut server = Instance::start("pidfile-upgrade", &ini("pidfile = %dapp.pid\n"), &[]);
    let out = run_cli(server.scratch.path(), &["--upgrade", "app.pid"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("did not upgrade"), "{}", out.stderr);
    // USR2 still does what it does to a master: it logs what every core is doing.
    server.wait_for_log("busy cores=");
    assert_eq!(http_get(&http(&server), "/").status, 200);
}

/// SIGKILLs a daemon and the workers of its process group when dropped (a no-op once gone).
struct KillSessionOnDrop(i32);

impl Drop for KillSessionOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0);
        if let Ok(group) = nix::unistd::getpgid(Some(pid)) {
            let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
        }
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
    }
}

#[test]
fn daemonize_detaches_logs_to_the_file_and_stops_by_pidfile() {
    let scratch = Scratch::new("daemonize");
    let dir = scratch.path().display().to_string();
    scratch.write(
        "app.ini",
        &format!(
            "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\ndaemonize = {dir}/app.log\npidfile = {dir}/app.pid\n"
        ),
    );
    let out = run_cli(scratch.path(), &["--ini", "app.ini"]);
    assert_eq!(
        out.code(),
        Some(0),
        "the command returns once the daemon is ready: {}",
        out.stderr
    );
    let pidfile = scratch.path().join("app.pid");
    let pid: i32 = fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    // The daemon left the test's process group (setsid): kill its session if the test fails.
    let _reaper = KillSessionOnDrop(pid);
    let log_path = scratch.path().join("app.log");
    let log = fs::read_to_string(&log_path).expect("log file");
    let ready = log
        .lines()
        .find(|l| l.contains("rcontainer ready"))
        .expect("ready line in the log");
    let target = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sockets="))
        .and_then(Target::parse)
        .expect("socket in the ready line");
    assert_eq!(http_get(&target, "/daemonized").status, 200);
    let start = Instant::now();
    while !fs::read_to_string(&log_path).is_ok_and(|l| l.contains("GET /daemonized")) {
        assert!(
            start.elapsed() < DEADLINE,
            "no request line in the log file"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let stop = run_cli(scratch.path(), &["--stop", pidfile.to_str().expect("path")]);
    assert_eq!(stop.code(), Some(0), "{}", stop.stderr);
    let start = Instant::now();
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
        assert!(start.elapsed() < DEADLINE, "the daemon did not stop");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !pidfile.exists(),
        "the pidfile is removed when the master stops"
    );
}

#[test]
fn usr1_reopens_a_log_file_moved_away_by_logrotate() {
    // The log goes to the file, not to the harness: wait for the ready line there.
    let server = Instance::spawn("logreopen", &ini("logto = %dapp.log\n"), &[]);
    let log = server.scratch.path().join("app.log");
    let rotated = server.scratch.path().join("app.log.1");
    eventually("the log file has the ready line", &server, || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("rcontainer ready"))
    });
    fs::rename(&log, &rotated).expect("rotate");
    server.signal(Signal::SIGUSR1);
    eventually("a new log file with the stats line", &server, || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("stats workers="))
    });
}

#[test]
fn the_fifo_pauses_and_resumes_accepting() {
    let mut server = Instance::start("pause", &ini("master-fifo = %dfifo\n"), &[]);
    let fifo = server.scratch.path().join("fifo");
    fs::write(&fifo, "p").expect("fifo");
    eventually("paused in stats", &server, || {
        stats(&server)["workers"][0]["status"] == "pause"
    });
    // Nobody accepts now: a new connection waits in the kernel, and stats show it.
    let mut waiting = http(&server).connect();
    waiting.send(b"GET /queued HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    eventually("the queued connection in stats", &server, || {
        stats(&server)["listen_queue"] == 1
    });
    fs::write(&fifo, "p").expect("fifo");
    assert_eq!(waiting.read_response().status, 200, "served once resumed");
    eventually("accepting again", &server, || {
        stats(&server)["workers"][0]["accepting"] == 1
    });
    assert_eq!(http_get(&http(&server), "/").status, 200);
    server.wait_for_log("resumed accepting");
}

#[test]
fn a_replaced_binary_is_what_runs_after_a_touch_reload() {
    let bin_dir = Scratch::new("replaced-binary-bin");
    let program = bin_dir.path().join("rcontainer");
    fs::copy(Instance::binary(), &program).expect("copy the binary");
    let mut server = Instance::start_program(
        &program,
        "replaced-binary",
        &ini("touch-reload = %dreload.touch\n"),
    );
    let build_of = |line: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("build="))
            .expect("build= in the ready line")
            .to_string()
    };
    let before = build_of(&server.wait_for_log("rcontainer ready"));
    // Install a "new release" the way package managers do: write aside, rename over.
    let staged = bin_dir.path().join("rcontainer.new");
    fs::copy(Instance::binary(), &staged).expect("stage the new binary");
    fs::rename(&staged, &program).expect("install the new binary");
    thread::sleep(Duration::from_millis(1100));
    server.scratch.write("reload.touch", "go");
    let after = build_of(&server.wait_for_log_count("rcontainer ready", 2));
    assert_ne!(before, after, "the re-executed master runs the new file");
    assert_eq!(http_get(&http(&server), "/").status, 200);
}

#[test]
fn sigterm_with_fifty_slow_requests_in_flight_completes_them_all_then_exits_0() {
    let mut server = Instance::start("term-fifty", &ini("processes = 2\n"), &[]);
    let target = http(&server);
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let target = target.clone();
            thread::spawn(move || http_get(&target, "/sleep?ms=2000").status)
        })
        .collect();
    eventually("fifty requests in flight", &server, || {
        stats(&server)["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .flat_map(|w| w["cores"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["in_request"] == 1)
            .count()
            == 50
    });
    server.signal(Signal::SIGTERM);
    let statuses: Vec<u16> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(server.wait_exit().code(), Some(0));
}

#[test]
fn max_requests_20_with_3_workers_replaces_every_worker_over_200_requests() {
    let mut server = Instance::start(
        "recycle-three",
        &ini("processes = 3\nmax-requests = 20\n"),
        &[],
    );
    let original = worker_pids(&server);
    assert_eq!(original.len(), 3);
    let target = http(&server);
    let mut failures = 0;
    for _ in 0..200 {
        // New connections spread over the workers the kernel wakes.
        if http_get(&target, "/").status != 200 {
            failures += 1;
        }
    }
    assert_eq!(failures, 0);
    eventually("every original worker replaced", &server, || {
        let now = worker_pids(&server);
        now.len() == 3 && now.is_disjoint(&original)
    });
    server.wait_for_log("reason=max-requests");
}

#[test]
fn systemd_notify_gets_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let scratch = Scratch::new("notify-socket");
    let socket_path = scratch.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let notify_socket = socket_path.to_str().expect("utf-8 path");
    let mut server =
        Instance::spawn_with_env("notify", &ini(""), &[("NOTIFY_SOCKET", notify_socket)]);
    let mut messages = String::new();
    let receive_until = |wanted: &str, messages: &mut String| {
        let mut buf = [0u8; 4096];
        while !messages.contains(wanted) {
            let n = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {wanted}: {e}"));
            messages.push_str(&String::from_utf8_lossy(&buf[..n]));
            messages.push('\n');
        }
    };
    receive_until("READY=1", &mut messages);
    server.signal(Signal::SIGTERM);
    receive_until("STOPPING=1", &mut messages);
    assert_eq!(server.wait_exit().code(), Some(0));
}

#[test]
fn uid_and_gid_drop_privileges_after_binding() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to drop privileges");
        return;
    }
    let server = Instance::start("uid", &ini("uid = nobody\ngid = nogroup\n"), &[]);
    let doc = stats(&server);
    assert_eq!(doc["uid"], 65534);
    for pid in worker_pids(&server) {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("worker status");
        let uid_line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .expect("Uid line");
        assert!(
            uid_line.split_whitespace().skip(1).all(|id| id == "65534"),
            "{uid_line}"
        );
    }
    assert_eq!(http_get(&http(&server), "/").status, 200);
}

#[test]
fn fifo_workers_reload_and_brutal_reload_replace_every_worker() {
    let mut server = Instance::start(
        "fifo-reloads",
        &ini("processes = 2\nmaster-fifo = %dfifo\n"),
        &[],
    );
    let fifo = server.scratch.path().join("fifo");
    let first = worker_pids(&server);
    let load = Load::start(http(&server));
    fs::write(&fifo, "w").expect("fifo");
    server.wait_for_log("reloading workers count=2");
    eventually("workers reloaded", &server, || {
        let now = worker_pids(&server);
        now.len() == 2 && now.is_disjoint(&first)
    });
    let (_, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "a graceful workers reload drops nothing: {failures:?}"
    );

    let second = worker_pids(&server);
    fs::write(&fifo, "R").expect("fifo");
    server.wait_for_log_count("rcontainer ready", 2);
    eventually("brutally reloaded", &server, || {
        let now = worker_pids(&server);
        now.len() == 2 && now.is_disjoint(&second)
    });
    assert_eq!(
        stats(&server)["pid"].as_u64(),
        Some(u64::from(server.pid()))
    );
    assert_eq!(http_get(&http(&server), "/").status, 200);
}

#[test]
fn a_reload_reads_the_ini_again_and_retires_workers_no_longer_wanted() {
    let mut server = Instance::start("reload-fewer", &ini("processes = 3\n"), &[]);
    assert_eq!(worker_pids(&server).len(), 3);
    server.scratch.write("app.ini", &ini("processes = 1\n"));
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("rcontainer ready", 2);
    eventually("one worker left", &server, || {
        worker_pids(&server).len() == 1
    });
    // All three workers of the previous image drain and exit, not only the replaced one.
    server.wait_for_log_count("worker exited id=old", 3);
    let logs = server.logs();
    assert!(
        !logs.contains("RCONTAINER_"),
        "hand-over variables are not taken for options: {logs}"
    );
}

#[test]
fn max_worker_lifetime_and_reload_on_rss_recycle_workers_while_serving() {
    let mut server = Instance::start("lifetime", &ini("max-worker-lifetime = 1\n"), &[]);
    let first = worker_pids(&server);
    server.wait_for_log("reason=max-worker-lifetime");
    eventually("a younger worker", &server, || {
        let now = worker_pids(&server);
        now.len() == 1 && now.is_disjoint(&first)
    });
    assert_eq!(http_get(&http(&server), "/").status, 200);

    // Every worker is over 1 MB: each is replaced as soon as the master samples it.
    let mut server = Instance::start("rss", &ini("reload-on-rss = 1\n"), &[]);
    let first = worker_pids(&server);
    server.wait_for_log("reason=reload-on-rss");
    eventually("a fresh worker", &server, || {
        let now = worker_pids(&server);
        now.len() == 1 && now.is_disjoint(&first)
    });
    assert_eq!(http_get(&http(&server), "/").status, 200);
}

#[test]
fn env_chdir_and_umask_reach_the_workers() {
    let mut server = Instance::start(
        "process-setup",
        &ini("env = GREETING=hello there\nchdir = %d\numask = 027\n"),
        &[],
    );
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("rcontainer ready", 2);
    let doc = crate::harness::json(&http_get(&http(&server), "/?env=GREETING").body);
    assert_eq!(doc["env"]["GREETING"], "hello there", "{doc}");
    let dir = server.scratch.path().canonicalize().expect("scratch dir");
    for pid in worker_pids(&server) {
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd");
        assert_eq!(cwd, dir);
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        assert!(status.lines().any(|l| l == "Umask:\t0027"), "{status}");
    }
}

#[test]
fn a_socket_passed_by_systemd_socket_activation_is_served() {
    let launcher = "/usr/bin/systemd-socket-activate";
    assert!(
        std::path::Path::new(launcher).exists(),
        "{launcher} is missing: apt-get install systemd (as .ci/run does)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Instance::spawn_wrapped(
        &[launcher, "-l", &listen],
        "socket-activation",
        "[rcontainer]\nhttp-socket = fd://3\nmodule = echo\n",
    );
    // The launcher starts rcontainer on the first connection, which waits in the backlog.
    server.wait_for_log("Listening on");
    let target = Target::parse(&format!("http://{listen}")).expect("target");
    let first = thread::spawn({
        let target = target.clone();
        move || http_get(&target, "/first").status
    });
    let ready = server.wait_for_log("rcontainer ready");
    assert!(
        ready.contains(&format!("sockets=http://{listen}")),
        "{ready}"
    );
    assert_eq!(first.join().expect("first client"), 200);
    assert_eq!(http_get(&target, "/second").status, 200);
}

#[test]
fn sigterm_still_serves_connections_already_queued_in_the_kernel() {
    // One worker with one core and one connection slot: while they are busy, a second client
    // waits in the backlog.
    let mut server = Instance::start(
        "term-backlog",
        &ini("processes = 1\nasync = 1\nworker-connections = 1\nmodule = sleep\n"),
        &[],
    );
    let target = http(&server);
    let busy = thread::spawn({
        let target = target.clone();
        move || http_get(&target, "/sleep?ms=1500").status
    });
    eventually("the only core busy", &server, || {
        stats(&server)["workers"][0]["cores"][0]["in_request"] == 1
    });
    let mut queued = target.connect();
    queued.send(b"GET /sleep?ms=10 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    eventually("the second client queued", &server, || {
        stats(&server)["listen_queue"] == 1
    });
    server.signal(Signal::SIGTERM);
    assert_eq!(busy.join().expect("busy client"), 200);
    assert_eq!(
        queued.read_response().status,
        200,
        "the queued client is served, not reset"
    );
    assert_eq!(server.wait_exit().code(), Some(0));
}
