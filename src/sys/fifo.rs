//! The master FIFO (`master-fifo`): a named pipe that scripts write one-letter commands to.
//!
//! Owns creating the FIFO (`mkfifo 0600`; any other file in the way is refused), keeping it open
//! non-blocking and reading whatever bytes arrived. It does not interpret them: the master maps
//! each byte to an action and ignores unknown ones (`echo r > fifo` also sends `\n`).
//!
//! uWSGI re-opens its FIFO after each writer closes, because a FIFO with no writer reads as EOF
//! forever and a poll on it spins. Here the master holds a write end of its own: the read end
//! then never sees EOF, only data, and the descriptor registered in `mio` never changes, so
//! there is nothing to re-open or re-register. Writers may come and go; several letters in one
//! write (`echo +++s`) arrive in order.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;

use super::error::with_context;

/// An open master FIFO; register it in a `mio::Poll` and call [`MasterFifo::read_commands`]
/// when it is readable.
#[derive(Debug)]
pub(crate) struct MasterFifo {
    path: PathBuf,
    reader: File,
    /// Our own writer: keeps the FIFO from reading as EOF between external writers.
    _keepalive: File,
}

impl MasterFifo {
    /// Creates (or reuses) the FIFO at `path` and opens it. An existing FIFO is reused (a writer
    /// may already have it open, e.g. across a re-exec); any other file there is refused.
    pub(crate) fn create(path: &Path) -> io::Result<MasterFifo> {
        let with_path =
            |e: io::Error| with_context(e, format_args!("master-fifo {}", path.display()));
        prepare_fifo(path).map_err(with_path)?;
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| with_path(with_context(e, "open")))?;
        let keepalive = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| with_path(with_context(e, "open")))?;
        Ok(MasterFifo {
            path: path.to_path_buf(),
            reader,
            _keepalive: keepalive,
        })
    }

    /// Both descriptors it holds (a forked worker closes them).
    pub(crate) fn raw_fds(&self) -> [RawFd; 2] {
        [self.reader.as_raw_fd(), self._keepalive.as_raw_fd()]
    }

    /// Where the FIFO lives (to remove it on exit with `vacuum`).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Every byte written since the last call, in order; empty on a spurious wakeup.
    pub(crate) fn read_commands(&mut self) -> io::Result<Vec<u8>> {
        let mut commands = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => commands.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(commands)
    }
}

super::fd_event_source!(MasterFifo, |fifo| fifo.reader.as_raw_fd());

/// The commands written to `fifo` since the last call, each made an action by `action_of`
/// (unknown bytes are dropped there); none without a FIFO. A failed read is logged and reads
/// as no command: the supervising loop goes on.
pub(crate) fn read_actions<A>(
    fifo: Option<&mut MasterFifo>,
    action_of: impl FnMut(u8) -> Option<A>,
) -> Vec<A> {
    let Some(fifo) = fifo else {
        return Vec::new();
    };
    match fifo.read_commands() {
        Ok(bytes) => bytes.into_iter().filter_map(action_of).collect(),
        Err(e) => {
            log::error!("reading the master fifo failed: {e}");
            Vec::new()
        }
    }
}

/// Leaves a FIFO at `path`: keeps an existing one, else `mkfifo 0600`. Anything else in the
/// way (a file, a symlink, a directory) is refused, never removed: it may be somebody's data.
fn prepare_fifo(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => return Ok(()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a FIFO is in the way (remove it)",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(with_context(e, "stat")),
    }
    nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR)
        .map_err(|e| with_context(e.into(), "mkfifo"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::tempdir::TempDir;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn write_to(path: &Path, bytes: &[u8]) {
        let mut writer = OpenOptions::new().write(true).open(path).expect("writer");
        writer.write_all(bytes).expect("write");
    }

    #[test]
    fn several_letters_per_write_arrive_in_order_across_writers() {
        let dir = TempDir::new("fifo-letters");
        let path = dir.join("master.fifo");
        let mut fifo = MasterFifo::create(&path).expect("fifo");
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(fifo.read_commands().expect("read").is_empty());

        write_to(&path, b"+++s\n");
        assert_eq!(fifo.read_commands().expect("read"), b"+++s\n");
        // The writer has closed: no EOF, just nothing to read, and the next writer works.
        assert!(fifo.read_commands().expect("read").is_empty());
        write_to(&path, b"r");
        write_to(&path, b"q");
        assert_eq!(fifo.read_commands().expect("read"), b"rq");
    }

    #[test]
    fn a_file_in_the_way_is_refused_and_kept() {
        let dir = TempDir::new("fifo-in-the-way");
        let path = dir.join("master.fifo");
        fs::write(&path, "somebody's data").expect("a regular file");
        let error = MasterFifo::create(&path).expect_err("not a FIFO");
        assert!(error.to_string().contains("not a FIFO"), "{error}");
        assert_eq!(fs::read_to_string(&path).expect("kept"), "somebody's data");
        assert!(
            MasterFifo::create(dir.path()).is_err(),
            "a directory is not replaced"
        );
    }

    #[test]
    fn the_fifo_wakes_a_mio_poll_only_when_written() {
        let dir = TempDir::new("fifo-poll");
        let path = dir.join("master.fifo");
        let mut fifo = MasterFifo::create(&path).expect("fifo");
        let mut poll = mio::Poll::new().expect("poll");
        poll.registry()
            .register(&mut fifo, mio::Token(3), mio::Interest::READABLE)
            .expect("register");
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .expect("poll");
        assert!(events.is_empty(), "no writer is not a wakeup");
        write_to(&path, b"l");
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .expect("poll");
        assert!(events.iter().any(|event| event.token() == mio::Token(3)));
        assert_eq!(fifo.read_commands().expect("read"), b"l");
    }
}
