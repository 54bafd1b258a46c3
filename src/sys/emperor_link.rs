//! The channel between an emperor and one vassal, in uWSGI's emperor protocol: a
//! `socketpair(AF_UNIX, SOCK_STREAM)` per vassal, the vassal's end passed to it as
//! `UWSGI_EMPEROR_FD=<n>`, and every message one byte. rcontainer vassals and uWSGI vassals
//! speak it alike, so either emperor can run either.
//!
//! End of file on the channel means the other side is gone: a vassal stops, an emperor treats
//! the vassal as lost.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use super::fd;

/// The environment variable that carries the vassal's end of the channel.
pub(crate) const FD_ENV: &str = "UWSGI_EMPEROR_FD";
/// The hand-over name (in `RCONTAINER_FDS`) of the memory file with the vassals an emperor
/// hands to its next image when it re-executes itself in place: one line of text per vassal
/// (the emperor's `Adoption`), each link another descriptor of that list. A file, not a
/// variable: a thousand vassals would not fit in one environment string.
pub(crate) const VASSAL_TABLE: &str = "emperor vassals";

/// What an emperor tells a vassal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Command {
    /// Stop at once (workers killed, in-flight requests dropped).
    StopNow = 0,
    /// Reload gracefully (the vassal's own zero-drop reload).
    Reload = 1,
    /// Stop gracefully: in-flight requests finish, then the vassal exits.
    Stop = 2,
}

impl Command {
    #[cfg_attr(not(test), allow(dead_code))] // the vassal side (the master) uses it
    pub(crate) fn from_byte(byte: u8) -> Option<Command> {
        Some(match byte {
            0 => Command::StopNow,
            1 => Command::Reload,
            2 => Command::Stop,
            _ => return None,
        })
    }
}

/// What a vassal tells its emperor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Report {
    /// The vassal's master is up (uWSGI: "spawned").
    Spawned = 1,
    /// "Send me my configuration" (uWSGI vassals fed by a config pipe; rcontainer reads files).
    ConfigWanted = 2,
    /// Its workers accept requests.
    Accepting = 5,
    /// It served its first request.
    Loyal = 17,
    /// It is stopping of its own accord (an idle shutdown, a stop by hand).
    Leaving = 22,
    /// Still alive (every `heartbeat` seconds).
    Heartbeat = 26,
    /// Broodlord: asks for more capacity (logged; rcontainer has no zerg mode).
    Sos = 30,
}

impl Report {
    pub(crate) fn from_byte(byte: u8) -> Option<Report> {
        Some(match byte {
            1 => Report::Spawned,
            2 => Report::ConfigWanted,
            5 => Report::Accepting,
            17 => Report::Loyal,
            22 => Report::Leaving,
            26 => Report::Heartbeat,
            30 => Report::Sos,
            _ => return None,
        })
    }
}

/// What one read of the channel found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Received {
    /// The message bytes, in order (decode them with `Command::from_byte` or
    /// `Report::from_byte`; unknown bytes are the caller's to log and skip).
    pub(crate) bytes: Vec<u8>,
    /// The other end is closed.
    pub(crate) closed: bool,
}

/// One end of the channel, non-blocking.
#[derive(Debug)]
pub(crate) struct Link {
    stream: UnixStream,
}

impl Link {
    /// A new channel: the emperor's end (close-on-exec) and the vassal's end, to be made
    /// inheritable in the child before the vassal is executed.
    pub(crate) fn pair() -> io::Result<(Link, OwnedFd)> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        Ok((Link { stream: ours }, OwnedFd::from(theirs)))
    }

    /// Wraps an end of the channel (one handed over across an exec, or the vassal's own).
    #[cfg_attr(not(test), allow(dead_code))] // the vassal side (the master) uses it
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Link> {
        let stream = UnixStream::from(fd);
        stream.set_nonblocking(true)?;
        Ok(Link { stream })
    }

    /// The vassal's end, when this process runs under an emperor (`UWSGI_EMPEROR_FD`). The fd
    /// becomes close-on-exec; keeping it across a re-exec is the caller's business. A variable
    /// that does not name an open fd is an error.
    pub(crate) fn from_env() -> io::Result<Option<Link>> {
        let Some(value) = std::env::var_os(FD_ENV) else {
            return Ok(None);
        };
        let raw = value
            .to_str()
            .and_then(|v| v.trim().parse::<RawFd>().ok())
            .filter(|&raw| raw >= 0)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{FD_ENV}={}: not a file descriptor",
                        value.to_string_lossy()
                    ),
                )
            })?;
        let owned = fd::adopt_fd(raw)
            .map_err(|e| io::Error::new(e.kind(), format!("{FD_ENV}={raw}: {e}")))?;
        Link::from_fd(owned).map(Some)
    }

    /// Sends one message. A full channel (a peer that stopped reading) drops it: no message is
    /// worth blocking the sender's loop for.
    pub(crate) fn send(&self, byte: u8) -> io::Result<()> {
        match (&self.stream).write(&[byte]) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.send(byte),
            Err(e) => Err(e),
        }
    }

    /// Reads every message waiting now.
    pub(crate) fn receive(&self) -> io::Result<Received> {
        let mut received = Received::default();
        let mut buf = [0u8; 64];
        loop {
            match (&self.stream).read(&mut buf) {
                Ok(0) => {
                    received.closed = true;
                    return Ok(received);
                }
                Ok(n) => received.bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(received),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    received.closed = true;
                    return Ok(received);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsFd for Link {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl AsRawFd for Link {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

super::fd_event_source!(Link, |link| link.stream.as_raw_fd());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_cross_both_ways_and_a_closed_end_reads_as_closed() {
        let (emperor, theirs) = Link::pair().unwrap();
        let vassal = Link::from_fd(theirs).unwrap();
        vassal.send(Report::Spawned as u8).unwrap();
        vassal.send(Report::Loyal as u8).unwrap();
        let got = emperor.receive().unwrap();
        assert_eq!(got.bytes, [1, 17]);
        assert!(!got.closed);
        assert_eq!(
            emperor.receive().unwrap(),
            Received::default(),
            "nothing more waits"
        );
        emperor.send(Command::Stop as u8).unwrap();
        assert_eq!(vassal.receive().unwrap().bytes, [2]);
        drop(emperor);
        assert!(vassal.receive().unwrap().closed);
    }

    #[test]
    fn every_byte_of_the_protocol_decodes_to_its_message() {
        for command in [Command::StopNow, Command::Reload, Command::Stop] {
            assert_eq!(Command::from_byte(command as u8), Some(command));
        }
        let reports = [
            Report::Spawned,
            Report::ConfigWanted,
            Report::Accepting,
            Report::Loyal,
            Report::Leaving,
            Report::Heartbeat,
            Report::Sos,
        ];
        for report in reports {
            assert_eq!(Report::from_byte(report as u8), Some(report));
        }
        assert_eq!(Command::from_byte(3), None);
        assert_eq!(Report::from_byte(0), None);
    }
}
