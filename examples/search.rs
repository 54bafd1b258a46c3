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
//! Its apps declare options of their own, read from the INI like rcontainer's (and listed by
//! `--help` and `--print-config`): `search-upstream` is the search API (default
//! `http://127.0.0.1:9090/upstream`). By default that is the `fake-upstream` app of this same
//! binary, mounted at `/upstream` by `conf/search.ini`: it answers after
//! `fake-upstream-delay` (default 100 ms), like a slow API would. Point `search-upstream` at
//! any real `http://` or `https://` service that answers `GET {base}/{kind}?q=...` to use that
//! instead.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rcontainer::client::{self, Client};
use rcontainer::{
    AppConfig, AppOption, Handler, OptionKind, Request, Response, Routes, Server, rt,
};
use serde_json::{Value, json};

/// The kinds of results fetched in parallel after the main call.
const FAN_OUT: [&str; 3] = ["news", "images", "videos"];

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

/// `GET /search?q=...` against `base`: one upstream call, then three in parallel.
fn search(base: &str, req: &mut Request) -> Response {
    let Some(q) = req.query_param("q") else {
        return Response::error(400).body("missing ?q=\n");
    };
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

/// The `search` app, built in each worker from its options.
fn search_app(config: &AppConfig) -> Result<Routes, String> {
    let base = config
        .url("search-upstream")
        .ok_or("needs search-upstream")?
        .trim_end_matches('/')
        .to_string();
    let banner = format!("try /search?q=rust (upstream: {base})\n");
    Ok(Routes::new()
        .get("/search", move |req: &mut Request| search(&base, req))
        .get("/", move |_: &mut Request| Response::text(banner.clone())))
}

/// A stand-in for a slow search API: parks `fake-upstream-delay` (or `?ms=`) and answers JSON.
///
/// (`use<>`: the handler keeps nothing borrowed from `config`; a builder returning
/// `impl Handler` must say so, as handlers outlive it.)
fn fake_upstream(config: &AppConfig) -> Result<impl Handler + use<>, String> {
    let delay = config.seconds("fake-upstream-delay").unwrap_or_default();
    Ok(move |req: &mut Request| {
        let pause = req
            .query_param("ms")
            .and_then(|ms| ms.parse().ok())
            .map_or(delay, Duration::from_millis)
            .min(Duration::from_secs(10));
        rt::sleep(pause);
        Response::json_value(&json!({
            "source": req.path().trim_start_matches('/'),
            "q": req.query_param("q"),
            "results": [format!("first result for {}", req.query_param("q").unwrap_or_default())],
        }))
    })
}

fn main() -> ExitCode {
    Server::new()
        .app_with_options(
            "search",
            vec![
                AppOption::new(
                    "search-upstream",
                    OptionKind::Url,
                    "Base URL of the search API the search app calls.",
                )
                .default("http://127.0.0.1:9090/upstream"),
            ],
            search_app,
        )
        .app_with_options(
            "fake-upstream",
            vec![
                AppOption::new(
                    "fake-upstream-delay",
                    OptionKind::Seconds,
                    "How long the fake upstream takes to answer.",
                )
                .default("100ms"),
            ],
            fake_upstream,
        )
        .run()
}
