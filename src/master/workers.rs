//! The master's table of worker processes, and what to do when one exits (STYLE 2: reap,
//! classify, decide).
//!
//! Pure bookkeeping: no fork, no signal, no clock of its own (callers pass `now`), so every
//! decision is a function tested with made-up exits.

use std::time::{Duration, Instant};

use crate::exit;
use crate::scoreboard::{SlotId, WorkerId};
use crate::sys::process::{ExitStatus, Pid};

/// Consecutive boot failures of one slot before the master gives up (exit code 3).
pub(crate) const MAX_BOOT_FAILURES: u32 = 5;
/// A worker that dies sooner than this after its spawn, before accepting, failed to boot.
const BOOT_WINDOW: Duration = Duration::from_secs(10);
/// First back-off after a boot failure; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Where a worker is in its life, as the master sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Forked; not accepting yet.
    Booting,
    /// Accepting requests.
    Accepting,
    /// Told to drain (TERM) at `since`: it will exit by itself, or be killed after the mercy.
    Retiring { since: Instant },
    /// Sent SIGABRT, SIGINT or SIGKILL at `since` (watchdog, mercy expired, brutal reload,
    /// immediate stop); `respawn`: replace it when it is gone (watchdog, `W`).
    Killing { since: Instant, respawn: bool },
}

impl Lifecycle {
    /// Whether the master still counts on this worker to serve.
    pub(crate) fn is_serving(self) -> bool {
        matches!(self, Lifecycle::Booting | Lifecycle::Accepting)
    }
}

/// One worker process.
#[derive(Debug, Clone)]
pub(crate) struct Worker {
    /// Its scoreboard slot; `None` for a worker of the previous master image (re-exec).
    pub(crate) slot: Option<SlotId>,
    /// Its id, 1..=`processes`: a replacement takes the id of the worker it replaces.
    pub(crate) id: WorkerId,
    pub(crate) pid: Pid,
    pub(crate) spawned: Instant,
    pub(crate) state: Lifecycle,
    /// The worker this one replaces: retired once this one accepts.
    pub(crate) replaces: Option<Pid>,
    /// `max-requests` plus this worker's jitter; `None` when recycling by count is off.
    pub(crate) max_requests: Option<u64>,
}

/// What to do about a worker that exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing: it was asked to go, the master is stopping, or the pid is not ours.
    Nothing,
    /// Start a new worker with this id in the slot now.
    Respawn(SlotId, WorkerId),
    /// Start a new worker with this id in the slot after a pause (it failed to boot).
    Backoff(SlotId, WorkerId, Duration),
    /// Stop the master with this exit code (the worker cannot boot).
    Halt(u8),
}

/// Every worker process the master supervises.
#[derive(Debug, Default)]
pub(crate) struct WorkerTable {
    workers: Vec<Worker>,
    /// Consecutive boot failures per slot.
    boot_failures: Vec<(SlotId, u32)>,
}

impl WorkerTable {
    pub(crate) fn insert(&mut self, worker: Worker) {
        self.workers.push(worker);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Worker> {
        self.workers.iter()
    }

    pub(crate) fn get_mut(&mut self, pid: Pid) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.pid == pid)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Workers the master counts on to serve (booting or accepting).
    pub(crate) fn serving(&self) -> usize {
        self.workers.iter().filter(|w| w.state.is_serving()).count()
    }

    /// Slots in use by a live process.
    pub(crate) fn slot_in_use(&self, slot: SlotId) -> bool {
        self.workers.iter().any(|w| w.slot == Some(slot))
    }

    /// Whether `id` is taken by a worker the master counts on to serve.
    pub(crate) fn id_in_use(&self, id: WorkerId) -> bool {
        self.workers
            .iter()
            .any(|w| w.id == id && w.state.is_serving())
    }

    /// Whether a booting worker is on its way to replace `pid`.
    pub(crate) fn is_being_replaced(&self, pid: Pid) -> bool {
        self.workers
            .iter()
            .any(|w| w.replaces == Some(pid) && w.state == Lifecycle::Booting)
    }

    /// Serving workers that are accepting and not already being replaced: what a workers or
    /// chain reload replaces. Booting workers are already new, so repeated requests coalesce.
    pub(crate) fn replaceable(&self) -> Vec<Pid> {
        self.workers
            .iter()
            .filter(|w| w.state == Lifecycle::Accepting && !self.is_being_replaced(w.pid))
            .map(|w| w.pid)
            .collect()
    }

    /// A worker is accepting: forget its slot's boot failures. Returns the worker it replaces
    /// (to retire now); from here on it replaces nobody.
    pub(crate) fn mark_accepting(&mut self, pid: Pid) -> Option<Pid> {
        let worker = self.get_mut(pid)?;
        if worker.state == Lifecycle::Booting {
            worker.state = Lifecycle::Accepting;
        }
        let replaced = worker.replaces.take();
        if let Some(slot) = worker.slot {
            self.boot_failures.retain(|(s, _)| *s != slot);
        }
        replaced
    }

    /// Classifies the exit of `pid` and decides what to do; the worker leaves the table.
    /// `stopping`: the master is shutting down (it never respawns then).
    pub(crate) fn on_exit(
        &mut self,
        pid: Pid,
        status: ExitStatus,
        now: Instant,
        stopping: bool,
    ) -> Decision {
        let Some(index) = self.workers.iter().position(|w| w.pid == pid) else {
            return Decision::Nothing;
        };
        let worker = self.workers.remove(index);
        let killed_for_respawn = matches!(worker.state, Lifecycle::Killing { respawn: true, .. });
        if stopping || !(worker.state.is_serving() || killed_for_respawn) {
            return Decision::Nothing;
        }
        let Some(slot) = worker.slot else {
            // An unexpected death of a previous image's worker: the new generation is
            // already there to replace it.
            return Decision::Nothing;
        };
        let failed_boot = worker.state == Lifecycle::Booting
            && status == ExitStatus::Exited(i32::from(exit::WORKER_BOOT))
            && now.duration_since(worker.spawned) < BOOT_WINDOW;
        if !failed_boot {
            return Decision::Respawn(slot, worker.id);
        }
        let failures = self.count_boot_failure(slot);
        if failures >= MAX_BOOT_FAILURES {
            Decision::Halt(exit::WORKER_BOOT)
        } else {
            Decision::Backoff(slot, worker.id, FIRST_BACKOFF * 2u32.pow(failures - 1))
        }
    }

    fn count_boot_failure(&mut self, slot: SlotId) -> u32 {
        match self.boot_failures.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.boot_failures.push((slot, 1));
                1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::process::OsSignal;

    fn worker(pid: i32, slot: u16, state: Lifecycle, spawned: Instant) -> Worker {
        Worker {
            slot: Some(SlotId(slot)),
            id: WorkerId(slot),
            pid: Pid::from_raw(pid),
            spawned,
            state,
            replaces: None,
            max_requests: None,
        }
    }

    #[test]
    fn a_crashed_worker_is_respawned_in_its_slot() {
        let now = Instant::now();
        let mut table = WorkerTable::default();
        table.insert(worker(10, 1, Lifecycle::Accepting, now));
        let crash = ExitStatus::Signaled {
            signal: OsSignal::SIGSEGV,
            core_dumped: false,
        };
        let decision = table.on_exit(Pid::from_raw(10), crash, now, false);
        assert_eq!(decision, Decision::Respawn(SlotId(1), WorkerId(1)));
        assert!(table.is_empty());
    }

    #[test]
    fn a_retiring_worker_or_a_stopping_master_means_no_respawn() {
        let now = Instant::now();
        let mut table = WorkerTable::default();
        table.insert(worker(10, 1, Lifecycle::Retiring { since: now }, now));
        table.insert(worker(11, 2, Lifecycle::Accepting, now));
        assert_eq!(
            table.on_exit(Pid::from_raw(10), ExitStatus::Exited(0), now, false),
            Decision::Nothing
        );
        assert_eq!(
            table.on_exit(Pid::from_raw(11), ExitStatus::Exited(0), now, true),
            Decision::Nothing
        );
    }

    #[test]
    fn a_worker_killed_by_the_watchdog_is_respawned_one_killed_after_its_mercy_is_not() {
        let now = Instant::now();
        let mut table = WorkerTable::default();
        let killed = |respawn| Lifecycle::Killing {
            since: now,
            respawn,
        };
        table.insert(worker(10, 1, killed(true), now));
        table.insert(worker(11, 2, killed(false), now));
        let abort = ExitStatus::Signaled {
            signal: OsSignal::SIGABRT,
            core_dumped: true,
        };
        assert_eq!(
            table.on_exit(Pid::from_raw(10), abort, now, false),
            Decision::Respawn(SlotId(1), WorkerId(1))
        );
        assert_eq!(
            table.on_exit(Pid::from_raw(11), abort, now, false),
            Decision::Nothing
        );
    }

    #[test]
    fn an_unknown_pid_is_ignored() {
        let mut table = WorkerTable::default();
        let d = table.on_exit(
            Pid::from_raw(99),
            ExitStatus::Exited(0),
            Instant::now(),
            false,
        );
        assert_eq!(d, Decision::Nothing);
    }

    #[test]
    fn boot_failures_back_off_doubling_then_halt_with_code_3() {
        let now = Instant::now();
        let mut table = WorkerTable::default();
        let boot_failure = ExitStatus::Exited(i32::from(exit::WORKER_BOOT));
        let mut decisions = Vec::new();
        for pid in 1..=MAX_BOOT_FAILURES as i32 {
            table.insert(worker(pid, 1, Lifecycle::Booting, now));
            decisions.push(table.on_exit(Pid::from_raw(pid), boot_failure, now, false));
        }
        assert_eq!(
            decisions,
            [
                Decision::Backoff(SlotId(1), WorkerId(1), Duration::from_millis(500)),
                Decision::Backoff(SlotId(1), WorkerId(1), Duration::from_millis(1000)),
                Decision::Backoff(SlotId(1), WorkerId(1), Duration::from_millis(2000)),
                Decision::Backoff(SlotId(1), WorkerId(1), Duration::from_millis(4000)),
                Decision::Halt(exit::WORKER_BOOT),
            ]
        );
    }

    #[test]
    fn a_worker_that_accepted_once_resets_the_boot_failure_count() {
        let now = Instant::now();
        let mut table = WorkerTable::default();
        let boot_failure = ExitStatus::Exited(i32::from(exit::WORKER_BOOT));
        for pid in 1..=3 {
            table.insert(worker(pid, 1, Lifecycle::Booting, now));
            table.on_exit(Pid::from_raw(pid), boot_failure, now, false);
        }
        table.insert(worker(4, 1, Lifecycle::Booting, now));
        table.mark_accepting(Pid::from_raw(4));
        assert_eq!(table.serving(), 1);
        table.on_exit(Pid::from_raw(4), ExitStatus::Exited(1), now, false);
        table.insert(worker(5, 1, Lifecycle::Booting, now));
        assert_eq!(
            table.on_exit(Pid::from_raw(5), boot_failure, now, false),
            Decision::Backoff(SlotId(1), WorkerId(1), Duration::from_millis(500))
        );
    }

    #[test]
    fn a_replacement_replaces_nobody_once_it_accepts_so_later_reloads_see_it() {
        let now = Instant::now();
        let mut table = WorkerTable::default();
        table.insert(worker(10, 1, Lifecycle::Accepting, now));
        let mut replacement = worker(11, 2, Lifecycle::Booting, now);
        replacement.id = WorkerId(1);
        replacement.replaces = Some(Pid::from_raw(10));
        table.insert(replacement);
        // While it boots: the old one is being replaced, the new one is new already.
        assert!(table.is_being_replaced(Pid::from_raw(10)));
        assert!(table.replaceable().is_empty(), "a second reload coalesces");
        assert_eq!(
            table.mark_accepting(Pid::from_raw(11)),
            Some(Pid::from_raw(10))
        );
        assert_eq!(table.mark_accepting(Pid::from_raw(11)), None);
        table.get_mut(Pid::from_raw(10)).expect("old").state = Lifecycle::Retiring { since: now };
        assert_eq!(table.replaceable(), [Pid::from_raw(11)]);
        assert!(table.id_in_use(WorkerId(1)));
        assert!(!table.id_in_use(WorkerId(2)));
    }

    #[test]
    fn a_late_exit_with_the_boot_code_is_a_crash_not_a_boot_failure() {
        let spawned = Instant::now();
        let later = spawned + BOOT_WINDOW + Duration::from_secs(1);
        let mut table = WorkerTable::default();
        table.insert(worker(7, 3, Lifecycle::Booting, spawned));
        let status = ExitStatus::Exited(i32::from(exit::WORKER_BOOT));
        assert_eq!(
            table.on_exit(Pid::from_raw(7), status, later, false),
            Decision::Respawn(SlotId(3), WorkerId(3))
        );
    }
}
