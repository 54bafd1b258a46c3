//! Clocks shared by the master and its workers.
//!
//! Owns the choice of time base for timestamps written to shared memory: `CLOCK_MONOTONIC` is
//! one clock for every process on a boot (unlike `Instant`, whose value cannot be stored), and
//! does not jump when the wall clock is set. Wall-clock time is only for display (stats).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since boot on `CLOCK_MONOTONIC` (comparable across processes on the same boot).
pub(crate) fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux, so
    // the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

/// `monotonic_now()` in whole milliseconds.
pub(crate) fn monotonic_ms() -> u64 {
    u64::try_from(monotonic_now().as_millis()).unwrap_or(u64::MAX)
}

/// Wall-clock time since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_never_goes_back() {
        let first = monotonic_now();
        let second = monotonic_now();
        assert!(second >= first);
        assert!(monotonic_ms() >= u64::try_from(first.as_millis()).expect("fits"));
    }
}
