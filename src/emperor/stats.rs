//! `emperor-stats`: the emperor's stats JSON in uWSGI's emperor format (uwsgitop shows it),
//! written to whoever connects, then closed.
//!
//! The document (reference `uwsgi-compat.md` §4.6): `version, pid, uid, gid, cwd, emperor[],
//! emperor_tyrant, throttle_level, vassals[], blacklist[]`; each vassal `id, pid, born,
//! last_mod, last_heartbeat, loyal, ready, accepting, ..., respawns` plus rcontainer's own
//! `state, config_error, backoff_until, backoff_ms, path`. Built with serde_json, so it is
//! valid JSON whatever the file names or error texts hold (uWSGI's `attrs` is `{}`).
//!
//! With `stats-http` (as in uWSGI) an HTTP/1.0 response wraps the JSON, and `GET /metrics`
//! answers the vassals' state in the Prometheus text format ([`metrics`]).
//!
//! Served from the emperor's loop through the transport the instance stats server uses too
//! (`sys::stats_server`: non-blocking clients, each given a deadline, a bounded number at
//! once); the socket is bound by the command line (`net`), handed over here as a descriptor.

use serde_json::{Value, json};

use crate::sys::prometheus::{Kind, MetricsText, PerItem};
use crate::sys::stats_server::Incident;
pub(crate) use crate::sys::stats_server::{Format, StatsListener, StatsServer};

/// The hand-over name of the `emperor-stats` socket for `spec`, a unix socket or TCP:
/// `emperor-stats unix SPEC` or `emperor-stats tcp SPEC` (the next image adopts it only if its
/// configuration still names `spec`).
pub(crate) fn handover_name(unix: bool, spec: &str) -> String {
    let kind = if unix { "unix" } else { "tcp" };
    format!("emperor-stats {kind} {spec}")
}

/// What the emperor logs of its stats clients: only a failing `accept`.
pub(crate) fn log_incident(incident: Incident<'_>) {
    if let Incident::AcceptFailed(e) = incident {
        log::warn!("emperor stats: accept: {e}");
    }
}

/// The document as sent to a client.
pub(crate) fn answer(document: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(document).expect("invariant: a serde_json Value serializes")
}

/// One vassal as stats show it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VassalStats {
    pub(crate) id: String,
    pub(crate) path: String,
    pub(crate) monitor: String,
    pub(crate) state: &'static str,
    pub(crate) pid: i32,
    pub(crate) born: u64,
    pub(crate) last_mod: i64,
    pub(crate) last_heartbeat: u64,
    pub(crate) loyal: u64,
    pub(crate) ready: bool,
    pub(crate) accepting: bool,
    /// Its process was started by a previous image of this emperor (before an upgrade).
    pub(crate) adopted: bool,
    pub(crate) first_run: u64,
    pub(crate) last_run: u64,
    pub(crate) respawns: u32,
    pub(crate) failures: u32,
    pub(crate) config_error: Option<String>,
    /// Unix seconds of the next respawn, 0 when not in back-off.
    pub(crate) backoff_until: u64,
    pub(crate) backoff_ms: u64,
}

/// Every per-vassal family but `rcontainer_vassal_info`, labelled `vassal="ID"`.
const VASSAL_METRICS: [PerItem<VassalStats>; 6] = [
    (
        "rcontainer_vassal_ready",
        Kind::Gauge,
        "1 once a vassal reported ready (its workers serve), else 0.",
        |v| f64::from(u8::from(v.ready)),
    ),
    (
        "rcontainer_vassal_accepting",
        Kind::Gauge,
        "1 while a vassal reports accepting, else 0.",
        |v| f64::from(u8::from(v.accepting)),
    ),
    (
        "rcontainer_vassal_loyal",
        Kind::Gauge,
        "1 once a vassal has run long enough to be loyal, else 0.",
        |v| f64::from(u8::from(v.loyal != 0)),
    ),
    (
        "rcontainer_vassal_respawns_total",
        Kind::Counter,
        "Times the emperor started a vassal again.",
        |v| f64::from(v.respawns),
    ),
    (
        "rcontainer_vassal_backoff_seconds",
        Kind::Gauge,
        "The back-off a vassal is waiting out before its next start (0 when none).",
        |v| v.backoff_ms as f64 / 1000.0,
    ),
    (
        "rcontainer_vassal_config_error",
        Kind::Gauge,
        "1 while a vassal's configuration does not load (see the stats JSON's config_error).",
        |v| f64::from(u8::from(v.config_error.is_some())),
    ),
];

/// The vassals' state in the Prometheus text format (`GET /metrics` with `stats-http`).
pub(crate) fn metrics(vassals: &[VassalStats]) -> Vec<u8> {
    let mut m = MetricsText::new();
    m.build_info();
    m.family(
        "rcontainer_emperor_vassals",
        Kind::Gauge,
        "Vassals the emperor governs.",
    )
    .sample(&[], vassals.len() as f64);
    m.family(
        "rcontainer_vassal_info",
        Kind::Gauge,
        "A vassal's path, state and process id as labels (always 1).",
    );
    for v in vassals {
        let pid = v.pid.to_string();
        m.sample(
            &[
                ("vassal", &v.id),
                ("path", &v.path),
                ("state", v.state),
                ("pid", &pid),
            ],
            1.0,
        );
    }
    let by_id = vassals.iter().map(|v| (v.id.as_str(), v));
    m.families_per_item(&VASSAL_METRICS, "vassal", by_id);
    m.into_bytes()
}

/// The whole document.
pub(crate) fn document(pid: i32, monitors: &[String], vassals: &[VassalStats]) -> Value {
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let list: Vec<Value> = vassals
        .iter()
        .map(|v| {
            json!({
                "id": v.id,
                "pid": v.pid,
                "born": v.born,
                "last_mod": v.last_mod,
                "last_heartbeat": v.last_heartbeat,
                "loyal": v.loyal,
                "ready": u8::from(v.ready),
                "accepting": u8::from(v.accepting),
                "last_loyal": v.loyal,
                "last_ready": if v.ready { v.last_run } else { 0 },
                "last_accepting": if v.accepting { v.last_run } else { 0 },
                "first_run": v.first_run,
                "last_run": v.last_run,
                "cursed": 0,
                "zerg": 0,
                "on_demand": "",
                "suspended": 0,
                "adopted": u8::from(v.adopted),
                "uid": nix::unistd::getuid().as_raw(),
                "gid": nix::unistd::getgid().as_raw(),
                "monitor": v.monitor,
                "attrs": {},
                "respawns": v.respawns,
                "state": v.state,
                "path": v.path,
                "config_error": v.config_error,
                "backoff_until": v.backoff_until,
                "backoff_ms": v.backoff_ms,
            })
        })
        .collect();
    let blacklist: Vec<Value> = vassals
        .iter()
        .filter(|v| v.backoff_until != 0)
        .map(|v| {
            json!({
                "id": v.id,
                "throttle_level": v.backoff_ms,
                "attempt": v.failures,
                "first_attempt": v.first_run,
                "last_attempt": v.last_run,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": pid,
        "uid": nix::unistd::getuid().as_raw(),
        "gid": nix::unistd::getgid().as_raw(),
        "cwd": cwd,
        "emperor": monitors,
        "emperor_tyrant": 0,
        "throttle_level": 0,
        "vassals": list,
        "blacklist": blacklist,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vassal in back-off after its configuration failed, with an odd file name.
    fn odd_vassal() -> VassalStats {
        VassalStats {
            id: "we\"ird\n.ini".into(),
            path: "/v/we\"ird\n.ini".into(),
            monitor: "/v".into(),
            state: "backoff",
            pid: 0,
            born: 1,
            last_mod: 2,
            last_heartbeat: 0,
            loyal: 0,
            ready: false,
            accepting: false,
            adopted: false,
            first_run: 1,
            last_run: 3,
            respawns: 2,
            failures: 2,
            config_error: Some("a.ini:1: prcesses: unknown option \"x\"".into()),
            backoff_until: 10,
            backoff_ms: 2000,
        }
    }

    #[test]
    fn the_document_has_uwsgis_emperor_fields_and_stays_json_with_odd_text() {
        let doc = document(42, &["/v".into()], &[odd_vassal()]);
        let text = serde_json::to_string(&doc).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        for key in [
            "version",
            "pid",
            "emperor",
            "emperor_tyrant",
            "throttle_level",
            "vassals",
            "blacklist",
        ] {
            assert!(back.get(key).is_some(), "{key}");
        }
        let v = &back["vassals"][0];
        assert_eq!(v["id"], "we\"ird\n.ini");
        assert_eq!(v["attrs"], json!({}));
        assert_eq!(v["respawns"], 2);
        assert_eq!(back["blacklist"][0]["throttle_level"], 2000);
        assert!(v["config_error"].as_str().unwrap().contains("prcesses"));
    }

    #[test]
    fn metrics_give_one_sample_per_vassal_with_escaped_labels() {
        let mut ready = odd_vassal();
        ready.id = "app.ini".into();
        ready.path = "/v/app.ini".into();
        ready.state = "running";
        ready.pid = 77;
        ready.ready = true;
        ready.loyal = 5;
        ready.respawns = 1;
        ready.config_error = None;
        ready.backoff_until = 0;
        ready.backoff_ms = 0;
        let text = String::from_utf8(metrics(&[odd_vassal(), ready])).unwrap();
        let odd = r#"vassal="we\"ird\n.ini""#;
        for (name, kind, _, _) in VASSAL_METRICS {
            let kind = if kind == Kind::Counter {
                "counter"
            } else {
                "gauge"
            };
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{text}");
            assert!(
                text.contains(&format!("\n{name}{{{odd}}} ")),
                "{name}:\n{text}"
            );
            assert!(
                text.contains(&format!("\n{name}{{vassal=\"app.ini\"}} ")),
                "{text}"
            );
        }
        assert!(text.contains(&format!("\nrcontainer_vassal_backoff_seconds{{{odd}}} 2\n")));
        assert!(text.contains(&format!("\nrcontainer_vassal_respawns_total{{{odd}}} 2\n")));
        assert!(text.contains(&format!("\nrcontainer_vassal_config_error{{{odd}}} 1\n")));
        assert!(text.contains("\nrcontainer_vassal_ready{vassal=\"app.ini\"} 1\n"));
        assert!(text.contains("\nrcontainer_vassal_loyal{vassal=\"app.ini\"} 1\n"));
        assert!(text.contains("\nrcontainer_vassal_backoff_seconds{vassal=\"app.ini\"} 0\n"));
        assert!(text.contains(
            "\nrcontainer_vassal_info{vassal=\"app.ini\",path=\"/v/app.ini\",state=\"running\",pid=\"77\"} 1\n"
        ));
        assert!(text.contains("\nrcontainer_emperor_vassals 2\n"));
    }
}
