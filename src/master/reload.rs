//! Reloads: re-executing the master in place with its sockets handed over, replacing workers
//! (all at once or one at a time), and adopting the previous image's workers after an exec.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::workers::{Lifecycle, Worker, WorkerTable};
use super::{Master, OLD_WORKERS_ENV, PAUSED_ENV, REQUESTERS_ENV};
use crate::net::listener::Listener;
use crate::scoreboard::WorkerId;
use crate::sys::process::{self, OsSignal, Pid};
use crate::sys::signal::{self, Answer};
use crate::sys::{fd, privilege};

/// How long a graceful reload waits for the workers of the previous one to come up before it
/// goes ahead anyway.
const RELOAD_PATIENCE: Duration = Duration::from_secs(10);

impl Master<'_> {
    /// Records a reload request (HUP, `r`, `R`, touch-reload); [`Master::check_reload`]
    /// carries it out.
    pub(super) fn request_reload(&mut self, brutal: bool) {
        self.reload = Some(brutal || self.reload.unwrap_or(false));
    }

    /// Re-executes when a reload was asked for, unless the master is stopping; a graceful
    /// reload first waits (up to [`RELOAD_PATIENCE`]) for workers still booting, so that a
    /// storm of HUPs becomes a few re-execs, each with a generation that came up.
    pub(super) fn check_reload(&mut self) {
        let Some(brutal) = self.reload else {
            return;
        };
        if self.stopping.is_some() {
            self.reload = None;
            Master::answer_requesters(std::mem::take(&mut self.requesters), Answer::Refused);
            return;
        }
        let booting = self.workers.iter().any(|w| {
            w.slot.is_some()
                && w.state == Lifecycle::Booting
                && w.spawned.elapsed() < RELOAD_PATIENCE
        });
        if booting && !brutal {
            return;
        }
        self.reload = None;
        self.reexec(brutal);
    }

    /// Re-executes the master in place (graceful: old workers drain once replaced; brutal:
    /// they are killed first). A configuration that no longer loads keeps the old one running.
    fn reexec(&mut self, brutal: bool) {
        if let Err(errors) = (self.recheck)() {
            log::error!(
                "reload refused, the configuration does not load; still running the old one:\n{}",
                errors.join("\n")
            );
            Master::answer_requesters(std::mem::take(&mut self.requesters), Answer::Refused);
            return;
        }
        log::info!("reloading: re-executing the master in place (brutal={brutal})");
        let _ = self.notifier.reloading();
        if brutal {
            self.kill_all(OsSignal::SIGKILL, false);
            while !self.workers.is_empty() {
                self.reap();
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let names: Vec<String> = self.listeners.iter().map(Listener::handover_name).collect();
        let mut fds: Vec<(i32, &str)> = self
            .listeners
            .iter()
            .zip(&names)
            .map(|(l, name)| (l.as_raw_fd(), name.as_str()))
            .collect();
        // The stats socket too: a monitor polling it never sees a refused connection.
        let stats_name = self.config.stats.as_ref().map(super::stats_fd_name);
        if let (Some(stats), Some(name)) = (&self.stats, &stats_name) {
            fds.push((stats.listener().as_raw_fd(), name.as_str()));
        }
        for &(raw, name) in &fds {
            if let Err(e) = fd::set_cloexec_raw(raw, false) {
                log::error!("reload aborted: cannot hand over {name}: {e}");
                return;
            }
        }
        let base = self.base_env.iter().cloned();
        let mut env = fd::env_for_reexec(base, &fds, process::current_pid());
        let old: Vec<String> = self
            .workers
            .iter()
            .map(|w| format!("{}:{}", w.pid, w.id))
            .collect();
        env.retain(|(k, _)| k != OLD_WORKERS_ENV && k != PAUSED_ENV);
        env.push((OLD_WORKERS_ENV.into(), old.join(",").into()));
        if self.paused {
            env.push((PAUSED_ENV.into(), "1".into()));
        }
        let argv: Vec<OsString> = std::env::args_os().collect();
        // From here until the new image has its handlers, a signal must wait, not kill it; and
        // those the pipe holds already are handed on as pending signals.
        let mask = match signal::block_master_signals() {
            Ok(mask) => mask,
            Err(e) => {
                log::error!("reload aborted: cannot block signals: {e}");
                self.restore_after_failed_exec(&fds);
                return;
            }
        };
        let mut requesters = std::mem::take(&mut self.requesters);
        match self.signals.requeue_unread() {
            Ok(more) => requesters.extend(more),
            Err(e) => log::warn!("signals received during the reload may be lost: {e}"),
        }
        env.retain(|(k, _)| k != REQUESTERS_ENV);
        if !requesters.is_empty() {
            let list: Vec<String> = requesters.iter().map(ToString::to_string).collect();
            env.push((REQUESTERS_ENV.into(), list.join(",").into()));
        }
        let _ = std::env::set_current_dir(&self.start_dir);
        let error = process::exec_self(&argv, env);
        log::error!("reload failed: exec: {error}; still running the old master");
        Master::answer_requesters(requesters, Answer::Refused);
        let _ = signal::restore_mask(&mask);
        self.restore_after_failed_exec(&fds);
    }

    /// After an exec that did not happen: the hand-over fds are private again and the
    /// working directory is the configured one.
    fn restore_after_failed_exec(&self, fds: &[(i32, &str)]) {
        for &(raw, _) in fds {
            let _ = fd::set_cloexec_raw(raw, true);
        }
        if let Some(dir) = &self.config.chdir {
            let _ = privilege::change_dir(dir);
        }
    }

    /// Replaces every accepting worker at once; each old one drains when its replacement
    /// accepts. Workers still booting are new already, and workers already being replaced are
    /// left to their replacement: repeated requests coalesce.
    pub(super) fn reload_workers(&mut self) {
        let old = self.workers.replaceable();
        log::info!("reloading workers count={}", old.len());
        self.chain.retain(|pid| !old.contains(pid));
        for pid in old {
            self.spawn_replacement(pid);
        }
    }

    /// Queues every accepting worker for replacement, one at a time (see
    /// [`Master::reload_workers`] for what is skipped).
    pub(super) fn chain_reload(&mut self) {
        let old: Vec<Pid> = self
            .workers
            .replaceable()
            .into_iter()
            .filter(|pid| !self.chain.contains(pid))
            .collect();
        log::info!("chain reload of {} workers", old.len());
        self.chain.extend(old);
    }

    /// Starts a worker with the id of `old` that retires `old` once it accepts.
    pub(super) fn spawn_replacement(&mut self, old: Pid) {
        let Some(id) = self.workers.iter().find(|w| w.pid == old).map(|w| w.id) else {
            return;
        };
        match self.free_slot() {
            Some(slot) => {
                if let Err(e) = self.spawn_worker(slot, id, Some(old)) {
                    log::error!("cannot start a replacement for pid={old}: {e}");
                }
            }
            None => log::error!("no free worker slot to replace pid={old}"),
        }
    }
}

/// The previous image's workers, from `RCONTAINER_OLD_WORKERS` (`pid:id,...`), as serving
/// workers without a slot (they write to the old scoreboard, which this image cannot see).
pub(super) fn adopt_old_workers(table: &mut WorkerTable) -> Vec<(Pid, WorkerId)> {
    let Some(list) = std::env::var_os(OLD_WORKERS_ENV) else {
        return Vec::new();
    };
    process::remove_env(OLD_WORKERS_ENV);
    let old: Vec<(Pid, WorkerId)> = parse_old_workers(&list.to_string_lossy())
        .into_iter()
        .filter(|(pid, _)| process::is_alive(*pid))
        .collect();
    for &(pid, id) in &old {
        table.insert(Worker {
            slot: None,
            id,
            pid,
            spawned: Instant::now(),
            state: Lifecycle::Accepting,
            replaces: None,
            max_requests: None,
        });
    }
    if !old.is_empty() {
        log::info!("adopted {} workers of the previous master image", old.len());
    }
    old
}

/// `12:1,13:2` -> `[(12, 1), (13, 2)]`; malformed entries are skipped.
fn parse_old_workers(list: &str) -> Vec<(Pid, WorkerId)> {
    list.split(',')
        .filter_map(|entry| {
            let (pid, id) = entry.trim().split_once(':')?;
            Some((Pid::from_raw(pid.parse().ok()?), WorkerId(id.parse().ok()?)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_workers_travel_as_pid_and_id_pairs() {
        assert_eq!(
            parse_old_workers("12:1, 13:2,junk,14:x,15:3"),
            [
                (Pid::from_raw(12), WorkerId(1)),
                (Pid::from_raw(13), WorkerId(2)),
                (Pid::from_raw(15), WorkerId(3)),
            ]
        );
        assert!(parse_old_workers("").is_empty());
    }
}
