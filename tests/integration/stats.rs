//! The stats server under clients that do not play along: silent, slow, many. Supervision
//! (respawns, reloads, shutdown) must go on whatever they do.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::harness::client::http_get;
use crate::harness::eventually;
use crate::harness::{DEADLINE, Instance, Scratch, Signal, run_cli};
use crate::master::http;

/// Keeps `count` connections to the unix socket at `path` open at all times, never sending or
/// reading a byte: whenever the server closes one, another takes its place.
struct SilentClients {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<usize>,
}

impl SilentClients {
    fn start(path: std::path::PathBuf, count: usize) -> SilentClients {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut open: Vec<UnixStream> = Vec::new();
            let mut connected = 0;
            while !flag.load(Ordering::Relaxed) {
                // A connection the server closed reads EOF; an open one would block.
                open.retain(|mut stream| {
                    let mut byte = [0u8; 1];
                    match stream.read(&mut byte) {
                        Ok(0) => false,
                        Ok(_) => true,
                        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                    }
                });
                while open.len() < count {
                    match UnixStream::connect(&path) {
                        Ok(stream) => {
                            stream.set_nonblocking(true).expect("non-blocking");
                            open.push(stream);
                            connected += 1;
                        }
                        Err(_) => break,
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
            connected
        });
        SilentClients { stop, handle }
    }

    /// Stops and returns how many connections were made in all.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("silent clients thread")
    }
}

fn ini(extra: &str) -> String {
    format!(
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = echo\nprocesses = 2\n\
         stats = %dstats.sock\nstats-http\n{extra}"
    )
}

/// The stats JSON over HTTP from the instance's unix stats socket.
fn stats_over_http(server: &Instance) -> serde_json::Value {
    let mut stream =
        UnixStream::connect(server.scratch.path().join("stats.sock")).expect("connect stats");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .expect("send request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read stats");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    crate::harness::json(body.as_bytes())
}

#[test]
fn silent_stats_clients_hold_up_neither_respawns_nor_reloads_nor_shutdown() {
    let mut server = Instance::start("stats-silent", &ini(""), &[]);
    let clients = SilentClients::start(server.scratch.path().join("stats.sock"), 20);
    // A dead worker is respawned while the clients sit there.
    let doc = stats_over_http(&server);
    let victim = doc["workers"][0]["pid"].as_u64().expect("a worker pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim as i32), Signal::SIGKILL)
        .expect("kill a worker");
    server.wait_for_log(&format!("pid={victim} cause=signal:KILL action=respawn"));
    // A reload goes through.
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("rcontainer ready", 2);
    assert_eq!(http_get(&http(&server), "/").status, 200);
    // Real clients are still answered in full (the cap leaves room once the silent ones time
    // out), and the JSON is whole.
    let doc = stats_over_http(&server);
    assert_eq!(doc["pid"].as_u64(), Some(u64::from(server.pid())));
    // And a graceful stop ends the master.
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0));
    let connected = clients.finish();
    assert!(connected >= 20, "the silent clients connected: {connected}");
}

#[test]
fn a_client_that_reads_slowly_still_gets_the_whole_document() {
    let server = Instance::start("stats-slow-reader", &ini(""), &[]);
    let mut stream =
        UnixStream::connect(server.scratch.path().join("stats.sock")).expect("connect stats");
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .expect("send request");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut text = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("stats read failed: {e}\n{}", server.logs()),
        }
        thread::sleep(Duration::from_millis(5));
    }
    let text = String::from_utf8(text).expect("utf-8");
    let (_, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let doc = crate::harness::json(body.as_bytes());
    assert_eq!(doc["workers"].as_array().map(Vec::len), Some(2));
}

#[test]
fn stats_on_a_regular_file_is_refused_and_the_file_is_kept() {
    let scratch = Scratch::new("stats-regular-file");
    let precious = scratch.write("data.json", "precious\n");
    scratch.write(
        "app.ini",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = echo\nstats = %ddata.json\n",
    );
    let out = run_cli(scratch.path(), &["--ini", "app.ini"]);
    assert_ne!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("data.json") && out.stderr.contains("not a socket"),
        "{}",
        out.stderr
    );
    assert_eq!(
        fs::read_to_string(&precious).expect("the file is still there"),
        "precious\n"
    );
}

#[test]
fn a_reload_that_moves_the_stats_address_serves_it_at_the_new_one() {
    let mut server = Instance::start("stats-move", &ini(""), &[]);
    server.scratch.write(
        "app.ini",
        &ini("").replace("stats = %dstats.sock", "stats = %dstats2.sock"),
    );
    server.signal(Signal::SIGHUP);
    server.wait_for_log_count("rcontainer ready", 2);
    let path = server.scratch.path().join("stats2.sock");
    eventually("stats on the new address", &server, || {
        UnixStream::connect(&path).is_ok()
    });
}

/// Reads what a `stats-http` address at TCP `addr` answers to `GET path`: its head and body.
fn get_stats_over_tcp(addr: &str, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the stats address");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .expect("send request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read stats");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    (head.to_string(), body.to_string())
}

/// The address a `stats = 127.0.0.1:0` (or `emperor-stats`) socket was bound to, from the line
/// of the log that starts with `prefix` ("stats server on ").
fn bound_stats_address(server: &mut Instance, prefix: &str) -> String {
    let line = server.wait_for_log(prefix);
    let at = line.find(prefix).expect("the prefix") + prefix.len();
    line[at..].trim().to_string()
}

/// One metric family as `prometheus_client`'s parser reads it.
#[derive(Debug)]
struct Family {
    name: String,
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    value: f64,
}

impl Family {
    fn from_json(family: &serde_json::Value) -> Family {
        let text = |v: &serde_json::Value| v.as_str().expect("a string").to_string();
        let samples = family["samples"].as_array().expect("samples");
        Family {
            name: text(&family["name"]),
            kind: text(&family["type"]),
            samples: samples
                .iter()
                .map(|s| Sample {
                    name: text(&s["name"]),
                    labels: s["labels"]
                        .as_object()
                        .expect("labels")
                        .iter()
                        .map(|(k, v)| (k.clone(), text(v)))
                        .collect(),
                    value: s["value"].as_f64().expect("a value"),
                })
                .collect(),
        }
    }
}

/// Parses a `/metrics` document with `prometheus_client.parser.text_string_to_metric_families`
/// (from the test venv): a document it rejects fails the test.
fn parse_metrics(text: &str) -> Vec<Family> {
    const PARSE: &str = "
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = [
    {'name': f.name, 'type': f.type,
     'samples': [{'name': s.name, 'labels': s.labels, 'value': s.value} for s in f.samples]}
    for f in text_string_to_metric_families(sys.stdin.read())
]
json.dump(families, sys.stdout)
";
    let python = std::path::Path::new(crate::harness::venv()).join("bin/python");
    let mut child = std::process::Command::new(python)
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the metrics");
    let out = child.wait_with_output().expect("the parser's output");
    assert!(
        out.status.success(),
        "prometheus_client rejects the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families = crate::harness::json(&out.stdout);
    families
        .as_array()
        .expect("a list of families")
        .iter()
        .map(Family::from_json)
        .collect()
}

/// The family `name` as the parser names it (a counter without its `_total`).
fn family<'a>(families: &'a [Family], name: &str) -> &'a Family {
    families
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no family {name} in {families:#?}"))
}

/// The instance's request counter summed over its workers, from a parsed `/metrics`.
fn requests_counted(families: &[Family]) -> f64 {
    let requests = family(families, "rcontainer_worker_requests");
    assert_eq!(requests.kind, "counter");
    requests
        .samples
        .iter()
        .filter(|s| s.name == "rcontainer_worker_requests_total")
        .map(|s| s.value)
        .sum()
}

#[test]
fn metrics_on_a_stats_http_address_parse_and_count_exactly_the_requests_sent() {
    let mut server = Instance::start(
        "stats-metrics",
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = echo\nprocesses = 2\n\
         stats = 127.0.0.1:0\nstats-http\n",
        &[],
    );
    let stats = bound_stats_address(&mut server, "stats server on ");
    let (head, text) = get_stats_over_tcp(&stats, "/metrics");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    let before = requests_counted(&parse_metrics(&text));

    const SENT: usize = 7;
    for _ in 0..SENT {
        assert_eq!(http_get(&http(&server), "/").status, 200);
    }
    // A worker counts a request once its answer is written: the client may read it first.
    let mut families = Vec::new();
    eventually("the requests are counted", &server, || {
        families = parse_metrics(&get_stats_over_tcp(&stats, "/metrics").1);
        requests_counted(&families) >= before + SENT as f64
    });
    assert_eq!(requests_counted(&families), before + SENT as f64);

    for (name, kind) in [
        ("rcontainer_build_info", "gauge"),
        ("rcontainer_workers", "gauge"),
        ("rcontainer_listen_queue", "gauge"),
        ("rcontainer_listen_queue_max", "gauge"),
        ("rcontainer_worker_info", "gauge"),
        ("rcontainer_worker_exceptions", "counter"),
        ("rcontainer_worker_harakiri", "counter"),
        ("rcontainer_worker_respawns", "counter"),
        ("rcontainer_worker_rss_bytes", "gauge"),
        ("rcontainer_worker_avg_response_time_seconds", "gauge"),
        ("rcontainer_worker_busy_cores", "gauge"),
        ("rcontainer_worker_accepting", "gauge"),
    ] {
        assert_eq!(family(&families, name).kind, kind, "{name}");
    }
    let build = &family(&families, "rcontainer_build_info").samples[0];
    assert_eq!(build.labels["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        family(&families, "rcontainer_workers").samples[0].value,
        2.0
    );
    // One sample per worker, labelled by its id; the info metric carries the pids the JSON
    // gives.
    let accepting = family(&families, "rcontainer_worker_accepting");
    let workers: Vec<&str> = accepting
        .samples
        .iter()
        .map(|s| s.labels["worker"].as_str())
        .collect();
    assert_eq!(workers, ["1", "2"]);
    assert!(accepting.samples.iter().all(|s| s.value == 1.0));
    let (_, json) = get_stats_over_tcp(&stats, "/");
    let doc = crate::harness::json(json.as_bytes());
    let json_pids: Vec<String> = doc["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["pid"].to_string())
        .collect();
    let info_pids: Vec<&str> = family(&families, "rcontainer_worker_info")
        .samples
        .iter()
        .map(|s| s.labels["pid"].as_str())
        .collect();
    assert_eq!(info_pids, json_pids);
    // The HTTP socket's accept queue, labelled with its address.
    let http_addr = http(&server).to_string().replace("http://", "");
    let queue = family(&families, "rcontainer_listen_queue");
    assert!(
        queue
            .samples
            .iter()
            .any(|s| s.labels["socket"] == http_addr),
        "{queue:?} names {http_addr}"
    );
}

/// The emperor's `/metrics` (its `emperor-stats` is a TCP address, `stats-http` set) parsed.
fn emperor_metrics(addr: &str) -> Vec<Family> {
    let (head, text) = get_stats_over_tcp(addr, "/metrics");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    parse_metrics(&text)
}

/// The value of `vassal`'s sample in `families`' family `name`, if it has one.
fn vassal_value(families: &[Family], name: &str, vassal: &str) -> Option<f64> {
    families
        .iter()
        .find(|f| f.name == name)?
        .samples
        .iter()
        .find(|s| s.labels.get("vassal").map(String::as_str) == Some(vassal))
        .map(|s| s.value)
}

#[test]
fn emperor_metrics_give_each_vassals_state_and_the_json_stays_on_other_paths() {
    let scratch = Scratch::new("stats-emperor-metrics");
    scratch.write_dir(
        "vassals",
        &[
            (
                "good.ini",
                "[rcontainer]\nhttp-socket = %d%n.sock\nmodule = echo\nprocesses = 1\n",
            ),
            ("bad.ini", "[rcontainer]\nnonsense = 1\n"),
        ],
    );
    let args = [
        "--emperor",
        "vassals",
        "--emperor-stats",
        "127.0.0.1:0",
        "--stats-http",
    ];
    let mut emperor = Instance::spawn_in(scratch, Instance::binary(), &args, &[], None);
    let stats = bound_stats_address(&mut emperor, "emperor stats on ");
    let mut families = Vec::new();
    eventually(
        "good.ini is ready and bad.ini waits out a back-off, its config error known",
        &emperor,
        || {
            // The config error comes from a check the emperor runs after the death.
            families = emperor_metrics(&stats);
            vassal_value(&families, "rcontainer_vassal_ready", "good.ini") == Some(1.0)
                && vassal_value(&families, "rcontainer_vassal_backoff_seconds", "bad.ini")
                    .is_some_and(|s| s > 0.0)
                && vassal_value(&families, "rcontainer_vassal_config_error", "bad.ini") == Some(1.0)
        },
    );
    for (name, kind) in [
        ("rcontainer_build_info", "gauge"),
        ("rcontainer_emperor_vassals", "gauge"),
        ("rcontainer_vassal_info", "gauge"),
        ("rcontainer_vassal_ready", "gauge"),
        ("rcontainer_vassal_accepting", "gauge"),
        ("rcontainer_vassal_loyal", "gauge"),
        ("rcontainer_vassal_respawns", "counter"),
        ("rcontainer_vassal_backoff_seconds", "gauge"),
        ("rcontainer_vassal_config_error", "gauge"),
    ] {
        assert_eq!(family(&families, name).kind, kind, "{name}");
    }
    assert_eq!(
        family(&families, "rcontainer_emperor_vassals").samples[0].value,
        2.0
    );
    let bad = |name| vassal_value(&families, name, "bad.ini");
    assert_eq!(bad("rcontainer_vassal_ready"), Some(0.0));
    assert_eq!(bad("rcontainer_vassal_config_error"), Some(1.0));
    assert_eq!(
        vassal_value(&families, "rcontainer_vassal_config_error", "good.ini"),
        Some(0.0)
    );
    let states: Vec<(&str, &str)> = family(&families, "rcontainer_vassal_info")
        .samples
        .iter()
        .map(|s| (s.labels["vassal"].as_str(), s.labels["state"].as_str()))
        .collect();
    assert!(states.contains(&("bad.ini", "backoff")), "{states:?}");
    // Any other path is the emperor's JSON, as uwsgitop reads it.
    let (head, json) = get_stats_over_tcp(&stats, "/");
    assert!(
        head.contains("\r\nContent-Type: application/json"),
        "{head}"
    );
    let doc = crate::harness::json(json.as_bytes());
    assert_eq!(doc["vassals"].as_array().map(Vec::len), Some(2), "{doc}");
}
