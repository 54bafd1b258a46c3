//! The emperor (`--emperor DIR`): real rcontainer vassals, each on a unix socket in the test's
//! directory (no port races; the socket file vanishing shows the vacuum), each with its own
//! stats socket (its master and worker pids).
//!
//! Until vassals report over the emperor link (1 spawned, 5 accepting, 17 loyal), these tests
//! learn readiness from the vassals themselves: their stats sockets and HTTP answers. Where
//! those reports will let a test be tighter, a comment says so.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::harness::client::{Target, http_get, try_http_get};
use crate::harness::{DEADLINE, Instance, Scratch, Signal, eventually, is_alive, try_stats_at};

/// A vassal: HTTP on `<name>.sock`, stats on `<name>.stats`, both beside its file.
const VASSAL: &str = "[rcontainer]
http-socket = %d%n.sock
stats = %d%n.stats
module = hello
mount = /sleep=sleep
vacuum = true
async = 8
";

/// An emperor over `<scratch>/vassals`, with its stats on `<scratch>/emperor.stats`.
struct Emperor {
    instance: Instance,
    vassals: PathBuf,
}

impl Emperor {
    /// Writes `files` (name, INI text) into the vassal directory, starts the emperor with
    /// `extra` arguments and waits for its first scan.
    fn start(name: &str, files: &[(&str, &str)], extra: &[&str]) -> Emperor {
        Emperor::start_with_env(name, files, extra, &[])
    }

    /// [`Emperor::start`] with extra environment variables.
    fn start_with_env(
        name: &str,
        files: &[(&str, &str)],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Emperor {
        let scratch = Scratch::new(name);
        scratch.write_dir("vassals", files);
        let mut args = vec!["--emperor", "vassals", "--emperor-stats", "emperor.stats"];
        args.extend_from_slice(extra);
        let mut emperor = Emperor::spawn(scratch, &args, env);
        emperor.instance.wait_for_log("emperor ready");
        emperor
    }

    /// Starts an emperor with `args` in `scratch` (its vassal directory made) without waiting.
    fn spawn(scratch: Scratch, args: &[&str], env: &[(&str, &str)]) -> Emperor {
        let vassals = scratch.path().join("vassals");
        let instance = Instance::spawn_in(scratch, Instance::binary(), args, env, None);
        Emperor { instance, vassals }
    }

    /// An emperor over vassal `a` logging, as its vassal does, to `all.log` (`--logto`), once
    /// `a` serves.
    fn start_logging_to_file(name: &str) -> Emperor {
        let scratch = Scratch::new(name);
        scratch.write("vassals/a.ini", VASSAL);
        let args = ["--emperor", "vassals", "--logto", "all.log"];
        let emperor = Emperor::spawn(scratch, &args, &[]);
        emperor.wait_serving("a");
        emperor
    }

    fn file(&self, vassal: &str) -> PathBuf {
        self.vassals.join(format!("{vassal}.ini"))
    }

    fn write(&self, vassal: &str, text: &str) {
        std::fs::write(self.file(vassal), text).expect("write a vassal file");
    }

    /// Sets the file's modification time to now (what `touch` does).
    fn touch(&self, vassal: &str) {
        let file = std::fs::File::options()
            .write(true)
            .open(self.file(vassal))
            .expect("open the vassal file");
        file.set_modified(SystemTime::now()).expect("touch");
    }

    fn socket(&self, vassal: &str) -> PathBuf {
        self.vassals.join(format!("{vassal}.sock"))
    }

    fn target(&self, vassal: &str) -> Target {
        Target::parse(&format!("http://{}", self.socket(vassal).display())).expect("a target")
    }

    /// The vassal's own stats, when it answers now.
    fn vassal_stats(&self, vassal: &str) -> Option<serde_json::Value> {
        try_stats_at(&self.vassals.join(format!("{vassal}.stats")))
    }

    /// The vassal's master pid and worker pids, when its stats answer now.
    fn pids(&self, vassal: &str) -> Option<(u64, Vec<u64>)> {
        let stats = self.vassal_stats(vassal)?;
        let master = stats["pid"].as_u64()?;
        let workers = stats["workers"].as_array()?;
        let pids = workers.iter().filter_map(|w| w["pid"].as_u64()).collect();
        Some((master, pids))
    }

    /// Whether the vassal answers `GET /` with its app now.
    fn serves(&self, vassal: &str) -> bool {
        try_http_get(&self.target(vassal), "/")
            .is_ok_and(|r| r.status == 200 && r.text() == "Hello World")
    }

    // The vassal's Accepting report (5) will make this a wait on emperor stats.
    fn wait_serving(&self, vassal: &str) {
        eventually(&format!("vassal {vassal} serves"), &self.instance, || {
            self.serves(vassal) && self.pids(vassal).is_some()
        });
    }

    /// The emperor's stats document.
    fn stats(&self) -> serde_json::Value {
        let path = self.instance.scratch.path().join("emperor.stats");
        try_stats_at(&path).unwrap_or_else(|| {
            panic!(
                "the emperor's stats do not answer\n{}",
                self.instance.logs()
            )
        })
    }

    /// The emperor's stats entry of `vassal`, if it lists it.
    fn entry(&self, vassal: &str) -> Option<serde_json::Value> {
        let id = format!("{vassal}.ini");
        let stats = self.stats();
        let list = stats["vassals"].as_array()?;
        list.iter().find(|v| v["id"] == id.as_str()).cloned()
    }
}

/// Requests to `target` from `threads` threads in a loop until the flag is set: how many
/// succeeded and how many failed.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(target: &Target, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let target = target.clone();
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match try_http_get(&target, "/") {
                            Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Stops the load: (succeeded, failed).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("a load thread");
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Starts `GET /sleep/?ms=2000` on `vassal` and waits until its worker is in that request.
fn start_slow_request(emperor: &Emperor, vassal: &str) -> thread::JoinHandle<u16> {
    let target = emperor.target(vassal);
    let request = thread::spawn(move || http_get(&target, "/sleep/?ms=2000").status);
    eventually("the slow request is in flight", &emperor.instance, || {
        emperor.vassal_stats(vassal).is_some_and(|stats| {
            stats["workers"].as_array().is_some_and(|workers| {
                workers.iter().any(|w| {
                    w["cores"]
                        .as_array()
                        .is_some_and(|cores| cores.iter().any(|c| c["in_request"] == 1))
                })
            })
        })
    });
    request
}

fn three_vassals() -> [(&'static str, &'static str); 3] {
    [("a.ini", VASSAL), ("b.ini", VASSAL), ("c.ini", VASSAL)]
}

#[test]
fn three_vassal_files_start_three_instances_and_a_fourth_file_added_starts_too() {
    let emperor = Emperor::start("emperor-start", &three_vassals(), &[]);
    for vassal in ["a", "b", "c"] {
        emperor.wait_serving(vassal);
    }
    let masters: Vec<u64> = ["a", "b", "c"]
        .iter()
        .map(|v| emperor.pids(v).expect("stats").0)
        .collect();
    assert!(
        masters[0] != masters[1] && masters[1] != masters[2] && masters[0] != masters[2],
        "three instances: {masters:?}"
    );
    let stats = emperor.stats();
    assert_eq!(
        stats["vassals"].as_array().map(Vec::len),
        Some(3),
        "{stats}"
    );
    assert_eq!(stats["emperor_tyrant"], 0);
    assert!(stats["emperor"][0].as_str().unwrap().ends_with("vassals"));
    let a = emperor.entry("a").expect("a.ini is listed");
    assert_eq!(a["pid"].as_u64(), Some(masters[0]), "{a}");
    assert_eq!(a["state"], "running");

    emperor.write("d", VASSAL);
    emperor.wait_serving("d");
    assert!(emperor.entry("d").is_some());
}

#[test]
fn touching_a_vassal_file_reloads_only_that_vassal_without_a_failed_request() {
    let emperor = Emperor::start("emperor-touch", &three_vassals(), &[]);
    for vassal in ["a", "b", "c"] {
        emperor.wait_serving(vassal);
    }
    let (a_master, a_workers) = emperor.pids("a").expect("a's stats");
    let b = emperor.pids("b").expect("b's stats");
    let c = emperor.pids("c").expect("c's stats");
    let load = Load::start(&emperor.target("a"), 3);
    emperor.touch("a");
    // The vassal's Accepting report after its reload will be visible in emperor stats too.
    eventually("a's workers are replaced", &emperor.instance, || {
        emperor
            .pids("a")
            .is_some_and(|(_, workers)| !workers.is_empty() && workers != a_workers)
    });
    // Some more requests to the new workers before the load stops.
    let ok_before = load.ok.load(Ordering::Relaxed);
    eventually("the new workers answer", &emperor.instance, || {
        load.ok.load(Ordering::Relaxed) > ok_before + 20
    });
    let (ok, failed) = load.finish();
    assert_eq!(failed, 0, "{ok} requests succeeded, {failed} failed");
    assert_eq!(
        emperor.pids("a").expect("a's stats").0,
        a_master,
        "a reloads in place"
    );
    assert_eq!(emperor.pids("b"), Some(b), "b is not reloaded");
    assert_eq!(emperor.pids("c"), Some(c), "c is not reloaded");
}

#[test]
fn removing_a_vassal_file_stops_it_gracefully_and_vacuums_its_socket() {
    let emperor = Emperor::start("emperor-remove", &three_vassals(), &[]);
    for vassal in ["a", "b", "c"] {
        emperor.wait_serving(vassal);
    }
    let (master, workers) = emperor.pids("a").expect("a's stats");
    let request = start_slow_request(&emperor, "a");
    std::fs::remove_file(emperor.file("a")).expect("remove a.ini");
    assert_eq!(
        request.join().expect("the slow request"),
        200,
        "the in-flight request completes"
    );
    eventually("a's master and workers exit", &emperor.instance, || {
        !is_alive(master) && workers.iter().all(|&w| !is_alive(w))
    });
    eventually("a's socket is vacuumed", &emperor.instance, || {
        !emperor.socket("a").exists()
    });
    eventually("a is no longer listed", &emperor.instance, || {
        emperor.entry("a").is_none()
    });
    assert!(emperor.serves("b") && emperor.serves("c"));
}

#[test]
fn a_vassal_master_killed_with_sigkill_is_respawned() {
    let emperor = Emperor::start("emperor-kill", &[("a.ini", VASSAL)], &[]);
    emperor.wait_serving("a");
    let (master, _) = emperor.pids("a").expect("a's stats");
    kill_and_wait_respawned(&emperor, "a", master);
    let a = emperor.entry("a").expect("a is listed");
    assert!(a["respawns"].as_u64() >= Some(1), "{a}");
}

#[test]
fn a_broken_edit_keeps_the_old_configuration_serving_and_fixing_it_reloads() {
    let emperor = Emperor::start("emperor-broken", &[("a.ini", VASSAL)], &[]);
    emperor.wait_serving("a");
    let before = emperor.pids("a").expect("a's stats");
    emperor.write("a", &format!("{VASSAL}prcesses = 2\n"));
    eventually("the error is in emperor stats", &emperor.instance, || {
        emperor.entry("a").is_some_and(|a| {
            a["config_error"]
                .as_str()
                .is_some_and(|e| e.contains("prcesses: unknown option"))
        })
    });
    assert!(
        emperor.instance.logs().contains("does not load"),
        "the error is logged\n{}",
        emperor.instance.logs()
    );
    assert!(emperor.serves("a"), "the old configuration serves");
    assert_eq!(emperor.pids("a"), Some(before.clone()), "not reloaded");

    emperor.write("a", &format!("{VASSAL}processes = 2\n"));
    eventually("the fixed file is loaded", &emperor.instance, || {
        emperor
            .pids("a")
            .is_some_and(|(_, workers)| workers.len() == 2 && !workers.contains(&before.1[0]))
    });
    assert!(emperor.serves("a"));
    let a = emperor.entry("a").expect("a is listed");
    assert!(a["config_error"].is_null(), "{a}");
}

#[test]
fn a_vassal_that_never_loads_is_retried_with_growing_delays_and_others_reload_at_once() {
    let broken = "[rcontainer]\nnonsense = 1\n";
    let emperor = Emperor::start(
        "emperor-backoff",
        &[("good.ini", VASSAL), ("bad.ini", broken)],
        &[],
    );
    emperor.wait_serving("good");
    // The delays seen in emperor stats while bad.ini keeps failing: 1 s, 2 s, 4 s (+ jitter).
    let mut delays: Vec<u64> = Vec::new();
    eventually("three growing delays", &emperor.instance, || {
        if let Some(bad) = emperor.entry("bad")
            && let Some(ms) = bad["backoff_ms"].as_u64()
            && ms > 0
            && delays.last() != Some(&ms)
        {
            delays.push(ms);
        }
        delays.len() >= 3
    });
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]) && delays[0] >= 1000,
        "growing delays: {delays:?}"
    );
    let bad = emperor.entry("bad").expect("bad.ini is listed");
    assert_eq!(bad["state"], "backoff", "{bad}");
    assert!(
        bad["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("nonsense: unknown option")),
        "why it does not load: {bad}"
    );
    let respawns = bad["respawns"].as_u64();
    assert!(respawns >= Some(2), "{bad}");
    assert!(
        emperor.stats()["blacklist"]
            .as_array()
            .is_some_and(|b| b.iter().any(|e| e["id"] == "bad.ini"))
    );

    // bad.ini waits about 4 s now; good.ini's reload does not wait for that.
    let (_, workers) = emperor.pids("good").expect("good's stats");
    emperor.touch("good");
    eventually("good is reloaded", &emperor.instance, || {
        emperor
            .pids("good")
            .is_some_and(|(_, now)| !now.is_empty() && now != workers)
    });
    let bad = emperor.entry("bad").expect("bad.ini is listed");
    assert_eq!(
        bad["respawns"].as_u64(),
        respawns,
        "good reloaded within bad's back-off: {bad}"
    );
}

#[test]
fn term_to_the_emperor_drains_every_vassal_and_leaves_no_process() {
    let mut emperor = Emperor::start("emperor-term", &three_vassals(), &[]);
    let mut pids = Vec::new();
    for vassal in ["a", "b", "c"] {
        emperor.wait_serving(vassal);
        let (master, workers) = emperor.pids(vassal).expect("stats");
        pids.push(master);
        pids.extend(workers);
    }
    let request = start_slow_request(&emperor, "b");
    emperor.instance.signal(Signal::SIGTERM);
    assert_eq!(request.join().expect("the slow request"), 200);
    let status = emperor.instance.wait_exit();
    assert!(status.success(), "{status}\n{}", emperor.instance.logs());
    eventually("no vassal process is left", &emperor.instance, || {
        pids.iter().all(|&pid| !is_alive(pid))
    });
    for vassal in ["a", "b", "c"] {
        assert!(
            !emperor.socket(vassal).exists(),
            "{vassal}'s socket is vacuumed"
        );
    }
}

#[test]
fn a_hundred_vassals_all_serve() {
    let small = "[rcontainer]\nhttp-socket = %d%n.sock\nmodule = hello\nvacuum = true\nasync = 2\n";
    let names: Vec<String> = (0..100).map(|n| format!("v{n:03}")).collect();
    let files: Vec<(String, &str)> = names.iter().map(|n| (format!("{n}.ini"), small)).collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (f.as_str(), *t)).collect();
    let mut emperor = Emperor::start("emperor-hundred", &files, &[]);
    // A hundred instances boot on a shared machine: a longer deadline than one wait, and no
    // assertion on how long it took.
    let deadline = Instant::now() + DEADLINE * 4;
    let mut waiting: Vec<&String> = names.iter().collect();
    while !waiting.is_empty() {
        waiting.retain(|name| !emperor.serves(name));
        assert!(
            Instant::now() < deadline,
            "{} vassals do not serve: {waiting:?}\n{}",
            waiting.len(),
            emperor.instance.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        emperor.stats()["vassals"].as_array().map(Vec::len),
        Some(100)
    );
    emperor.instance.signal(Signal::SIGTERM);
    assert!(emperor.instance.wait_exit().success());
}

#[test]
fn a_directory_that_does_not_exist_is_a_start_error() {
    let scratch = Scratch::new("emperor-nodir");
    let out = crate::harness::run_cli(scratch.path(), &["--emperor", "nowhere"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("not a directory"), "{}", out.stderr);
}

#[test]
fn hup_to_the_emperor_reloads_every_vassal_in_place() {
    let mut emperor = Emperor::start("emperor-hup", &three_vassals(), &[]);
    let mut before = Vec::new();
    for vassal in ["a", "b", "c"] {
        emperor.wait_serving(vassal);
        before.push(emperor.pids(vassal).expect("stats"));
    }
    emperor.instance.signal(Signal::SIGHUP);
    emperor.instance.wait_for_log("reloading every vassal");
    // With Accepting reports, each vassal waits for the previous one to accept again.
    for (vassal, (master, workers)) in ["a", "b", "c"].iter().zip(&before) {
        eventually(&format!("{vassal} is reloaded"), &emperor.instance, || {
            emperor.pids(vassal).is_some_and(|(now_master, now)| {
                now_master == *master && !now.is_empty() && now != *workers
            })
        });
    }
}

#[test]
fn usr1_logs_one_status_line_per_vassal() {
    let mut emperor = Emperor::start("emperor-usr1", &three_vassals(), &[]);
    for vassal in ["a", "b", "c"] {
        emperor.wait_serving(vassal);
    }
    emperor.instance.signal(Signal::SIGUSR1);
    emperor.instance.wait_for_log("governing 3 vassals");
    for vassal in ["a", "b", "c"] {
        let line = emperor
            .instance
            .wait_for_log(&format!("vassal id={vassal}.ini state=running"));
        assert!(line.contains("config_error=none"), "{line}");
    }
}

#[test]
fn the_emperor_writes_its_pidfile_and_the_fifo_letter_q_stops_it() {
    let mut emperor = Emperor::start(
        "emperor-fifo",
        &[("a.ini", VASSAL)],
        &["--pidfile", "emperor.pid", "--master-fifo", "fifo"],
    );
    emperor.wait_serving("a");
    let (master, _) = emperor.pids("a").expect("a's stats");
    let dir = emperor.instance.scratch.path().to_path_buf();
    let pidfile = std::fs::read_to_string(dir.join("emperor.pid")).expect("the pidfile");
    assert_eq!(pidfile.trim(), emperor.instance.pid().to_string());
    std::fs::write(dir.join("fifo"), "q\n").expect("write to the fifo");
    assert!(emperor.instance.wait_exit().success());
    assert!(!is_alive(master), "the vassal stopped first");
    assert!(!dir.join("emperor.pid").exists(), "the pidfile is removed");
}

#[test]
fn systemd_hears_the_emperor_ready_and_governing_and_vassals_do_not_inherit_the_socket() {
    use std::os::unix::net::UnixDatagram;
    let notify = Scratch::new("emperor-notify-socket");
    let path = notify.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let env = [("NOTIFY_SOCKET", path.to_str().expect("utf-8 path"))];
    let emperor = Emperor::start_with_env(
        "emperor-notify",
        &[("a.ini", VASSAL), ("b.ini", VASSAL)],
        &[],
        &env,
    );
    let mut messages = String::new();
    let mut buf = [0u8; 4096];
    while !messages.contains("STATUS=governing 2 vassals") {
        let n = socket.recv(&mut buf).expect("a notification");
        messages.push_str(&String::from_utf8_lossy(&buf[..n]));
        messages.push('\n');
    }
    emperor.wait_serving("a");
    emperor.wait_serving("b");
    socket.set_nonblocking(true).expect("non-blocking");
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push_str(&String::from_utf8_lossy(&buf[..n]));
        messages.push('\n');
    }
    assert_eq!(
        messages.matches("READY=1").count(),
        1,
        "only the emperor notifies: {messages}"
    );
}

#[test]
fn a_vassal_exiting_with_the_exile_code_waits_for_its_file_to_change() {
    let scratch_wrapper = Scratch::new("emperor-exile-wrapper");
    let wrapper = scratch_wrapper.write_executable("exile.sh", "#!/bin/sh\nexit 26\n");
    let mut emperor = Emperor::start(
        "emperor-exile",
        &[("a.ini", VASSAL)],
        &["--emperor-wrapper", &wrapper],
    );
    emperor.instance.wait_for_log("exiled itself");
    let a = emperor.entry("a").expect("a.ini is listed");
    assert_eq!(a["state"], "exiled", "{a}");
    assert_eq!(a["respawns"], 0, "{a}");
    emperor.touch("a");
    emperor
        .instance
        .wait_for_log_count("vassal a.ini started", 2);
    emperor.instance.wait_for_log_count("exiled itself", 2);
}

#[test]
fn a_daemonized_emperor_detaches_and_graceful_stop_of_its_pidfile_stops_every_vassal() {
    let scratch = Scratch::new("emperor-daemon");
    let vassals = scratch.write_dir("vassals", &[("a.ini", VASSAL)]);
    let out = crate::harness::run_cli(
        scratch.path(),
        &[
            "--emperor",
            "vassals",
            "--daemonize",
            "emperor.log",
            "--pidfile",
            "emperor.pid",
        ],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let pid: i32 = std::fs::read_to_string(scratch.path().join("emperor.pid"))
        .expect("the pidfile")
        .trim()
        .parse()
        .expect("a pid");
    // Whatever happens below, the daemon's process group goes with the test.
    struct Group(nix::unistd::Pid);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(self.0, Signal::SIGKILL);
        }
    }
    let group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).expect("its group");
    let _group = Group(group);
    let socket = vassals.join("a.sock");
    let target = Target::parse(&format!("http://{}", socket.display())).expect("a target");
    let start = Instant::now();
    while target.try_connect().is_err() {
        assert!(start.elapsed() < DEADLINE, "the vassal never listened");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http_get(&target, "/").status, 200);
    let stop = crate::harness::run_cli(scratch.path(), &["--graceful-stop", "emperor.pid"]);
    assert_eq!(stop.code(), Some(0), "{}", stop.stderr);
    let start = Instant::now();
    while is_alive(pid as u64) || socket.exists() {
        assert!(
            start.elapsed() < DEADLINE,
            "the emperor or its vassal is still there"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(scratch.path().join("emperor.log")).unwrap_or_default();
    assert!(log.contains("emperor exits"), "{log}");
}

#[test]
fn the_example_emperor_and_its_vassals_load() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = Scratch::new("emperor-examples");
    for file in [
        "conf/emperor.ini",
        "conf/vassals/hello.ini",
        "conf/vassals/echo.ini",
    ] {
        let path = repo.join(file);
        let out = crate::harness::run_cli(
            scratch.path(),
            &[
                "--ini",
                path.to_str().expect("utf-8 path"),
                "--check-config",
            ],
        );
        assert_eq!(out.code(), Some(0), "{file}: {}", out.stderr);
    }
}

/// A vassal that speaks the emperor protocol (as rcontainer vassals will, and uWSGI's do):
/// reports spawned, accepting and one heartbeat, then falls silent; logs every command byte it
/// reads from the link and exits on 0 (stop now) or 2 (stop).
const FAKE_VASSAL: &str = r#"#!/bin/bash
fd="$UWSGI_EMPEROR_FD"
printf '\001\005\032' >&"$fd"
echo "fake vassal $$ reported"
while true; do
  byte=$(dd bs=1 count=1 status=none <&"$fd" | od -An -tu1 | tr -d ' ')
  if [ -z "$byte" ]; then echo "fake vassal $$ lost its emperor"; exit 1; fi
  echo "fake vassal $$ got command $byte"
  case "$byte" in 0|2) exit 0;; esac
done
"#;

/// Writes [`FAKE_VASSAL`] into a scratch dir of its own; its path.
fn fake_vassal(scratch: &Scratch) -> String {
    scratch.write_executable("fake-vassal.sh", FAKE_VASSAL)
}

#[test]
fn a_vassal_that_misses_its_heartbeat_is_reloaded_over_the_link_then_killed_and_respawned() {
    let scripts = Scratch::new("emperor-heartbeat-script");
    let wrapper = fake_vassal(&scripts);
    let mut emperor = Emperor::start(
        "emperor-heartbeat",
        &[("a.ini", "")],
        &[
            "--emperor-wrapper",
            &wrapper,
            "--emperor-required-heartbeat",
            "1",
        ],
    );
    emperor.instance.wait_for_log("reported");
    eventually("a is ready and accepting", &emperor.instance, || {
        emperor
            .entry("a")
            .is_some_and(|a| a["ready"] == 1 && a["accepting"] == 1 && a["last_heartbeat"] != 0)
    });
    emperor
        .instance
        .wait_for_log("missed its heartbeat: reloading it");
    emperor.instance.wait_for_log("got command 1");
    emperor
        .instance
        .wait_for_log("still sends no heartbeat: SIGKILL");
    emperor.instance.wait_for_log_count("reported", 2);
    let a = emperor.entry("a").expect("a is listed");
    assert!(a["respawns"].as_u64() >= Some(1), "{a}");
}

#[test]
fn a_vassal_that_speaks_the_protocol_is_told_over_the_link_to_stop() {
    let scripts = Scratch::new("emperor-link-stop-script");
    let wrapper = fake_vassal(&scripts);
    let mut emperor = Emperor::start(
        "emperor-link-stop",
        &[("a.ini", ""), ("b.ini", "")],
        &[
            "--emperor-wrapper",
            &wrapper,
            "--emperor-required-heartbeat",
            "0",
        ],
    );
    emperor.instance.wait_for_log_count("reported", 2);
    eventually("both report accepting", &emperor.instance, || {
        ["a", "b"]
            .iter()
            .all(|v| emperor.entry(v).is_some_and(|e| e["accepting"] == 1))
    });
    // Not checked with --check-config (not rcontainer): the change reloads it at once.
    emperor.touch("b");
    emperor.instance.wait_for_log("got command 1");
    std::fs::remove_file(emperor.file("a")).expect("remove a.ini");
    emperor.instance.wait_for_log("got command 2");
    emperor.instance.wait_for_log("vassal a.ini stopped");
    emperor.instance.signal(Signal::SIGINT);
    emperor.instance.wait_for_log("got command 0");
    assert!(emperor.instance.wait_exit().success());
}

#[test]
fn reload_of_the_emperors_pidfile_is_answered_and_reloads_its_vassals() {
    let mut emperor = Emperor::start(
        "emperor-reload-pidfile",
        &[("a.ini", VASSAL)],
        &["--pidfile", "emperor.pid"],
    );
    emperor.wait_serving("a");
    let (master, workers) = emperor.pids("a").expect("a's stats");
    let out = crate::harness::run_cli(
        emperor.instance.scratch.path(),
        &["--reload", "emperor.pid"],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    eventually("a is reloaded", &emperor.instance, || {
        emperor
            .pids("a")
            .is_some_and(|(m, now)| m == master && !now.is_empty() && now != workers)
    });
    emperor.instance.wait_for_log("reloading every vassal");
}

#[test]
fn a_glob_monitor_runs_the_files_it_matches_and_finds_new_directories() {
    let scratch = Scratch::new("emperor-glob");
    for app in ["one", "two"] {
        scratch.write(&format!("apps/{app}/vassal.ini"), VASSAL);
    }
    scratch.write("apps/two/other.ini", VASSAL);
    let mut emperor = Instance::spawn_in(
        scratch,
        Instance::binary(),
        &["--emperor", "apps/*/vassal.ini", "--emperor-freq", "1"],
        &[],
        None,
    );
    emperor.wait_for_log("emperor ready");
    let apps = emperor.scratch.path().join("apps");
    let serves = |app: &str| {
        let socket = apps.join(app).join("vassal.sock");
        let target = Target::parse(&format!("http://{}", socket.display())).expect("a target");
        try_http_get(&target, "/").is_ok_and(|r| r.status == 200)
    };
    eventually("both matches serve", &emperor, || {
        serves("one") && serves("two")
    });
    assert!(
        !apps.join("two").join("other.sock").exists(),
        "a file the glob does not match is not a vassal"
    );
    // A directory created later: seen by inotify on apps/ or by the rescan.
    emperor.scratch.write("apps/three/vassal.ini", VASSAL);
    eventually("the new match serves", &emperor, || serves("three"));
}

#[test]
fn a_vassal_starts_with_no_signal_blocked_and_sigpipe_at_its_default() {
    let scripts = Scratch::new("emperor-signals-script");
    let wrapper = scripts.write_executable(
        "signals.sh",
        "#!/bin/bash\nawk '/^Sig(Blk|Ign)/ {print \"vassal-signals\", $1, $2}' /proc/self/status\nexit 26\n",
    );
    let mut emperor = Emperor::start(
        "emperor-signals",
        &[("a.ini", "")],
        &["--emperor-wrapper", &wrapper],
    );
    let mask = |line: String| {
        let hex = line.split_whitespace().last().expect("a mask").to_owned();
        u64::from_str_radix(&hex, 16).unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let blocked = mask(emperor.instance.wait_for_log("vassal-signals SigBlk:"));
    let ignored = mask(emperor.instance.wait_for_log("vassal-signals SigIgn:"));
    assert_eq!(blocked, 0, "no signal blocked");
    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
    assert_eq!(ignored & sigpipe, 0, "SIGPIPE not ignored: {ignored:x}");
}

#[test]
fn logto_sends_the_emperors_log_and_its_vassals_to_one_file() {
    let mut emperor = Emperor::start_logging_to_file("emperor-logto");
    let (master, _) = emperor.pids("a").expect("a's stats");
    let log = emperor.instance.scratch.path().join("all.log");
    eventually("both write to the log file", &emperor.instance, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("emperor ready") && text.contains(&format!("master[{master}]"))
    });
    emperor.instance.signal(Signal::SIGTERM);
    assert!(emperor.instance.wait_exit().success());
}

#[test]
fn usr1_after_a_rotation_sends_the_emperors_and_its_vassals_lines_to_the_new_file() {
    let mut emperor = Emperor::start_logging_to_file("emperor-rotate");
    let dir = emperor.instance.scratch.path().to_path_buf();
    let (log, rotated) = (dir.join("all.log"), dir.join("all.log.1"));
    // What logrotate does: move the file away, then tell the emperor.
    std::fs::rename(&log, &rotated).expect("rotate the log");
    emperor.instance.signal(Signal::SIGUSR1);
    eventually("the emperor reopens its log", &emperor.instance, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("reopened log file"))
    });
    // The vassal's request log line of a request after the rotation lands in the new file.
    let (master, _) = emperor.pids("a").expect("a's stats");
    eventually(
        "the vassal's lines go to the new file",
        &emperor.instance,
        || {
            let mut conn = emperor.target("a").connect();
            conn.send(b"GET /after-rotation HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let _ = conn.try_read_response(false);
            std::fs::read_to_string(&log).is_ok_and(|t| {
                t.contains("GET /after-rotation") && t.contains(&format!("master[{master}]"))
            })
        },
    );
    emperor.instance.signal(Signal::SIGTERM);
    assert!(emperor.instance.wait_exit().success());
}

/// A uWSGI vassal: uWSGI's internal routing answers 200 (Debian's uwsgi-core has no request
/// plugin to load, and needs none for this).
const UWSGI_VASSAL: &str = "[uwsgi]
master = true
http-socket = %d%n.sock
stats = %d%n.stats
route-run = return:200
processes = 1
vacuum = true
";

#[test]
fn a_uwsgi_vassal_runs_under_the_emperor_reports_ready_and_loyal_reloads_and_stops() {
    let uwsgi = std::path::Path::new("/usr/bin/uwsgi");
    if !uwsgi.exists() {
        eprintln!("skipped: /usr/bin/uwsgi is not installed (apt-get install uwsgi-core)");
        return;
    }
    let mut emperor = Emperor::start(
        "emperor-uwsgi",
        &[("u.ini", UWSGI_VASSAL)],
        &["--binary-path", "/usr/bin/uwsgi"],
    );
    let target = emperor.target("u");
    let answers = || try_http_get(&target, "/").is_ok_and(|r| r.status == 200);
    eventually("the uWSGI vassal serves", &emperor.instance, || {
        answers() && emperor.pids("u").is_some_and(|(_, w)| !w.is_empty())
    });
    // uWSGI reports over the link: ready (1), accepting (5), then loyal (17) after a request.
    eventually("ready, accepting and loyal", &emperor.instance, || {
        emperor.entry("u").is_some_and(|u| {
            u["ready"] == 1 && u["accepting"] == 1 && u["loyal"].as_u64() > Some(0)
        })
    });
    let (master, workers) = emperor.pids("u").expect("u's stats");
    // Not rcontainer: no --check-config; the change is sent over the link (1) at once.
    emperor.touch("u");
    emperor
        .instance
        .wait_for_log("received message 1 from emperor");
    eventually("u's worker is replaced", &emperor.instance, || {
        answers()
            && emperor
                .pids("u")
                .is_some_and(|(m, now)| m == master && !now.is_empty() && now != workers)
    });
    std::fs::remove_file(emperor.file("u")).expect("remove u.ini");
    emperor
        .instance
        .wait_for_log("received message 2 from emperor");
    eventually("the uWSGI vassal is gone", &emperor.instance, || {
        !is_alive(master) && emperor.entry("u").is_none()
    });
}

#[test]
fn vassal_set_gives_every_vassal_a_default_that_its_own_ini_overrides() {
    let emperor = Emperor::start(
        "emperor-vassal-set",
        &[
            ("a.ini", VASSAL),
            ("b.ini", &format!("{VASSAL}processes = 3\n")),
        ],
        &["--vassal-set", "processes=2"],
    );
    emperor.wait_serving("a");
    emperor.wait_serving("b");
    eventually("a has the default, b its own", &emperor.instance, || {
        emperor.pids("a").is_some_and(|(_, w)| w.len() == 2)
            && emperor.pids("b").is_some_and(|(_, w)| w.len() == 3)
    });
}

/// An emperor run from a copy of the binary in its scratch directory (so that the test can
/// install a "new release" over it), with a pidfile and a master FIFO; `ini`: run from an
/// `emperor.ini` of this text instead of `--emperor vassals`.
fn start_upgradable(name: &str, files: &[(&str, &str)], ini: Option<&str>) -> (Emperor, PathBuf) {
    let scratch = Scratch::new(name);
    let vassals = scratch.write_dir("vassals", files);
    let program = scratch.path().join("rcontainer");
    std::fs::copy(Instance::binary(), &program).expect("copy the binary");
    let mut args = vec!["--pidfile", "emperor.pid", "--master-fifo", "emperor.fifo"];
    match ini {
        Some(text) => {
            scratch.write("emperor.ini", text);
            args.extend(["--ini", "emperor.ini"]);
        }
        None => args.extend(["--emperor", "vassals", "--emperor-stats", "emperor.stats"]),
    }
    let instance = Instance::spawn_in(scratch, &program, &args, &[], None);
    let mut emperor = Emperor { instance, vassals };
    emperor.instance.wait_for_log("emperor ready");
    (emperor, program)
}

/// Installs a new release over `program` the way package managers do: write aside, rename.
fn install_new_binary(program: &std::path::Path) {
    let staged = program.with_extension("new");
    std::fs::copy(Instance::binary(), &staged).expect("stage the new binary");
    std::fs::rename(&staged, program).expect("install the new binary");
}

/// The inode of the file process `pid` runs.
fn exe_inode(pid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .expect("stat /proc/PID/exe")
        .ino()
}

/// Touches `vassal`'s file and waits until its master of `before` (master, workers) runs
/// new workers: a reload in place.
fn touch_and_wait_reloaded(emperor: &Emperor, vassal: &str, before: &(u64, Vec<u64>)) {
    let (master, workers) = before;
    emperor.touch(vassal);
    let what = format!("{vassal}'s workers are replaced");
    eventually(&what, &emperor.instance, || {
        emperor
            .pids(vassal)
            .is_some_and(|(m, w)| m == *master && !w.is_empty() && w != *workers)
    });
}

/// SIGKILLs `vassal`'s `master` and waits until a new master serves.
fn kill_and_wait_respawned(emperor: &Emperor, vassal: &str, master: u64) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(master as i32), Signal::SIGKILL)
        .expect("kill -9");
    eventually(&format!("{vassal} is respawned"), &emperor.instance, || {
        emperor.serves(vassal) && emperor.pids(vassal).is_some_and(|(m, _)| m != master)
    });
}

/// Waits until every vassal of `names` is listed ready, accepting and loyal in emperor stats.
fn wait_loyal(emperor: &Emperor, names: &[&str]) {
    for vassal in names {
        eventually(&format!("{vassal} is loyal"), &emperor.instance, || {
            emperor.entry(vassal).is_some_and(|e| {
                e["loyal"].as_u64() > Some(0) && e["ready"] == 1 && e["accepting"] == 1
            })
        });
    }
}

#[test]
fn upgrading_the_emperor_keeps_every_vassal_serving_with_the_same_pids() {
    let (mut emperor, program) = start_upgradable("emperor-upgrade", &three_vassals(), None);
    let names = ["a", "b", "c"];
    for vassal in names {
        emperor.wait_serving(vassal);
    }
    let loads: Vec<Load> = names
        .iter()
        .map(|v| Load::start(&emperor.target(v), 2))
        .collect();
    wait_loyal(&emperor, &names);
    let before: Vec<(u64, Vec<u64>)> = names
        .iter()
        .map(|v| emperor.pids(v).expect("stats"))
        .collect();
    let entries: Vec<serde_json::Value> = names
        .iter()
        .map(|v| emperor.entry(v).expect("listed"))
        .collect();
    for entry in &entries {
        assert_eq!(entry["adopted"], 0, "{entry}");
    }
    let pid = emperor.instance.pid();
    let old_exe = exe_inode(pid);

    install_new_binary(&program);
    let scratch = emperor.instance.scratch.path().to_path_buf();
    let out = crate::harness::run_cli(&scratch, &["--upgrade", "emperor.pid"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("upgraded in place"), "{}", out.stderr);
    let line = emperor.instance.wait_for_log("emperor upgraded in place");
    assert!(line.contains(&format!("pid={pid}")), "{line}");
    assert!(line.contains("adopted=3"), "{line}");
    assert_ne!(exe_inode(pid), old_exe, "the new image runs the new file");
    emperor.instance.wait_for_log_count("emperor ready", 2);

    // More requests to every vassal after the upgrade, then the tally.
    for load in &loads {
        let ok = load.ok.load(Ordering::Relaxed);
        eventually(
            "requests go on after the upgrade",
            &emperor.instance,
            || load.ok.load(Ordering::Relaxed) > ok + 20,
        );
    }
    for (vassal, load) in names.iter().zip(loads) {
        let (ok, failed) = load.finish();
        assert_eq!(
            failed, 0,
            "{vassal}: {ok} requests succeeded, {failed} failed"
        );
    }
    for ((vassal, pids), entry) in names.iter().zip(&before).zip(&entries) {
        assert_eq!(
            emperor.pids(vassal).as_ref(),
            Some(pids),
            "{vassal} runs on"
        );
        let now = emperor.entry(vassal).expect("still listed");
        assert_eq!(now["pid"].as_u64(), Some(pids.0), "{now}");
        assert_eq!(now["adopted"], 1, "{now}");
        for key in [
            "loyal",
            "ready",
            "accepting",
            "born",
            "first_run",
            "respawns",
        ] {
            assert_eq!(now[key], entry[key], "{key} is kept: {now}");
        }
    }
    assert_eq!(
        emperor.stats()["pid"].as_u64(),
        Some(u64::from(pid)),
        "the same emperor serves its stats"
    );

    // The new image governs its adopted vassals as its own: a touch reloads...
    touch_and_wait_reloaded(&emperor, "a", &before[0]);
    // ... a death is respawned ...
    let b_master = before[1].0;
    kill_and_wait_respawned(&emperor, "b", b_master);
    assert_eq!(emperor.entry("b").expect("b")["adopted"], 0, "b is new");
    // ... and it upgrades again, holding no more than one image's descriptors.
    install_new_binary(&program);
    let out = crate::harness::run_cli(&scratch, &["--upgrade", "emperor.pid"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let line = emperor
        .instance
        .wait_for_log_count("emperor upgraded in place", 2);
    assert!(line.contains("adopted=3"), "{line}");
    let held = |what: &str| {
        let links = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("list fds");
        links
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().contains(what))
            .count()
    };
    assert_eq!(
        held("memfd:rcontainer-"),
        1,
        "one launch record, no table left"
    );
    assert_eq!(
        held(&program.display().to_string()),
        1,
        "one binary for the way back"
    );
    assert_eq!(
        emperor.entry("b").expect("b")["adopted"],
        1,
        "b is adopted now"
    );
    // ... and TERM drains them all.
    let mut pids: Vec<u64> = Vec::new();
    for vassal in names {
        let (master, workers) = emperor.pids(vassal).expect("stats");
        pids.push(master);
        pids.extend(workers);
    }
    pids.push(b_master);
    emperor.instance.signal(Signal::SIGTERM);
    let status = emperor.instance.wait_exit();
    assert!(status.success(), "{status}\n{}", emperor.instance.logs());
    eventually("no vassal process is left", &emperor.instance, || {
        pids.iter().all(|&pid| !is_alive(pid))
    });
}

#[test]
fn an_upgrade_whose_new_configuration_does_not_load_keeps_every_vassal_serving_and_supervised() {
    let ini = "[rcontainer]\nemperor = vassals\nemperor-stats = emperor.stats\n";
    let files = [("a.ini", VASSAL), ("b.ini", VASSAL)];
    let (mut emperor, program) = start_upgradable("emperor-upgrade-broken", &files, Some(ini));
    for vassal in ["a", "b"] {
        emperor.wait_serving(vassal);
    }
    let load = Load::start(&emperor.target("a"), 2);
    wait_loyal(&emperor, &["a", "b"]);
    let before: Vec<(u64, Vec<u64>)> = ["a", "b"]
        .iter()
        .map(|v| emperor.pids(v).expect("stats"))
        .collect();
    let pid = emperor.instance.pid();

    install_new_binary(&program);
    emperor
        .instance
        .scratch
        .write("emperor.ini", &format!("{ini}prcesses = 2\n"));
    let scratch = emperor.instance.scratch.path().to_path_buf();
    let out = crate::harness::run_cli(&scratch, &["--upgrade", "emperor.pid"]);
    assert_eq!(out.code(), Some(1), "refused: {}", out.stderr);
    assert!(out.stderr.contains("did not upgrade"), "{}", out.stderr);
    emperor
        .instance
        .wait_for_log("the previous image governs on");
    let logs = emperor.instance.logs();
    assert!(logs.contains("prcesses"), "the error is logged\n{logs}");
    assert!(emperor.instance.is_running(), "{logs}");
    assert_eq!(emperor.stats()["pid"].as_u64(), Some(u64::from(pid)));

    let ok = load.ok.load(Ordering::Relaxed);
    eventually(
        "requests go on after the failed upgrade",
        &emperor.instance,
        || load.ok.load(Ordering::Relaxed) > ok + 20,
    );
    let (ok, failed) = load.finish();
    assert_eq!(failed, 0, "{ok} requests succeeded, {failed} failed");
    for (vassal, pids) in ["a", "b"].iter().zip(&before) {
        assert_eq!(
            emperor.pids(vassal).as_ref(),
            Some(pids),
            "{vassal} runs on"
        );
        let entry = emperor.entry(vassal).expect("listed");
        assert_eq!(entry["adopted"], 1, "{entry}");
    }

    // A configuration that loads but cannot start (its monitor is no directory) goes back
    // the same way.
    emperor.instance.scratch.write(
        "emperor.ini",
        "[rcontainer]\nemperor = nowhere\nemperor-stats = emperor.stats\n",
    );
    let out = crate::harness::run_cli(&scratch, &["--upgrade", "emperor.pid"]);
    assert_eq!(out.code(), Some(1), "refused: {}", out.stderr);
    emperor
        .instance
        .wait_for_log_count("the previous image governs on", 2);
    assert!(emperor.instance.logs().contains("not a directory"));
    // And one that runs an instance, not an emperor, too.
    emperor.instance.scratch.write(
        "emperor.ini",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = hello\n",
    );
    let out = crate::harness::run_cli(&scratch, &["--upgrade", "emperor.pid"]);
    assert_eq!(out.code(), Some(1), "refused: {}", out.stderr);
    emperor
        .instance
        .wait_for_log_count("the previous image governs on", 3);
    assert!(
        emperor
            .instance
            .logs()
            .contains("no longer runs an emperor")
    );
    for (vassal, pids) in ["a", "b"].iter().zip(&before) {
        assert_eq!(
            emperor.pids(vassal).as_ref(),
            Some(pids),
            "{vassal} runs on"
        );
    }

    // Still supervised: a touch reloads, a death is respawned.
    touch_and_wait_reloaded(&emperor, "a", &before[0]);
    let b_master = before[1].0;
    kill_and_wait_respawned(&emperor, "b", b_master);
    emperor.instance.signal(Signal::SIGTERM);
    assert!(emperor.instance.wait_exit().success());
}

#[test]
fn changes_during_an_emperor_upgrade_are_not_lost() {
    let (mut emperor, program) =
        start_upgradable("emperor-upgrade-changes", &three_vassals(), None);
    let mut before = Vec::new();
    for vassal in ["a", "b", "c"] {
        emperor.wait_serving(vassal);
        before.push(emperor.pids(vassal).expect("stats"));
    }
    install_new_binary(&program);
    // The upgrade first (the FIFO's R), then a death, an edit and a removal while the new
    // image comes up (whichever image sees each of them, none is lost).
    let fifo = emperor.instance.scratch.path().join("emperor.fifo");
    std::fs::write(&fifo, "R").expect("write the FIFO");
    let a_master = before[0].0;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(a_master as i32), Signal::SIGKILL)
        .expect("kill -9");
    emperor.write("b", &format!("{VASSAL}processes = 2\n"));
    std::fs::remove_file(emperor.file("c")).expect("remove c.ini");
    emperor.instance.wait_for_log("emperor upgraded in place");

    eventually("a is respawned", &emperor.instance, || {
        emperor.serves("a") && emperor.pids("a").is_some_and(|(m, _)| m != a_master)
    });
    let (b_master, b_workers) = before[1].clone();
    eventually("b runs its new file", &emperor.instance, || {
        emperor
            .pids("b")
            .is_some_and(|(m, w)| m == b_master && w.len() == 2 && !w.contains(&b_workers[0]))
    });
    let (c_master, _) = before[2];
    eventually("c is stopped and vacuumed", &emperor.instance, || {
        !is_alive(c_master) && !emperor.socket("c").exists() && emperor.entry("c").is_none()
    });
    assert_eq!(emperor.stats()["vassals"].as_array().map(Vec::len), Some(2));
}

#[test]
fn an_upgrade_whose_exec_fails_leaves_the_old_image_governing() {
    let files = [("a.ini", VASSAL)];
    let (emperor, program) = start_upgradable("emperor-upgrade-noexec", &files, None);
    emperor.wait_serving("a");
    let a_before = emperor.pids("a").expect("a's stats");
    // A "release" that cannot be executed.
    let staged = program.with_extension("new");
    std::fs::write(&staged, "not a program").expect("write");
    std::fs::rename(&staged, &program).expect("install");
    let scratch = emperor.instance.scratch.path().to_path_buf();
    let out = crate::harness::run_cli(&scratch, &["--upgrade", "emperor.pid"]);
    assert_eq!(out.code(), Some(1), "refused: {}", out.stderr);
    let logs = emperor.instance.logs();
    assert!(logs.contains("the old image governs on"), "{logs}");
    // What it handed over is private again (links, stats, the way back): a vassal started
    // now inherits none of it. (Descriptors the test runner leaves open are not its own.)
    let pid = emperor.instance.pid();
    let mut checked = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("list fds") {
        let entry = entry.expect("an fd");
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        let target = target.to_string_lossy();
        let ours = target.starts_with("socket:")
            || target.starts_with("/memfd:")
            || target.contains(&*program.to_string_lossy());
        let n = entry.file_name();
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", n.to_string_lossy()))
            .unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
        if ours && let Some(flags) = flags {
            assert!(flags & 0o2000000 != 0, "{target} is close-on-exec: {info}");
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "a link, the stats socket, the launch, the binary: {checked}"
    );
    assert_eq!(
        emperor.pids("a").map(|p| p.0),
        Some(a_before.0),
        "a runs on"
    );
    // Governing on (with a binary that runs again: vassals and checks start from it too).
    install_new_binary(&program);
    touch_and_wait_reloaded(&emperor, "a", &a_before);
}

#[test]
fn systemd_hears_reloading_then_ready_across_an_emperor_upgrade() {
    use std::os::unix::net::UnixDatagram;
    let notify = Scratch::new("emperor-upgrade-notify-socket");
    let path = notify.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let env = [("NOTIFY_SOCKET", path.to_str().expect("utf-8 path"))];
    let mut emperor =
        Emperor::start_with_env("emperor-upgrade-notify", &[("a.ini", VASSAL)], &[], &env);
    emperor.wait_serving("a");
    let mut buf = [0u8; 4096];
    let mut receive_until = |needle: &str| {
        let mut messages = String::new();
        while !messages.contains(needle) {
            let n = socket.recv(&mut buf).expect("a notification");
            messages.push_str(&String::from_utf8_lossy(&buf[..n]));
            messages.push('\n');
        }
        messages
    };
    receive_until("READY=1");
    emperor.instance.signal(Signal::SIGUSR2);
    let messages = receive_until("READY=1");
    let reloading = messages.find("RELOADING=1").expect("RELOADING=1 first");
    assert!(
        messages[reloading..].contains("MONOTONIC_USEC="),
        "{messages}"
    );
    assert!(messages[reloading..].contains("READY=1"), "{messages}");
    emperor.instance.wait_for_log("emperor upgraded in place");
}

#[test]
fn a_vassal_in_back_off_keeps_its_growing_delay_across_an_upgrade() {
    let broken = "[rcontainer]\nnonsense = 1\n";
    let files = [("good.ini", VASSAL), ("bad.ini", broken)];
    let (mut emperor, program) = start_upgradable("emperor-upgrade-backoff", &files, None);
    emperor.wait_serving("good");
    eventually("bad waits 4 s or more", &emperor.instance, || {
        emperor
            .entry("bad")
            .is_some_and(|bad| bad["backoff_ms"].as_u64() >= Some(4000))
    });
    install_new_binary(&program);
    let scratch = emperor.instance.scratch.path().to_path_buf();
    let out = crate::harness::run_cli(&scratch, &["--upgrade", "emperor.pid"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    emperor.instance.wait_for_log("emperor upgraded in place");
    // Not started afresh (its delay would begin at 1 s again): the back-off goes on, and the
    // first back-off the new image shows is as long as before or longer.
    let mut seen = None;
    eventually("bad is listed in back-off", &emperor.instance, || {
        seen = emperor.entry("bad").filter(|b| b["state"] == "backoff");
        seen.is_some()
    });
    let bad = seen.expect("seen");
    assert!(bad["backoff_ms"].as_u64() >= Some(4000), "{bad}");
    let respawns = bad["respawns"].as_u64().expect("respawns");
    eventually("bad is retried by the new image", &emperor.instance, || {
        emperor
            .entry("bad")
            .is_some_and(|b| b["respawns"].as_u64() > Some(respawns))
    });
    assert!(emperor.serves("good"));
}
