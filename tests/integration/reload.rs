//! Reloads as operators chain them: chain and workers reloads after other reloads, repeated
//! requests, worker ids, what survives a re-exec and what must not.

use std::collections::BTreeSet;
use std::fs;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::harness::client::http_get;
use crate::harness::{Instance, Signal, run_cli};
use crate::harness::{eventually, fd_targets, stats};
use crate::master::{Load, http, ini, worker_pids};

/// The `id` of every worker the stats show.
fn worker_ids(instance: &Instance) -> BTreeSet<u64> {
    stats(instance)["workers"]
        .as_array()
        .expect("workers array")
        .iter()
        .filter_map(|w| w["id"].as_u64())
        .collect()
}

/// The pids of the master's child processes, from `/proc`.
fn children(instance: &Instance) -> BTreeSet<u32> {
    let master = instance.pid();
    let mut pids = BTreeSet::new();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(master) {
            pids.insert(pid);
        }
    }
    pids
}

/// Chain-reloads through the FIFO and waits until every worker of `before` is replaced.
fn chain_reload(server: &mut Instance, before: &BTreeSet<u64>, expected: usize) {
    fs::write(server.scratch.path().join("fifo"), "c").expect("write to the fifo");
    eventually("the chain reload replaces every worker", server, || {
        let now = worker_pids(server);
        now.len() == expected && now.is_disjoint(before)
    });
}

#[test]
fn a_chain_reload_after_a_hup_and_after_another_chain_reload_replaces_every_worker() {
    let mut server = Instance::start(
        "chain-after-hup",
        &ini("processes = 2\nmaster-fifo = %dfifo\n"),
        &[],
    );
    let first = worker_pids(&server);
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("rcontainer ready", 2);
    eventually("the HUP replaced every worker", &server, || {
        worker_pids(&server).is_disjoint(&first)
    });
    let load = Load::start(http(&server));
    let second = worker_pids(&server);
    chain_reload(&mut server, &second, 2);
    let third = worker_pids(&server);
    chain_reload(&mut server, &third, 2);
    let (ok, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(ok > 0);
}

#[test]
fn a_chain_reload_replaces_workers_that_max_requests_recycled() {
    let mut server = Instance::start(
        "chain-after-recycle",
        &ini("processes = 2\nmaster-fifo = %dfifo\nmax-requests = 3\n"),
        &[],
    );
    let first = worker_pids(&server);
    let target = http(&server);
    eventually("max-requests recycled both workers", &server, || {
        assert_eq!(http_get(&target, "/").status, 200);
        let now = worker_pids(&server);
        now.len() == 2 && now.is_disjoint(&first)
    });
    let recycled = worker_pids(&server);
    chain_reload(&mut server, &recycled, 2);
}

#[test]
fn repeated_workers_reload_requests_coalesce_into_one_replacement_per_worker() {
    let server = Instance::start("www", &ini("processes = 2\nmaster-fifo = %dfifo\n"), &[]);
    let before = worker_pids(&server);
    fs::write(server.scratch.path().join("fifo"), "www").expect("write to the fifo");
    eventually("two new workers and nothing else", &server, || {
        let now = worker_pids(&server);
        now.len() == 2 && now.is_disjoint(&before) && children(&server).len() == 2
    });
    assert_eq!(http_get(&http(&server), "/").status, 200);
}

#[test]
fn worker_ids_stay_one_to_processes_across_chain_reloads_and_a_hup() {
    let mut server = Instance::start("ids", &ini("processes = 3\nmaster-fifo = %dfifo\n"), &[]);
    let all: BTreeSet<u64> = [1, 2, 3].into();
    assert_eq!(worker_ids(&server), all);
    for _ in 0..2 {
        let before = worker_pids(&server);
        chain_reload(&mut server, &before, 3);
        eventually("ids 1..=3 once the old workers are gone", &server, || {
            worker_ids(&server) == all && children(&server).len() == 3
        });
    }
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("rcontainer ready", 2);
    eventually("ids 1..=3 after the HUP", &server, || {
        worker_ids(&server) == all && children(&server).len() == 3
    });
    // What the workers say of themselves matches: echo reports the serving worker's id.
    let doc: Value = crate::harness::json(&http_get(&http(&server), "/").body);
    let id = doc["worker"].as_u64().expect("worker in echo");
    assert!(all.contains(&id), "{doc}");
}

/// The inode of the unix socket bound at `path`, from `/proc/net/unix`.
fn unix_socket_inode(path: &std::path::Path) -> String {
    let table = fs::read_to_string("/proc/net/unix").expect("read /proc/net/unix");
    let path = path.display().to_string();
    table
        .lines()
        .find(|line| line.split_whitespace().nth(7) == Some(path.as_str()))
        .and_then(|line| line.split_whitespace().nth(6))
        .unwrap_or_else(|| panic!("no unix socket bound at {path}"))
        .to_string()
}

#[test]
fn workers_hold_none_of_the_masters_own_descriptors() {
    let server = Instance::start(
        "worker-fds",
        &ini("processes = 2\nmaster-fifo = %dfifo\n"),
        &[],
    );
    let master = fd_targets(server.pid());
    let fifo = server.scratch.path().join("fifo").display().to_string();
    assert!(
        master.contains(&fifo),
        "the master has its FIFO: {master:?}"
    );
    let stats_socket = format!(
        "socket:[{}]",
        unix_socket_inode(&server.scratch.path().join("stats.sock"))
    );
    assert!(master.contains(&stats_socket), "{master:?}");
    // The master's own pipes: not those it inherited from the test runner (a jobserver).
    let inherited = fd_targets(std::process::id());
    let master_pipes: BTreeSet<&String> = master
        .iter()
        .filter(|t| t.starts_with("pipe:") && !inherited.contains(*t))
        .collect();
    assert!(!master_pipes.is_empty(), "the signal pipe: {master:?}");
    for pid in worker_pids(&server) {
        let worker = fd_targets(pid as u32);
        assert!(
            !worker.contains(&fifo),
            "worker {pid} holds the FIFO: {worker:?}"
        );
        assert!(
            !worker.contains(&stats_socket),
            "worker {pid} holds the stats listener: {worker:?}"
        );
        let shared: Vec<&String> = worker.iter().filter(|t| master_pipes.contains(t)).collect();
        assert!(
            shared.is_empty(),
            "worker {pid} holds the master's pipes {shared:?}"
        );
    }
}

#[test]
fn a_storm_of_thirty_hups_ten_ms_apart_under_load_drops_nothing_and_the_master_lives() {
    let server = Instance::start("hup-storm", &ini("processes = 2\n"), &[]);
    let before = worker_pids(&server);
    let load = Load::start(http(&server));
    thread::sleep(Duration::from_millis(100));
    for _ in 0..30 {
        server.signal(Signal::SIGHUP);
        thread::sleep(Duration::from_millis(10));
    }
    eventually(
        "the storm settles: two new workers, nothing else",
        &server,
        || {
            server.is_running() && {
                let now = worker_pids(&server);
                now.len() == 2 && now.is_disjoint(&before) && children(&server).len() == 2
            }
        },
    );
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        ok + failures.len()
    );
    assert!(ok > 0);
    assert_eq!(
        stats(&server)["pid"].as_u64(),
        Some(u64::from(server.pid()))
    );
    assert_eq!(http_get(&http(&server), "/").status, 200);
}

/// Sends HUP, then `signal` every millisecond for 60 ms: some of them land while the master
/// re-executes, before the new image has its handlers.
fn hup_then_burst(server: &Instance, signal: Signal) {
    server.signal(Signal::SIGHUP);
    for _ in 0..60 {
        thread::sleep(Duration::from_millis(1));
        if !server.is_running() {
            return;
        }
        // The master may exit between the check and the kill: that is no failure here.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid() as i32), signal);
    }
}

#[test]
fn terms_arriving_during_a_reexec_stop_the_master_gracefully_not_kill_it() {
    for round in 0..3 {
        let mut server = Instance::start(&format!("hup-term-{round}"), &ini(""), &[]);
        hup_then_burst(&server, Signal::SIGTERM);
        let status = server.wait_exit();
        assert_eq!(
            status.code(),
            Some(0),
            "round {round}: {status}\n{}",
            server.logs()
        );
    }
}

#[test]
fn usr1s_arriving_during_a_reexec_are_acted_on_and_the_master_lives() {
    for round in 0..3 {
        let mut server = Instance::start(&format!("hup-usr1-{round}"), &ini(""), &[]);
        hup_then_burst(&server, Signal::SIGUSR1);
        server.wait_for_log_count("rcontainer ready", 2);
        server.wait_for_log("stats workers=");
        assert!(server.is_running(), "round {round}\n{}", server.logs());
        assert_eq!(http_get(&http(&server), "/").status, 200);
    }
}

/// What the worker that serves the request sees of `names` in its environment (`echo`'s
/// `?env=`), as `NAME=value` for the set ones.
fn worker_env(server: &Instance, names: &str) -> BTreeSet<String> {
    let doc: Value = crate::harness::json(&http_get(&http(server), &format!("/?env={names}")).body);
    doc["env"]
        .as_object()
        .expect("env in echo")
        .iter()
        .filter_map(|(name, value)| Some(format!("{name}={}", value.as_str()?)))
        .collect()
}

#[test]
fn an_env_line_removed_from_the_ini_is_gone_after_a_hup() {
    let mut server = Instance::start(
        "env-removed",
        &ini("env = KEPT_VAR=1\nenv = REMOVED_VAR=2\n"),
        &[],
    );
    let both: BTreeSet<String> = ["KEPT_VAR=1".into(), "REMOVED_VAR=2".into()].into();
    assert_eq!(worker_env(&server, "KEPT_VAR,REMOVED_VAR"), both);
    let before = worker_pids(&server);
    server.scratch.write("app.ini", &ini("env = KEPT_VAR=1\n"));
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("rcontainer ready", 2);
    eventually("new workers", &server, || {
        let now = worker_pids(&server);
        now.len() == 1 && now.is_disjoint(&before) && children(&server).len() == 1
    });
    let kept: BTreeSet<String> = ["KEPT_VAR=1".into()].into();
    assert_eq!(
        worker_env(&server, "KEPT_VAR,REMOVED_VAR"),
        kept,
        "the removed env line must not survive the reload"
    );
}

#[test]
fn a_paused_instance_stays_paused_across_a_hup_until_resumed() {
    let mut server = Instance::start("pause-hup", &ini("master-fifo = %dfifo\n"), &[]);
    let fifo = server.scratch.path().join("fifo");
    fs::write(&fifo, "p").expect("fifo");
    server.wait_for_log("paused accepting");
    let before = worker_pids(&server);
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("rcontainer ready", 2);
    eventually("the new worker is there, paused", &server, || {
        let doc = stats(&server);
        let workers = doc["workers"].as_array().cloned().unwrap_or_default();
        let pids: BTreeSet<u64> = workers.iter().filter_map(|w| w["pid"].as_u64()).collect();
        !pids.is_empty()
            && pids.is_disjoint(&before)
            && workers.iter().all(|w| w["status"] == "pause")
    });
    fs::write(&fifo, "p").expect("fifo");
    server.wait_for_log("resumed accepting");
    assert_eq!(http_get(&http(&server), "/").status, 200);
}

#[test]
fn a_relative_ini_with_chdir_reloads_by_touch_and_by_pidfile() {
    // `--ini app.ini` is relative to the scratch dir the command starts in; the master then
    // moves to `/`.
    let mut server = Instance::start(
        "relative-ini",
        &ini("chdir = /\npidfile = %dapp.pid\ntouch-reload = %dtouch\n"),
        &[],
    );
    server.scratch.write("touch", "");
    // Touch files are looked at once a second with mtime resolution: make the change visible.
    thread::sleep(Duration::from_millis(1100));
    server.scratch.write("touch", "again");
    server.wait_for_log_count("rcontainer ready", 2);
    let pidfile = server.scratch.path().join("app.pid");
    let out = run_cli(
        server.scratch.path(),
        &["--reload", pidfile.to_str().expect("utf-8 path")],
    );
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stderr, server.logs());
    assert!(out.stderr.contains("reloaded"), "{}", out.stderr);
    server.wait_for_log_count("rcontainer ready", 3);
    assert!(
        !server.logs().contains("reload refused"),
        "{}",
        server.logs()
    );
}

#[test]
fn pidfile_reload_reports_a_refused_reload_with_exit_1() {
    let mut server = Instance::start("reload-refused", &ini("pidfile = %dapp.pid\n"), &[]);
    server
        .scratch
        .write("app.ini", &ini("pidfile = %dapp.pid\nprcesses = 2\n"));
    let pidfile = server.scratch.path().join("app.pid");
    let out = run_cli(
        server.scratch.path(),
        &["--reload", pidfile.to_str().expect("utf-8 path")],
    );
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
    server.wait_for_log("reload refused");
    assert_eq!(
        http_get(&http(&server), "/").status,
        200,
        "the old one serves"
    );
}

/// Rewrites the INI with `extra`, reloads under load and checks the reload was refused (or
/// went back) with `expected` in the log: the same workers or their replacements serve, every
/// request succeeds, the master lives.
fn reload_that_cannot_work(server: &mut Instance, extra: &str, expected: &str) {
    let load = Load::start(http(server));
    thread::sleep(Duration::from_millis(100));
    server
        .scratch
        .write("app.ini", &ini(&format!("processes = 2\n{extra}")));
    server.signal(Signal::SIGHUP);
    server.wait_for_log(expected);
    // Still serving, a while after.
    thread::sleep(Duration::from_millis(300));
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}\n{}",
        failures.len(),
        ok + failures.len(),
        server.logs()
    );
    assert!(ok > 0);
    assert!(server.is_running(), "{}", server.logs());
    assert_eq!(http_get(&http(server), "/").status, 200);
    assert_eq!(worker_pids(server).len(), 2);
}

#[test]
fn a_reload_whose_configuration_now_runs_an_emperor_goes_back_and_serves_on() {
    let mut server = Instance::start("reload-into-emperor", &ini("processes = 2\n"), &[]);
    reload_that_cannot_work(
        &mut server,
        "emperor = %dvassals\n",
        "the configuration now runs an emperor",
    );
    assert!(
        !server.logs().contains("emperor ready"),
        "no emperor started\n{}",
        server.logs()
    );
}

#[test]
fn a_reload_to_a_busy_stats_port_is_refused_and_the_instance_serves_on() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = busy.local_addr().expect("addr").port();
    let mut server = Instance::start("reload-busy-stats", &ini("processes = 2\n"), &[]);
    let before = worker_pids(&server);
    reload_that_cannot_work(
        &mut server,
        &format!("stats = 127.0.0.1:{port}\n").replace("stats = %dstats.sock\n", ""),
        "reload refused",
    );
    assert_eq!(worker_pids(&server), before, "the same workers serve");
}

#[test]
fn a_reload_to_a_pidfile_or_fifo_in_a_missing_directory_is_refused() {
    let mut server = Instance::start("reload-missing-dir", &ini("processes = 2\n"), &[]);
    reload_that_cannot_work(&mut server, "pidfile = %dmissing/app.pid\n", "pidfile");
    server.wait_for_log("reload refused");
    reload_that_cannot_work(&mut server, "master-fifo = %dmissing/fifo\n", "master-fifo");
    assert_eq!(
        server.logs().matches("reload refused").count(),
        2,
        "{}",
        server.logs()
    );
}

#[test]
fn a_reload_to_a_pidfile_the_uid_cannot_write_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to drop to another uid");
        return;
    }
    let mut server = Instance::start(
        "reload-uid-pidfile",
        &ini("processes = 2\nuid = nobody\ngid = nogroup\n"),
        &[],
    );
    let private = server.scratch.path().join("root-only");
    fs::create_dir(&private).expect("a directory only root can write");
    fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    // The scratch dir must stay readable for nobody (the INI is read again there).
    fs::set_permissions(
        server.scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    reload_that_cannot_work(
        &mut server,
        "uid = nobody\ngid = nogroup\npidfile = %droot-only/app.pid\n",
        "reload refused",
    );
}

/// A copy of the binary in its own scratch dir, and how to replace it "the way package
/// managers do" (write aside, rename over).
struct Installed {
    dir: crate::harness::Scratch,
    program: std::path::PathBuf,
}

impl Installed {
    fn new(name: &str) -> Installed {
        let dir = crate::harness::Scratch::new(name);
        let program = dir.path().join("rcontainer");
        fs::copy(Instance::binary(), &program).expect("copy the binary");
        Installed { dir, program }
    }

    /// Installs `contents` (an executable) in place of the binary.
    fn replace_with(&self, contents: &str) {
        use std::os::unix::fs::PermissionsExt;
        let staged = self.dir.path().join("rcontainer.new");
        fs::write(&staged, contents).expect("stage");
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::rename(&staged, &self.program).expect("install");
    }

    /// A second copy of the real binary, for wrapper scripts to run.
    fn real_copy(&self) -> std::path::PathBuf {
        let real = self.dir.path().join("rcontainer-real");
        fs::copy(Instance::binary(), &real).expect("copy the binary");
        real
    }
}

#[test]
fn a_reload_into_a_broken_binary_on_disk_is_refused() {
    let installed = Installed::new("broken-binary-bin");
    let mut server =
        Instance::start_program(&installed.program, "broken-binary", &ini("processes = 2\n"));
    installed.replace_with("#!/bin/sh\nexit 1\n");
    reload_that_cannot_work(&mut server, "", "reload refused");
    installed.replace_with("this is not a program\n");
    reload_that_cannot_work(&mut server, "", "cannot be run");
}

#[test]
fn a_new_image_that_fails_at_start_goes_back_to_the_previous_binary_and_config() {
    let installed = Installed::new("fallback-start-bin");
    let real = installed.real_copy();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = busy.local_addr().expect("addr").port();
    let mut server = Instance::start_program(
        &installed.program,
        "fallback-start",
        &ini("processes = 2\npidfile = %dapp.pid\n"),
    );
    // A "new release" that answers --version but whose start fails (its stats port is busy):
    // nothing the running master can check beforehand.
    installed.replace_with(&format!(
        "#!/bin/sh\nRCONTAINER_STATS=127.0.0.1:{port} exec {} \"$@\"\n",
        real.display()
    ));
    let pidfile = server.scratch.path().join("app.pid");
    let load = Load::start(http(&server));
    let out = run_cli(
        server.scratch.path(),
        &["--reload", pidfile.to_str().expect("utf-8 path")],
    );
    assert_eq!(out.code(), Some(1), "{}\n{}", out.stderr, server.logs());
    server.wait_for_log("serving the previous configuration again");
    let (ok, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}\n{}", server.logs());
    assert!(ok > 0);
    assert!(server.is_running());
    eventually("two workers of the previous configuration", &server, || {
        worker_pids(&server).len() == 2 && children(&server).len() == 2
    });
    // And the instance is whole again: a later reload (the binary fixed) works.
    fs::copy(&real, installed.dir.path().join("fixed")).expect("copy");
    fs::rename(installed.dir.path().join("fixed"), &installed.program).expect("install");
    let out = run_cli(
        server.scratch.path(),
        &["--reload", pidfile.to_str().expect("utf-8 path")],
    );
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stderr, server.logs());
}

#[test]
fn a_new_image_whose_config_does_not_load_goes_back() {
    let installed = Installed::new("fallback-config-bin");
    let real = installed.real_copy();
    let mut server = Instance::start_program(
        &installed.program,
        "fallback-config",
        &ini("processes = 2\n"),
    );
    installed.replace_with(&format!(
        "#!/bin/sh\nRCONTAINER_PROCESSES=many exec {} \"$@\"\n",
        real.display()
    ));
    reload_that_cannot_work(&mut server, "", "serving the previous configuration again");
}

#[test]
fn a_new_image_whose_workers_cannot_boot_goes_back() {
    let installed = Installed::new("fallback-boot-bin");
    let real = installed.real_copy();
    let mut server =
        Instance::start_program(&installed.program, "fallback-boot", &ini("processes = 2\n"));
    // The new image's workers cannot reserve their coroutine stacks (4 x 500000 x 64 MiB
    // is more address space than there is), which only a worker finds out.
    installed.replace_with(&format!(
        "#!/bin/sh\nRCONTAINER_ASYNC=500000 RCONTAINER_STACK_SIZE=65536 exec {} \"$@\"\n",
        real.display()
    ));
    reload_that_cannot_work(&mut server, "", "serving the previous configuration again");
    eventually("nothing left of the failed image", &server, || {
        children(&server).len() == 2
    });
}
