//! Heap allocations per request, counted: a warm worker answers `hello` over a keep-alive HTTP
//! connection without one, with its request log line or without (`cargo test --test alloc_count`; `-- --nocapture` is not needed,
//! the figures are printed either way).
//!
//! This binary is its own server: started with `RCONTAINER_ALLOC_SERVER` set it runs the stock
//! command line (`Server::run_with_args`) under a global allocator that counts every
//! allocation, plus an `allocs` app answering the worker's count so far. The test half starts
//! that server on a free port, warms the worker up, then reads the count before and after
//! 10,000 `hello` requests on one connection. Asking costs allocations of its own (the answer
//! is formatted), so the same question is asked twice in a row to measure that cost, which is
//! taken off. A count, not a time: the result is the same on a loaded machine.
#![allow(unsafe_code)] // the counting allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rcontainer::{Request, Response, Server};

/// Every allocation (and reallocation) this process made.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERVER_ENV: &str = "RCONTAINER_ALLOC_SERVER";
const WARM_UP: usize = 2_000;
const MEASURED: u64 = 10_000;
const DEADLINE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    if std::env::var_os(SERVER_ENV).is_some() {
        let args = std::env::args_os().collect();
        return Server::new().app("allocs", allocations).run_with_args(args);
    }
    let mut failed = false;
    for (name, logging) in [
        (
            "hello, keep-alive, request log off",
            "disable-logging = true\n",
        ),
        ("hello, keep-alive, request log on", ""),
    ] {
        let per_request = count(logging);
        println!(
            "allocations per request ({name}): {} over {MEASURED} requests",
            per_request as f64 / MEASURED as f64
        );
        if per_request != 0 {
            eprintln!("FAILED: {per_request} allocations in {MEASURED} hello requests, want 0");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        println!(
            "test result: ok. a warm worker answers hello without a heap allocation, its \
             request log line included"
        );
        ExitCode::SUCCESS
    }
}

/// The `allocs` app: this process's allocation count when the request came in.
fn allocations(_req: &mut Request) -> Response {
    Response::text(ALLOCATIONS.load(Ordering::Relaxed).to_string())
}

/// Allocations the worker made for `MEASURED` hello requests (config `extra` added).
fn count(extra: &str) -> u64 {
    let server = ServerProcess::start(extra);
    let mut conn = Client::connect(server.port);
    for _ in 0..WARM_UP {
        conn.get("/");
    }
    let before = conn.allocations();
    for _ in 0..MEASURED {
        assert_eq!(conn.get("/"), "Hello World");
    }
    let after = conn.allocations();
    // What asking costs: the same question again, right away.
    let asking = conn.allocations() - after;
    (after - before).saturating_sub(asking)
}

/// The server, killed (master and worker) when dropped.
struct ServerProcess {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl ServerProcess {
    fn start(extra: &str) -> ServerProcess {
        let dir = std::env::temp_dir().join(format!("rcontainer-alloc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ini = dir.join("alloc.ini");
        std::fs::write(
            &ini,
            format!(
                "[rcontainer]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nasync = 8\n\
                 module = hello\nmount = /allocs=allocs\n{extra}"
            ),
        )
        .expect("write ini");
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .arg("--ini")
            .arg(&ini)
            .env(SERVER_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server");
        let stderr = child.stderr.take().expect("piped stderr");
        let (ready, rx) = std::sync::mpsc::channel();
        // Reads the log to its end (the server must never block on a full pipe).
        std::thread::spawn(move || {
            let mut ready = Some(ready);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split_once("sockets=http://127.0.0.1:")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .and_then(|port| port.parse::<u16>().ok())
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(DEADLINE)
            .expect("the server prints its ready line");
        ServerProcess { child, port, dir }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One keep-alive HTTP connection.
struct Client {
    reader: BufReader<TcpStream>,
    started: Instant,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            reader: BufReader::new(stream),
            started: Instant::now(),
        }
    }

    /// GETs `path`; the body of the 200.
    fn get(&mut self, path: &str) -> String {
        assert!(self.started.elapsed() < DEADLINE, "the run took too long");
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        assert!(line.starts_with("HTTP/1.1 200"), "status line {line:?}");
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; length.expect("a content-length")];
        self.reader.read_exact(&mut body).expect("body");
        String::from_utf8(body).expect("text")
    }

    /// The worker's allocation count.
    fn allocations(&mut self) -> u64 {
        self.get("/allocs").parse().expect("a count")
    }
}
