//! The files in `packaging/` as the system uses them: the systemd units pass
//! `systemd-analyze verify`; the commands of `rcontainer@.service` check, start, reload and
//! stop an instance that speaks sd_notify from its main pid; the listener of
//! `rcontainer@.socket` is served when inherited and after a reload; logrotate with the
//! packaged file moves the server and request logs to new files; nginx loads the packaged
//! site and passes requests through it.
//!
//! `RCONTAINER_TEST_INSTALLED=1` reads the installed files (`/lib/systemd/system/`,
//! `/etc/logrotate.d/rcontainer`) instead of the repository's, and `RCONTAINER_TEST_BIN` names
//! the binary to run (the installed `/usr/bin/rcontainer`). A missing `systemd-analyze`,
//! `systemd-socket-activate` or `logrotate` fails the test under CI
//! (`RCONTAINER_TEST_REQUIRE_SYSTEMD=1`) and skips it elsewhere.

use std::fs;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::thread;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};

use crate::harness::client::{Proto, Target, http_get, nginx_vars, uwsgi_request};
use crate::harness::nginx::{Nginx, NginxConfig};
use crate::harness::{DEADLINE, Instance, Scratch, Signal, eventually, fd_targets, run_program};
use crate::master::worker_pids;

/// Where the package puts what the units name.
const INSTALLED_BINARY: &str = "/usr/bin/rcontainer";
const INSTALLED_APP_INI: &str = "/etc/rcontainer/apps/%i.ini";
const INSTALLED_UNIT_DIR: &str = "/lib/systemd/system";
const INSTALLED_LOGROTATE: &str = "/etc/logrotate.d/rcontainer";
const UNITS: [&str; 3] = [
    "rcontainer@.service",
    "rcontainer@.socket",
    "rcontainer-emperor.service",
];

/// Whether the installed files are under test (after the package was installed).
fn installed() -> bool {
    std::env::var("RCONTAINER_TEST_INSTALLED").as_deref() == Ok("1")
}

/// A packaged file: the installed copy, or the repository's `packaging/REPO_PATH`.
fn packaged_file(installed_path: &str, repo_path: &str) -> PathBuf {
    if installed() {
        PathBuf::from(installed_path)
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("packaging")
            .join(repo_path)
    }
}

fn unit_path(unit: &str) -> PathBuf {
    packaged_file(
        &format!("{INSTALLED_UNIT_DIR}/{unit}"),
        &format!("systemd/{unit}"),
    )
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The program at `path`, or `None` (the test is skipped) when it is missing outside CI;
/// under CI a missing one fails the test.
fn tool(path: &str, package: &str) -> Option<&'static Path> {
    if Path::new(path).exists() {
        return Some(Path::new(path).to_owned().leak());
    }
    let ci = [
        "RCONTAINER_TEST_REQUIRE_SYSTEMD",
        "RCONTAINER_TEST_REQUIRE_UWSGI",
    ]
    .iter()
    .any(|var| std::env::var(var).as_deref() == Ok("1"));
    assert!(
        !ci,
        "{path} is missing: apt-get install {package} (as .ci/run does)"
    );
    eprintln!("skipped: {path} is missing (apt-get install {package})");
    None
}

/// The values of `key=` in a unit file, in order (comments skipped).
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// The one value of `key=` in a unit file.
fn unit_value(text: &str, key: &str) -> String {
    let values = unit_values(text, key);
    assert_eq!(values.len(), 1, "{key}= in the unit: {values:?}");
    values[0].clone()
}

/// A unit's command line as the test runs it: the binary under test for
/// `/usr/bin/rcontainer`, `ini` for the app's INI, `app` for `%i`, `main_pid` for `$MAINPID`.
fn command_line(line: &str, ini: &Path, main_pid: Option<u32>) -> Vec<String> {
    let binary = Instance::binary().to_str().expect("utf-8 binary path");
    let mut line = line
        .replace(INSTALLED_APP_INI, ini.to_str().expect("utf-8 path"))
        .replace("%i", "app");
    if let Some(pid) = main_pid {
        line = line.replace("$MAINPID", &pid.to_string());
    }
    assert!(
        !line.contains('$'),
        "a variable the test does not know: {line}"
    );
    line.split_whitespace()
        .map(|word| {
            if word == INSTALLED_BINARY {
                binary.to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect()
}

/// Runs a unit's command line to completion and fails the test unless it exits 0.
fn run_unit_command(argv: &[String], dir: &Path) {
    let (program, args) = argv.split_first().expect("a command");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_program(Path::new(program), dir, &args);
    assert_eq!(
        out.code(),
        Some(0),
        "{argv:?} failed\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("/usr/bin/systemd-analyze", "systemd") else {
        return;
    };
    let scratch = Scratch::new("verify-units");
    let binary = Instance::binary().to_str().expect("utf-8 binary path");
    for unit in UNITS {
        let path = if installed() {
            unit_path(unit)
        } else {
            // verify wants every Exec*= program to exist: the binary under test stands in
            // for /usr/bin/rcontainer.
            let text = read(&unit_path(unit)).replace(INSTALLED_BINARY, binary);
            scratch.write(unit, &text)
        };
        let out = run_program(
            analyze,
            scratch.path(),
            &["verify", path.to_str().expect("utf-8")],
        );
        assert_eq!(
            (out.code(), out.stdout.as_str(), out.stderr.as_str()),
            (Some(0), "", ""),
            "systemd-analyze verify {}",
            path.display()
        );
    }
}

/// The test's end of `NOTIFY_SOCKET`: each datagram with the pid of its sender.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(scratch: &Scratch) -> NotifySocket {
        let path = scratch.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
        // SCM_CREDENTIALS on every datagram: the pid systemd checks against NotifyAccess=.
        setsockopt(&socket, sockopt::PassCred, &true).expect("SO_PASSCRED");
        NotifySocket { socket, path }
    }

    fn var(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    /// The next datagram and its sender's pid (fails after [`DEADLINE`]).
    fn receive(&self, waiting_for: &str) -> (String, i32) {
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!(UnixCredentials);
        let msg = recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap_or_else(|e| panic!("no notification while waiting for {waiting_for}: {e}"));
        let sender = msg
            .cmsgs()
            .expect("control messages")
            .find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                _ => None,
            })
            .expect("the sender's credentials");
        let n = msg.bytes;
        (String::from_utf8_lossy(&buf[..n]).into_owned(), sender)
    }

    /// Receives until a datagram holds the line `wanted`; every datagram on the way must come
    /// from `main_pid` (NotifyAccess=main drops any other). Returns the datagrams' first lines.
    fn receive_until(&self, wanted: &str, main_pid: u32) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let (message, sender) = self.receive(wanted);
            assert_eq!(
                sender, main_pid as i32,
                "{message:?} came from pid {sender}, not the main pid {main_pid}"
            );
            seen.push(message.lines().next().unwrap_or_default().to_owned());
            if message.lines().any(|line| line == wanted) {
                return seen;
            }
        }
    }
}

fn app_ini(extra: &str) -> String {
    format!("[rcontainer]\nprocesses = 2\nmodule = echo\nstats = %dstats.sock\n{extra}")
}

#[test]
fn the_service_units_commands_check_start_reload_and_stop_an_instance_that_notifies_systemd() {
    let unit = read(&unit_path("rcontainer@.service"));
    assert_eq!(unit_value(&unit, "Type"), "notify");
    assert_eq!(unit_value(&unit, "NotifyAccess"), "main");
    let scratch = Scratch::new("service-unit");
    let ini = scratch.write("app.ini", &app_ini("http-socket = 127.0.0.1:0\n"));
    let notify = NotifySocket::bind(&scratch);

    for line in unit_values(&unit, "ExecStartPre") {
        run_unit_command(&command_line(&line, &ini, None), scratch.path());
    }
    let start = command_line(&unit_value(&unit, "ExecStart"), &ini, None);
    let args: Vec<&str> = start[1..].iter().map(String::as_str).collect();
    let mut server = Instance::spawn_in(
        Scratch::new("service-unit-run"),
        Path::new(&start[0]),
        &args,
        &[("NOTIFY_SOCKET", notify.var())],
        None,
    );
    let main_pid = server.pid();
    notify.receive_until("READY=1", main_pid);
    server.wait_ready();
    assert_eq!(http_get(&server.target(Proto::Http), "/before").status, 200);

    let reload = unit_values(&unit, "ExecReload");
    assert!(!reload.is_empty(), "no ExecReload=");
    for line in &reload {
        run_unit_command(&command_line(line, &ini, Some(main_pid)), scratch.path());
    }
    let seen = notify.receive_until("READY=1", main_pid);
    assert_eq!(
        seen.first().map(String::as_str),
        Some("RELOADING=1"),
        "a reload is announced first: {seen:?}"
    );
    server.wait_for_log_count("rcontainer ready", 2);
    assert_eq!(server.pid(), main_pid);
    assert_eq!(http_get(&server.target(Proto::Http), "/after").status, 200);

    let stop = unit_value(&unit, "KillSignal");
    let signal: Signal = stop
        .parse()
        .unwrap_or_else(|e| panic!("KillSignal={stop}: {e}"));
    server.signal(signal);
    notify.receive_until("STOPPING=1", main_pid);
    assert_eq!(server.wait_exit().code(), Some(0));
}

#[test]
fn the_socket_units_listener_is_served_when_inherited_and_still_after_a_reload() {
    let Some(launcher) = tool("/usr/bin/systemd-socket-activate", "systemd") else {
        return;
    };
    let service = read(&unit_path("rcontainer@.service"));
    let socket_unit = read(&unit_path("rcontainer@.socket"));
    let scratch = Scratch::new("socket-unit");
    let listen = unit_value(&socket_unit, "ListenStream");
    assert_eq!(listen, "/run/rcontainer/%i.sock");
    let socket_path = scratch.path().join("app.sock");
    // As the unit's comments say: the INI serves the inherited descriptor.
    let ini = scratch.write("app.ini", &app_ini("socket = fd://3\n"));
    // systemd-socket-activate passes the socket as the unit would: fd 3, LISTEN_FDS=1,
    // LISTEN_PID, and the unit's name as LISTEN_FDNAMES.
    let mut args = vec![
        "-l".to_owned(),
        socket_path.to_str().expect("utf-8 path").to_owned(),
        "--fdname=rcontainer@app.socket".to_owned(),
    ];
    args.extend(command_line(&unit_value(&service, "ExecStart"), &ini, None));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server =
        Instance::spawn_in(Scratch::new("socket-unit-run"), launcher, &args, &[], None);
    server.wait_for_log("Listening on");
    let target =
        Target::parse(&format!("uwsgi://{}", socket_path.display())).expect("uwsgi target");
    // rcontainer starts on the first connection, which waits in the backlog meanwhile.
    let first = thread::spawn({
        let target = target.clone();
        move || uwsgi_request(&target, &nginx_vars("GET", "/first", b""), b"").status
    });
    let ready = server.wait_for_log("rcontainer ready");
    assert_eq!(first.join().expect("first client"), 200);
    assert!(ready.contains("sockets=uwsgi://"), "{ready}");
    let inode =
        |path: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(path).expect("stat"));
    let socket_inode = inode(&socket_path);

    // The launcher exec'd rcontainer: the pid it was started as is the master's.
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("rcontainer ready", 2);
    let vars = nginx_vars("GET", "/after-reload", b"");
    assert_eq!(uwsgi_request(&target, &vars, b"").status, 200);
    assert_eq!(
        inode(&socket_path),
        socket_inode,
        "the same socket, never bound again"
    );
}

/// The packaged logrotate file with its paths moved into `scratch` and rotation as the user
/// the test runs as (the package's `su rcontainer rcontainer`); the USR1 delivery is the
/// file's own (through the pidfile; systemd is not running the test's instance).
fn logrotate_config(log_dir: &Path, run_dir: &Path) -> String {
    let text = read(&packaged_file(INSTALLED_LOGROTATE, "logrotate/rcontainer"));
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .expect("getpwuid")
        .expect("the test's user");
    let group = nix::unistd::Group::from_gid(nix::unistd::getgid())
        .expect("getgrgid")
        .expect("the test's group");
    assert!(text.contains("su rcontainer rcontainer"), "{text}");
    assert!(text.contains("/run/rcontainer/*.pid"), "{text}");
    text.replace("/var/log/rcontainer", log_dir.to_str().expect("utf-8"))
        .replace("/run/rcontainer", run_dir.to_str().expect("utf-8"))
        .replace(
            "su rcontainer rcontainer",
            &format!("su {} {}", user.name, group.name),
        )
}

#[test]
fn logrotate_with_the_packaged_file_moves_server_and_request_logs_to_new_files() {
    let Some(logrotate) = tool("/usr/sbin/logrotate", "logrotate") else {
        return;
    };
    let scratch = Scratch::new("logrotate");
    let log_dir = scratch.path().join("log");
    let run_dir = scratch.path().join("run");
    fs::create_dir_all(&log_dir).expect("log dir");
    fs::create_dir_all(&run_dir).expect("run dir");
    let (server_log, request_log) = (log_dir.join("app.log"), log_dir.join("app-req.log"));
    let ini = app_ini(&format!(
        "http-socket = 127.0.0.1:0\nlogto = {}\nreq-logger = file:{}\npidfile = {}/app.pid\n",
        server_log.display(),
        request_log.display(),
        run_dir.display()
    ));
    let config = scratch.write("logrotate.conf", &logrotate_config(&log_dir, &run_dir));
    let server = Instance::spawn("logrotate-run", &ini, &[]);
    let contains = |path: &Path, needle: &str| {
        fs::read_to_string(path).is_ok_and(|text| text.contains(needle))
    };
    eventually("the ready line in the log file", &server, || {
        contains(&server_log, "rcontainer ready")
    });
    let ready = fs::read_to_string(&server_log).expect("log");
    let ready = ready
        .lines()
        .find(|l| l.contains("rcontainer ready"))
        .expect("ready line");
    let target = crate::harness::parse_ready_sockets(ready)
        .into_iter()
        .find(|t| t.proto == Proto::Http)
        .expect("the http socket");
    assert_eq!(http_get(&target, "/before-rotation").status, 200);
    eventually("the request line in the request log", &server, || {
        contains(&request_log, "/before-rotation")
    });

    let state = scratch.path().join("logrotate.state");
    let out = run_program(
        logrotate,
        scratch.path(),
        &[
            "-f",
            "-s",
            state.to_str().expect("utf-8"),
            config.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        out.code(),
        Some(0),
        "logrotate: {}{}",
        out.stdout,
        out.stderr
    );
    let (old_server_log, old_request_log) =
        (log_dir.join("app.log.1"), log_dir.join("app-req.log.1"));
    assert!(
        contains(&old_server_log, "rcontainer ready"),
        "rotated by rename"
    );
    assert!(
        contains(&old_request_log, "/before-rotation"),
        "rotated by rename"
    );

    // USR1 reached the master through its pidfile: it and every worker reopen.
    let mut pids = vec![server.pid()];
    pids.extend(worker_pids(&server).into_iter().map(|pid| pid as u32));
    assert_eq!(pids.len(), 3, "the master and 2 workers: {pids:?}");
    let old = [
        old_server_log.display().to_string(),
        old_request_log.display().to_string(),
    ];
    eventually("no process holds a rotated file", &server, || {
        pids.iter().all(|&pid| {
            let open = fd_targets(pid);
            old.iter().all(|file| !open.contains(file))
        })
    });
    eventually("the server log is a new file", &server, || {
        contains(&server_log, "reopened")
    });
    assert_eq!(http_get(&target, "/after-rotation").status, 200);
    eventually(
        "the new request line in the new request log",
        &server,
        || contains(&request_log, "/after-rotation"),
    );
    assert!(!contains(&old_request_log, "/after-rotation"));
    assert!(!contains(&old_server_log, "reopened"));
}

#[test]
fn nginx_accepts_the_packaged_site_and_passes_requests_to_the_instance() {
    // The package installs the site as an example, not enabled.
    let site = read(&packaged_file(
        "/usr/share/doc/rcontainer/examples/nginx/rcontainer.conf",
        "nginx/rcontainer.conf",
    ));
    let server = Instance::start("nginx-site", &app_ini("socket = %dapp.sock\n"), &[]);
    let socket = server.scratch.path().join("app.sock");
    let scratch = Scratch::new("nginx-site-conf");
    let config = NginxConfig::write(&scratch, |port| {
        let site = site
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
            .replace("listen [::]:80;", "")
            .replace(
                "unix:/run/rcontainer/app.sock",
                &format!("unix:{}", socket.display()),
            );
        assert!(
            site.contains(&format!("listen 127.0.0.1:{port};")),
            "{site}"
        );
        assert!(site.contains(&format!("uwsgi_pass unix:{};", socket.display())));
        scratch.write("nginx/rcontainer.conf", &site);
        "include rcontainer.conf;".to_owned()
    });
    // `include uwsgi_params;` is relative to the configuration's directory, as in /etc/nginx.
    fs::copy("/etc/nginx/uwsgi_params", config.dir.join("uwsgi_params"))
        .expect("copy /etc/nginx/uwsgi_params (apt-get install nginx)");
    let check = config.test();
    assert_eq!(check.code(), Some(0), "nginx -t: {}", check.stderr);
    let nginx = Nginx::run(config);
    let response = http_get(&nginx.target, "/through-nginx?x=1");
    assert_eq!(response.status, 200, "{}", nginx.error_log());
    assert!(
        response.text().contains("/through-nginx"),
        "{}",
        response.text()
    );
}

#[test]
fn the_emperor_units_command_governs_the_vassals_dir_and_notifies_systemd() {
    let unit = read(&unit_path("rcontainer-emperor.service"));
    assert_eq!(unit_value(&unit, "Type"), "notify");
    assert_eq!(unit_value(&unit, "NotifyAccess"), "main");
    let scratch = Scratch::new("emperor-unit");
    let vassals = scratch.write_dir(
        "vassals",
        &[("app.ini", &app_ini("http-socket = 127.0.0.1:0\n"))],
    );
    let pidfile = scratch.path().join("emperor.pid");
    let notify = NotifySocket::bind(&scratch);
    let start = unit_value(&unit, "ExecStart")
        .replace("/etc/rcontainer/vassals", vassals.to_str().expect("utf-8"))
        .replace(
            "/run/rcontainer/emperor.pid",
            pidfile.to_str().expect("utf-8"),
        );
    let start = command_line(&start, Path::new("/unused"), None);
    let args: Vec<&str> = start[1..].iter().map(String::as_str).collect();
    let mut emperor = Instance::spawn_in(
        Scratch::new("emperor-unit-run"),
        Path::new(&start[0]),
        &args,
        &[("NOTIFY_SOCKET", notify.var())],
        None,
    );
    let main_pid = emperor.pid();
    notify.receive_until("READY=1", main_pid);
    emperor.wait_for_log("rcontainer ready");
    assert_eq!(
        read(&pidfile).trim(),
        main_pid.to_string(),
        "the pidfile logrotate and --upgrade use"
    );
    let stop = unit_value(&unit, "KillSignal");
    emperor.signal(
        stop.parse()
            .unwrap_or_else(|e| panic!("KillSignal={stop}: {e}")),
    );
    notify.receive_until("STOPPING=1", main_pid);
    assert_eq!(emperor.wait_exit().code(), Some(0));
}
