//! The two coroutine budgets of a runtime: its owner's coroutines (a worker's acceptors and
//! connections) and the tasks coroutines spawn, each with its own limit, and the error that
//! says which one is spent. Owns no state: the scheduler counts the live coroutines.

use std::io;

/// Which budget a coroutine counts against: the runtime owner's coroutines and the tasks
/// coroutines spawn are sized apart, so a handler that fans out can never take the coroutine
/// a worker set aside for a connection it accepted (nor the other way round).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Budget {
    /// Started by the runtime's owner (`Runtime::spawn`, a worker's acceptors and
    /// connections): at most `RuntimeConfig::max_coroutines`.
    Owner,
    /// Started by coroutines with `rt::spawn` or `rt::try_spawn` (the handlers' tasks): at
    /// most `RuntimeConfig::max_tasks` (a worker's `spawn-limit`).
    Tasks,
}

impl Budget {
    pub(crate) fn index(self) -> usize {
        match self {
            Budget::Owner => 0,
            Budget::Tasks => 1,
        }
    }
}

/// The most coroutines of each [`Budget`] alive at once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Limits {
    pub(crate) owner: usize,
    pub(crate) tasks: usize,
}

impl Limits {
    pub(crate) fn of(self, budget: Budget) -> usize {
        match budget {
            Budget::Owner => self.owner,
            Budget::Tasks => self.tasks,
        }
    }

    /// Why a coroutine of `budget` cannot start: every slot of it is taken.
    pub(crate) fn exhausted(self, budget: Budget) -> io::Error {
        let message = match budget {
            Budget::Owner => format!(
                "all {} coroutines of the runtime's owner are in use (RuntimeConfig::max_coroutines)",
                self.owner
            ),
            Budget::Tasks => format!(
                "spawn budget exhausted: all {} task slots are in use (the worker's \
                 `spawn-limit`, RuntimeConfig::max_tasks); raise spawn-limit, or bound the \
                 fan-out of each request (rt::Semaphore)",
                self.tasks
            ),
        };
        io::Error::new(io::ErrorKind::WouldBlock, message)
    }
}
