# The Python side of rcontainer's WSGI host (src/python/): loads the app, then runs gevent's
# hub on the worker's main thread with one greenlet per request. Requests come complete from
# the I/O thread through `bridge`; each answer goes back through `job.respond` / `job.fail`.
import importlib
import importlib.util
import os
import sys
import traceback


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


def serve(bridge, app, cap):
    """Runs requests until the I/O thread closes the bridge. It closes it once it has drained:
    every request it waited for is answered or given up, so greenlets still running (left
    behind by harakiri) have nobody to answer and are killed."""
    import gevent
    import gevent.pool

    errors = ErrorStream(bridge)
    hub = gevent.get_hub()
    watcher = hub.loop.io(bridge.fileno(), 1)
    pool = gevent.pool.Pool(cap)
    while True:
        jobs = bridge.take()
        if jobs is None:
            break
        if not jobs:
            hub.wait(watcher)
            continue
        for job in jobs:
            pool.spawn(run_request, app, job, errors)
    pool.kill(block=True, timeout=5)
    errors.flush()


def environ_of(job, errors):
    import io

    environ = dict(job.vars)
    environ.update(
        {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": environ.get("wsgi.url_scheme", job.scheme),
            "wsgi.input": io.BytesIO(job.body),
            "wsgi.errors": errors,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
    )
    return environ


def run_request(app, job, errors):
    state = {"status": None, "headers": None}
    chunks = []

    def write(data):
        if state["status"] is None:
            raise AssertionError("write() before start_response()")
        if not isinstance(data, bytes):
            raise TypeError("write() takes bytes, not %s" % type(data).__name__)
        chunks.append(data)

    def start_response(status, headers, exc_info=None):
        if exc_info is not None:
            # Nothing is sent before the app returns, so the headers can still be replaced.
            exc_info = None
        elif state["status"] is not None:
            raise AssertionError("start_response() called twice without exc_info")
        state["status"] = status
        state["headers"] = headers
        return write

    try:
        result = app(environ_of(job, errors), start_response)
        try:
            for chunk in result:
                if not isinstance(chunk, bytes):
                    raise TypeError("the app yielded %s, not bytes" % type(chunk).__name__)
                if chunk:
                    chunks.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if state["status"] is None:
            raise AssertionError("the app returned without calling start_response()")
        job.respond(state["status"], list(state["headers"]), b"".join(chunks))
    except Exception:
        job.fail(traceback.format_exc())
