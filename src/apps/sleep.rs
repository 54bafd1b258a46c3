//! `sleep`: parks the request for `?ms=N` milliseconds (`&block=1` blocks the thread).
//! `&spawn=N` fans out instead: N tasks started with `rt::try_spawn` each sleep `ms` and the
//! request waits for all of them (503 naming the budget when `spawn-limit` is exhausted).

use std::time::Duration;

use crate::api::{Request, Response};
use crate::rt;

/// The longest sleep asked for that is honoured (one hour).
const MAX_SLEEP_MS: u64 = 3_600_000;
/// The most tasks one request may fan out to.
const MAX_SPAWN: usize = 100_000;

pub(crate) fn sleep(req: &mut Request<'_>) -> Response {
    let ms = match req.query_param("ms").map(|ms| ms.parse::<u64>()) {
        None => 0,
        Some(Ok(ms)) if ms <= MAX_SLEEP_MS => ms,
        Some(_) => return Response::error(400),
    };
    let spawn = match req.query_param("spawn").map(|n| n.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) if n <= MAX_SPAWN => n,
        Some(_) => return Response::error(400),
    };
    let duration = Duration::from_millis(ms);
    if spawn > 0 {
        return fan_out(spawn, duration, ms);
    }
    if req.query_param("block").as_deref() == Some("1") {
        // Deliberately blocks the whole worker: this is what the watchdog must catch.
        std::thread::sleep(duration);
    } else {
        // Parks this request only. A cancelled request (harakiri) unwinds out of here and
        // the worker answers 504.
        rt::sleep(duration);
    }
    Response::text(format!("slept {ms} ms\n"))
}

/// Starts `n` tasks sleeping `duration` each and waits for them all.
fn fan_out(n: usize, duration: Duration, ms: u64) -> Response {
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        match rt::try_spawn(move || rt::sleep(duration)) {
            Ok(task) => tasks.push(task),
            Err(e) => {
                // The budget is back in full once this answer is out.
                rt::join_all(tasks);
                return Response::error(503).body(format!("{e}\n"));
            }
        }
    }
    let failed = rt::join_all(tasks).iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        return Response::error(500).body(format!("{failed} of {n} tasks failed\n"));
    }
    Response::text(format!("slept {ms} ms in {n} tasks\n"))
}
