//! Signals, FIFO letters, touch files and emperor commands, turned into [`Action`]s (STYLE 1:
//! signals are data).
//!
//! Pure functions with a test per input; the master loop applies the actions.

use crate::sys::emperor_link::Command;
use crate::sys::signal::Signal;

/// What the master is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// HUP, `r`, `touch-reload`: re-exec the master in place, then replace every worker, each
    /// old one retired once its replacement accepts.
    GracefulReload,
    /// `R`: re-exec at once; old workers are killed, not drained.
    BrutalReload,
    /// `w`, `touch-workers-reload`: replace every worker (no re-exec), gracefully.
    ReloadWorkers,
    /// `W`: kill every worker; the respawns replace them.
    BrutalReloadWorkers,
    /// `c`, `touch-chain-reload`, `--chain-reload`: replace workers one at a time.
    ChainReload,
    /// TERM, `q`: stop accepting, let requests finish (up to the mercy), exit 0.
    GracefulStop,
    /// INT, QUIT, `Q`: stop now.
    ImmediateStop,
    /// USR1, `l`, `touch-logreopen`: reopen the log file (then USR1 logs stats too).
    ReopenLogs,
    /// `s` (and after USR1): log a one-line stats summary.
    LogStats,
    /// USR2: log what every worker core is doing.
    LogCores,
    /// TTIN, `+`: one worker more.
    AddWorker,
    /// TTOU, `-`: one worker fewer (never below one).
    RemoveWorker,
    /// TSTP, `p`: pause or resume accepting.
    TogglePause,
    /// CHLD: reap children.
    Reap,
}

/// The actions a signal asks for, in order.
pub(crate) fn from_signal(signal: Signal) -> &'static [Action] {
    match signal {
        Signal::Hup => &[Action::GracefulReload],
        Signal::Term => &[Action::GracefulStop],
        Signal::Int | Signal::Quit => &[Action::ImmediateStop],
        Signal::Usr1 => &[Action::ReopenLogs, Action::LogStats],
        Signal::Usr2 => &[Action::LogCores],
        Signal::Ttin => &[Action::AddWorker],
        Signal::Ttou => &[Action::RemoveWorker],
        Signal::Tstp => &[Action::TogglePause],
        Signal::Chld => &[Action::Reap],
        Signal::Urg => &[Action::ChainReload],
    }
}

/// The action of one master-FIFO byte; unknown bytes (a newline from `echo r >`) are ignored.
pub(crate) fn from_fifo_byte(byte: u8) -> Option<Action> {
    Some(match byte {
        b'r' => Action::GracefulReload,
        b'R' => Action::BrutalReload,
        b'w' => Action::ReloadWorkers,
        b'W' => Action::BrutalReloadWorkers,
        b'c' => Action::ChainReload,
        b'q' => Action::GracefulStop,
        b'Q' => Action::ImmediateStop,
        b's' => Action::LogStats,
        b'l' => Action::ReopenLogs,
        b'p' => Action::TogglePause,
        b'+' => Action::AddWorker,
        b'-' => Action::RemoveWorker,
        _ => return None,
    })
}

/// The action of an emperor's command (uWSGI's meaning of each byte).
pub(crate) fn from_emperor(command: Command) -> Action {
    match command {
        Command::StopNow => Action::ImmediateStop,
        Command::Reload => Action::GracefulReload,
        Command::Stop => Action::GracefulStop,
    }
}

/// Which list of touch files a changed file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TouchKind {
    Reload,
    ChainReload,
    WorkersReload,
    LogReopen,
}

/// The action of a touched file.
pub(crate) fn from_touch(kind: TouchKind) -> Action {
    match kind {
        TouchKind::Reload => Action::GracefulReload,
        TouchKind::ChainReload => Action::ChainReload,
        TouchKind::WorkersReload => Action::ReloadWorkers,
        TouchKind::LogReopen => Action::ReopenLogs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_maps_as_design_section_6_says() {
        assert_eq!(from_signal(Signal::Hup), [Action::GracefulReload]);
        assert_eq!(from_signal(Signal::Term), [Action::GracefulStop]);
        assert_eq!(from_signal(Signal::Int), [Action::ImmediateStop]);
        assert_eq!(from_signal(Signal::Quit), [Action::ImmediateStop]);
        assert_eq!(
            from_signal(Signal::Usr1),
            [Action::ReopenLogs, Action::LogStats]
        );
        assert_eq!(from_signal(Signal::Usr2), [Action::LogCores]);
        assert_eq!(from_signal(Signal::Ttin), [Action::AddWorker]);
        assert_eq!(from_signal(Signal::Ttou), [Action::RemoveWorker]);
        assert_eq!(from_signal(Signal::Tstp), [Action::TogglePause]);
        assert_eq!(from_signal(Signal::Chld), [Action::Reap]);
        assert_eq!(from_signal(Signal::Urg), [Action::ChainReload]);
    }

    #[test]
    fn every_fifo_letter_maps_and_other_bytes_are_ignored() {
        let letters = b"rRwWcqQslp+-";
        let actions: Vec<Action> = letters.iter().filter_map(|&b| from_fifo_byte(b)).collect();
        assert_eq!(
            actions,
            [
                Action::GracefulReload,
                Action::BrutalReload,
                Action::ReloadWorkers,
                Action::BrutalReloadWorkers,
                Action::ChainReload,
                Action::GracefulStop,
                Action::ImmediateStop,
                Action::LogStats,
                Action::ReopenLogs,
                Action::TogglePause,
                Action::AddWorker,
                Action::RemoveWorker,
            ]
        );
        for ignored in [b'\n', b' ', b'x', b'0', b'L', 0u8, 255u8] {
            assert_eq!(from_fifo_byte(ignored), None, "byte {ignored}");
        }
    }

    #[test]
    fn every_emperor_command_maps_to_the_stop_or_reload_it_names() {
        assert_eq!(from_emperor(Command::StopNow), Action::ImmediateStop);
        assert_eq!(from_emperor(Command::Reload), Action::GracefulReload);
        assert_eq!(from_emperor(Command::Stop), Action::GracefulStop);
    }

    #[test]
    fn every_touch_file_kind_maps_to_its_reload() {
        assert_eq!(from_touch(TouchKind::Reload), Action::GracefulReload);
        assert_eq!(from_touch(TouchKind::ChainReload), Action::ChainReload);
        assert_eq!(from_touch(TouchKind::WorkersReload), Action::ReloadWorkers);
        assert_eq!(from_touch(TouchKind::LogReopen), Action::ReopenLogs);
    }
}
