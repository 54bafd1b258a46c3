//! Reloads: re-executing the master in place with its sockets handed over, replacing workers
//! (all at once or one at a time), and adopting the previous image's workers after an exec.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::handover::{FALLBACK_BINARY, FALLBACK_LAUNCH, pid_list};
use super::preflight::Prepared;
use super::vassal::{LOYAL_ENV, Vassal};
use super::workers::{Lifecycle, Worker, WorkerTable};
use super::{Master, OLD_WORKERS_ENV, PAUSED_ENV, REQUESTERS_ENV, stats_fd_name};
use crate::scoreboard::WorkerId;
use crate::sys::emperor_link::Report;
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
    /// storm of HUPs never stacks re-execs on generations that have not come up.
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
    /// they are killed first). A reload that cannot work (the configuration does not load, the
    /// binary does not run, a socket cannot be bound, ... see `preflight`) is refused and the
    /// old image keeps serving.
    fn reexec(&mut self, brutal: bool) {
        let new = match (self.recheck)() {
            Ok(config) => config,
            Err(errors) => {
                self.refuse_reload(&format!(
                    "the configuration does not load:\n{}",
                    errors.join("\n")
                ));
                return;
            }
        };
        let prepared = match self.preflight(&new) {
            Ok(prepared) => prepared,
            Err(why) => {
                self.refuse_reload(&why);
                return;
            }
        };
        log::info!("reloading: re-executing the master in place (brutal={brutal})");
        let _ = self.notifier.reloading();
        if brutal {
            self.kill_all(OsSignal::SIGKILL, false);
            while !self.workers.is_empty() {
                self.reap();
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let error = self.exec_reload(prepared);
        log::error!("reload failed: {error}; still running the old master");
    }

    /// Logs why a reload is refused and tells whoever waits for it.
    fn refuse_reload(&mut self, why: &str) {
        log::error!("reload refused: {why}; still running the old configuration");
        Master::answer_requesters(std::mem::take(&mut self.requesters), Answer::Refused);
        // An emperor that asked for the reload waits to hear the vassal accepts again: it
        // does, as it was.
        if let Some(vassal) = self.vassal.as_ref().filter(|_| self.announced) {
            vassal.report(Report::Accepting);
        }
    }

    /// Executes the binary on disk with this image's arguments and hands over: the listeners,
    /// the stats socket, what `prepared` bound, the workers, the pause, the requesters, and the
    /// way back to this configuration. Returns only if the exec failed (everything is as it
    /// was then, and the requesters are told).
    fn exec_reload(&mut self, prepared: Prepared) -> io::Error {
        let mut fds: Vec<(RawFd, String)> = (self.listeners.iter())
            .map(|l| (l.as_raw_fd(), l.handover_name()))
            .collect();
        // The stats socket too: a monitor polling it never sees a refused connection.
        if let (Some(stats), Some(spec)) = (&self.stats, &self.config.stats) {
            fds.push((stats.listener().as_raw_fd(), stats_fd_name(spec)));
        }
        fds.extend(
            prepared
                .listeners
                .iter()
                .map(|(n, l)| (l.as_raw_fd(), n.clone())),
        );
        fds.extend(
            prepared
                .stats
                .iter()
                .map(|(n, l)| (l.as_raw_fd(), n.clone())),
        );
        // The way back: the previous image's if this one is not up yet, else this one's.
        let launch_fd = match self.handover.fallback_parts() {
            Some((_, launch)) => launch.to_memfd(),
            None => self.launch.to_memfd(),
        };
        let launch_fd = match launch_fd {
            Ok(fd) => fd,
            Err(e) => return io::Error::new(e.kind(), format!("launch record: {e}")),
        };
        let binary = match self.handover.fallback_parts() {
            Some((binary, _)) => Some(binary),
            None => self.own_binary.as_ref().map(AsRawFd::as_raw_fd),
        };
        fds.push((launch_fd.as_raw_fd(), FALLBACK_LAUNCH.to_string()));
        if let Some(binary) = binary {
            fds.push((binary, FALLBACK_BINARY.to_string()));
        }
        // Descriptors this image inherited and does not pass on must not leak into the next
        // (those it does pass on, such as the previous binary, are opened again just below).
        self.handover.seal_originals(true);
        for (raw, name) in &fds {
            if let Err(e) = fd::set_cloexec_raw(*raw, false) {
                self.handover.seal_originals(false);
                self.restore_after_failed_exec(&fds);
                return io::Error::new(e.kind(), format!("cannot hand over {name}: {e}"));
            }
        }
        // The emperor link keeps its number and its variable (`UWSGI_EMPEROR_FD` is in the
        // base environment); it is no hand-over socket, so it is not listed with them.
        if let Some(Err(e)) = self.vassal.as_ref().map(|v| v.set_inheritable(true)) {
            self.handover.seal_originals(false);
            self.restore_after_failed_exec(&fds);
            return io::Error::new(e.kind(), format!("cannot hand over the emperor link: {e}"));
        }
        let named: Vec<(RawFd, &str)> = fds.iter().map(|(raw, n)| (*raw, n.as_str())).collect();
        let base = self.base_env.iter().cloned();
        let mut env = fd::env_for_reexec(base, &named, process::current_pid());
        env.retain(|(k, _)| {
            k != OLD_WORKERS_ENV && k != PAUSED_ENV && k != REQUESTERS_ENV && k != LOYAL_ENV
        });
        env.push((OLD_WORKERS_ENV.into(), self.worker_list().into()));
        if self.paused {
            env.push((PAUSED_ENV.into(), "1".into()));
        }
        if self.vassal.as_ref().is_some_and(Vassal::is_loyal) {
            env.push((LOYAL_ENV.into(), "1".into()));
        }
        let argv: Vec<OsString> = std::env::args_os().collect();
        // From here until the new image has its handlers, a signal must wait, not kill it; and
        // those the pipe holds already are handed on as pending signals.
        let mask = match signal::block_master_signals() {
            Ok(mask) => mask,
            Err(e) => {
                self.handover.seal_originals(false);
                self.restore_after_failed_exec(&fds);
                return io::Error::new(e.kind(), format!("cannot block signals: {e}"));
            }
        };
        let requesters = self.take_requesters_for_exec();
        if !requesters.is_empty() {
            env.push((REQUESTERS_ENV.into(), pid_list(&requesters).into()));
        }
        let _ = std::env::set_current_dir(&self.start_dir);
        let error = process::exec_self(&argv, env);
        Master::answer_requesters(requesters, Answer::Refused);
        let _ = signal::restore_mask(&mask);
        self.handover.seal_originals(false);
        self.restore_after_failed_exec(&fds);
        io::Error::new(error.kind(), format!("exec: {error}"))
    }

    /// This image came from a reload and cannot serve (its workers do not boot): executes the
    /// previous image again with everything it handed over, plus this image's workers (they
    /// drain once replaced). Returns only if that is impossible.
    pub(super) fn fall_back(&mut self, reason: &str) -> io::Error {
        log::error!("reload failed: {reason}; starting the previous configuration again");
        let _ = signal::block_master_signals();
        let own: Vec<String> = (self.workers.iter())
            .filter(|w| w.slot.is_some())
            .map(|w| format!("{}:{}", w.pid, w.id))
            .collect();
        let mut requesters = self.take_requesters_for_exec();
        requesters.append(&mut self.answer_when_ready);
        // The previous image talks to the emperor on the same link.
        if let Some(vassal) = &self.vassal {
            let _ = vassal.set_inheritable(true);
        }
        let error = self.handover.fall_back(reason, &own, &requesters);
        if let Some(vassal) = &self.vassal {
            let _ = vassal.set_inheritable(false);
        }
        error
    }

    /// The `--reload` commands to hand to the next image: those waiting now, and those whose
    /// signal is still in the pipe (it is emptied: the signals are raised again to stay
    /// pending across the exec).
    fn take_requesters_for_exec(&mut self) -> Vec<Pid> {
        let mut requesters = std::mem::take(&mut self.requesters);
        match self.signals.requeue_unread() {
            Ok(more) => requesters.extend(more),
            Err(e) => log::warn!("signals received during the reload may be lost: {e}"),
        }
        requesters
    }

    /// `pid:id,...` of every worker, for the next image to adopt.
    fn worker_list(&self) -> String {
        let old: Vec<String> = (self.workers.iter())
            .map(|w| format!("{}:{}", w.pid, w.id))
            .collect();
        old.join(",")
    }

    /// After an exec that did not happen: the hand-over fds are private again and the
    /// working directory is the configured one.
    fn restore_after_failed_exec(&self, fds: &[(RawFd, String)]) {
        for (raw, _) in fds {
            let _ = fd::set_cloexec_raw(*raw, true);
        }
        if let Some(vassal) = &self.vassal {
            let _ = vassal.set_inheritable(false);
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
