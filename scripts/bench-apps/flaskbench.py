"""The Flask app of scripts/bench.sh's Python scenarios, served alike by rcontainer, uWSGI and
gunicorn (all three under gevent, from the same venv).

    /              "Hello, World!"                                     (py-hello)
    /sleep?ms=N    gevent.sleep(N / 1000), then "slept" (no ms: 0)     (py-sleep, py-parked)
"""

import gevent
from flask import Flask, request

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello, World!"


@app.route("/sleep")
def sleep():
    gevent.sleep(request.args.get("ms", 0, type=int) / 1000)
    return "slept\n"
