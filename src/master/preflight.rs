//! Before a reload re-executes the master: everything the new image will need that can be
//! checked (or done) by the running one, so that a reload that cannot work is refused while the
//! old image still serves.
//!
//! - the binary on disk runs and is an rcontainer (`--version`);
//! - every listener the new configuration names is either handed over (same line as now) or
//!   bound here, and handed over bound: the new image then has nothing left to bind;
//!   likewise a new `stats` address;
//! - the pidfile and the master FIFO can be created where the new configuration puts them, as
//!   the user the new image runs as (the same as this one: an exec keeps the credentials);
//! - `uid`/`gid` can still be switched to.
//!
//! What a check cannot foresee (a file that changes between the check and the exec, workers
//! that fail to boot) is caught by the new image itself, which then falls back to this
//! configuration (`handover`).

use std::path::Path;
use std::time::Duration;

use super::startup::{listen_backlog, unix_options};
use super::stats::{self, StatsListener};
use super::{Master, stats_fd_name};
use crate::config::Config;
use crate::net::addr::SocketSpec;
use crate::net::listener::{Listener, Protocol};
use crate::sys::{privilege, probe, process};

/// Longest the binary may take to answer `--version`.
const VERSION_WAIT: Duration = Duration::from_secs(5);

/// What the running image prepared for the new one: sockets bound for it, each with the name
/// it is handed over under.
#[derive(Debug, Default)]
pub(super) struct Prepared {
    pub(super) listeners: Vec<(String, Listener)>,
    pub(super) stats: Option<(String, StatsListener)>,
}

impl Master<'_> {
    /// Checks `new` against what a new image of the binary on disk will need; binds what it
    /// will bind. `Err` holds why the reload must be refused.
    pub(super) fn preflight(&self, new: &Config) -> Result<Prepared, String> {
        check_binary(&process::reexec_path())?;
        check_credentials(new)?;
        if let Some(path) = &new.pidfile {
            check_creatable("pidfile", path, |_| true)?;
        }
        if let Some(path) = &new.master_fifo {
            use std::os::unix::fs::FileTypeExt;
            check_creatable("master-fifo", path, |meta| meta.file_type().is_fifo())?;
        }
        let mut prepared = Prepared::default();
        let held: Vec<String> = self.listeners.iter().map(Listener::handover_name).collect();
        let specs = (new.sockets.iter().map(|s| (s, Protocol::Uwsgi)))
            .chain(new.http_sockets.iter().map(|s| (s, Protocol::Http)));
        for (spec, protocol) in specs {
            let name = Listener::name_for(spec, protocol);
            if held.contains(&name) {
                continue;
            }
            if let SocketSpec::Fd(raw) = spec {
                return Err(format!(
                    "{} fd://{raw}: this master was not given fd {raw}; a reload cannot add it",
                    protocol.option()
                ));
            }
            let unix = unix_options(new);
            let listener = Listener::bind(spec, protocol, listen_backlog(new), unix)
                .map_err(|e| e.to_string())?;
            log::info!("bound {} for the new image", listener.url());
            prepared.listeners.push((name, listener));
        }
        if let Some(spec) = &new.stats
            && self.config.stats.as_ref() != Some(spec)
        {
            let listener = stats::bind_listener(spec, listen_backlog(new), unix_options(new))
                .map_err(|e| e.to_string())?;
            prepared.stats = Some((stats_fd_name(spec), listener));
        }
        Ok(prepared)
    }
}

/// The binary a re-exec would run answers `--version` as an rcontainer.
fn check_binary(program: &Path) -> Result<(), String> {
    let what = |why: String| format!("the binary {} cannot be run: {why}", program.display());
    let version = probe::version_of(program, VERSION_WAIT).map_err(|e| what(e.to_string()))?;
    if !version.starts_with("rcontainer ") {
        return Err(what(format!(
            "--version printed {version:?}, not rcontainer's"
        )));
    }
    Ok(())
}

/// A new image runs as this one does: it can switch to other credentials only as root.
fn check_credentials(new: &Config) -> Result<(), String> {
    let wanted = new.credentials();
    if privilege::is_root() {
        return Ok(());
    }
    if let Some(uid) = wanted.uid
        && uid != nix::unistd::getuid()
    {
        return Err(format!(
            "uid {uid}: the master runs as uid {} and cannot switch users any more (restart it \
             to change uid)",
            nix::unistd::getuid()
        ));
    }
    if let Some(gid) = wanted.gid
        && gid != nix::unistd::getgid()
    {
        return Err(format!(
            "gid {gid}: the master runs as gid {} and cannot switch groups any more (restart \
             it to change gid)",
            nix::unistd::getgid()
        ));
    }
    Ok(())
}

/// `key = path` can be made by the new image: an existing entry there must be `reusable`, or
/// its directory must take a new file.
fn check_creatable(
    key: &str,
    path: &Path,
    reusable: impl Fn(&std::fs::Metadata) -> bool,
) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if reusable(&meta) => {}
        Ok(_) => {
            return Err(format!(
                "{key} {}: a file that is not one is in the way",
                path.display()
            ));
        }
        Err(_) => {}
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    probe::can_create_in(dir).map_err(|e| {
        format!(
            "{key} {}: cannot create files in {}: {}",
            path.display(),
            dir.display(),
            crate::sys::error::describe(&e)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::tempdir::TempDir;

    #[test]
    fn a_path_in_a_missing_directory_or_behind_a_foreign_file_is_refused() {
        let dir = TempDir::new("preflight-paths");
        let fine = dir.join("app.pid");
        assert_eq!(check_creatable("pidfile", &fine, |_| true), Ok(()));
        let missing = dir.join("missing").join("app.pid");
        let error = check_creatable("pidfile", &missing, |_| true).expect_err("missing dir");
        assert!(
            error.contains("pidfile") && error.contains("missing"),
            "{error}"
        );
        let file = dir.join("plain");
        std::fs::write(&file, "data").expect("write");
        let error = check_creatable("master-fifo", &file, |_| false).expect_err("not a fifo");
        assert!(error.contains("in the way"), "{error}");
    }

    #[test]
    fn a_binary_that_is_not_ours_is_refused() {
        assert!(check_binary(Path::new("/bin/true")).is_err());
        assert!(check_binary(Path::new("/nonexistent/rcontainer")).is_err());
    }
}
