//! Upgrading the emperor in place: it re-executes the binary now on disk (same pid, so the
//! vassals stay its children), and the new image adopts the running vassals instead of
//! starting them again.
//!
//! The old image hands over, as a master hands its sockets over on reload: each vassal's link
//! and the stats socket are listed in `RCONTAINER_FDS` (addressed to this pid) with
//! close-on-exec cleared, and so does the vassal table (a memory file, one [`Adoption`] line
//! per vassal), and the way back (this image's binary and launch) travels as well. The new
//! image loads its configuration again (same arguments), adopts every vassal whose process is
//! there (one that died meanwhile is reaped and respawned as any dead vassal) and those
//! waiting out a back-off or exiled, and rescans: a file that changed meanwhile is checked and
//! reloaded, one that is gone is stopped. The `--upgrade` commands waiting for an answer are
//! listed in the table too: the new image answers them (done, or refused when it is the
//! previous image started again).
//!
//! If the exec fails, the old image governs on. If the new image cannot start (its
//! configuration does not load, a monitor is gone, ...), it executes the previous image again
//! with the same hand-over ([`Ancestry::fall_back`], the master's way back, which the emperor
//! may not import): the vassals never notice. Once an image is up it commits: the inherited
//! originals are closed before it starts any child, so no vassal inherits another's link.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use mio::{Interest, Token};

use crate::sys::emperor_link::{Link, VASSAL_TABLE};
use crate::sys::fd::{self, InheritedFd};
use crate::sys::process::{self, Pid};
use crate::sys::{clock, signal};

use super::stats::handover_name;
use super::vassal::{Adoption, Vassal, Waiting};
use super::{Emperor, VASSALS};

/// The previous image's way back, kept by the command line (it is the master's hand-over).
pub(crate) trait Ancestry {
    /// Whether this image was started by an upgrade and may still go back to the previous one.
    fn can_fall_back(&self) -> bool;
    /// Executes the previous image again with everything handed over (`why` for its log).
    /// Returns only if that failed.
    fn fall_back(&self, why: &str) -> io::Error;
    /// This image is up: the inherited originals are closed, there is no way back.
    fn commit(&mut self);
}

/// What the command line gives the emperor about the images before it and after it.
pub(crate) struct Lineage<'a> {
    /// What the previous image handed over (vassal links, ...), as close-on-exec copies.
    pub(crate) inherited: Vec<InheritedFd>,
    /// This image was started by an upgrade (or is the previous image started again): the
    /// process is set up already (no daemonizing, no log redirection), vassals are adopted.
    pub(crate) upgraded: bool,
    /// This image is the previous one started again after a failed upgrade: why it failed.
    pub(crate) replaying: Option<String>,
    /// The descriptors (and hand-over names) that give the next image its way back here.
    pub(crate) way_back: Vec<(RawFd, String)>,
    pub(crate) ancestry: &'a mut dyn Ancestry,
}

/// A line of the vassal table naming an `--upgrade` command to answer: `requester PID`.
const REQUESTER: &str = "requester ";

/// The hand-over name of the link of the vassal with this pid.
fn link_name(pid: Pid) -> String {
    format!("vassal link {pid}")
}

impl Emperor<'_> {
    /// Re-executes the emperor in place, handing every vassal over. Returns only if the exec
    /// failed (or could not be prepared): everything is as it was, and the emperor governs on.
    pub(super) fn upgrade(&mut self) {
        // From here until the new image has its handlers, a signal waits; those in the pipe
        // already are raised again to stay pending across the exec.
        let mask = match signal::block_master_signals() {
            Ok(mask) => mask,
            Err(e) => {
                log::error!("emperor: upgrade failed: cannot block signals: {e}");
                return;
            }
        };
        match self.signals.requeue_unread() {
            Ok(requesters) => {
                for pid in requesters {
                    // A `--reload` whose HUP is requeued: the next image reloads every vassal.
                    if process::has_argument(pid, "--reload") {
                        let _ = signal::send_answer(pid, signal::Answer::Done);
                    }
                    if process::has_argument(pid, "--upgrade") {
                        self.upgrade_requesters.push(pid);
                    }
                }
            }
            Err(e) => log::warn!("emperor: signals received during the upgrade may be lost: {e}"),
        }
        let error = self.exec_upgrade();
        let _ = signal::restore_mask(&mask);
        log::error!("emperor: upgrade failed: {error}; the old image governs on");
        let _ = self.notifier.ready(&self.status_text());
    }

    /// Hands everything over and executes the binary on disk. Returns only on failure, with
    /// the hand-over descriptors private again.
    fn exec_upgrade(&mut self) -> io::Error {
        let mut fds: Vec<(RawFd, String)> = Vec::new();
        let mut lines = Vec::new();
        let now = Instant::now();
        for (_, vassal) in &self.vassals {
            let link = vassal
                .process
                .as_ref()
                .and_then(|p| Some((p.pid, p.link.as_ref()?)));
            let link_fd = link.map_or(-1, |(_, l)| l.as_raw_fd());
            if let Some((pid, link)) = link {
                fds.push((link.as_raw_fd(), link_name(pid)));
            }
            let checking = self.checks.values().any(|c| c.path == vassal.path);
            let recheck = checking || vassal.config_error.is_some();
            if let Some(adoption) = vassal.adoption(link_fd, recheck, now) {
                lines.push(adoption.encode());
            }
        }
        let handed = lines.len();
        // The `--upgrade` commands waiting, for the next image to answer.
        lines.extend((self.upgrade_requesters.iter()).map(|pid| format!("{REQUESTER}{pid}")));
        let table = match fd::memfd_with("rcontainer-vassals", lines.join("\n").as_bytes()) {
            Ok(table) => table,
            Err(e) => return io::Error::new(e.kind(), format!("the vassal table: {e}")),
        };
        fds.push((table.as_raw_fd(), VASSAL_TABLE.to_string()));
        if let (Some(stats), Some(spec)) = (&self.stats, &self.config.emperor_stats) {
            let listener = stats.listener();
            let name = handover_name(listener.is_unix(), &spec.to_string());
            fds.push((listener.as_raw_fd(), name));
        }
        fds.extend(self.way_back.iter().cloned());
        for (raw, name) in &fds {
            if let Err(e) = fd::set_cloexec_raw(*raw, false) {
                restore(&fds);
                return io::Error::new(e.kind(), format!("cannot hand over {name}: {e}"));
            }
        }
        let named: Vec<(RawFd, &str)> = fds.iter().map(|(raw, n)| (*raw, n.as_str())).collect();
        let env = fd::env_for_reexec(std::env::vars_os(), &named, process::current_pid());
        let binary = process::reexec_path();
        log::info!(
            "emperor: upgrading: re-executing {} in place, handing over {handed} vassals",
            binary.display()
        );
        let _ = self.notifier.reloading();
        let argv: Vec<OsString> = std::env::args_os().collect();
        let error = process::exec_self(&argv, env);
        restore(&fds);
        io::Error::new(error.kind(), format!("exec {}: {error}", binary.display()))
    }

    /// In an image started by an upgrade: takes over the vassals the previous image handed
    /// over (the vassal table in `inherited`, and their links). Each is recorded with the file
    /// it was running, so the first scan reloads or stops those whose file changed or went
    /// away meanwhile. `replaying`: this image is the previous one, started again.
    pub(super) fn adopt_vassals(&mut self, mut inherited: Vec<InheritedFd>, replaying: bool) {
        let Some(at) = (inherited.iter()).position(|f| f.name.as_deref() == Some(VASSAL_TABLE))
        else {
            return;
        };
        let table = match fd::read_whole(&inherited.remove(at).fd) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                // Their links close with the originals: they stop, and the scan starts them.
                log::error!("emperor: the vassal table cannot be read: {e}");
                return;
            }
        };
        let now = Instant::now();
        let now_unix = clock::unix_now().as_secs();
        let mut adopted = 0;
        let mut requesters = Vec::new();
        for line in table.lines().filter(|l| !l.is_empty()) {
            if let Some(pid) = line
                .strip_prefix(REQUESTER)
                .and_then(|p| p.trim().parse().ok())
            {
                requesters.push(Pid::from_raw(pid));
                continue;
            }
            let Some(adoption) = Adoption::decode(line) else {
                log::warn!("emperor: cannot adopt a vassal from {line:?}: not a vassal record");
                continue;
            };
            adopted += usize::from(self.adopt(&adoption, &mut inherited, now, now_unix));
        }
        log::info!(
            "emperor {} pid={} binary={} adopted={adopted}",
            if replaying {
                "back to the previous image"
            } else {
                "upgraded in place"
            },
            process::current_pid(),
            process::binary_identity()
        );
        self.upgrade_requesters = requesters;
        self.answer_upgrade(if replaying {
            signal::Answer::Refused
        } else {
            signal::Answer::Done
        });
    }

    /// Tells the `--upgrade` commands waiting how it went (only processes still running
    /// `--upgrade`: a pid reused since is left alone).
    pub(super) fn answer_upgrade(&mut self, answer: signal::Answer) {
        for pid in self.upgrade_requesters.drain(..) {
            if process::has_argument(pid, "--upgrade") {
                let _ = signal::send_answer(pid, answer);
            }
        }
    }

    /// Adopts one vassal; false if it is not (gone, or a second one for the same file).
    fn adopt(
        &mut self,
        adoption: &Adoption,
        inherited: &mut Vec<InheritedFd>,
        now: Instant,
        now_unix: u64,
    ) -> bool {
        if adoption.waiting != Waiting::Running {
            return self.adopt_waiting(adoption);
        }
        let pid = Pid::from_raw(adoption.pid);
        let name = link_name(pid);
        let link = inherited
            .iter()
            .position(|f| f.name.as_deref() == Some(name.as_str()))
            .map(|at| inherited.remove(at).fd)
            .map(Link::from_fd)
            .transpose()
            .unwrap_or_else(|e| {
                log::warn!("emperor: vassal pid={pid}: its link cannot be used: {e}");
                None
            });
        // A vassal that died during the exec is still there (a zombie, for this loop to reap
        // and respawn); one gone entirely is started again by the scan.
        if !process::is_alive(pid) {
            log::warn!("emperor: vassal pid={pid} is gone: not adopted");
            return false;
        }
        if self.by_path.contains_key(&adoption.path) {
            log::warn!(
                "emperor: two vassals of {} handed over: pid={pid} is not adopted",
                adoption.path.display()
            );
            return false;
        }
        let key = self
            .vassals
            .insert(Vassal::adopt(adoption, link, now, now_unix));
        let registry = self.poll.registry();
        let vassal = &mut self.vassals[key];
        let id = vassal.id();
        if let Some(process) = &mut vassal.process
            && let Some(link) = &mut process.link
            && let Err(e) = registry.register(link, Token(VASSALS + key), Interest::READABLE)
        {
            log::warn!("emperor: vassal {id}: cannot watch its link: {e}");
            process.link = None;
        }
        log::info!("emperor: adopted vassal {} pid={pid}", vassal.id());
        self.by_path.insert(adoption.path.clone(), key);
        self.files.insert(adoption.path.clone(), adoption.file);
        true
    }
}

impl Emperor<'_> {
    /// A vassal of the previous image that waits out its back-off (its timer goes on here) or
    /// is exiled (until its file changes).
    fn adopt_waiting(&mut self, adoption: &Adoption) -> bool {
        if self.by_path.contains_key(&adoption.path) {
            return false;
        }
        let now = Instant::now();
        let vassal = Vassal::adopt(adoption, None, now, clock::unix_now().as_secs());
        log::info!(
            "emperor: adopted vassal {} ({})",
            vassal.id(),
            vassal.state.name()
        );
        let key = self.vassals.insert(vassal);
        self.by_path.insert(adoption.path.clone(), key);
        self.files.insert(adoption.path.clone(), adoption.file);
        true
    }
}

/// After an exec that did not happen: the hand-over descriptors are private again.
fn restore(fds: &[(RawFd, String)]) {
    for (raw, _) in fds {
        let _ = fd::set_cloexec_raw(*raw, true);
    }
}
