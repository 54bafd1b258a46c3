//! The scoreboard: per-worker state in shared memory, written by workers, read by the master.
//!
//! Owns the layout of two [`SharedMapping`]s created by the master before it forks: one row of
//! counters per worker slot, and one row per (worker slot, core). A worker writes only its own
//! rows through [`WorkerSlot`]; the master writes spawn bookkeeping and memory samples, and reads
//! [`WorkerSnapshot`]s for stats, recycling and the watchdog. Safe code only; it must not
//! fork, signal or decide anything.
//!
//! **Sizing.** The slot count is fixed at creation. Old and new workers coexist during a workers
//! reload and TTIN adds workers, so the master should ask for [`Scoreboard::capacity_for`]
//! `(processes)` and refuse TTIN beyond it. The core count is the config's `async`.
//! Memory: `slots * 17 * 8` bytes plus `slots * cores * 21 * 8` bytes (1000 cores ~ 168 KiB per
//! slot). A re-exec'd master starts a new scoreboard; workers forked earlier keep the old one.
//!
//! **Clocks.** `heartbeat` is `CLOCK_MONOTONIC` milliseconds (one clock for all processes on a
//! boot, immune to wall-clock jumps; see [`crate::sys::clock`]). `last_spawn` and request start
//! times are Unix wall-clock values, because stats show them as dates.
//!
//! **Torn reads.** Counters are single atomics. A core's current request (in-request flag, start
//! time, `METHOD uri`) is written seqlock-style, so a reader gets a consistent triple or retries;
//! a worker killed in the middle of a write leaves the row marked busy and readers give up after
//! a bounded number of tries instead of spinning.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::Duration;

use crate::sys::clock;
use crate::sys::shm::SharedMapping;

/// A row of the scoreboard, 1-based. Slot numbers are storage: a replacement worker gets a
/// slot of its own while the worker it replaces still writes to its old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SlotId(pub(crate) u16);

/// A worker's id as operators see it (stats `id`, `id=` in logs, `%(wid)`): 1..=`processes`,
/// as in uWSGI. A respawned or replacement worker takes the id of the one it replaces, so ids
/// do not drift across chain reloads; it is stored in the worker's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct WorkerId(pub(crate) u16);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl SlotId {
    fn index(self) -> usize {
        usize::from(self.0).saturating_sub(1)
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a worker slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum WorkerStatus {
    /// No process in this slot (never used, or retired for good).
    Free = 0,
    /// Forked; loading handlers, not accepting yet.
    Booting = 1,
    /// In its accept loop: the point a chain reload waits for.
    Accepting = 2,
    /// Not accepting any more, finishing in-flight requests.
    Draining = 3,
    /// Accepting suspended (TSTP / FIFO `p`).
    Paused = 4,
    /// Exited; waiting to be respawned.
    Dead = 5,
}

impl WorkerStatus {
    fn from_word(word: u64) -> WorkerStatus {
        match word {
            1 => WorkerStatus::Booting,
            2 => WorkerStatus::Accepting,
            3 => WorkerStatus::Draining,
            4 => WorkerStatus::Paused,
            5 => WorkerStatus::Dead,
            _ => WorkerStatus::Free,
        }
    }
}

/// The words of a worker row, in order.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
enum Field {
    Pid,
    Status,
    Requests,
    DeltaRequests,
    Exceptions,
    HarakiriCount,
    HeartbeatMs,
    Tx,
    AvgRtUs,
    Rss,
    Vsz,
    RunningTimeUs,
    LastSpawnSecs,
    RespawnCount,
    /// 1 while the master asks the worker to stop accepting (TSTP / FIFO `p`).
    PauseRequested,
    /// The [`WorkerId`] of the process in the slot.
    WorkerId,
    /// Answers cut short because the client went away.
    WriteErrors,
}
const WORKER_WORDS: usize = 17;

/// The words of a core row: five counters, then the request text.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
enum CoreField {
    /// Seqlock sequence: odd while the worker is writing the fields below.
    Seq,
    InRequest,
    StartUnixMs,
    Requests,
    TextLen,
    Text,
}
/// `METHOD uri` is cut at this many bytes (like a truncated uWSGI request log line).
pub(crate) const REQUEST_TEXT_MAX: usize = 128;
const TEXT_WORDS: usize = REQUEST_TEXT_MAX / 8;
const CORE_WORDS: usize = CoreField::Text as usize + TEXT_WORDS;
/// How many times a reader retries a row that keeps changing (or whose writer died mid-write).
const SEQLOCK_TRIES: usize = 1000;

/// The shared table. Create it in the master before forking any worker.
///
/// Cloning is cheap and shares the same mappings (a worker's [`WorkerSlot`] owns a clone, so
/// it can live in `'static` coroutine state).
#[derive(Debug, Clone)]
pub(crate) struct Scoreboard {
    workers: Arc<SharedMapping<AtomicU64>>,
    cores: Arc<SharedMapping<AtomicU64>>,
    slots: usize,
    cores_per_worker: usize,
}

impl Scoreboard {
    /// Slots to create for `processes` workers: room for a full second generation (a workers
    /// reload starts every replacement before the old ones finish draining) plus TTIN headroom.
    pub(crate) fn capacity_for(processes: usize) -> usize {
        processes.saturating_mul(2).saturating_add(8)
    }

    /// Maps a zeroed scoreboard of `slots` workers with `cores_per_worker` cores each.
    pub(crate) fn new(slots: usize, cores_per_worker: usize) -> io::Result<Scoreboard> {
        if slots == 0 || slots > usize::from(u16::MAX) || cores_per_worker == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("scoreboard of {slots} slots x {cores_per_worker} cores"),
            ));
        }
        let core_rows = slots
            .checked_mul(cores_per_worker)
            .and_then(|rows| rows.checked_mul(CORE_WORDS))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "scoreboard too big"))?;
        Ok(Scoreboard {
            workers: Arc::new(SharedMapping::new_zeroed(slots * WORKER_WORDS)?),
            cores: Arc::new(SharedMapping::new_zeroed(core_rows)?),
            slots,
            cores_per_worker,
        })
    }

    /// Every slot id, in order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = SlotId> + use<> {
        (1..=self.slots).map(|n| SlotId(u16::try_from(n).expect("invariant: slots <= u16::MAX")))
    }

    /// The handle a worker writes through, or `None` for an id beyond the capacity.
    pub(crate) fn slot(&self, id: SlotId) -> Option<WorkerSlot> {
        (id.0 >= 1 && id.index() < self.slots).then(|| WorkerSlot {
            alive: None,
            board: self.clone(),
            id,
        })
    }

    /// Master, right before forking worker `worker` into slot `id`: records its pid and spawn
    /// time, clears the per-spawn counters (`delta_requests`, memory, heartbeat) and counts a
    /// respawn if the slot had a process before. Lifetime counters (`requests`, `exceptions`,
    /// ...) carry on.
    pub(crate) fn record_spawn(
        &self,
        id: SlotId,
        worker: WorkerId,
        pid: i32,
        unix_now: Duration,
    ) -> Option<()> {
        let row = self.worker_row(id)?;
        set(row, Field::WorkerId, u64::from(worker.0));
        let previous_pid = get(row, Field::Pid);
        if previous_pid != 0 || get(row, Field::LastSpawnSecs) != 0 {
            row[Field::RespawnCount as usize].fetch_add(1, Ordering::Relaxed);
        }
        set(row, Field::Pid, u64::from(pid.unsigned_abs()));
        set(row, Field::DeltaRequests, 0);
        set(row, Field::Rss, 0);
        set(row, Field::Vsz, 0);
        set(row, Field::HeartbeatMs, clock::monotonic_ms());
        set(row, Field::LastSpawnSecs, unix_now.as_secs());
        set(row, Field::Status, WorkerStatus::Booting as u64);
        for core in 0..self.cores_per_worker {
            write_core(self.core_row(id, core)?, |row| {
                set_core(row, CoreField::InRequest, 0);
                set_core(row, CoreField::TextLen, 0);
            });
        }
        Some(())
    }

    /// Master, right after the fork: the new worker's pid ([`Scoreboard::record_spawn`] ran
    /// before the fork, so the child's first writes cannot be overwritten).
    pub(crate) fn set_pid(&self, id: SlotId, pid: i32) -> Option<()> {
        set(
            self.worker_row(id)?,
            Field::Pid,
            u64::from(pid.unsigned_abs()),
        );
        Some(())
    }

    /// Master, when a worker's exit is reaped: pid 0, status `Dead` (or `Free` when the slot is
    /// retired for good, e.g. after TTOU).
    pub(crate) fn record_exit(&self, id: SlotId, retired: bool) -> Option<()> {
        let row = self.worker_row(id)?;
        set(row, Field::Pid, 0);
        let status = if retired {
            WorkerStatus::Free
        } else {
            WorkerStatus::Dead
        };
        set(row, Field::Status, status as u64);
        Some(())
    }

    /// Master: the latest memory sample of the worker in `id`, in bytes.
    pub(crate) fn record_memory(&self, id: SlotId, rss: u64, vsz: u64) -> Option<()> {
        let row = self.worker_row(id)?;
        set(row, Field::Rss, rss);
        set(row, Field::Vsz, vsz);
        Some(())
    }

    /// Master: asks the worker in `id` to stop (`true`) or resume (`false`) accepting. The
    /// worker looks at it once per loop turn.
    pub(crate) fn request_pause(&self, id: SlotId, paused: bool) -> Option<()> {
        set(
            self.worker_row(id)?,
            Field::PauseRequested,
            u64::from(paused),
        );
        Some(())
    }

    /// Master: sets the status of a slot (e.g. `Draining` when it sends TERM).
    pub(crate) fn set_status(&self, id: SlotId, status: WorkerStatus) -> Option<()> {
        set(self.worker_row(id)?, Field::Status, status as u64);
        Some(())
    }

    /// A consistent-enough copy of one slot: each counter is exact, the set of counters may
    /// straddle a request (fine for stats and checks); each core's request is untorn.
    pub(crate) fn snapshot(&self, id: SlotId) -> Option<WorkerSnapshot> {
        let row = self.worker_row(id)?;
        let cores = (0..self.cores_per_worker)
            .map(|core| self.core_row(id, core).map(|r| read_core(core, r)))
            .collect::<Option<Vec<_>>>()?;
        let pid = i32::try_from(get(row, Field::Pid)).unwrap_or(0);
        Some(WorkerSnapshot {
            slot: id,
            id: WorkerId(u16::try_from(get(row, Field::WorkerId)).unwrap_or(0)),
            pid,
            status: WorkerStatus::from_word(get(row, Field::Status)),
            requests: get(row, Field::Requests),
            delta_requests: get(row, Field::DeltaRequests),
            exceptions: get(row, Field::Exceptions),
            harakiri_count: get(row, Field::HarakiriCount),
            write_errors: get(row, Field::WriteErrors),
            heartbeat_ms: get(row, Field::HeartbeatMs),
            tx: get(row, Field::Tx),
            avg_rt_us: get(row, Field::AvgRtUs),
            rss: get(row, Field::Rss),
            vsz: get(row, Field::Vsz),
            running_time_us: get(row, Field::RunningTimeUs),
            last_spawn_secs: get(row, Field::LastSpawnSecs),
            respawn_count: get(row, Field::RespawnCount),
            cores,
        })
    }

    fn worker_row(&self, id: SlotId) -> Option<&[AtomicU64]> {
        if id.0 == 0 {
            return None;
        }
        let start = id.index() * WORKER_WORDS;
        self.workers.get(start..start + WORKER_WORDS)
    }

    fn core_row(&self, id: SlotId, core: usize) -> Option<&[AtomicU64]> {
        if id.0 == 0 || core >= self.cores_per_worker {
            return None;
        }
        let start = (id.index() * self.cores_per_worker + core) * CORE_WORDS;
        self.cores.get(start..start + CORE_WORDS)
    }
}

/// A worker's own view of its slot. All writes come from the worker's loop thread (one writer
/// per row, which the seqlock relies on).
#[derive(Debug, Clone)]
pub(crate) struct WorkerSlot {
    board: Scoreboard,
    id: SlotId,
    alive: Option<AliveCheck>,
}

/// What else must be responsive for a heartbeat to count (a Python worker's other thread).
#[derive(Clone)]
pub(crate) struct AliveCheck(Arc<dyn Fn() -> bool + Send + Sync>);

impl AliveCheck {
    #[cfg(feature = "python")]
    pub(crate) fn new(check: impl Fn() -> bool + Send + Sync + 'static) -> AliveCheck {
        AliveCheck(Arc::new(check))
    }
}

impl fmt::Debug for AliveCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AliveCheck")
    }
}

impl WorkerSlot {
    fn row(&self) -> &[AtomicU64] {
        self.board
            .worker_row(self.id)
            .expect("invariant: a WorkerSlot is only built for an id in range")
    }

    /// Stamps the loop heartbeat: call once per loop turn (not from handlers), so a loop blocked
    /// by a handler shows up as a stale heartbeat. With an [`AliveCheck`] that fails, it stamps
    /// nothing: the worker is blocked elsewhere.
    pub(crate) fn heartbeat(&self) {
        if self.alive.as_ref().is_none_or(|check| (check.0)()) {
            set(self.row(), Field::HeartbeatMs, clock::monotonic_ms());
        }
    }

    /// This slot, whose heartbeat also requires `check` to pass.
    #[cfg(feature = "python")]
    pub(crate) fn with_alive_check(mut self, check: AliveCheck) -> WorkerSlot {
        self.alive = Some(check);
        self
    }

    /// Whether the master asks this worker to stop accepting for now.
    pub(crate) fn pause_requested(&self) -> bool {
        get(self.row(), Field::PauseRequested) != 0
    }

    /// Sets the status (`Accepting` on reaching the accept loop, `Draining` on TERM, ...).
    pub(crate) fn set_status(&self, status: WorkerStatus) {
        set(self.row(), Field::Status, status as u64);
    }

    /// Marks `core` busy with `METHOD uri` (cut to [`REQUEST_TEXT_MAX`] bytes) from now.
    /// Out-of-range cores are ignored.
    pub(crate) fn begin_request(&self, core: usize, method: &str, uri: &str) {
        let Some(row) = self.board.core_row(self.id, core) else {
            return;
        };
        let start_ms = u64::try_from(clock::unix_now().as_millis()).unwrap_or(u64::MAX);
        write_core(row, |row| {
            set_core(row, CoreField::InRequest, 1);
            set_core(row, CoreField::StartUnixMs, start_ms);
            write_text(row, method, uri);
        });
    }

    /// Marks `core` idle and adds one request of `tx_bytes` sent and `duration` to the counters.
    pub(crate) fn end_request(&self, core: usize, tx_bytes: u64, duration: Duration) {
        let Some(core_row) = self.board.core_row(self.id, core) else {
            return;
        };
        write_core(core_row, |row| {
            set_core(row, CoreField::InRequest, 0);
            set_core(row, CoreField::TextLen, 0);
            row[CoreField::Requests as usize].fetch_add(1, Ordering::Relaxed);
        });
        let row = self.row();
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        row[Field::Requests as usize].fetch_add(1, Ordering::Relaxed);
        row[Field::DeltaRequests as usize].fetch_add(1, Ordering::Relaxed);
        row[Field::Tx as usize].fetch_add(tx_bytes, Ordering::Relaxed);
        row[Field::RunningTimeUs as usize].fetch_add(micros, Ordering::Relaxed);
        // uWSGI's running average (U:core/utils.c:1078): avg = (avg + rt) / 2.
        let avg = get(row, Field::AvgRtUs);
        set(row, Field::AvgRtUs, avg.midpoint(micros));
    }

    /// Counts a handler exception (a panic or an unanswered request).
    pub(crate) fn count_exception(&self) {
        self.row()[Field::Exceptions as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request cancelled by `harakiri`.
    pub(crate) fn count_harakiri(&self) {
        self.row()[Field::HarakiriCount as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an answer cut short because the client went away.
    pub(crate) fn count_write_error(&self) {
        self.row()[Field::WriteErrors as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A copy of one worker slot, with the fields uwsgitop's JSON needs (DESIGN.md §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerSnapshot {
    /// The slot it was read from.
    pub(crate) slot: SlotId,
    /// The worker id (stats `id`).
    pub(crate) id: WorkerId,
    /// 0 when no process is in the slot.
    pub(crate) pid: i32,
    /// Lifecycle state; see [`WorkerSnapshot::stats_status`] for uWSGI's string.
    pub(crate) status: WorkerStatus,
    /// Requests since the slot began (survives respawns).
    pub(crate) requests: u64,
    /// Requests since the last spawn (drives `max-requests`).
    pub(crate) delta_requests: u64,
    /// Handler panics and unanswered requests.
    pub(crate) exceptions: u64,
    /// Requests cancelled by `harakiri`.
    pub(crate) harakiri_count: u64,
    /// Answers cut short because the client went away.
    pub(crate) write_errors: u64,
    /// `CLOCK_MONOTONIC` ms of the last loop turn.
    pub(crate) heartbeat_ms: u64,
    /// Bytes written to clients.
    pub(crate) tx: u64,
    /// Running average response time, microseconds.
    pub(crate) avg_rt_us: u64,
    /// Bytes, as last sampled by the master (0 if never).
    pub(crate) rss: u64,
    /// Bytes of virtual memory, sampled like `rss`.
    pub(crate) vsz: u64,
    /// Sum of request durations, microseconds.
    pub(crate) running_time_us: u64,
    /// Unix seconds of the last spawn (0 if never).
    pub(crate) last_spawn_secs: u64,
    /// Spawns into this slot after the first.
    pub(crate) respawn_count: u64,
    /// One entry per core (`async` slot), in order.
    pub(crate) cores: Vec<CoreSnapshot>,
}

impl WorkerSnapshot {
    /// Stats `accepting`: the worker is in its accept loop.
    pub(crate) fn is_accepting(&self) -> bool {
        self.status == WorkerStatus::Accepting
    }

    /// uWSGI's stats `status` string: `pause`, `busy` (a core is in a request) or `idle`.
    pub(crate) fn stats_status(&self) -> &'static str {
        if self.status == WorkerStatus::Paused {
            "pause"
        } else if self.cores.iter().any(|core| core.in_request) {
            "busy"
        } else {
            "idle"
        }
    }

    /// How long ago the loop last stamped its heartbeat, given `monotonic_now_ms`.
    pub(crate) fn heartbeat_age(&self, monotonic_now_ms: u64) -> Duration {
        Duration::from_millis(monotonic_now_ms.saturating_sub(self.heartbeat_ms))
    }
}

/// A copy of one core of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CoreSnapshot {
    /// 0-based core index (stats `id`).
    pub(crate) id: usize,
    /// Requests this core has finished.
    pub(crate) requests: u64,
    /// Whether the core is running a request now.
    pub(crate) in_request: bool,
    /// Unix ms when the current request began (meaningful while `in_request`).
    pub(crate) request_start_unix_ms: u64,
    /// `METHOD uri` of the current request, possibly cut; `?` if the row could not be read
    /// consistently (its writer died mid-write).
    pub(crate) request: String,
}

impl CoreSnapshot {
    /// The current request's method and URI (for the stats `vars`: `REQUEST_METHOD=...`,
    /// `REQUEST_URI=...`), if the core is in a request.
    pub(crate) fn method_and_uri(&self) -> Option<(&str, &str)> {
        if !self.in_request {
            return None;
        }
        self.request.split_once(' ')
    }
}

fn get(row: &[AtomicU64], field: Field) -> u64 {
    row[field as usize].load(Ordering::Relaxed)
}

fn set(row: &[AtomicU64], field: Field, value: u64) {
    row[field as usize].store(value, Ordering::Relaxed);
}

fn set_core(row: &[AtomicU64], field: CoreField, value: u64) {
    row[field as usize].store(value, Ordering::Relaxed);
}

/// Seqlock write side (single writer): odd sequence, fields, even sequence.
fn write_core(row: &[AtomicU64], write: impl FnOnce(&[AtomicU64])) {
    let seq = &row[CoreField::Seq as usize];
    let start = seq.load(Ordering::Relaxed);
    seq.store(start.wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    write(row);
    seq.store(start.wrapping_add(2), Ordering::Release);
}

/// `METHOD uri` packed into the text words, eight bytes per word, cut at a char boundary
/// (written in place: a request's start costs no allocation).
fn write_text(row: &[AtomicU64], method: &str, uri: &str) {
    let mut text = [0u8; REQUEST_TEXT_MAX];
    let mut len = 0;
    for part in [method, " ", uri] {
        let mut take = part.len().min(REQUEST_TEXT_MAX - len);
        while !part.is_char_boundary(take) {
            take -= 1;
        }
        text[len..len + take].copy_from_slice(&part.as_bytes()[..take]);
        len += take;
    }
    // Only the words the text covers: a reader stops at `TextLen`.
    let words = &row[CoreField::Text as usize..];
    for (word, chunk) in words.iter().zip(text[..len.next_multiple_of(8)].chunks(8)) {
        let chunk: [u8; 8] = chunk
            .try_into()
            .expect("invariant: REQUEST_TEXT_MAX is 8-aligned");
        word.store(u64::from_le_bytes(chunk), Ordering::Relaxed);
    }
    set_core(row, CoreField::TextLen, len as u64);
}

/// Seqlock read side: retry while a write is in progress or happened during the read.
fn read_core(core: usize, row: &[AtomicU64]) -> CoreSnapshot {
    let seq = &row[CoreField::Seq as usize];
    for _ in 0..SEQLOCK_TRIES {
        let before = seq.load(Ordering::Acquire);
        if before % 2 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let mut copy = [0u64; CORE_WORDS];
        for (word, value) in row.iter().zip(copy.iter_mut()) {
            *value = word.load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) == before {
            return core_from_words(core, &copy);
        }
    }
    CoreSnapshot {
        id: core,
        requests: row[CoreField::Requests as usize].load(Ordering::Relaxed),
        in_request: true,
        request_start_unix_ms: 0,
        request: "?".to_owned(),
    }
}

fn core_from_words(core: usize, words: &[u64]) -> CoreSnapshot {
    let in_request = words[CoreField::InRequest as usize] == 1;
    let len = usize::try_from(words[CoreField::TextLen as usize])
        .unwrap_or(0)
        .min(REQUEST_TEXT_MAX);
    let bytes: Vec<u8> = words[CoreField::Text as usize..]
        .iter()
        .flat_map(|word| word.to_le_bytes())
        .take(len)
        .collect();
    CoreSnapshot {
        id: core,
        requests: words[CoreField::Requests as usize],
        in_request,
        request_start_unix_ms: words[CoreField::StartUnixMs as usize],
        request: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Scoreboard {
        Scoreboard::new(4, 3).expect("scoreboard")
    }

    #[test]
    fn a_new_slot_is_free_and_empty() {
        let board = board();
        let snap = board.snapshot(SlotId(1)).expect("slot 1");
        assert_eq!(snap.status, WorkerStatus::Free);
        assert_eq!(snap.pid, 0);
        assert_eq!(snap.cores.len(), 3);
        assert_eq!(snap.stats_status(), "idle");
        assert!(board.snapshot(SlotId(0)).is_none());
        assert!(board.snapshot(SlotId(5)).is_none());
        assert!(board.slot(SlotId(5)).is_none());
        assert_eq!(board.ids().count(), 4);
    }

    #[test]
    fn worker_requests_show_up_in_the_snapshot() {
        let board = board();
        board.record_spawn(
            SlotId(2),
            WorkerId(7),
            4242,
            Duration::from_secs(1_700_000_000),
        );
        let slot = board.slot(SlotId(2)).expect("slot");
        slot.set_status(WorkerStatus::Accepting);
        slot.begin_request(1, "GET", "/slow?ms=5000");
        let busy = board.snapshot(SlotId(2)).expect("snapshot");
        assert_eq!(busy.pid, 4242);
        assert_eq!((busy.slot, busy.id), (SlotId(2), WorkerId(7)));
        assert!(busy.is_accepting());
        assert_eq!(busy.stats_status(), "busy");
        assert!(busy.cores[1].in_request);
        assert_eq!(busy.cores[1].request, "GET /slow?ms=5000");
        assert_eq!(
            busy.cores[1].method_and_uri(),
            Some(("GET", "/slow?ms=5000"))
        );
        assert_eq!(busy.cores[0].method_and_uri(), None);
        assert!(busy.cores[1].request_start_unix_ms > 0);
        assert_eq!(busy.last_spawn_secs, 1_700_000_000);

        slot.end_request(1, 100, Duration::from_micros(3000));
        slot.begin_request(0, "POST", "/echo");
        slot.end_request(0, 50, Duration::from_micros(1000));
        slot.count_exception();
        slot.count_harakiri();
        let idle = board.snapshot(SlotId(2)).expect("snapshot");
        assert_eq!(idle.stats_status(), "idle");
        assert_eq!((idle.requests, idle.delta_requests), (2, 2));
        assert_eq!((idle.cores[0].requests, idle.cores[1].requests), (1, 1));
        assert_eq!(idle.tx, 150);
        assert_eq!(idle.running_time_us, 4000);
        assert_eq!(
            idle.avg_rt_us, 1250,
            "(0+3000)/2 = 1500, then (1500+1000)/2"
        );
        assert_eq!((idle.exceptions, idle.harakiri_count), (1, 1));
        assert_eq!(idle.cores[1].request, "");
    }

    #[test]
    fn respawn_keeps_lifetime_counters_and_resets_the_delta() {
        let board = board();
        let id = SlotId(1);
        board.record_spawn(id, WorkerId(1), 10, Duration::from_secs(5));
        let slot = board.slot(id).expect("slot");
        slot.begin_request(0, "GET", "/");
        slot.end_request(0, 1, Duration::from_millis(1));
        board.record_memory(id, 4096, 8192);
        board.record_exit(id, false);
        assert_eq!(board.snapshot(id).expect("s").status, WorkerStatus::Dead);
        board.record_spawn(id, WorkerId(1), 11, Duration::from_secs(6));
        let snap = board.snapshot(id).expect("snapshot");
        assert_eq!((snap.pid, snap.status), (11, WorkerStatus::Booting));
        assert_eq!((snap.requests, snap.delta_requests), (1, 0));
        assert_eq!((snap.rss, snap.respawn_count), (0, 1));
    }

    #[test]
    fn long_request_text_is_cut_at_a_char_boundary() {
        let board = board();
        let slot = board.slot(SlotId(1)).expect("slot");
        let uri = format!("/{}", "é".repeat(100));
        slot.begin_request(2, "GET", &uri);
        let text = board.snapshot(SlotId(1)).expect("s").cores[2]
            .request
            .clone();
        assert!(text.len() <= REQUEST_TEXT_MAX);
        assert!(text.starts_with("GET /éé"));
        assert!(!text.contains('\u{FFFD}'), "no half character: {text}");
    }

    #[test]
    fn a_reader_never_sees_a_torn_request_text() {
        let board = Scoreboard::new(1, 1).expect("scoreboard");
        let slot = board.slot(SlotId(1)).expect("slot");
        let texts = [
            "GET /a",
            "POST /bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        ];
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..20_000 {
                    let (method, uri) = texts[i % 2].split_once(' ').expect("space");
                    slot.begin_request(0, method, uri);
                }
            });
            let mut gave_up = 0;
            for _ in 0..20_000 {
                let core = &board.snapshot(SlotId(1)).expect("s").cores[0];
                match core.request.as_str() {
                    "?" => gave_up += 1,
                    text => assert!(text.is_empty() || texts.contains(&text), "torn: {text:?}"),
                }
            }
            assert!(
                gave_up < 1_000,
                "a busy writer starved the reader {gave_up} times"
            );
        });
    }

    #[test]
    fn a_writer_that_died_mid_write_gives_a_placeholder() {
        let board = Scoreboard::new(1, 1).expect("scoreboard");
        let row = board.core_row(SlotId(1), 0).expect("row");
        row[CoreField::Seq as usize].store(1, Ordering::Relaxed);
        let core = &board.snapshot(SlotId(1)).expect("s").cores[0];
        assert_eq!(core.request, "?");
        assert!(core.in_request);
    }

    #[test]
    fn heartbeat_age_uses_the_monotonic_clock() {
        let board = board();
        let slot = board.slot(SlotId(3)).expect("slot");
        slot.heartbeat();
        let snap = board.snapshot(SlotId(3)).expect("s");
        let now = clock::monotonic_ms() + 2500;
        assert!(snap.heartbeat_age(now) >= Duration::from_millis(2500));
        assert!(snap.heartbeat_age(now) < Duration::from_secs(60));
    }

    #[test]
    fn capacity_leaves_room_for_a_second_generation() {
        assert_eq!(Scoreboard::capacity_for(4), 16);
        assert!(Scoreboard::new(0, 1).is_err());
        assert!(Scoreboard::new(1, 0).is_err());
    }
}
