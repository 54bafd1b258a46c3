//! The bridge between a Python worker's two threads: the queue of new requests and of
//! greenlets to wake (a pipe the hub watches with `loop.io` wakes the Python thread), and each
//! request's [`Exchange`], through which its coroutine (I/O thread) and its greenlet (Python
//! thread) trade the request body and the response a piece at a time.
//!
//! Back-pressure both ways: the greenlet asks for the next piece of body ([`Answer::NeedInput`])
//! and waits for it, so at most one piece is in memory whatever the upload's size; the pieces of
//! response it queues are bounded by [`WINDOW`] bytes, past which it waits for the coroutine to
//! send some. The coroutine parks on a [`Completion`] the greenlet's next message completes.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::coro::{Completion, wait_remote};

/// How many bytes of response a greenlet may queue before it waits for them to be sent.
const WINDOW: usize = 64 * 1024;

/// What a queued message counts for beside its bytes, so a stream of tiny pieces is bounded
/// too.
const MESSAGE_COST: usize = 64;

/// The largest piece of request body handed to the app at once.
pub(super) const INPUT_CHUNK: usize = 64 * 1024;

/// Work (or a ping) left untaken this long means the Python thread is not getting back to its
/// hub.
const STALL: Duration = Duration::from_secs(1);

/// A message from a greenlet to its request's coroutine.
#[derive(Debug)]
pub(super) enum Answer {
    /// `start_response`'s status and headers with the first piece of body (all of it unless
    /// `more`).
    Head {
        status: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        more: bool,
    },
    /// The next piece of a streamed body.
    Chunk(Vec<u8>),
    /// A streamed body ended.
    End,
    /// The app reads its body: the next piece, of at most this many bytes.
    NeedInput(usize),
    /// The app raised: its traceback.
    Raised(String),
}

impl Answer {
    fn cost(&self) -> usize {
        MESSAGE_COST
            + match self {
                Answer::Head { body, .. } | Answer::Chunk(body) => body.len(),
                _ => 0,
            }
    }
}

/// One request's state, shared by its coroutine and its greenlet.
#[derive(Default)]
struct Exchange {
    /// The greenlet's messages the coroutine has not taken yet, in order.
    to_io: VecDeque<Answer>,
    /// What `to_io` counts for against [`WINDOW`].
    queued: usize,
    /// The coroutine, parked until `to_io` has a message or the greenlet is gone.
    io_waiting: Option<Completion<()>>,
    /// The piece of body the greenlet asked for (empty at the body's end).
    input: Option<Vec<u8>>,
    /// The greenlet waits for `input` or for room in `to_io`: wake it when either comes.
    py_waiting: bool,
    /// The coroutine gave up (client gone, harakiri, a bad body): the greenlet is killed.
    stopped: bool,
    /// The greenlet is done: nothing more will come.
    py_gone: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; never give up on a poisoned one anyway.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Requests whose greenlet is to be woken (or killed, once stopped).
    ready: Vec<u64>,
    /// Since when work (or a ping) has waited for the Python thread to take it.
    pending_since: Option<Instant>,
    /// When the Python thread was last pinged.
    pinged: Option<Instant>,
    closed: bool,
}

impl Queue {
    fn note_pending(&mut self) {
        self.pending_since.get_or_insert_with(Instant::now);
    }
}

struct BridgeInner {
    queue: Mutex<Queue>,
    /// A byte per handed-over job or wake-up (and one at close) wakes the hub's watcher.
    wake: OwnedFd,
    next_id: AtomicU64,
}

impl BridgeInner {
    fn poke(&self) {
        // A full pipe already wakes the reader; nothing is lost by a failed write.
        let _ = nix::unistd::write(self.wake.as_fd(), &[1]);
    }

    /// Wakes request `id`'s greenlet.
    fn wake_greenlet(&self, id: u64) {
        let mut queue = lock(&self.queue);
        queue.ready.push(id);
        queue.note_pending();
        drop(queue);
        self.poke();
    }
}

/// A new bridge: the I/O end and the Python end.
pub(crate) fn bridge() -> io::Result<(IoBridge, PyBridge)> {
    use nix::fcntl::OFlag;
    let (readable, writable) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let inner = Arc::new(BridgeInner {
        queue: Mutex::new(Queue::default()),
        wake: writable,
        next_id: AtomicU64::new(1),
    });
    Ok((IoBridge(inner.clone()), PyBridge { inner, readable }))
}

/// The I/O thread's end of the bridge.
#[derive(Clone)]
pub(crate) struct IoBridge(Arc<BridgeInner>);

impl std::fmt::Debug for IoBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoBridge").finish_non_exhaustive()
    }
}

impl IoBridge {
    /// Hands a request (its environ's CGI variables and URL scheme) to the Python thread.
    pub(super) fn submit(&self, vars: Vec<(String, String)>, scheme: &str) -> io::Result<IoEnd> {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let exchange = Arc::new(Mutex::new(Exchange::default()));
        let job = Job {
            id,
            vars,
            scheme: scheme.to_string(),
            exchange: exchange.clone(),
        };
        let mut queue = lock(&self.0.queue);
        if queue.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the Python thread stopped",
            ));
        }
        queue.jobs.push_back(job);
        queue.note_pending();
        drop(queue);
        self.0.poke();
        Ok(IoEnd {
            id,
            exchange,
            bridge: self.0.clone(),
            finished: false,
        })
    }

    /// No more requests: the Python thread finishes those it has, then its hub loop returns.
    pub(crate) fn close(&self) {
        lock(&self.0.queue).closed = true;
        self.0.poke();
    }

    /// Whether the Python thread keeps up: false once work has waited for it longer than
    /// [`STALL`] (a greenlet that never yields, or C code that holds the thread). The worker's
    /// heartbeat stops while it is false, so the master's watchdog sees a blocked worker.
    /// With nothing waiting, it pings the Python thread now and then (a wake-up with no work),
    /// so a thread stuck while idle shows too.
    pub(crate) fn python_responsive(&self) -> bool {
        let mut queue = lock(&self.0.queue);
        if let Some(since) = queue.pending_since {
            return since.elapsed() < STALL;
        }
        let now = Instant::now();
        if queue.pinged.is_none_or(|at| now - at >= STALL / 2) {
            queue.pinged = Some(now);
            queue.pending_since = Some(now);
            drop(queue);
            self.0.poke();
        }
        true
    }
}

/// A request's end on the I/O thread. Dropped before its greenlet finished the answer (the
/// client went away, `harakiri`, a bad body), it has the greenlet killed.
pub(super) struct IoEnd {
    id: u64,
    exchange: Arc<Mutex<Exchange>>,
    bridge: Arc<BridgeInner>,
    finished: bool,
}

impl IoEnd {
    /// The greenlet's next message, parking the coroutine until there is one. Fails when the
    /// greenlet is gone without a word more, or when the request is cancelled (`harakiri`).
    pub(super) fn recv(&mut self) -> io::Result<Answer> {
        loop {
            if let Some(answer) = self.try_recv()? {
                return Ok(answer);
            }
            wait_remote(|done| {
                let mut exchange = lock(&self.exchange);
                if exchange.to_io.is_empty() && !exchange.py_gone {
                    exchange.io_waiting = Some(done);
                } else {
                    drop(exchange);
                    done.complete(());
                }
                Ok(())
            })?;
        }
    }

    /// The greenlet's next message if one is queued already (`None`: not yet); fails when the
    /// greenlet is gone without a word more.
    pub(super) fn try_recv(&mut self) -> io::Result<Option<Answer>> {
        let mut exchange = lock(&self.exchange);
        if let Some(answer) = exchange.to_io.pop_front() {
            exchange.queued -= answer.cost();
            let wake = exchange.py_waiting && exchange.queued < WINDOW;
            if wake {
                exchange.py_waiting = false;
            }
            drop(exchange);
            if wake {
                self.bridge.wake_greenlet(self.id);
            }
            return Ok(Some(answer));
        }
        if exchange.py_gone {
            self.finished = true;
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the app's greenlet ended without finishing its answer",
            ));
        }
        Ok(None)
    }

    /// Hands the greenlet the piece of body it asked for (empty: the body ended).
    pub(super) fn give_input(&self, piece: Vec<u8>) {
        let mut exchange = lock(&self.exchange);
        exchange.input = Some(piece);
        exchange.py_waiting = false;
        drop(exchange);
        self.bridge.wake_greenlet(self.id);
    }

    /// The answer is complete (or failed for good): the greenlet ends by itself.
    pub(super) fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for IoEnd {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut exchange = lock(&self.exchange);
        exchange.stopped = true;
        let gone = exchange.py_gone;
        drop(exchange);
        if !gone {
            self.bridge.wake_greenlet(self.id);
        }
    }
}

/// One request on the Python side: its CGI variables and its end of the exchange (the methods
/// `wsgi.py` calls).
#[pyclass(module = "rcontainer_wsgi")]
pub(super) struct Job {
    id: u64,
    vars: Vec<(String, String)>,
    scheme: String,
    exchange: Arc<Mutex<Exchange>>,
}

impl Job {
    /// Queues `answer` for the coroutine and wakes it; true while there is room for more.
    fn send(&self, answer: Answer) -> bool {
        let mut exchange = lock(&self.exchange);
        if exchange.stopped || exchange.py_gone {
            // Nobody will read it; the greenlet is being killed.
            return true;
        }
        exchange.queued += answer.cost();
        exchange.to_io.push_back(answer);
        let room = exchange.queued < WINDOW;
        if !room {
            exchange.py_waiting = true;
        }
        let waiting = exchange.io_waiting.take();
        drop(exchange);
        if let Some(done) = waiting {
            done.complete(());
        }
        room
    }
}

#[pymethods]
impl Job {
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// The CGI part of the environ, a new dict (the vars move into it: taken once).
    fn environ<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let environ = PyDict::new(py);
        for (name, value) in std::mem::take(&mut self.vars) {
            environ.set_item(shared_text(py, &name), shared_text(py, &value))?;
        }
        Ok(environ)
    }

    #[getter]
    fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the I/O side gave up on this request.
    #[getter]
    fn stopped(&self) -> bool {
        lock(&self.exchange).stopped
    }

    /// The head of the answer (`status` as in `start_response`, "200 OK") with the first piece
    /// of body, all of it unless `more`. True while there is room to queue more.
    fn reply(
        &self,
        status: String,
        headers: Vec<(String, String)>,
        body: &[u8],
        more: bool,
    ) -> bool {
        self.send(Answer::Head {
            status,
            headers,
            body: body.to_vec(),
            more,
        })
    }

    /// The next piece of a streamed answer; true while there is room to queue more.
    fn chunk(&self, data: &[u8]) -> bool {
        self.send(Answer::Chunk(data.to_vec()))
    }

    /// The end of a streamed answer.
    fn end(&self) {
        self.send(Answer::End);
    }

    /// The app raised: its traceback.
    fn fail(&self, traceback: String) {
        self.send(Answer::Raised(traceback));
    }

    /// Asks for the next piece of the request body, of at most `size` bytes.
    fn need_input(&self, size: usize) {
        self.send(Answer::NeedInput(size.clamp(1, INPUT_CHUNK)));
    }

    /// The piece of body asked for, once it came (empty at the body's end); `None` not yet.
    fn take_input<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        let mut exchange = lock(&self.exchange);
        match exchange.input.take() {
            Some(piece) => Some(PyBytes::new(py, &piece)),
            None => {
                exchange.py_waiting = true;
                None
            }
        }
    }

    /// Whether the answer's queue has room again (true as well once stopped: the greenlet is
    /// about to be killed).
    fn room(&self) -> bool {
        let mut exchange = lock(&self.exchange);
        let room = exchange.stopped || exchange.queued < WINDOW;
        if !room {
            exchange.py_waiting = true;
        }
        room
    }

    /// The greenlet is done with this request: a coroutine still waiting wakes to what is
    /// queued, then to an error.
    fn finish(&self) {
        let mut exchange = lock(&self.exchange);
        exchange.py_gone = true;
        let waiting = exchange.io_waiting.take();
        drop(exchange);
        if let Some(done) = waiting {
            done.complete(());
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `text` as a Python string: one made once and shared by every request when it is one of the
/// environ's usual names or values (every parked request would hold its own copies
/// otherwise), else a new one. Only a fixed list is shared: what clients choose (header
/// names, paths) is never interned, so no request can grow the interpreter's table.
fn shared_text<'py>(py: Python<'py>, text: &str) -> Bound<'py, PyString> {
    macro_rules! shared {
        ($($known:literal),* $(,)?) => {
            match text {
                $($known => pyo3::intern!(py, $known).clone(),)*
                _ => PyString::new(py, text),
            }
        };
    }
    shared!(
        "REQUEST_METHOD",
        "REQUEST_URI",
        "PATH_INFO",
        "QUERY_STRING",
        "SCRIPT_NAME",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "REQUEST_SCHEME",
        "HTTPS",
        "DOCUMENT_ROOT",
        "HTTP_HOST",
        "HTTP_USER_AGENT",
        "HTTP_ACCEPT",
        "HTTP_ACCEPT_ENCODING",
        "HTTP_ACCEPT_LANGUAGE",
        "HTTP_CONNECTION",
        "HTTP_COOKIE",
        "HTTP_REFERER",
        "HTTP_CACHE_CONTROL",
        "HTTP_AUTHORIZATION",
        "HTTP_ORIGIN",
        "HTTP_PRAGMA",
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_FORWARDED_HOST",
        "HTTP_X_REAL_IP",
        "HTTP_X_REQUESTED_WITH",
        "HTTP_UPGRADE_INSECURE_REQUESTS",
        "GET",
        "POST",
        "HEAD",
        "PUT",
        "DELETE",
        "PATCH",
        "OPTIONS",
        "HTTP/1.1",
        "HTTP/1.0",
        "http",
        "https",
        "on",
        "80",
        "443",
        "127.0.0.1",
        "::1",
        "keep-alive",
        "close",
        "*/*",
    )
}

/// The Python thread's end of the bridge (a Python object: `fileno`, `take`, `log`).
#[pyclass(module = "rcontainer_wsgi")]
pub(crate) struct PyBridge {
    inner: Arc<BridgeInner>,
    readable: OwnedFd,
}

impl std::fmt::Debug for PyBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyBridge").finish_non_exhaustive()
    }
}

/// What [`PyBridge::take`] hands the hub: new requests, and ids of greenlets to wake.
type Taken = (Vec<Job>, Vec<u64>);

#[pymethods]
impl PyBridge {
    /// The descriptor the hub watches for readability.
    fn fileno(&self) -> i32 {
        self.readable.as_raw_fd()
    }

    /// The requests handed over and the greenlets to wake since the last call (maybe none: a
    /// wake-up raced with an earlier take), or `None` once the bridge is closed and empty.
    fn take(&self) -> Option<Taken> {
        let mut buf = [0u8; 512];
        while matches!(nix::unistd::read(self.readable.as_fd(), &mut buf), Ok(n) if n > 0) {}
        let mut queue = lock(&self.inner.queue);
        queue.pending_since = None;
        if queue.jobs.is_empty() && queue.ready.is_empty() && queue.closed {
            return None;
        }
        Some((
            queue.jobs.drain(..).collect(),
            std::mem::take(&mut queue.ready),
        ))
    }

    /// A line for the log (`wsgi.errors`).
    fn log(&self, line: &str) {
        log::error!("{line}");
    }
}

impl Drop for PyBridge {
    fn drop(&mut self) {
        // The Python side is gone: later requests fail at once instead of waiting, and those
        // not taken yet wake to an error (their jobs are dropped outside the lock).
        let mut queue = lock(&self.inner.queue);
        queue.closed = true;
        let jobs = std::mem::take(&mut queue.jobs);
        drop(queue);
        drop(jobs);
    }
}
