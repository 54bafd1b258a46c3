//! Logger setup: one line per event on stderr, which `daemonize`/`logto` point at a file.
//!
//! Lines look like `2026-11-23T17:45:01.123Z info master[4121] worker exited id=3 cause=signal:KILL`:
//! a UTC timestamp, the level, the process role and pid, then a lowercase message with
//! `key=value` pairs. Log files are reopened by re-pointing fd 2 (see `sys`), so the logger
//! itself always writes to stderr and never needs to know about files.
//!
//! The level comes from `RUST_LOG` (env_logger syntax, default `info`). This module imports
//! nothing from the crate.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Role value for the master process (worker ids start at 1).
const MASTER: u32 = 0;
/// Role value before the master has started (one-shot commands).
const COMMAND: u32 = u32::MAX;

static ROLE: AtomicU32 = AtomicU32::new(COMMAND);

/// The `log` target of request-log lines: written as they are, without the server-line prefix.
pub(crate) const REQUEST_TARGET: &str = "rcontainer::request";

/// Installs the logger once; later calls are no-ops (a re-exec'd master calls it again).
pub(crate) fn init() {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(log::LevelFilter::Info)
        .parse_env("RUST_LOG")
        .target(env_logger::Target::Stderr)
        .format(|buf, record| {
            if record.target() == REQUEST_TARGET {
                return writeln!(buf, "{}", record.args());
            }
            let level = record.level().as_str().to_ascii_lowercase();
            let timestamp = buf.timestamp_millis();
            let pid = std::process::id();
            match ROLE.load(Ordering::Relaxed) {
                COMMAND => writeln!(
                    buf,
                    "{timestamp} {level} rcontainer[{pid}] {}",
                    record.args()
                ),
                MASTER => writeln!(buf, "{timestamp} {level} master[{pid}] {}", record.args()),
                id => writeln!(
                    buf,
                    "{timestamp} {level} worker{id}[{pid}] {}",
                    record.args()
                ),
            }
        });
    // A second init (tests, re-exec) keeps the first logger: that is fine.
    let _ = builder.try_init();
}

/// Marks this process as the master in every following line.
pub(crate) fn set_role_master() {
    ROLE.store(MASTER, Ordering::Relaxed);
}

/// Marks this process as worker `id` (1-based) in every following line.
pub(crate) fn set_role_worker(id: u32) {
    ROLE.store(id, Ordering::Relaxed);
}

/// `Mon Nov 23 17:45:01 2026`, the C `ctime` shape uWSGI's request log uses, in UTC.
pub(crate) fn ctime(at: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let time = secs % 86_400;
    format!(
        "{} {} {day:2} {:02}:{:02}:{:02} {year}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31): Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ctime_formats_like_c() {
        assert_eq!(ctime(UNIX_EPOCH), "Thu Jan  1 00:00:00 1970");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_455_901); // 2026-11-23 17:45:01 UTC
        assert_eq!(ctime(t), "Mon Nov 23 17:45:01 2026");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(ctime(leap), "Tue Feb 29 00:00:00 2000");
    }
}
