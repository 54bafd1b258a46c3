//! Socket specs and listeners.

pub(crate) mod addr;
