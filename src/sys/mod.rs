//! The only place (besides `coro`) with unsafe code: thin libc wrappers.
#![allow(unsafe_code)]

/// Implements `mio::event::Source` for a type that is polled through one of its file
/// descriptors: `fd_event_source!(Type, |value| value.fd.as_raw_fd())`.
macro_rules! fd_event_source {
    ($ty:ty, |$value:ident| $fd:expr) => {
        impl mio::event::Source for $ty {
            fn register(
                &mut self,
                registry: &mio::Registry,
                token: mio::Token,
                interest: mio::Interest,
            ) -> std::io::Result<()> {
                let $value = &*self;
                mio::unix::SourceFd(&$fd).register(registry, token, interest)
            }

            fn reregister(
                &mut self,
                registry: &mio::Registry,
                token: mio::Token,
                interest: mio::Interest,
            ) -> std::io::Result<()> {
                let $value = &*self;
                mio::unix::SourceFd(&$fd).reregister(registry, token, interest)
            }

            fn deregister(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
                let $value = &*self;
                mio::unix::SourceFd(&$fd).deregister(registry)
            }
        }
    };
}
pub(crate) use fd_event_source;

pub(crate) mod clock;
pub(crate) mod daemon;
pub(crate) mod emperor_link;
pub(crate) mod error;
pub(crate) mod fault;
pub(crate) mod fd;
pub(crate) mod fifo;
pub(crate) mod glob;
pub(crate) mod memory;
pub(crate) mod notify;
pub(crate) mod pidfile;
pub(crate) mod privilege;
pub(crate) mod probe;
pub(crate) mod process;
pub(crate) mod prometheus;
#[cfg(test)]
pub(crate) mod rerun;
pub(crate) mod rlimit;
pub(crate) mod shm;
pub(crate) mod signal;
pub(crate) mod spawn;
pub(crate) mod stack;
pub(crate) mod stats_server;
#[cfg(test)]
pub(crate) mod tempdir;
