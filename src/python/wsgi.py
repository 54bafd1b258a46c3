# The Python side of rcontainer's WSGI host (src/python/): loads the app, then runs gevent's
# hub on the worker's main thread with one greenlet per request. Requests come from the I/O
# thread through `bridge` (src/python/bridge.rs); each greenlet trades its request body and
# its answer with the request's coroutine through its `job`, a piece at a time.
import importlib
import importlib.util
import os
import sys
import traceback

# gevent's GreenletExit, once serve() has imported gevent (from the app's venv).
GreenletExit = None


class ErrorStream:
    """wsgi.errors: lines written here go to rcontainer's log."""

    def __init__(self, bridge):
        self._bridge = bridge
        self._pending = ""

    def write(self, text):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            self._bridge.log(line)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._pending:
            self._bridge.log(self._pending)
            self._pending = ""


def load(module, callable_name, wsgi_file, home, pythonpath, monkey_patch):
    """Returns the WSGI callable; raises (with its traceback) when it cannot be loaded."""
    import faulthandler

    # The watchdog's SIGABRT (a greenlet that never yields) prints every thread's stack to the
    # log, the stuck view's frame first.
    faulthandler.enable(all_threads=True)
    if home:
        import site

        version = "python%d.%d" % sys.version_info[:2]
        site.addsitedir(os.path.join(home, "lib", version, "site-packages"))
    for path in reversed(pythonpath):
        sys.path.insert(0, path)
    # As uWSGI does: the working directory (`chdir`) is importable.
    sys.path.insert(0, os.getcwd())
    if monkey_patch:
        # Before the app is imported, so what it imports at load time cooperates too.
        from gevent import monkey

        monkey.patch_all()
    if wsgi_file:
        sys.path.insert(0, os.path.dirname(os.path.abspath(wsgi_file)))
        spec = importlib.util.spec_from_file_location("uwsgi_file", wsgi_file)
        if spec is None:
            raise ImportError("cannot load wsgi-file %r" % wsgi_file)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["uwsgi_file"] = mod
        spec.loader.exec_module(mod)
        where = wsgi_file
    else:
        if ":" in module:
            module, callable_name = module.split(":", 1)
        mod = importlib.import_module(module)
        where = module
    names = [callable_name] if callable_name else ["application", "app"]
    for name in names:
        app = getattr(mod, name, None)
        if app is not None:
            break
    else:
        raise AttributeError("%s has no callable %s" % (where, " or ".join(names)))
    if not callable(app):
        raise TypeError("%s:%s is not callable" % (where, name))
    return app


# What one read of wsgi.input asks the I/O thread for when the app wants all there is (the
# bridge caps every ask at 64 KiB).
INPUT_PIECE = 65536


def serve(bridge, app):
    """Runs requests until the I/O thread closes the bridge. It closes it once it has drained:
    every request it waited for is answered or given up, so greenlets still running (left
    behind by harakiri) have nobody to answer and are killed."""
    global GreenletExit
    import gevent

    GreenletExit = gevent.GreenletExit
    errors = ErrorStream(bridge)
    hub = gevent.get_hub()
    watcher = hub.loop.io(bridge.fileno(), 1)
    running = {}
    spawn = gevent.spawn
    while True:
        taken = bridge.take()
        if taken is None:
            break
        jobs, ready = taken
        if not jobs and not ready:
            hub.wait(watcher)
            continue
        for job in jobs:
            turn = Turn(job)
            running[job.id] = (spawn(run_request, app, turn, errors, running), turn)
        for job_id in ready:
            entry = running.get(job_id)
            if entry is None:
                continue
            greenlet, turn = entry
            if turn.job.stopped:
                # The client went away or harakiri struck: the app's close() still runs.
                greenlet.kill(block=False)
                if greenlet.dead:
                    # Killed before it ever ran: run_request will not say it is done.
                    running.pop(job_id, None)
                    turn.job.finish()
            elif turn.event is not None:
                turn.event.set()
    gevent.killall([g for g, _ in running.values()], block=True, timeout=5)
    errors.flush()


class Turn:
    """A greenlet's waits for its request's coroutine: for the next piece of body, or for room
    to queue more of the answer. The hub sets `event` (made at the first wait: most requests
    never wait) when the coroutine has done its part."""

    __slots__ = ("job", "event")

    def __init__(self, job):
        self.job = job
        self.event = None

    def wait(self, check):
        """Waits until `check()` returns something other than None, and returns it."""
        if self.event is None:
            from gevent.event import Event

            self.event = Event()
        while True:
            self.event.clear()
            value = check()
            if value is not None:
                return value
            self.event.wait()

    def wait_for_room(self):
        self.wait(lambda: True if self.job.room() else None)


class Input:
    """wsgi.input: the request body, read from the socket by the I/O thread a piece at a time
    as the app asks, so an upload is never held whole (unless the app reads it whole)."""

    def __init__(self, turn):
        self._turn = turn
        self._buf = bytearray()
        self._eof = False

    def _piece(self, want):
        """The next piece of body from the socket, b"" at its end."""
        if self._eof:
            return b""
        job = self._turn.job
        job.need_input(want)
        piece = self._turn.wait(job.take_input)
        if not piece:
            self._eof = True
        return piece

    def _take(self, size):
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def read(self, size=-1):
        if size is None or size < 0:
            while True:
                piece = self._piece(INPUT_PIECE)
                if not piece:
                    break
                self._buf += piece
            return self._take(len(self._buf))
        if not self._buf and size > 0:
            # The common case: no copy of what came.
            piece = self._piece(size)
            if len(piece) <= size:
                return piece
            self._buf += piece
        while len(self._buf) < size:
            piece = self._piece(size - len(self._buf))
            if not piece:
                break
            self._buf += piece
        return self._take(size)

    def readline(self, size=-1):
        limit = size if size is not None and size >= 0 else None
        searched = 0
        while True:
            at = self._buf.find(b"\n", searched)
            if at >= 0:
                end = at + 1
                break
            searched = len(self._buf)
            if limit is not None and searched >= limit:
                end = limit
                break
            piece = self._piece(INPUT_PIECE)
            if not piece:
                end = len(self._buf)
                break
            self._buf += piece
        if limit is not None:
            end = min(end, limit)
        return self._take(end)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class FileWrapper:
    """wsgi.file_wrapper: a file-like object's contents as an iterable of blocks, of at least
    64 KiB (Django asks for 4 KiB: a message and a write each would be many more)."""

    def __init__(self, filelike, blksize=65536):
        self.filelike = filelike
        self.blksize = max(blksize, 65536)
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def environ_of(turn, errors):
    job = turn.job
    environ = job.environ()
    environ["wsgi.version"] = (1, 0)
    environ["wsgi.url_scheme"] = job.scheme
    environ["wsgi.input"] = Input(turn)
    # The input ends where the body does (chunked or not): reading to b"" is safe.
    environ["wsgi.input_terminated"] = True
    environ["wsgi.errors"] = errors
    environ["wsgi.multithread"] = False
    environ["wsgi.multiprocess"] = True
    environ["wsgi.run_once"] = False
    environ["wsgi.file_wrapper"] = FileWrapper
    return environ


class Answer:
    """What the app answers so far: start_response's status and headers, whether the head went
    to the I/O thread (with the first non-empty piece of body, as PEP 3333 asks), and whether
    the body is complete (all of the Content-Length the app announced)."""

    __slots__ = ("turn", "status", "headers", "length", "sent", "complete")

    def __init__(self, turn):
        self.turn = turn
        self.status = None
        self.headers = None
        self.length = None
        self.sent = False
        self.complete = False

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        if not isinstance(status, str):
            raise TypeError("the status must be a str, not %s" % type(status).__name__)
        self.status = status
        self.headers = list(headers)
        self.length = None
        for name, value in self.headers:
            if name.lower() == "content-length":
                try:
                    self.length = int(value)
                except (TypeError, ValueError):
                    pass
        return self.write

    def write(self, data):
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if not isinstance(data, bytes):
            raise TypeError("write() takes bytes, not %s" % type(data).__name__)
        if data:
            self.send(data)

    def send(self, data):
        """One piece of body, the head with the first; waits while the queue is full. A first
        piece that holds the whole announced length goes out as a complete answer (the usual
        Flask and Django response: one message, no streaming)."""
        if self.complete:
            # Past the announced length: nothing more may go out.
            return
        job = self.turn.job
        if self.sent:
            room = job.chunk(data)
        else:
            self.check_started()
            self.complete = self.length is not None and len(data) >= self.length
            room = job.reply(self.status, self.headers, data, not self.complete)
            self.sent = True
        if not room:
            self.turn.wait_for_room()

    def check_started(self):
        if self.status is None:
            raise AssertionError("the app returned without calling start_response()")

    def finish(self, result):
        """Sends what the app returned: at once when it is a list or tuple (already in memory),
        else a piece at a time as the iterable yields it."""
        job = self.turn.job
        if isinstance(result, (list, tuple)) and not self.sent:
            for chunk in result:
                check_chunk(chunk)
            self.check_started()
            job.reply(self.status, self.headers, b"".join(result), False)
            return
        for chunk in result:
            check_chunk(chunk)
            if chunk:
                self.send(chunk)
            if self.complete:
                break
        if self.complete:
            return
        if self.sent:
            job.end()
        else:
            self.check_started()
            job.reply(self.status, self.headers, b"", False)


def check_chunk(chunk):
    if not isinstance(chunk, bytes):
        raise TypeError("the app yielded %s, not bytes" % type(chunk).__name__)


def run_request(app, turn, errors, running):
    answer = Answer(turn)
    try:
        result = app(environ_of(turn, errors), answer.start_response)
        try:
            answer.finish(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except GreenletExit:
        # Killed: the I/O side gave up on the request (and said why in the log).
        pass
    except Exception:
        turn.job.fail(traceback.format_exc())
    finally:
        running.pop(turn.job.id, None)
        turn.job.finish()
