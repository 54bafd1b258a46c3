//! Resource limits: the open-files limit a master with thousands of connections needs.
//!
//! Owns `RLIMIT_NOFILE`. Every accepted connection costs a descriptor in a worker, and the
//! common soft default (1024) is far below `async` x a few. It must not change any other limit.

use std::io;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// An open-files limit change: what it was and what it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NofileChange {
    pub(crate) before: u64,
    pub(crate) after: u64,
    /// The hard limit (the ceiling without privileges).
    pub(crate) hard: u64,
}

/// Raises the soft open-files limit to the hard limit, at start-up, and logs the change.
/// Children inherit it.
pub(crate) fn raise_nofile_limit() -> io::Result<NofileChange> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    set_nofile_limit(hard).inspect(|change| {
        if change.after != soft {
            log::info!("raised open files limit from={soft} to={}", change.after);
        }
    })
}

/// Sets the soft open-files limit to `wanted` (the `max-fd` option), capped at the hard limit.
pub(crate) fn set_nofile_limit(wanted: u64) -> io::Result<NofileChange> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let target = wanted.min(hard);
    if target != soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    }
    Ok(NofileChange {
        before: soft,
        after: target,
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes the process's limit: runs in a child copy of the test binary.
    #[test]
    fn the_soft_limit_rises_to_the_hard_limit_in_a_child_process() {
        crate::sys::rerun::in_child_process(
            "sys::rlimit::tests::the_soft_limit_rises_to_the_hard_limit_in_a_child_process",
            || {
                let lowered = set_nofile_limit(256).expect("lower");
                assert_eq!(lowered.after, 256.min(lowered.hard));
                let raised = raise_nofile_limit().expect("raise");
                assert_eq!(raised.before, lowered.after);
                assert_eq!(raised.after, raised.hard);
                let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("get");
                assert_eq!(soft, hard);
            },
        );
    }
}
