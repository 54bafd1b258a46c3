//! Logger setup.
