//! `sleep`: parks the request for `?ms=N` milliseconds (`&block=1` blocks the thread).

use std::time::Duration;

use crate::api::{Request, Response};

/// The longest sleep asked for that is honoured (one hour).
const MAX_SLEEP_MS: u64 = 3_600_000;

pub(crate) fn sleep(req: &mut Request<'_>) -> Response {
    let ms = match req.query_param("ms").map(|ms| ms.parse::<u64>()) {
        None => 0,
        Some(Ok(ms)) if ms <= MAX_SLEEP_MS => ms,
        Some(_) => return Response::error(400),
    };
    let duration = Duration::from_millis(ms);
    if req.query_param("block").as_deref() == Some("1") {
        // Deliberately blocks the whole worker: this is what the watchdog must catch.
        std::thread::sleep(duration);
    } else {
        // Parks this request only. A cancelled request (harakiri) unwinds out of here and
        // the worker answers 504.
        crate::rt::sleep(duration);
    }
    Response::text(format!("slept {ms} ms\n"))
}
