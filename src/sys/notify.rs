//! systemd's `sd_notify` protocol: state lines sent as one datagram to `$NOTIFY_SOCKET`.
//!
//! Owns the wire format (`READY=1`, `RELOADING=1` + `MONOTONIC_USEC=`, `STOPPING=1`, `STATUS=`,
//! `WATCHDOG=1`) and the socket address rules (a path, or `@name` for the abstract namespace).
//! When the variable is unset every call is a no-op. It must not decide *when* to notify: the
//! master does (ready once every worker accepts, reloading before a re-exec, ...).

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use super::clock;

/// The variable systemd sets for `Type=notify` / `Type=notify-reload` services.
pub(crate) const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Where notifications go, if anywhere. Build it once with [`Notifier::from_env`].
///
/// ```ignore
/// let notifier = Notifier::from_env();
/// notifier.ready(&format!("serving on {sockets}"))?;   // when every worker accepts
/// notifier.reloading()?;                               // before the re-exec; ready() after
/// ```
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    target: Option<SocketAddr>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`. An unset or empty variable gives a notifier that sends nothing.
    pub(crate) fn from_env() -> io::Result<Notifier> {
        let var = std::env::var(NOTIFY_SOCKET_ENV).ok();
        Notifier::from_socket_var(var.as_deref())
    }

    /// As [`Notifier::from_env`], with the variable's value given (tests, explicit config).
    pub(crate) fn from_socket_var(var: Option<&str>) -> io::Result<Notifier> {
        let target = match var {
            None | Some("") => None,
            Some(name) => Some(parse_notify_address(name)?),
        };
        Ok(Notifier { target })
    }

    /// Whether a service manager is listening (the master then ignores `daemonize`).
    pub(crate) fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1` with a status line: start-up (or a reload) is complete.
    pub(crate) fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC=` timestamp `Type=notify-reload` requires; send
    /// [`Notifier::ready`] when the reload is done.
    pub(crate) fn reloading(&self) -> io::Result<()> {
        let usec = clock::monotonic_now().as_micros();
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
    }

    /// `STOPPING=1`: shutdown has begun.
    pub(crate) fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// `STATUS=<text>` for `systemctl status` (newlines become spaces).
    pub(crate) fn status(&self, text: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", one_line(text)))
    }

    #[cfg(test)]
    /// `WATCHDOG=1`: the keep-alive ping when the unit sets `WatchdogSec=`.
    pub(crate) fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    /// Sends one datagram of newline-separated `KEY=VALUE` assignments.
    pub(crate) fn send(&self, state: &str) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), target)?;
        Ok(())
    }
}

/// `/run/systemd/notify` -> a path address; `@name` -> the abstract name `name`.
fn parse_notify_address(var: &str) -> io::Result<SocketAddr> {
    match var.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()),
        None if var.starts_with('/') => SocketAddr::from_pathname(var),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{NOTIFY_SOCKET_ENV}={var}: neither an absolute path nor an @abstract name"),
        )),
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::tempdir::TempDir;
    use std::time::Duration;

    fn receive(listener: &UnixDatagram) -> String {
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let n = listener.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn states_arrive_at_a_path_socket() {
        let dir = TempDir::new("notify-path");
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let var = path.to_str().expect("utf-8 path");
        let notifier = Notifier::from_socket_var(Some(var)).expect("notifier");
        assert!(notifier.is_enabled());

        notifier.ready("serving\non :8000").expect("ready");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=serving on :8000");
        notifier.stopping().expect("stopping");
        assert_eq!(receive(&listener), "STOPPING=1");
        notifier.status("2 workers").expect("status");
        assert_eq!(receive(&listener), "STATUS=2 workers");
        notifier.reloading().expect("reloading");
        let reloading = receive(&listener);
        let usec = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .expect("reloading line");
        assert!(usec.parse::<u64>().expect("number") > 0);
    }

    #[test]
    fn states_arrive_at_an_abstract_socket() {
        let name = format!("rcontainer-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind");
        let notifier = Notifier::from_socket_var(Some(&format!("@{name}"))).expect("notifier");
        notifier.watchdog().expect("watchdog");
        assert_eq!(receive(&listener), "WATCHDOG=1");
    }

    #[test]
    fn an_unset_socket_makes_every_call_a_no_op() {
        for var in [None, Some("")] {
            let notifier = Notifier::from_socket_var(var).expect("notifier");
            assert!(!notifier.is_enabled());
            notifier.ready("x").expect("no-op");
        }
        assert!(Notifier::from_socket_var(Some("relative.sock")).is_err());
    }
}
