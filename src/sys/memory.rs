//! Memory use of a process, read from `/proc/<pid>/statm`.
//!
//! Owns the parsing of `statm` (sizes in pages). The master samples each worker for
//! `reload-on-rss` and the stats `rss`/`vsz` fields (bytes). It must not decide anything about
//! the numbers.

use std::io;

use nix::unistd::{SysconfVar, sysconf};

use super::process::Pid;

/// Resident and virtual size of a process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryUse {
    pub(crate) rss: u64,
    pub(crate) vsz: u64,
}

/// Reads the memory use of `pid` (`NotFound` once the process is gone).
pub(crate) fn read_memory_use(pid: Pid) -> io::Result<MemoryUse> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    parse_statm(&statm, page_size()?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("statm: {statm:?}")))
}

/// `size resident shared text lib data dt` in pages -> bytes.
fn parse_statm(statm: &str, page_size: u64) -> Option<MemoryUse> {
    let mut fields = statm.split_ascii_whitespace();
    let size: u64 = fields.next()?.parse().ok()?;
    let resident: u64 = fields.next()?.parse().ok()?;
    Some(MemoryUse {
        rss: resident.saturating_mul(page_size),
        vsz: size.saturating_mul(page_size),
    })
}

fn page_size() -> io::Result<u64> {
    let size = sysconf(SysconfVar::PAGE_SIZE)?.unwrap_or(4096);
    Ok(u64::try_from(size).unwrap_or(4096))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_pages_become_bytes() {
        let memory = parse_statm("765 408 380 5 0 123 0\n", 4096).expect("parse");
        assert_eq!(
            memory,
            MemoryUse {
                rss: 408 * 4096,
                vsz: 765 * 4096
            }
        );
        assert_eq!(parse_statm("", 4096), None);
        assert_eq!(parse_statm("12 x", 4096), None);
    }

    #[test]
    fn this_process_uses_some_memory() {
        let memory = read_memory_use(super::super::process::current_pid()).expect("statm");
        assert!(memory.rss > 0 && memory.vsz >= memory.rss);
        let gone = read_memory_use(Pid::from_raw(i32::MAX)).expect_err("no such pid");
        assert_eq!(gone.kind(), io::ErrorKind::NotFound);
    }
}
