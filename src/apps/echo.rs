//! `echo`: the request as JSON, for tests and for checking what a proxy sends.
//!
//! `?env=NAME[,NAME...]` adds `"env": {"NAME": value or null}` with those variables of the
//! worker's environment (how tests see what `env =` lines gave the workers). Like the rest of
//! echo it is a debugging aid: never mount `echo` where untrusted clients reach it.

use serde_json::{Map, Value, json};

use crate::api::{Request, Response};

/// Bodies up to this size are echoed back when they are UTF-8.
const MAX_ECHOED_BODY: usize = 64 * 1024;
/// Bodies are read (and counted) up to this size; a larger one is a 413.
const MAX_READ_BODY: usize = 64 * 1024 * 1024;

pub(crate) fn echo(req: &mut Request<'_>) -> Response {
    let body = match req.read_body(MAX_READ_BODY) {
        Ok(body) => body,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Response::error(413),
        Err(e) => {
            log::info!("echo: reading the request body failed: {e}");
            return Response::error(400);
        }
    };
    let echoed_body = match std::str::from_utf8(&body) {
        Ok(text) if body.len() <= MAX_ECHOED_BODY => Value::String(text.to_string()),
        _ => Value::Null,
    };
    let headers: Map<String, Value> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), Value::String(v.clone())))
        .collect();
    let vars: Map<String, Value> = req
        .vars()
        .iter()
        .map(|(n, v)| (n.clone(), Value::String(v.clone())))
        .collect();
    let mut doc = json!({
        "method": req.method(),
        "uri": req.uri(),
        "path": req.path(),
        "query": req.query(),
        "protocol": req.protocol(),
        "headers": headers,
        "vars": vars,
        "body_len": body.len(),
        "body": echoed_body,
        "worker": req.worker_id(),
        "pid": std::process::id(),
    });
    if let Some(names) = req.query_param("env") {
        let env: Map<String, Value> = names
            .split(',')
            .filter(|name| !name.is_empty())
            .map(|name| {
                let value = std::env::var(name).map_or(Value::Null, Value::String);
                (name.to_string(), value)
            })
            .collect();
        doc["env"] = Value::Object(env);
    }
    Response::json(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ResponseBody;

    fn json_of(response: Response) -> Value {
        let (status, _, body) = response.into_parts();
        assert_eq!(status, 200);
        let ResponseBody::Bytes(bytes) = body else {
            panic!("echo answers bytes");
        };
        serde_json::from_slice(&bytes).expect("echo answers JSON")
    }

    #[test]
    fn echo_describes_the_request() {
        let mut req = Request::builder("POST", "/e?q=1")
            .header("X-Test", "yes")
            .var("REQUEST_METHOD", "POST")
            .body(&b"hello"[..])
            .build();
        let doc = json_of(echo(&mut req));
        assert_eq!(doc["method"], "POST");
        assert_eq!(doc["uri"], "/e?q=1");
        assert_eq!(doc["path"], "/e");
        assert_eq!(doc["query"], "q=1");
        assert_eq!(doc["headers"]["x-test"], "yes");
        assert_eq!(doc["vars"]["REQUEST_METHOD"], "POST");
        assert_eq!(doc["body_len"], 5);
        assert_eq!(doc["body"], "hello");
        assert_eq!(doc["pid"], std::process::id());
    }

    #[test]
    fn env_names_asked_for_are_echoed_with_their_values() {
        let mut req = Request::builder("GET", "/?env=PATH,RCONTAINER_SURELY_UNSET").build();
        let doc = json_of(echo(&mut req));
        assert_eq!(
            doc["env"]["PATH"],
            std::env::var("PATH").expect("PATH is set")
        );
        assert_eq!(doc["env"]["RCONTAINER_SURELY_UNSET"], Value::Null);
        let mut plain = Request::builder("GET", "/").build();
        assert_eq!(json_of(echo(&mut plain)).get("env"), None);
    }

    #[test]
    fn binary_bodies_are_counted_not_echoed() {
        let mut req = Request::builder("POST", "/")
            .body(&[0xff, 0xfe][..])
            .build();
        let doc = json_of(echo(&mut req));
        assert_eq!(doc["body_len"], 2);
        assert_eq!(doc["body"], Value::Null);
    }
}
