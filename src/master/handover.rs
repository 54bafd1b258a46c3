//! What one master image hands to the next across an exec, and the way back when the next one
//! cannot start.
//!
//! A reload re-executes the master in place. The new image gets its sockets, the previous
//! workers and the reload's requesters through the environment and inherited descriptors
//! ([`Handover`]). It also gets a way back: the previous image's binary and a [`Launch`] (its
//! arguments, environment and INI texts) in two descriptors. Until the new image is up (its
//! workers accept), it keeps every descriptor number it was given open and inheritable; if its
//! configuration does not load, its start fails or its workers cannot boot, it
//! [falls back](Handover::fall_back): it executes the previous binary with the previous
//! launch and the very same hand-over, and that image serves on as before, with the error in
//! the log. A fallback image has no fallback of its own.
//!
//! An emperor's upgrade uses the same hand-over (the command line gives it to the emperor as
//! its `Ancestry`): its vassal links and table travel as named descriptors.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::vassal::LOYAL_ENV;
use super::{OLD_WORKERS_ENV, PAUSED_ENV, REQUESTERS_ENV};
use crate::sys::fd::{self, InheritedFd};
use crate::sys::process::{self, Pid};

/// The hand-over name of the previous image's binary.
pub(crate) const FALLBACK_BINARY: &str = "fallback binary";
/// The hand-over name of the previous image's [`Launch`].
pub(crate) const FALLBACK_LAUNCH: &str = "fallback launch";
/// Set in the environment of an image that is the fallback of a failed reload: why it failed.
const FALLBACK_ENV: &str = "RCONTAINER_FALLBACK";
/// What a [`Launch`] encoding starts with.
const LAUNCH_MAGIC: &[u8] = b"rcontainer-launch-1\n";

/// What it takes to start an image again as it was: its argument vector, its environment
/// (before the configuration's `env` lines) and the text of every INI file it loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Launch {
    pub(crate) argv: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) files: Vec<(PathBuf, String)>,
}

impl Launch {
    /// Length-prefixed byte strings (argv, env and file texts need not be UTF-8-clean).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = LAUNCH_MAGIC.to_vec();
        let mut put = |bytes: &[u8]| {
            let len = u32::try_from(bytes.len()).expect("invariant: a launch field below 4 GiB");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(bytes);
        };
        put(&count(self.argv.len()));
        for arg in &self.argv {
            put(arg.as_bytes());
        }
        put(&count(self.env.len()));
        for (key, value) in &self.env {
            put(key.as_bytes());
            put(value.as_bytes());
        }
        put(&count(self.files.len()));
        for (path, text) in &self.files {
            put(path.as_os_str().as_bytes());
            put(text.as_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> io::Result<Launch> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a launch record");
        let mut rest = bytes.strip_prefix(LAUNCH_MAGIC).ok_or_else(bad)?;
        let mut take = || -> io::Result<Vec<u8>> {
            let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
            let len = usize::try_from(u32::from_le_bytes(*len)).map_err(|_| bad())?;
            if tail.len() < len {
                return Err(bad());
            }
            let (field, tail) = tail.split_at(len);
            rest = tail;
            Ok(field.to_vec())
        };
        let mut launch = Launch::default();
        for _ in 0..read_count(&take()?)? {
            launch.argv.push(OsString::from_vec(take()?));
        }
        for _ in 0..read_count(&take()?)? {
            let key = OsString::from_vec(take()?);
            launch.env.push((key, OsString::from_vec(take()?)));
        }
        for _ in 0..read_count(&take()?)? {
            let path = PathBuf::from(OsString::from_vec(take()?));
            let text = String::from_utf8(take()?).map_err(|_| bad())?;
            launch.files.push((path, text));
        }
        Ok(launch)
    }

    /// The launch in a memory file, for the next image.
    pub(crate) fn to_memfd(&self) -> io::Result<OwnedFd> {
        fd::memfd_with("rcontainer-launch", &self.encode())
    }
}

fn count(n: usize) -> [u8; 4] {
    u32::try_from(n)
        .expect("invariant: fewer than 4 G entries")
        .to_le_bytes()
}

fn read_count(field: &[u8]) -> io::Result<u32> {
    let bytes: [u8; 4] = field
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad count"))?;
    Ok(u32::from_le_bytes(bytes))
}

/// The way back to the previous image: its binary (an inherited descriptor) and its launch.
#[derive(Debug)]
struct Fallback {
    binary: RawFd,
    launch: Launch,
}

/// What this image received from the image before it (nothing on a first start, or only
/// systemd's sockets).
#[derive(Debug, Default)]
pub(crate) struct Handover {
    /// The directory the command was started in (a fallback runs from there).
    start_dir: PathBuf,
    /// The inherited sockets, for this image to adopt (copies, close-on-exec).
    sockets: Vec<InheritedFd>,
    /// Every descriptor number the previous image listed, open and inheritable until
    /// [`Handover::commit`].
    originals: Vec<RawFd>,
    /// The hand-over variables as they came (`RCONTAINER_FDS`, old workers, ...).
    vars: Vec<(OsString, OsString)>,
    /// The way back, for an image started by a reload.
    fallback: Option<Fallback>,
    /// For an image that is itself a fallback: why the reload failed, and the launch (with the
    /// INI texts) it replays.
    replaying: Option<(String, Launch)>,
}

impl Handover {
    /// Reads what the previous image left: inherited descriptors (taken as close-on-exec
    /// copies; the originals stay as they are) and the hand-over variables.
    pub(crate) fn from_env() -> io::Result<Handover> {
        let start_dir = std::env::current_dir()?;
        let inherited = fd::adopt_inherited_fds(|key| std::env::var(key).ok())?;
        let originals: Vec<RawFd> = inherited.iter().filter_map(|f| f.original).collect();
        // Only a re-exec addressed to this pid hands anything over (systemd's sockets are
        // adopted outright and have no originals).
        let vars: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(key, _)| !originals.is_empty() && handover_var(key))
            .collect();
        let mut sockets = Vec::new();
        let (mut binary, mut launch) = (None, None);
        for fd in inherited {
            match fd.name.as_deref() {
                Some(FALLBACK_BINARY) => binary = fd.original,
                Some(FALLBACK_LAUNCH) => launch = Some(Launch::decode(&fd::read_whole(&fd.fd)?)?),
                _ => sockets.push(fd),
            }
        }
        let reason = std::env::var_os(FALLBACK_ENV);
        if reason.is_some() {
            process::remove_env(FALLBACK_ENV);
        }
        let (fallback, replaying) = match (reason, binary, launch) {
            (Some(reason), _, Some(launch)) => {
                (None, Some((reason.to_string_lossy().into_owned(), launch)))
            }
            (None, Some(binary), Some(launch)) => (Some(Fallback { binary, launch }), None),
            _ => (None, None),
        };
        Ok(Handover {
            start_dir,
            sockets,
            originals,
            vars,
            fallback,
            replaying,
        })
    }

    /// The inherited sockets, for the master to adopt by name.
    pub(crate) fn take_sockets(&mut self) -> Vec<InheritedFd> {
        std::mem::take(&mut self.sockets)
    }

    /// Whether this image came from a re-exec of the master (not from a first start).
    pub(crate) fn is_reexec(&self) -> bool {
        !self.vars.is_empty()
    }

    /// For a fallback image: why the reload failed, and the INI texts to load.
    pub(crate) fn replaying(&self) -> Option<(&str, &[(PathBuf, String)])> {
        self.replaying
            .as_ref()
            .map(|(reason, launch)| (reason.as_str(), launch.files.as_slice()))
    }

    /// Whether the previous image handed over a descriptor of this name.
    pub(crate) fn holds(&self, name: &str) -> bool {
        self.sockets.iter().any(|f| f.name.as_deref() == Some(name))
    }

    /// Whether a failure of this image can go back to the previous one.
    pub(crate) fn can_fall_back(&self) -> bool {
        self.fallback.is_some()
    }

    /// The inherited descriptor numbers still open (until [`Handover::commit`]).
    pub(super) fn originals(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.originals.iter().copied()
    }

    /// The previous image's binary and launch, while this image may still fall back.
    pub(super) fn fallback_parts(&self) -> Option<(RawFd, &Launch)> {
        self.fallback.as_ref().map(|f| (f.binary, &f.launch))
    }

    /// This image is up: the inherited originals are closed (the copies serve on) and the
    /// way back is gone.
    pub(crate) fn commit(&mut self) {
        for raw in self.originals.drain(..) {
            fd::close_inherited(raw);
        }
        self.fallback = None;
    }

    /// Sets (`true`) or clears close-on-exec on the inherited originals: a reload to a new
    /// image passes what it means to pass, not these.
    pub(super) fn seal_originals(&self, on: bool) {
        for &raw in &self.originals {
            let _ = fd::set_cloexec_raw(raw, on);
        }
    }

    /// Executes the previous image again: its binary, its launch, the hand-over exactly as it
    /// came (plus `workers`, `pid:id` of workers this image started, and `requesters` to answer)
    /// and `reason` for its log. Returns only if the exec failed, or there is nothing to fall
    /// back to. Signals must be blocked (they stay pending for the previous image).
    pub(crate) fn fall_back(
        &self,
        reason: &str,
        workers: &[String],
        requesters: &[Pid],
    ) -> io::Error {
        let Some(fallback) = &self.fallback else {
            return io::Error::other("no previous image to fall back to");
        };
        let mut env = fallback.launch.env.clone();
        env.retain(|(key, _)| !handover_var(key) && key != OsStr::new(FALLBACK_ENV));
        let add_to = |key: &str, value: &OsStr, more: &[String]| -> (OsString, OsString) {
            let mut list: Vec<String> = (value.to_string_lossy().split(','))
                .filter(|item| !item.is_empty())
                .map(str::to_string)
                .collect();
            list.extend(more.iter().cloned());
            (key.into(), list.join(",").into())
        };
        let requesters: Vec<String> = requesters.iter().map(ToString::to_string).collect();
        let passed = |key: &str| self.vars.iter().any(|(k, _)| k == OsStr::new(key));
        if !passed(OLD_WORKERS_ENV) && !workers.is_empty() {
            env.push(add_to(OLD_WORKERS_ENV, OsStr::new(""), workers));
        }
        if !passed(REQUESTERS_ENV) && !requesters.is_empty() {
            env.push(add_to(REQUESTERS_ENV, OsStr::new(""), &requesters));
        }
        for (key, value) in &self.vars {
            if key == OsStr::new(OLD_WORKERS_ENV) {
                env.push(add_to(OLD_WORKERS_ENV, value, workers));
            } else if key == OsStr::new(REQUESTERS_ENV) {
                env.push(add_to(REQUESTERS_ENV, value, &requesters));
            } else if key == OsStr::new(fd::FDS_ENV) {
                // The fallback gets the launch (its INI texts), not the binary: it has no
                // fallback of its own.
                let listed = fd::decode_fd_list(&value.to_string_lossy()).unwrap_or_default();
                let kept: Vec<(RawFd, &str)> = listed
                    .iter()
                    .filter(|(_, name)| name != FALLBACK_BINARY)
                    .map(|(raw, name)| (*raw, name.as_str()))
                    .collect();
                env.push((key.clone(), fd::encode_fd_list(&kept).into()));
            } else {
                env.push((key.clone(), value.clone()));
            }
        }
        env.push((FALLBACK_ENV.into(), reason.into()));
        exec_fallback(fallback.binary, &fallback.launch.argv, env, &self.start_dir)
    }
}

/// Executes the binary open as `binary` with `argv` and `env`, from `start_dir`. Returns only on
/// failure.
pub(super) fn exec_fallback(
    binary: RawFd,
    argv: &[OsString],
    env: Vec<(OsString, OsString)>,
    start_dir: &Path,
) -> io::Error {
    // The binary runs from its descriptor, which it need not inherit.
    let _ = fd::set_cloexec_raw(binary, true);
    let _ = std::env::set_current_dir(start_dir);
    let program = PathBuf::from(format!("/proc/self/fd/{binary}"));
    process::exec_program(&program, argv, env)
}

/// The running binary, opened for a later fallback to it (close-on-exec until handed over).
pub(crate) fn open_own_binary() -> io::Result<std::fs::File> {
    std::fs::File::open("/proc/self/exe")
}

/// Whether `key` is one of the variables a master image hands to the next.
fn handover_var(key: &OsStr) -> bool {
    [
        fd::FDS_ENV,
        fd::FDS_PID_ENV,
        OLD_WORKERS_ENV,
        PAUSED_ENV,
        REQUESTERS_ENV,
        LOYAL_ENV,
    ]
    .iter()
    .any(|var| OsStr::new(var) == key)
}

/// `12,13`: pids for a hand-over variable.
pub(super) fn pid_list(pids: &[Pid]) -> String {
    let list: Vec<String> = pids.iter().map(ToString::to_string).collect();
    list.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_survives_its_encoding_whatever_bytes_it_holds() {
        let launch = Launch {
            argv: vec![
                "rcontainer".into(),
                "--ini".into(),
                OsString::from_vec(vec![0xff, b'x']),
            ],
            env: vec![("A".into(), "1".into()), ("EMPTY".into(), "".into())],
            files: vec![
                ("app.ini".into(), "[rcontainer]\nmodule = echo\n".into()),
                ("/etc/b.ini".into(), String::new()),
            ],
        };
        assert_eq!(Launch::decode(&launch.encode()).expect("decodes"), launch);
        assert_eq!(
            Launch::decode(&Launch::default().encode()).expect("empty"),
            Launch::default()
        );
    }

    #[test]
    fn a_damaged_launch_is_an_error_not_a_panic() {
        let bytes = Launch {
            argv: vec!["x".into()],
            ..Launch::default()
        }
        .encode();
        for cut in 0..bytes.len() {
            assert!(Launch::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Launch::decode(b"something else").is_err());
    }

    #[test]
    fn the_handover_variables_are_the_masters_own() {
        assert!(handover_var(OsStr::new("RCONTAINER_FDS")));
        assert!(handover_var(OsStr::new("RCONTAINER_OLD_WORKERS")));
        assert!(!handover_var(OsStr::new("PATH")));
        assert!(!handover_var(OsStr::new("RCONTAINER_PROCESSES")));
    }
}
