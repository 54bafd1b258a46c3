//! A user binary: a `/search?q=` handler that calls an upstream search API with
//! `rcontainer::client`, then fans out three more upstream calls in parallel with
//! `rt::spawn` + `rt::join_all` (gevent's `spawn` + `joinall`).
//!
//! It takes the stock command line and INI files (`Server::run`):
//!
//! ```text
//! cargo run --release --example search -- --ini conf/search.ini
//! curl 'http://127.0.0.1:9090/search?q=rust'
//! ```
//!
//! The upstream is `SEARCH_UPSTREAM` (default `http://127.0.0.1:9090/upstream`). By default it
//! is the `fake-upstream` app of this same binary, mounted at `/upstream` by
//! `conf/search.ini`: it answers after `UPSTREAM_DELAY_MS` (default 100) milliseconds, like a
//! slow API would. Point `SEARCH_UPSTREAM` at any real `http://` service that answers
//! `GET {base}/{kind}?q=...` to use that instead.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rcontainer::client::{self, Client};
use rcontainer::{Request, Response, Routes, Server, rt};
use serde_json::{Value, json};

/// The kinds of results fetched in parallel after the main call.
const FAN_OUT: [&str; 3] = ["news", "images", "videos"];

fn upstream_base() -> String {
    std::env::var("SEARCH_UPSTREAM").unwrap_or_else(|_| "http://127.0.0.1:9090/upstream".into())
}

/// One upstream call: the JSON it answered, or an error object saying why not.
fn call_upstream(client: &Client, url: &str) -> Value {
    match client.get(url).send() {
        Ok(answer) if answer.is_success() => {
            serde_json::from_slice(answer.body()).unwrap_or_else(|_| json!(answer.text()))
        }
        Ok(answer) => json!({ "error": format!("upstream answered {}", answer.status()) }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// `GET /search?q=...`: one upstream call, then three in parallel.
fn search(req: &mut Request) -> Response {
    let Some(q) = req.query_param("q") else {
        return Response::error(400).body("missing ?q=\n");
    };
    let base = upstream_base();
    let q = client::encode_component(&q);
    let client = Client::new().timeout(Duration::from_secs(5));
    let started = Instant::now();

    let web = call_upstream(&client, &format!("{base}/web?q={q}"));
    let after_first = started.elapsed();

    // Each spawned coroutine parks on its own upstream socket; the three calls overlap, so
    // this takes as long as the slowest one, not the sum.
    let calls: Vec<_> = FAN_OUT
        .iter()
        .map(|kind| {
            let url = format!("{base}/{kind}?q={q}");
            let client = client.clone();
            rt::spawn(move || call_upstream(&client, &url))
        })
        .collect();
    let fanned: Vec<Value> = rt::join_all(calls)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| json!({ "error": e.to_string() })))
        .collect();
    let fan_out_ms = (started.elapsed() - after_first).as_millis();

    Response::json_value(&json!({
        "q": req.query_param("q"),
        "web": web,
        "news": fanned[0],
        "images": fanned[1],
        "videos": fanned[2],
        "timing_ms": { "first": after_first.as_millis(), "fan_out": fan_out_ms },
    }))
}

/// A stand-in for a slow search API: parks `UPSTREAM_DELAY_MS` (or `?ms=`) and answers JSON.
fn fake_upstream(req: &mut Request) -> Response {
    let default_ms = std::env::var("UPSTREAM_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(100);
    let ms = req
        .query_param("ms")
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(default_ms)
        .min(10_000);
    rt::sleep(Duration::from_millis(ms));
    Response::json_value(&json!({
        "source": req.path().trim_start_matches('/'),
        "q": req.query_param("q"),
        "results": [format!("first result for {}", req.query_param("q").unwrap_or_default())],
    }))
}

fn main() -> ExitCode {
    let app = Routes::new()
        .get("/search", search)
        .get("/", |_: &mut Request| {
            Response::text("try /search?q=rust (upstream: SEARCH_UPSTREAM)\n")
        });
    Server::new()
        .app("search", app)
        .app("fake-upstream", fake_upstream)
        .run()
}
