//! The public handler API: the only public surface of the crate.
