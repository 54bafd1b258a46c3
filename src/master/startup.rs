//! Start-up steps before the first worker: output (daemonize, logto), listeners (bound or
//! handed over), privileges.
//!
//! Every error names the option and its value, then what was being done:
//! `daemonize /var/log/app.log: open: permission denied`, `uid www: setuid 33: operation not
//! permitted`; the listener's own errors already read `socket 127.0.0.1:80: bind: ...`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::config::Config;
use crate::exit;
use crate::net::addr::SocketSpec;
use crate::net::listener::{Listener, Protocol, UnixOptions};
use crate::sys::daemon::{self, DaemonReady};
use crate::sys::error::context;
use crate::sys::fd::InheritedFd;
use crate::sys::notify::Notifier;
use crate::sys::privilege;

/// Daemonizes (or points the output at `logto`) before anything else is set up. Under an
/// emperor (`under_emperor`) the master never detaches (the emperor supervises the process it
/// started, as uWSGI's vassals do): `daemonize` only sends the output to its file.
pub(super) fn set_up_output(
    config: &Config,
    daemon: &mut Option<DaemonReady>,
    under_emperor: bool,
) -> io::Result<()> {
    if let Some(logfile) = config.daemonize.as_ref().filter(|_| under_emperor) {
        daemon::redirect_output(logfile)
            .map_err(context(format_args!("daemonize {}", logfile.display())))?;
        log::info!(
            "daemonize {}: not detaching under an emperor, only logging there",
            logfile.display()
        );
        return Ok(());
    }
    if let Some(logfile) = &config.daemonize {
        if Notifier::from_env().is_ok_and(|n| n.is_enabled()) {
            log::warn!("daemonize ignored: running under systemd (NOTIFY_SOCKET is set)");
        } else {
            *daemon = Some(
                daemon::daemonize(logfile, exit::RUNTIME)
                    .map_err(context(format_args!("daemonize {}", logfile.display())))?,
            );
            return Ok(());
        }
    }
    if let Some(logfile) = &config.logto {
        daemon::redirect_output(logfile)
            .map_err(context(format_args!("logto {}", logfile.display())))?;
    }
    Ok(())
}

/// Binds `socket` (uwsgi) and `http-socket` listeners in that order, reusing sockets handed
/// over by a previous image (or systemd) whose name matches.
pub(super) fn bind_listeners(
    config: &Config,
    inherited: Vec<InheritedFd>,
) -> io::Result<Vec<Listener>> {
    let unix = unix_options(config);
    let backlog = listen_backlog(config);
    let mut inherited: Vec<(Option<String>, Option<OwnedFd>)> = inherited
        .into_iter()
        .map(|f| (f.name, Some(f.fd)))
        .collect();
    let specs = config
        .sockets
        .iter()
        .map(|s| (s, Protocol::Uwsgi))
        .chain(config.http_sockets.iter().map(|s| (s, Protocol::Http)));
    let mut listeners = Vec::new();
    for (spec, protocol) in specs {
        let name = Listener::name_for(spec, protocol);
        let handed_over = inherited
            .iter_mut()
            .find(|(n, fd)| fd.is_some() && n.as_deref() == Some(name.as_str()))
            .and_then(|(_, fd)| fd.take());
        let listener = match (handed_over, spec) {
            (Some(fd), _) => Listener::adopt(fd, spec, protocol)?,
            (None, SocketSpec::Fd(raw)) => {
                // systemd socket activation: the fd was adopted above, unnamed.
                let systemd = inherited
                    .iter_mut()
                    .find(|(_, fd)| fd.as_ref().is_some_and(|fd| fd.as_raw_fd() == *raw))
                    .and_then(|(_, fd)| fd.take());
                match systemd {
                    Some(fd) => Listener::adopt(fd, spec, protocol)?,
                    None => Listener::bind(spec, protocol, backlog, unix)?,
                }
            }
            (None, _) => Listener::bind(spec, protocol, backlog, unix)?,
        };
        listeners.push(listener);
    }
    // Sockets a previous image had but this configuration no longer lists are closed here.
    Ok(listeners)
}

/// How unix sockets are made (`chmod-socket`, `chown-socket`, resolved when the
/// configuration loaded).
pub(super) fn unix_options(config: &Config) -> UnixOptions {
    UnixOptions {
        mode: config.chmod_socket,
        owner: config
            .chown_socket
            .as_ref()
            .map(|owner| (owner.uid, owner.gid)),
    }
}

/// The backlog of every listener (`listen`).
pub(super) fn listen_backlog(config: &Config) -> u32 {
    u32::try_from(config.listen).unwrap_or(u32::MAX)
}

/// Removes the inherited fd named `name` from `inherited` and returns it.
pub(super) fn take_named(inherited: &mut Vec<InheritedFd>, name: &str) -> Option<OwnedFd> {
    let index = inherited
        .iter()
        .position(|f| f.name.as_deref() == Some(name))?;
    Some(inherited.remove(index).fd)
}

/// Drops to `uid`/`gid` once the sockets are bound; warns when workers would run as root.
pub(super) fn drop_privileges(config: &Config) -> io::Result<()> {
    let credentials = config.credentials();
    if credentials.is_empty() {
        if privilege::is_root() {
            log::warn!("running workers as root: set uid and gid to drop privileges");
        }
        return Ok(());
    }
    let who = match (&config.uid, &config.gid) {
        (Some(uid), Some(gid)) => format!("uid {}, gid {}", uid.text, gid.text),
        (Some(uid), None) => format!("uid {}", uid.text),
        (None, Some(gid)) => format!("gid {}", gid.text),
        (None, None) => String::from("uid/gid"),
    };
    privilege::drop_privileges(&credentials).map_err(context(who))
}
