//! The master as a vassal: its end of the emperor link (`UWSGI_EMPEROR_FD`), what it tells the
//! emperor and when, and what the emperor's commands mean to it.
//!
//! What the master reports, in uWSGI's bytes: `Spawned` once an image is up (sockets bound,
//! workers forked), `Accepting` where the ready line is written (every generation), `Loyal`
//! once per vassal after the first request served, `Heartbeat` every `heartbeat` seconds, and
//! `Leaving` when it stops of its own accord (TERM/INT, FIFO `q`/`Q`), never when the emperor
//! told it to. Commands become [`Action`]s ([`action::from_emperor`]); end of file on the link
//! (the emperor is gone) is a graceful stop. uWSGI's emperor answers `Leaving` with `StopNow`:
//! a vassal draining after it said it leaves takes that as the acknowledgement it is and
//! drains on (the requests in flight still finish).
//!
//! Only the master speaks on the link: a worker closes it after the fork and loses the
//! variable, so that a worker (or a program an app starts) can neither read the emperor's
//! commands nor keep the channel open after its master died. The link survives the master's
//! re-exec: the same descriptor number (made inheritable just before the exec) and the same
//! `UWSGI_EMPEROR_FD` value; whether loyalty was already reported travels in
//! [`LOYAL_ENV`], because the emperor counts it once per vassal.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use mio::{Interest, Registry, Token};

use super::action::{self, Action};
use crate::sys::emperor_link::{Command, Link, Report};
use crate::sys::fd;
use crate::sys::process;

/// Set across a re-exec when this vassal already told its emperor it is loyal.
pub(super) const LOYAL_ENV: &str = "RCONTAINER_EMPEROR_LOYAL";

/// The master's end of the emperor link and what it has said on it.
#[derive(Debug)]
pub(super) struct Vassal {
    link: Link,
    /// `Loyal` was sent (by this image or one before it).
    loyal: bool,
    /// `Leaving` was sent.
    leaving: bool,
    /// When the next `Heartbeat` is due (`None` before the first).
    next_heartbeat: Option<Instant>,
}

/// What one read of the link found.
#[derive(Debug, Default)]
pub(super) struct Heard {
    /// The emperor's commands, as actions, in order.
    pub(super) actions: Vec<Action>,
    /// The emperor is gone: its end is closed (or the link failed).
    pub(super) gone: bool,
}

impl Vassal {
    /// The master's end of the link when it runs under an emperor; `Err` for a
    /// `UWSGI_EMPEROR_FD` that names no open descriptor. Reads (and removes) [`LOYAL_ENV`].
    pub(super) fn from_env() -> io::Result<Option<Vassal>> {
        let link =
            Link::from_env().map_err(|e| io::Error::new(e.kind(), format!("emperor link: {e}")))?;
        let Some(link) = link else {
            return Ok(None);
        };
        let loyal = std::env::var_os(LOYAL_ENV).is_some();
        if loyal {
            process::remove_env(LOYAL_ENV);
        }
        Ok(Some(Vassal {
            link,
            loyal,
            leaving: false,
            next_heartbeat: None,
        }))
    }

    /// The link's descriptor number (the same in every image of this master).
    pub(super) fn raw_fd(&self) -> RawFd {
        self.link.as_raw_fd()
    }

    /// Whether `Leaving` was sent.
    pub(super) fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// Whether `Loyal` was sent already.
    pub(super) fn is_loyal(&self) -> bool {
        self.loyal
    }

    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.link, token, Interest::READABLE)
    }

    pub(super) fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.link);
    }

    /// Sends `report`; a failure is logged (the emperor's end going away shows up as end of
    /// file on the next read).
    pub(super) fn report(&self, report: Report) {
        if let Err(e) = self.link.send(report as u8) {
            log::warn!("emperor link: cannot send {report:?}: {e}");
        }
    }

    /// Sends `Loyal` unless this vassal did already.
    pub(super) fn report_loyal(&mut self) {
        if self.loyal {
            return;
        }
        self.loyal = true;
        log::info!("first request served: telling the emperor this vassal is loyal");
        self.report(Report::Loyal);
    }

    /// Sends `Leaving` once: the master stops of its own accord.
    pub(super) fn report_leaving(&mut self) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        log::info!("telling the emperor this vassal is leaving");
        self.report(Report::Leaving);
    }

    /// Sends `Heartbeat` when one is due (`every` apart, the first at once).
    pub(super) fn beat(&mut self, every: std::time::Duration, now: Instant) {
        if every.is_zero() || self.next_heartbeat.is_some_and(|due| now < due) {
            return;
        }
        self.next_heartbeat = Some(now + every);
        self.report(Report::Heartbeat);
    }

    /// Reads what the emperor sent; unknown bytes are logged and skipped.
    pub(super) fn hear(&self) -> Heard {
        let received = match self.link.receive() {
            Ok(received) => received,
            Err(e) => {
                log::error!("emperor link: read failed: {e}");
                return Heard {
                    actions: Vec::new(),
                    gone: true,
                };
            }
        };
        let mut heard = Heard {
            actions: Vec::new(),
            gone: received.closed,
        };
        for byte in received.bytes {
            match Command::from_byte(byte) {
                Some(command) => {
                    log::info!("the emperor says: {command:?}");
                    heard.actions.push(action::from_emperor(command));
                }
                None => log::warn!("the emperor sent an unknown message {byte}: ignored"),
            }
        }
        heard
    }

    /// Clears (`true`) or sets close-on-exec on the link, around an exec of this process.
    pub(super) fn set_inheritable(&self, on: bool) -> io::Result<()> {
        fd::set_cloexec_raw(self.raw_fd(), !on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A vassal and the emperor's end of its link.
    fn linked() -> (Vassal, Link) {
        let (emperor, theirs) = Link::pair().expect("socketpair");
        let vassal = Vassal {
            link: Link::from_fd(theirs).expect("the vassal's end"),
            loyal: false,
            leaving: false,
            next_heartbeat: None,
        };
        (vassal, emperor)
    }

    #[test]
    fn heartbeats_go_out_at_once_then_every_interval_and_never_for_zero() {
        let (mut vassal, emperor) = linked();
        let start = Instant::now();
        let every = Duration::from_secs(2);
        vassal.beat(every, start);
        vassal.beat(every, start + Duration::from_secs(1));
        vassal.beat(every, start + every);
        vassal.beat(every, start + every + Duration::from_millis(500));
        assert_eq!(emperor.receive().expect("read").bytes, [26, 26]);
        let (mut quiet, emperor) = linked();
        quiet.beat(Duration::ZERO, start);
        quiet.beat(Duration::ZERO, start + every);
        assert!(emperor.receive().expect("read").bytes.is_empty());
    }

    #[test]
    fn loyalty_and_leaving_are_told_once() {
        let (mut vassal, emperor) = linked();
        vassal.report_loyal();
        vassal.report_loyal();
        vassal.report_leaving();
        vassal.report_leaving();
        assert_eq!(emperor.receive().expect("read").bytes, [17, 22]);
        let (mut reloaded, emperor) = linked();
        reloaded.loyal = true;
        reloaded.report_loyal();
        assert!(
            emperor.receive().expect("read").bytes.is_empty(),
            "loyal before the re-exec"
        );
    }

    #[test]
    fn commands_become_actions_unknown_bytes_are_skipped_and_a_closed_end_is_gone() {
        let (vassal, emperor) = linked();
        for byte in [1, 9, 2, 0] {
            emperor.send(byte).expect("send");
        }
        let heard = vassal.hear();
        assert_eq!(
            heard.actions,
            [
                Action::GracefulReload,
                Action::GracefulStop,
                Action::ImmediateStop
            ]
        );
        assert!(!heard.gone);
        drop(emperor);
        let heard = vassal.hear();
        assert!(heard.actions.is_empty() && heard.gone);
    }
}
