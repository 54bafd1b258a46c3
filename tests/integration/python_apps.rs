//! Real Python apps (feature `python`), as uWSGI users run them: a Django project made with
//! `django-admin startproject` behind nginx, and a Flask app, each from the INI such a user
//! writes, with Django, Flask, gevent and requests from PyPI (the venv of
//! `scripts/python-venv.sh`). Their views call a local upstream that answers after 100 ms and
//! counts the connections it holds at once: overlap is proved by that count, not by time.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::client::{Addr, Proto, Target, http_get};
use crate::harness::nginx::Nginx;
use crate::harness::{DEADLINE, Instance, Scratch, Signal, eventually, run_cli, try_stats_at};
use crate::python::venv;

/// What the upstream answers.
const UPSTREAM_SAYS: &str = "the upstream says hi";

/// A local HTTP upstream: answers every request 100 ms after reading it, one connection at a
/// time per thread, and remembers the most connections it held at once.
struct Upstream {
    addr: SocketAddr,
    peak: Arc<AtomicUsize>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let addr = listener.local_addr().expect("upstream address");
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&peak);
        // The accept thread outlives the test, blocked in accept: it holds nothing else.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (now, peak) = (Arc::clone(&now), Arc::clone(&seen));
                thread::spawn(move || answer_slowly(stream, &now, &peak));
            }
        });
        Upstream { addr, peak }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The most connections the upstream held at once so far.
    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

fn answer_slowly(mut stream: TcpStream, now: &AtomicUsize, peak: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(DEADLINE));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let held = now.fetch_add(1, Ordering::SeqCst) + 1;
    peak.fetch_max(held, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(100));
    now.fetch_sub(1, Ordering::SeqCst);
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{UPSTREAM_SAYS}",
        UPSTREAM_SAYS.len()
    );
}

/// Runs `program ARGS` in `dir`, failing the test with its output when it fails.
fn run(dir: &Path, program: &Path, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a Django project in `dir` as a user would: `startproject`, `startapp shop` with a
/// model, a template and a view that reads the model and calls `upstream` with
/// `requests.get`, then `makemigrations`, `migrate` (SQLite) and one row.
fn make_django_project(dir: &Path, upstream: &str) {
    let bin = Path::new(venv()).join("bin");
    run(
        dir,
        &bin.join("django-admin"),
        &["startproject", "project", "."],
    );
    let python = bin.join("python");
    run(dir, &python, &["manage.py", "startapp", "shop"]);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().expect("a parent dir")).expect("create dir");
        fs::write(&path, text).expect("write a project file");
    };
    let mut settings =
        fs::read_to_string(dir.join("project/settings.py")).expect("startproject's settings");
    settings.push_str(&format!(
        "\nINSTALLED_APPS += ['shop']\nALLOWED_HOSTS = ['*']\nUPSTREAM_URL = '{upstream}'\n"
    ));
    write("project/settings.py", &settings);
    write(
        "project/urls.py",
        "from django.urls import path\nfrom shop import views\n\n\
         urlpatterns = [path('product/<name>/', views.product)]\n",
    );
    write(
        "shop/models.py",
        "from django.db import models\n\n\n\
         class Product(models.Model):\n    \
             name = models.CharField(max_length=100, unique=True)\n    \
             price = models.IntegerField()\n",
    );
    write(
        "shop/templates/shop/product.html",
        "<h1>{{ product.name }}</h1>\n<p>costs {{ product.price }}</p>\n\
         <p>upstream: {{ upstream }}</p>\n",
    );
    write(
        "shop/views.py",
        "import requests\nfrom django.conf import settings\n\
         from django.shortcuts import get_object_or_404, render\n\n\
         from .models import Product\n\n\n\
         def product(request, name):\n    \
             item = get_object_or_404(Product, name=name)\n    \
             answer = requests.get(settings.UPSTREAM_URL, timeout=10)\n    \
             answer.raise_for_status()\n    \
             return render(request, 'shop/product.html',\n                  \
                           {'product': item, 'upstream': answer.text})\n",
    );
    run(dir, &python, &["manage.py", "makemigrations", "shop"]);
    run(dir, &python, &["manage.py", "migrate", "--verbosity", "0"]);
    run(
        dir,
        &python,
        &[
            "manage.py",
            "shell",
            "-c",
            "from shop.models import Product; Product.objects.create(name='teapot', price=42)",
        ],
    );
}

/// SIGKILLs a daemonized master's process group (it left the test's by `setsid`) on drop.
struct KillDaemonOnDrop(i32);

impl Drop for KillDaemonOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0);
        if let Ok(group) = nix::unistd::getpgid(Some(pid)) {
            let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
        }
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
    }
}

fn is_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Waits until the file at `path` has `count` lines containing `needle`.
fn wait_for_lines(path: &Path, needle: &str, count: usize) {
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.lines().filter(|l| l.contains(needle)).count() >= count {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "fewer than {count} lines {needle:?} in {}:\n{text}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_startproject_django_site_from_a_uwsgi_ini_behind_nginx_reads_its_model_and_overlaps_upstream_calls()
 {
    let upstream = Upstream::start();
    let scratch = Scratch::new("py-django");
    let dir = scratch.path();
    make_django_project(dir, &upstream.url());
    // The Django INI of a uWSGI user, unchanged but for its paths (one process: the overlap
    // below is on one worker).
    scratch.write(
        "app.ini",
        &format!(
            "[uwsgi]\nchdir = %d\nmodule = project.wsgi\nplugins = python\nmaster = true\n\
             processes = 1\nsocket = %dproject.sock\nvacuum = true\ndaemonize = %dproject.log\n\
             pidfile = %dproject.pid\nbuffer-size = 32768\ngevent = 100\nhome = {}\n",
            venv()
        ),
    );
    let started = run_cli(dir, &["--ini", "app.ini"]);
    assert_eq!(
        started.code(),
        Some(0),
        "the command returns once the daemon is ready: {}",
        started.stderr
    );
    let pidfile = dir.join("project.pid");
    let log = dir.join("project.log");
    let pid: i32 = fs::read_to_string(&pidfile)
        .expect("the pidfile is written")
        .trim()
        .parse()
        .expect("a pid in the pidfile");
    let _reaper = KillDaemonOnDrop(pid);
    assert!(is_alive(pid), "the pidfile names the running master");
    let logs = || fs::read_to_string(&log).unwrap_or_default();
    assert!(logs().contains("rcontainer ready"), "{}", logs());

    let socket = dir.join("project.sock");
    let nginx = Nginx::uwsgi_proxy(
        &scratch,
        &Target {
            proto: Proto::Uwsgi,
            addr: Addr::Unix(socket.clone()),
        },
        "",
    );
    let page = http_get(&nginx.target, "/product/teapot/");
    assert_eq!(page.status, 200, "{}\n{}", logs(), nginx.error_log());
    let text = page.text();
    assert!(text.contains("<h1>teapot</h1>"), "the model's row: {text}");
    assert!(text.contains("costs 42"), "{text}");
    assert!(
        text.contains(&format!("upstream: {UPSTREAM_SAYS}")),
        "{text}"
    );
    assert_eq!(
        http_get(&nginx.target, "/product/kettle/").status,
        404,
        "no such row"
    );

    let views: Vec<_> = (0..20)
        .map(|_| {
            let target = nginx.target.clone();
            thread::spawn(move || http_get(&target, "/product/teapot/"))
        })
        .collect();
    for view in views {
        let page = view.join().expect("client thread");
        assert_eq!(page.status, 200, "{}", logs());
        assert!(page.text().contains(UPSTREAM_SAYS), "{}", page.text());
    }
    let peak = upstream.peak();
    assert!(
        peak >= 10,
        "the upstream held at most {peak} of 20 views' calls at once"
    );
    // 1 + 1 + 20 requests, each with a line in the daemon's log file.
    wait_for_lines(&log, "GET /product/", 22);

    let stop = run_cli(dir, &["--stop", pidfile.to_str().expect("utf-8 path")]);
    assert_eq!(stop.code(), Some(0), "{}", stop.stderr);
    let start = Instant::now();
    while is_alive(pid) {
        assert!(start.elapsed() < DEADLINE, "the daemon did not stop");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(!socket.exists(), "vacuum removes the socket");
    assert!(!pidfile.exists(), "the pidfile is removed");
}

/// The Flask app of a uWSGI user: `/fanout` makes ten upstream calls in greenlets, `/load`
/// answers at once, `/upload` reads its body a piece at a time and tells its size and its
/// Adler-32 (noting each upload's end in a file), `/stream` yields 10,000 lines
/// (after the first 5,000 it waits for a file to appear), `/endless` streams until the client
/// goes and then notes that it was closed. Files are used, not memory: there are two workers.
fn flask_app(upstream: &str, dir: &Path) -> String {
    format!(
        "import os, zlib\nimport gevent\nimport requests\nfrom flask import Flask, Response, request\n\n\
         app = Flask(__name__)\nUPSTREAM = '{upstream}'\nDIR = '{dir}'\n\n\n\
         @app.route('/fanout')\n\
         def fanout():\n    \
             jobs = [gevent.spawn(requests.get, UPSTREAM, timeout=10) for _ in range(10)]\n    \
             gevent.joinall(jobs, raise_error=True)\n    \
             return '%d answers: %s' % (len(jobs), jobs[0].value.text)\n\n\n\
         @app.route('/load')\n\
         def load():\n    \
             return 'loaded'\n\n\n\
         @app.route('/upload', methods=['POST'])\n\
         def upload():\n    \
             size, check = 0, 1\n    \
             try:\n        \
                 while True:\n            \
                     piece = request.stream.read(65536)\n            \
                     if not piece:\n                \
                         break\n            \
                     size += len(piece)\n            \
                     check = zlib.adler32(piece, check)\n    \
             finally:\n        \
                 with open(os.path.join(DIR, 'uploads'), 'a') as note:\n            \
                     note.write('ended\\n')\n    \
             return '%d %d' % (size, check)\n\n\n\
         @app.route('/stream')\n\
         def stream():\n    \
             def lines():\n        \
                 for i in range(10000):\n            \
                     while i == 5000 and not os.path.exists(os.path.join(DIR, 'release')):\n                \
                         gevent.sleep(0.01)\n            \
                     yield b'line %05d\\n' % i\n    \
             return Response(lines(), mimetype='text/plain')\n\n\n\
         @app.route('/endless')\n\
         def endless():\n    \
             def lines():\n        \
                 try:\n            \
                     while True:\n                \
                         yield b'more\\n'\n                \
                         gevent.sleep(0.01)\n        \
                 finally:\n            \
                     with open(os.path.join(DIR, 'closed'), 'a') as note:\n                \
                         note.write('closed\\n')\n    \
             return Response(lines(), mimetype='text/plain')\n",
        dir = dir.display()
    )
}

/// The Flask INI of a uWSGI user, unchanged but for its paths (an HTTP unix socket: the load
/// below speaks HTTP), plus a stats socket to see the workers.
fn start_flask(name: &str, upstream: &Upstream) -> (Instance, Scratch) {
    let app = Scratch::new(&format!("{name}-app"));
    app.write("myapp.py", &flask_app(&upstream.url(), app.path()));
    let server = Instance::start(
        name,
        &format!(
            "[uwsgi]\nmodule = myapp\ncallable = app\nplugins = python3,gevent_python3\n\
             master = true\nworkers = 2\ngevent = 100\nhome = {}\npythonpath = {}\n\
             http-socket = %dflask.sock\nvacuum = true\npidfile = %dflask.pid\n\
             touch-reload = %dreload.touch\nmax-requests = 50\nstats = %dstats.sock\n",
            venv(),
            app.path().display()
        ),
        &[],
    );
    (server, app)
}

#[test]
fn a_flask_view_joining_ten_greenlets_holds_ten_upstream_calls_at_once() {
    let upstream = Upstream::start();
    let (server, _app) = start_flask("py-flask-fanout", &upstream);
    let page = http_get(&server.target(Proto::Http), "/fanout");
    assert_eq!(page.status, 200, "{}", server.logs());
    assert_eq!(page.text(), format!("10 answers: {UPSTREAM_SAYS}"));
    assert_eq!(upstream.peak(), 10, "the ten calls overlap");
}

/// A small steady load: `clients` threads each sending `GET /load` (a new connection each
/// time) with a pause between, until stopped; each keeps the failures it met.
struct GentleLoad {
    stop: Arc<AtomicBool>,
    clients: Vec<thread::JoinHandle<(usize, Vec<String>)>>,
}

impl GentleLoad {
    fn start(target: &Target, clients: usize) -> GentleLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (target, stop) = (target.clone(), Arc::clone(&stop));
                thread::spawn(move || {
                    let (mut ok, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        let raw = b"GET /load HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
                        match target
                            .try_connect()
                            .and_then(|mut c| c.send(raw).try_read_response(false))
                        {
                            Ok(r) if r.status == 200 && r.text() == "loaded" => ok += 1,
                            Ok(r) => failures.push(format!("status {}: {}", r.status, r.text())),
                            Err(e) => failures.push(e.to_string()),
                        }
                        thread::sleep(Duration::from_millis(40));
                    }
                    (ok, failures)
                })
            })
            .collect();
        GentleLoad { stop, clients }
    }

    /// Stops the clients: how many requests were served, and every failure.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut served, mut failures) = (0, Vec::new());
        for client in self.clients {
            let (ok, failed) = client.join().expect("load thread");
            served += ok;
            failures.extend(failed);
        }
        (served, failures)
    }
}

/// The pids of the workers the stats socket shows, or `None` while it cannot be read (the
/// master is re-executing itself).
fn try_worker_pids(server: &Instance) -> Option<BTreeSet<u64>> {
    let doc = try_stats_at(&server.scratch.path().join("stats.sock"))?;
    Some(
        doc["workers"]
            .as_array()?
            .iter()
            .filter_map(|w| w["pid"].as_u64())
            .filter(|&pid| pid != 0)
            .collect(),
    )
}

fn worker_pids_now(server: &Instance) -> BTreeSet<u64> {
    let mut pids = None;
    eventually("the stats socket answers", server, || {
        pids = try_worker_pids(server);
        pids.is_some()
    });
    pids.expect("invariant: set when eventually returns")
}

/// Waits until none of `before` is among the workers any more.
fn wait_replaced(server: &Instance, before: &BTreeSet<u64>, what: &str) {
    eventually(what, server, || {
        try_worker_pids(server).is_some_and(|now| !now.is_empty() && now.is_disjoint(before))
    });
}

#[test]
fn touch_reload_hup_and_chain_reload_of_a_flask_app_under_load_fail_no_request() {
    let upstream = Upstream::start();
    let (mut server, _app) = start_flask("py-flask-reloads", &upstream);
    let load = GentleLoad::start(&server.target(Proto::Http), 3);

    let before = worker_pids_now(&server);
    thread::sleep(Duration::from_millis(1100)); // let the master take the file's first look
    server.scratch.write("reload.touch", "now");
    server.wait_for_log("touch file changed: Reload");
    server.wait_for_log_count("re-executing the master in place", 1);
    wait_replaced(&server, &before, "touch-reload replaced the workers");

    let before = worker_pids_now(&server);
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("re-executing the master in place", 2);
    wait_replaced(&server, &before, "HUP replaced the workers");

    let before = worker_pids_now(&server);
    let pidfile = server.scratch.path().join("flask.pid");
    let chain = run_cli(
        server.scratch.path(),
        &["--chain-reload", pidfile.to_str().expect("utf-8 path")],
    );
    assert_eq!(chain.code(), Some(0), "{}", chain.stderr);
    server.wait_for_log("chain reload of");
    wait_replaced(&server, &before, "the chain reload replaced the workers");

    let (served, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}\n{}", server.logs());
    assert!(served > 0, "the load was served");
}

#[test]
fn a_flask_worker_past_max_requests_is_queued_for_recycling_once_while_its_successor_boots() {
    // A Python worker boots slowly: the old one serves on meanwhile, past its max-requests
    // again, and must not be queued a second time (nor logged as recycled twice).
    let upstream = Upstream::start();
    let (mut server, _app) = start_flask("py-flask-recycle-once", &upstream);
    let target = server.target(Proto::Http);
    let load = GentleLoad::start(&target, 2);
    let first = server.wait_for_log("reason=max-requests");
    let pid = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .expect("a pid in the recycling line")
        .to_string();
    server.wait_for_log(&format!("retiring worker pid={pid} reason=replaced"));
    let (served, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(served > 0);
    let logs = server.logs();
    let queued = logs
        .lines()
        .filter(|l| l.contains(&format!("recycling worker pid={pid} ")))
        .count();
    assert_eq!(
        queued, 1,
        "pid {pid} queued for recycling {queued} times:\n{logs}"
    );
}

/// Adler-32 of `data` continued from `check` (zlib's, as the app computes it).
fn adler32(check: u32, data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (check & 0xffff, check >> 16);
    // 5552 bytes is the most that can be summed before the u32 sums may overflow.
    for block in data.chunks(5552) {
        for &byte in block {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[test]
fn a_100_mb_upload_to_flask_is_streamed_through_the_worker_not_held_in_it() {
    const MIB: usize = 1 << 20;
    const SIZE: usize = 100 * MIB;
    let upstream = Upstream::start();
    let (server, _app) = start_flask("py-flask-upload", &upstream);
    let block: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
    let peaks: Vec<(u64, i64)> = (worker_pids_now(&server).into_iter())
        .map(|pid| (pid, peak_rss_kib(pid)))
        .collect();
    let mut conn = server.target(Proto::Http).connect();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {SIZE}\r\nConnection: close\r\n\r\n"
    );
    let mut writer = conn.try_clone();
    let sender = thread::spawn(move || {
        writer.send(head.as_bytes());
        for _ in 0..SIZE / MIB {
            writer.send(&block);
        }
        block
    });
    let response = conn.read_response();
    let block = sender.join().expect("the sender");
    assert_eq!(response.status, 200, "{}", server.logs());
    let expected = (0..SIZE / MIB).fold(1, |check, _| adler32(check, &block));
    assert_eq!(response.text(), format!("{SIZE} {expected}"));
    for (pid, before) in peaks {
        let growth = peak_rss_kib(pid) - before;
        eprintln!("worker {pid}: peak RSS grew by {growth} KiB during the upload");
        assert!(
            growth < 32 * 1024,
            "worker {pid}'s peak RSS grew by {growth} KiB for a 100 MiB upload"
        );
    }
}

/// A process's peak resident memory (`VmHWM`), KiB.
fn peak_rss_kib(pid: u64) -> i64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

#[test]
fn a_client_leaving_mid_upload_has_the_flask_view_ended_and_the_workers_serve_on() {
    let upstream = Upstream::start();
    let (server, app) = start_flask("py-flask-upload-cut", &upstream);
    let mut conn = server.target(Proto::Http).connect();
    conn.send(
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10485760\r\n\
          Connection: close\r\n\r\n",
    );
    conn.send(&vec![7u8; 1 << 20]);
    drop(conn);
    // The view waits for the next piece when the body is cut: its greenlet is killed there,
    // so its `finally` runs (it would wait for ever otherwise).
    let uploads = app.path().join("uploads");
    eventually("the cut upload's view ended", &server, || {
        fs::read_to_string(&uploads).is_ok_and(|text| text == "ended\n")
    });
    for _ in 0..4 {
        let page = http_get(&server.target(Proto::Http), "/load");
        assert_eq!(page.status, 200, "{}", server.logs());
    }
}

#[test]
fn a_streamed_flask_answer_arrives_in_chunks_before_the_app_has_made_the_rest() {
    let upstream = Upstream::start();
    let (server, app) = start_flask("py-flask-stream", &upstream);
    let mut conn = server.target(Proto::Http).connect();
    conn.send(b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    // Half the lines come while the app still waits to make the other half: they are sent as
    // they are made, not gathered first.
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    let wanted: &[u8] = b"line 04999\n";
    while !seen.ends_with(wanted) {
        let n = conn.read_some(&mut byte);
        assert_eq!(
            n,
            1,
            "the connection closed early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.push(byte[0]);
    }
    app.write("release", "now");
    seen.extend_from_slice(&conn.read_to_end());
    let text = String::from_utf8_lossy(&seen).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let lines: String = dechunk(body.as_bytes());
    let expected: String = (0..10000).map(|i| format!("line {i:05}\n")).collect();
    assert!(
        lines == expected,
        "the body differs:\n{}",
        &lines[..lines.len().min(200)]
    );
}

/// The data of a chunked body, which must end with its last chunk.
fn dechunk(mut body: &[u8]) -> String {
    let mut data = Vec::new();
    loop {
        let at = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_line = std::str::from_utf8(&body[..at]).expect("a size");
        let size = usize::from_str_radix(size_line.trim(), 16).expect("a hex size");
        body = &body[at + 2..];
        if size == 0 {
            assert_eq!(body, b"\r\n", "the last chunk ends the body");
            return String::from_utf8(data).expect("utf-8");
        }
        data.extend_from_slice(&body[..size]);
        assert_eq!(&body[size..size + 2], b"\r\n");
        body = &body[size + 2..];
    }
}

#[test]
fn a_client_leaving_a_streamed_flask_answer_has_the_apps_iterable_closed() {
    let upstream = Upstream::start();
    let (server, app) = start_flask("py-flask-endless", &upstream);
    let mut conn = server.target(Proto::Http).connect();
    conn.send(b"GET /endless HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut first = [0u8; 64];
    assert!(conn.read_some(&mut first) > 0, "a first piece");
    drop(conn);
    let closed = app.path().join("closed");
    eventually("the app's iterable closed", &server, || {
        fs::read_to_string(&closed).is_ok_and(|text| text == "closed\n")
    });
}

#[test]
fn a_head_request_to_flask_keeps_the_length_a_get_would_have() {
    let upstream = Upstream::start();
    let (server, _app) = start_flask("py-flask-head", &upstream);
    let response = server
        .target(Proto::Http)
        .connect()
        .send(b"HEAD /load HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .read_head_response();
    assert_eq!(response.status, 200, "{}", server.logs());
    assert_eq!(response.header("content-length"), Some("6"));
}
