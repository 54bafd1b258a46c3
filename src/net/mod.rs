//! Socket specs and listeners.
