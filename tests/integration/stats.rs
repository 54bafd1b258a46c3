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
