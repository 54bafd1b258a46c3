//! The master's per-tick checks (STYLE 3): readiness, replacements, mercy, watchdog,
//! recycling, memory samples, touch files, back-offs, what the emperor is due to hear. Each is
//! small and named for what it looks at.

use std::time::{Duration, Instant};

use super::workers::Lifecycle;
use super::{KILL_GRACE, MEMORY_SAMPLE, Master, Stopping, TOUCH_CHECK, action};
use crate::net::listener::Listener;
use crate::scoreboard::{SlotId, WorkerId, WorkerStatus};
use crate::sys::clock;
use crate::sys::daemon::DaemonReady;
use crate::sys::emperor_link::Report;
use crate::sys::memory;
use crate::sys::process::{self, OsSignal, Pid};
use crate::sys::signal;

impl Master<'_> {
    /// Announces readiness once every serving worker accepts; retires replaced workers.
    pub(super) fn check_ready(&mut self, daemon: &mut Option<DaemonReady>) {
        let booted: Vec<Pid> = self
            .workers
            .iter()
            .filter(|w| w.state == Lifecycle::Booting)
            .filter(|w| {
                w.slot
                    .and_then(|s| self.scoreboard.snapshot(s))
                    .is_some_and(|s| {
                        matches!(s.status, WorkerStatus::Accepting | WorkerStatus::Paused)
                    })
            })
            .map(|w| w.pid)
            .collect();
        for pid in booted {
            if let Some(old) = self.workers.mark_accepting(pid) {
                self.retire(old, "replaced");
            }
        }
        // Ready means: workers of this image accept, none is still booting, none waits for a
        // back-off after a failed boot.
        let own: Vec<Lifecycle> = (self.workers.iter())
            .filter(|w| w.slot.is_some() && w.state.is_serving())
            .map(|w| w.state)
            .collect();
        let all_accepting = !own.is_empty()
            && own.iter().all(|&state| state == Lifecycle::Accepting)
            && self.backoffs.is_empty();
        if self.announced || !all_accepting || self.stopping.is_some() {
            return;
        }
        self.announced = true;
        // Old workers left over from a re-exec with fewer workers now drain too.
        let leftovers: Vec<Pid> = self
            .workers
            .iter()
            .filter(|w| w.slot.is_none() && w.state.is_serving() && !self.chain.contains(&w.pid))
            .map(|w| w.pid)
            .collect();
        for pid in leftovers {
            self.retire(pid, "replaced");
        }
        let urls: Vec<String> = self.listeners.iter().map(Listener::url).collect();
        log::info!(
            "rcontainer ready pid={} sockets={} version={} build={}",
            std::process::id(),
            urls.join(","),
            env!("CARGO_PKG_VERSION"),
            process::binary_identity()
        );
        let _ = self
            .notifier
            .ready(&format!("{} workers accepting", self.workers.serving()));
        if let Some(vassal) = &self.vassal {
            vassal.report(Report::Accepting);
        }
        // This image is up: what it inherited for a way back is released, and whoever asked
        // for the reload hears how it went (a fallback image is the old configuration again).
        let answer = if self.replaying().is_some() {
            signal::Answer::Refused
        } else {
            signal::Answer::Done
        };
        self.handover.commit();
        Master::answer_requesters(std::mem::take(&mut self.answer_when_ready), answer);
        if let Some(daemon) = daemon.take() {
            daemon.report_ready();
        }
    }

    /// Chain reload and recycling: one replacement at a time.
    pub(super) fn check_chain(&mut self) {
        let replacing = self
            .workers
            .iter()
            .any(|w| w.state == Lifecycle::Booting && w.replaces.is_some());
        if replacing || self.stopping.is_some() {
            return;
        }
        while let Some(old) = self.chain.pop_front() {
            let serving = self
                .workers
                .iter()
                .any(|w| w.pid == old && w.state.is_serving());
            if serving {
                self.spawn_replacement(old);
                return;
            }
        }
    }

    /// Workers past their mercy are killed; killed ones that linger get SIGKILL.
    pub(super) fn check_mercy(&mut self) {
        let now = Instant::now();
        let out_of_time = matches!(
            self.stopping,
            Some(Stopping::Graceful { deadline } | Stopping::Immediate { deadline }) if now >= deadline
        );
        let mercy = self.config.worker_reload_mercy;
        let overdue: Vec<(Pid, bool)> = self
            .workers
            .iter()
            .filter_map(|w| match w.state {
                Lifecycle::Retiring { since } if out_of_time || now - since >= mercy => {
                    Some((w.pid, false))
                }
                // SIGABRT or SIGINT was not enough (or a SIGKILL is still being delivered).
                Lifecycle::Killing { since, .. } if out_of_time || now - since >= KILL_GRACE => {
                    Some((w.pid, true))
                }
                _ => None,
            })
            .collect();
        for (pid, already_killing) in overdue {
            let _ = process::send_signal(pid, OsSignal::SIGKILL);
            if already_killing {
                continue;
            }
            log::warn!("worker pid={pid} still busy after the mercy: killing it");
            if let Some(worker) = self.workers.get_mut(pid) {
                worker.state = Lifecycle::Killing {
                    since: now,
                    respawn: false,
                };
            }
        }
    }

    /// A worker whose loop heartbeat is older than `worker-watchdog` is blocked: log what its
    /// cores were doing, SIGABRT it (SIGKILL follows), respawn it.
    pub(super) fn check_watchdog(&mut self) {
        let limit = self.config.worker_watchdog;
        if limit.is_zero() {
            return;
        }
        let now_ms = clock::monotonic_ms();
        let blocked: Vec<(Pid, WorkerId, Duration)> = self
            .workers
            .iter()
            .filter(|w| w.state == Lifecycle::Accepting)
            .filter_map(|w| {
                let age = self.scoreboard.snapshot(w.slot?)?.heartbeat_age(now_ms);
                (age > limit).then_some((w.pid, w.id, age))
            })
            .collect();
        for (pid, id, age) in blocked {
            log::error!(
                "worker id={id} pid={pid} blocked its event loop for {}s (worker-watchdog={}s): \
                 a handler is blocking the thread; aborting it",
                age.as_secs(),
                limit.as_secs()
            );
            self.log_cores();
            let _ = process::send_signal(pid, OsSignal::SIGABRT);
            if let Some(worker) = self.workers.get_mut(pid) {
                worker.state = Lifecycle::Killing {
                    since: Instant::now(),
                    respawn: true,
                };
            }
        }
    }

    /// `max-requests`, `max-worker-lifetime`, `reload-on-rss`: queue the worker for a
    /// replacement (one at a time, the replacement accepting before the old one drains).
    pub(super) fn check_recycling(&mut self) {
        let lifetime = self.config.max_worker_lifetime;
        let rss_limit = self.config.reload_on_rss.saturating_mul(1 << 20);
        let now = Instant::now();
        let due: Vec<(Pid, &'static str)> = self
            .workers
            .iter()
            // Queued or with a successor booting (popped from the chain, still accepting
            // until it is ready): it is on its way out already.
            .filter(|w| {
                w.state == Lifecycle::Accepting
                    && !self.chain.contains(&w.pid)
                    && !self.workers.is_being_replaced(w.pid)
            })
            .filter_map(|w| {
                let snapshot = self.scoreboard.snapshot(w.slot?)?;
                if w.max_requests
                    .is_some_and(|max| snapshot.delta_requests >= max)
                {
                    Some((w.pid, "max-requests"))
                } else if !lifetime.is_zero() && now.duration_since(w.spawned) >= lifetime {
                    Some((w.pid, "max-worker-lifetime"))
                } else if rss_limit > 0 && snapshot.rss > rss_limit {
                    Some((w.pid, "reload-on-rss"))
                } else {
                    None
                }
            })
            .collect();
        for (pid, why) in due {
            log::info!("recycling worker pid={pid} reason={why}");
            self.chain.push_back(pid);
        }
    }

    pub(super) fn check_memory(&mut self) {
        if self.last_memory_sample.elapsed() < MEMORY_SAMPLE {
            return;
        }
        self.last_memory_sample = Instant::now();
        for worker in self.workers.iter() {
            if let (Some(slot), Ok(usage)) = (worker.slot, memory::read_memory_use(worker.pid)) {
                self.scoreboard.record_memory(slot, usage.rss, usage.vsz);
            }
        }
    }

    pub(super) fn check_touch_files(&mut self) {
        if self.last_touch_check.elapsed() < TOUCH_CHECK {
            return;
        }
        self.last_touch_check = Instant::now();
        for kind in self.touch.changed() {
            log::info!("touch file changed: {kind:?}");
            self.apply(action::from_touch(kind));
        }
    }

    /// Under an emperor: the heartbeat when due, and loyalty once a worker of this image has
    /// served a request (the scoreboard's counters; a vassal is loyal once, across reloads).
    pub(super) fn check_emperor(&mut self) {
        let Some(vassal) = self.vassal.as_mut() else {
            return;
        };
        vassal.beat(self.config.heartbeat, Instant::now());
        if vassal.is_loyal() {
            return;
        }
        let served = (self.workers.iter().filter_map(|w| w.slot)).any(|slot| {
            self.scoreboard
                .snapshot(slot)
                .is_some_and(|s| s.requests > 0)
        });
        if served {
            vassal.report_loyal();
        }
    }

    pub(super) fn check_backoffs(&mut self) {
        let now = Instant::now();
        let due: Vec<(SlotId, WorkerId)> = self
            .backoffs
            .iter()
            .filter(|b| b.at <= now)
            .map(|b| (b.slot, b.id))
            .collect();
        self.backoffs.retain(|b| b.at > now);
        if self.stopping.is_some() {
            return;
        }
        for (slot, id) in due {
            if let Err(e) = self.spawn_worker(slot, id, None) {
                log::error!("respawn failed id={id}: {e}");
            }
        }
    }
}
