//! Socket specs and listeners.

pub(crate) mod addr;
pub(crate) mod listener;
