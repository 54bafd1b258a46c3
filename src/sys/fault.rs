//! Coroutine stack-overflow reporting: a SIGSEGV/SIGBUS handler, running on an alternate signal
//! stack, that recognises a fault inside a coroutine guard region, writes one clear line to
//! stderr with `write(2)` and `_exit`s the worker so the master respawns it.
//!
//! Owns the process-wide table of stack reservations (lock-free, read by the handler), the
//! per-thread alternate signal stack and the per-thread "current request" label. It must not do
//! anything in the handler that is not async-signal-safe: no allocation, no locks, no `log`.
//! Faults outside every guard are passed on to the handler that was there before (std's own
//! overflow handler for thread stacks, or the default action), so ordinary segfaults still
//! crash with a core as usual.

use std::cell::Cell;
use std::io;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The exit status of a worker killed by a coroutine stack overflow: a runtime failure
/// (the crate's `exit::RUNTIME`; a test of the command line keeps the two equal: `sys` imports nothing).
pub(crate) const OVERFLOW_EXIT_CODE: i32 = 2;

const MAX_REGIONS: usize = 64;

/// One registered reservation: `[start, end)` cut into `slot`-byte slots whose lowest `guard`
/// bytes are the guard. `start == 0` marks a free entry.
struct Region {
    start: AtomicUsize,
    end: AtomicUsize,
    slot: AtomicUsize,
    guard: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise the array below
const EMPTY: Region = Region {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    slot: AtomicUsize::new(0),
    guard: AtomicUsize::new(0),
};
static REGIONS: [Region; MAX_REGIONS] = [EMPTY; MAX_REGIONS];

/// The actions for SIGSEGV and SIGBUS that were installed before ours.
static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();

thread_local! {
    /// What the running coroutine is doing (e.g. "GET /path"), as (pointer, length); set by the
    /// scheduler around each resume. Const-initialised without `Drop`: plain TLS, signal-safe.
    static LABEL: Cell<(*const u8, usize)> = const { Cell::new((ptr::null(), 0)) };
}

/// Records the label of the coroutine about to run. The bytes must stay alive and unchanged
/// until [`clear_label`] or the next `set_label` (the scheduler keeps them in the task).
pub(crate) fn set_label(label: &[u8]) {
    LABEL.with(|l| l.set((label.as_ptr(), label.len())));
}

pub(crate) fn clear_label() {
    LABEL.with(|l| l.set((ptr::null(), 0)));
}

/// Keeps a reservation known to the fault handler until dropped.
#[derive(Debug)]
pub(crate) struct RegionGuard {
    index: usize,
}

impl Drop for RegionGuard {
    fn drop(&mut self) {
        REGIONS[self.index].start.store(0, Ordering::Release);
    }
}

/// Registers `[start, start + len)`, cut into `slot`-byte slots with `guard` guard bytes at the
/// bottom of each, and installs the fault handler (once per process).
pub(crate) fn register_stacks(
    start: usize,
    len: usize,
    slot: usize,
    guard: usize,
) -> io::Result<RegionGuard> {
    install_handler()?;
    for (index, r) in REGIONS.iter().enumerate() {
        // Claim the entry with a placeholder, fill it, then publish the real start.
        if r.start
            .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            r.end.store(start + len, Ordering::Relaxed);
            r.slot.store(slot, Ordering::Relaxed);
            r.guard.store(guard, Ordering::Relaxed);
            r.start.store(start, Ordering::Release);
            return Ok(RegionGuard { index });
        }
    }
    Err(io::Error::other(
        "too many coroutine runtimes in one process (64)",
    ))
}

fn install_handler() -> io::Result<()> {
    let mut result = Ok(());
    PREVIOUS.get_or_init(|| {
        let mut previous = [zeroed_sigaction(), zeroed_sigaction()];
        for (i, sig) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
            let mut action = zeroed_sigaction();
            action.sa_sigaction = on_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: installing a handler that only does async-signal-safe work; `previous[i]`
            // is a valid out-pointer.
            if unsafe { libc::sigaction(sig, &action, &mut previous[i]) } != 0 {
                result = Err(io::Error::last_os_error());
            }
        }
        previous
    });
    result
}

fn zeroed_sigaction() -> libc::sigaction {
    // SAFETY: sigaction is a plain C struct for which all-zero bytes are valid (SIG_DFL).
    unsafe { MaybeUninit::zeroed().assume_init() }
}

/// Which registered guard `addr` falls in, as (slot size in bytes), if any.
fn guard_hit(addr: usize) -> Option<usize> {
    for r in &REGIONS {
        let start = r.start.load(Ordering::Acquire);
        if start == 0 || start == usize::MAX {
            continue;
        }
        let (end, slot, guard) = (
            r.end.load(Ordering::Relaxed),
            r.slot.load(Ordering::Relaxed),
            r.guard.load(Ordering::Relaxed),
        );
        if (start..end).contains(&addr) && slot > 0 && (addr - start) % slot < guard {
            return Some(slot - guard);
        }
    }
    None
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(usable) = guard_hit(addr) {
        report_overflow(usable);
        // SAFETY: _exit is async-signal-safe; the worker cannot continue (the coroutine's frames
        // are unrecoverable) and the master respawns it.
        unsafe { libc::_exit(OVERFLOW_EXIT_CODE) };
    }
    chain(sig, info, ctx);
}

/// Hands a fault that is not ours to the previous handler, or restores the default action and
/// returns so the faulting instruction re-faults and the process dies as it would have.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let index = usize::from(sig == libc::SIGBUS);
    let previous = PREVIOUS.get().map(|p| p[index]);
    match previous {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this type.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a handler installed without SA_SIGINFO has the one-argument type.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            let action = zeroed_sigaction();
            // SAFETY: restoring SIG_DFL (all-zero action) is async-signal-safe.
            unsafe { libc::sigaction(sig, &action, ptr::null_mut()) };
        }
    }
}

/// A fixed buffer for building the report without allocating.
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_num(&mut self, mut n: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

fn report_overflow(usable: usize) {
    let mut line = Line {
        buf: [0; 512],
        len: 0,
    };
    line.push(b"rcontainer: worker ");
    // SAFETY: getpid is async-signal-safe.
    line.push_num(unsafe { libc::getpid() } as usize);
    line.push(b": coroutine stack overflow");
    let (p, n) = LABEL.with(|l| l.get());
    if !p.is_null() && n > 0 {
        line.push(b" in request \"");
        // SAFETY: set_label's contract keeps these bytes alive while the coroutine runs.
        line.push(unsafe { std::slice::from_raw_parts(p, n.min(200)) });
        line.push(b"\"");
    }
    line.push(b": the handler needs more than the ");
    line.push_num(usable / 1024);
    line.push(b" KiB coroutine stack; raise the `stack-size` option (KiB). Worker exits.\n");
    // SAFETY: write(2) is async-signal-safe; the buffer is valid for `len` bytes.
    unsafe { libc::write(libc::STDERR_FILENO, line.buf.as_ptr().cast(), line.len) };
}

/// An alternate signal stack this module installed for the current thread; uninstalled and
/// unmapped on drop. Must be dropped on the thread that created it.
#[derive(Debug)]
pub(crate) struct AltStack {
    base: *mut libc::c_void,
    len: usize,
}

const ALTSTACK_SIZE: usize = 64 * 1024;

/// Makes sure the current thread has an alternate signal stack (std gives its threads one when
/// its own handler is installed; a thread created otherwise may have none). Returns the stack
/// if this call had to install it.
pub(crate) fn ensure_altstack() -> io::Result<Option<AltStack>> {
    let mut current = MaybeUninit::<libc::stack_t>::zeroed();
    // SAFETY: querying only (null new stack); `current` is a valid out-pointer.
    if unsafe { libc::sigaltstack(ptr::null(), current.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sigaltstack succeeded and filled it in.
    let current = unsafe { current.assume_init() };
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return Ok(None);
    }
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a fresh anonymous mapping aliases nothing.
    let base = unsafe { libc::mmap(ptr::null_mut(), ALTSTACK_SIZE, prot, flags, -1, 0) };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let stack = libc::stack_t {
        ss_sp: base,
        ss_flags: 0,
        ss_size: ALTSTACK_SIZE,
    };
    // SAFETY: `stack` describes memory we own for as long as the returned AltStack lives.
    if unsafe { libc::sigaltstack(&stack, ptr::null_mut()) } != 0 {
        let err = io::Error::last_os_error();
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(base, ALTSTACK_SIZE) };
        return Err(err);
    }
    Ok(Some(AltStack {
        base,
        len: ALTSTACK_SIZE,
    }))
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling the alternate stack before unmapping it; this runs on the thread
        // that installed it (the runtime is !Send).
        unsafe {
            libc::sigaltstack(&disable, ptr::null_mut());
            libc::munmap(self.base, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_in_a_guard_are_hits() {
        // A fake region far from anything mapped; nothing is dereferenced.
        let start = 0x7000_0000_0000usize;
        let g = register_stacks(start, 3 * 8192, 8192, 4096).expect("register");
        assert_eq!(guard_hit(start), Some(4096));
        assert_eq!(guard_hit(start + 8192 + 4095), Some(4096));
        assert_eq!(guard_hit(start + 4096), None);
        assert_eq!(guard_hit(start + 3 * 8192), None);
        drop(g);
        assert_eq!(guard_hit(start), None);
    }

    #[test]
    fn numbers_format_without_allocating() {
        let mut line = Line {
            buf: [0; 512],
            len: 0,
        };
        line.push_num(0);
        line.push(b" ");
        line.push_num(262_144);
        assert_eq!(&line.buf[..line.len], b"0 262144");
    }
}
