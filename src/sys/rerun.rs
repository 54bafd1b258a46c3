//! Test support: run one unit test's body in a child copy of the test binary.
//!
//! Some `sys` behaviour is process-wide (signal dispositions, fork, shared mappings seen by
//! another process). Unit tests must not change the test runner's own process, so such a test
//! re-runs itself: the parent starts `current_exe() <test path> --exact` with an environment
//! variable naming the test, and only the child (which sees the variable) runs the body.
//! The parent waits with a deadline and fails with the child's output.

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Set in the child to the path of the test it must run.
pub(crate) const CHILD_ENV: &str = "RCONTAINER_TEST_CHILD";
const DEADLINE: Duration = Duration::from_secs(30);

/// In the parent: runs the test `test_path` (e.g. `sys::signal::tests::name`) in a child
/// process and panics unless it passed. In that child: runs `body`.
pub(crate) fn in_child_process(test_path: &str, body: impl FnOnce()) {
    if is_child_for(test_path) {
        body();
        return;
    }
    let (status, text) = spawn_test_child(test_path);
    match status {
        Some(status) if status.success() && text.contains("1 passed") => {}
        Some(status) => panic!("child test {test_path} failed ({status}):\n{text}"),
        None => panic!("child test {test_path} timed out after {DEADLINE:?}:\n{text}"),
    }
}

/// Reaps children until at least one exit is collected or `deadline` passes.
pub(crate) fn reap_within(
    deadline: Duration,
) -> Vec<(super::process::Pid, super::process::ExitStatus)> {
    let end = Instant::now() + deadline;
    let mut reaped = Vec::new();
    while reaped.is_empty() && Instant::now() < end {
        reaped = super::process::reap_children();
        std::thread::sleep(Duration::from_millis(5));
    }
    reaped
}

/// Whether this process is the child started for `test_path`.
pub(crate) fn is_child_for(test_path: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(test_path)
}

/// Runs the test binary on `test_path` with the child marker; returns its exit status (`None`
/// if it missed the deadline and was killed) and its stdout + stderr.
pub(crate) fn spawn_test_child(test_path: &str) -> (Option<ExitStatus>, String) {
    let output_path = unique_output_path();
    let output = std::fs::File::create(&output_path).expect("create child output file");
    let mut child = Command::new(std::env::current_exe().expect("current test binary"))
        .args([test_path, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test_path)
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("dup output"))
        .stderr(output)
        .spawn()
        .expect("spawn child test process");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child test") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&output_path).unwrap_or_default();
    let _ = std::fs::remove_file(&output_path);
    (status, text)
}

/// Tells whether this process is such a child.
pub(crate) fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

fn unique_output_path() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("rcontainer-child-{}-{n}.out", std::process::id()))
}
