//! Signals and FIFO letters, turned into the emperor's [`Action`]s (STYLE 1: signals are data).
//!
//! Pure functions with a test per input; the emperor's loop applies the actions.

use crate::sys::signal::Signal;

/// What the emperor is asked to do (STYLE 1: signals are data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// CHLD: reap.
    Reap,
    /// `E`: scan the monitors now.
    Rescan,
    /// HUP, `r`: reload every vassal gracefully, one after another.
    ReloadAll,
    /// TERM, `q`: stop every vassal gracefully, then exit.
    Stop,
    /// INT, QUIT, `Q`: stop every vassal now, then exit.
    StopNow,
    /// USR1: reopen the log file, then log one status line per vassal.
    Status,
    /// USR2, `R`: re-execute the emperor in place (the binary on disk now), handing every
    /// vassal over to the new image (nginx's and gunicorn's USR2: upgrade the binary).
    Upgrade,
}

/// The action of a signal; signals the emperor has no use for give none.
pub(crate) fn action_of_signal(signal: Signal) -> Option<Action> {
    Some(match signal {
        Signal::Chld => Action::Reap,
        Signal::Hup => Action::ReloadAll,
        Signal::Term => Action::Stop,
        Signal::Int | Signal::Quit => Action::StopNow,
        Signal::Usr1 => Action::Status,
        Signal::Usr2 => Action::Upgrade,
        Signal::Ttin | Signal::Ttou | Signal::Tstp | Signal::Urg => return None,
    })
}

/// The action of one master-FIFO byte (others, such as a newline, are ignored).
pub(crate) fn action_of_fifo_byte(byte: u8) -> Option<Action> {
    Some(match byte {
        b'E' => Action::Rescan,
        b'r' => Action::ReloadAll,
        b'R' => Action::Upgrade,
        b'q' => Action::Stop,
        b'Q' => Action::StopNow,
        b's' | b'l' => Action::Status,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_the_emperors_actions() {
        assert_eq!(action_of_signal(Signal::Term), Some(Action::Stop));
        assert_eq!(action_of_signal(Signal::Int), Some(Action::StopNow));
        assert_eq!(action_of_signal(Signal::Quit), Some(Action::StopNow));
        assert_eq!(action_of_signal(Signal::Hup), Some(Action::ReloadAll));
        assert_eq!(action_of_signal(Signal::Usr1), Some(Action::Status));
        assert_eq!(action_of_signal(Signal::Chld), Some(Action::Reap));
        assert_eq!(action_of_signal(Signal::Usr2), Some(Action::Upgrade));
        assert_eq!(action_of_signal(Signal::Ttin), None);
    }

    #[test]
    fn fifo_letters_map_to_the_emperors_actions_and_others_are_ignored() {
        assert_eq!(action_of_fifo_byte(b'E'), Some(Action::Rescan));
        assert_eq!(action_of_fifo_byte(b'r'), Some(Action::ReloadAll));
        assert_eq!(action_of_fifo_byte(b'q'), Some(Action::Stop));
        assert_eq!(action_of_fifo_byte(b'Q'), Some(Action::StopNow));
        assert_eq!(action_of_fifo_byte(b'R'), Some(Action::Upgrade));
        assert_eq!(action_of_fifo_byte(b'\n'), None);
        assert_eq!(action_of_fifo_byte(b'+'), None);
    }
}
