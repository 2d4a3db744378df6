"""An application with task functions, driven over WebSocket by the worker tests.

A text message that is a JSON object ``{"id": ..., "task": NAME, "args": [...]}``
submits a task and is answered by ``{"id": ..., "result": ...}`` or ``{"id": ...,
"error": {"type": ..., "message": ...}}``; ``{"id": ..., "stats": true}`` answers
the pool's statistics; anything else is echoed at once.
"""

import json
import os
import sys
import time
from pathlib import Path

from wsdaemon.application import Application
from wsdaemon.tasks import TaskError

app = Application("taskapp")

# Read once at import: a worker started after the file changed reports the new value.
_VERSION_FILE = os.environ.get("TASKAPP_VERSION_FILE")
CODE_VERSION = Path(_VERSION_FILE).read_text().strip() if _VERSION_FILE else "none"
if CODE_VERSION == "broken" and "worker" in sys.argv:
    raise ImportError("this version of taskapp cannot be imported by a worker")


class GridError(Exception):
    pass


@app.task
def add(a, b):
    return a + b


@app.task
def whoami():
    return {"pid": os.getpid(), "version": CODE_VERSION}


@app.task
def sleep(seconds, tag=None):
    time.sleep(seconds)
    return {"pid": os.getpid(), "tag": tag, "version": CODE_VERSION}


@app.task(idempotent=True)
def sleep_idempotent(seconds, tag=None):
    time.sleep(seconds)
    return {"pid": os.getpid(), "tag": tag}


@app.task
def spin(seconds):
    """Keep a CPU busy for ``seconds``: the loop must not notice."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return {"pid": os.getpid(), "iterations": n}


@app.task
def fail(message):
    raise ValueError(message)


@app.task
def fail_custom(cell):
    raise GridError(f"cell {cell} is a wall")


@app.task
def unserialisable():
    return {1, 2, 3}


@app.task(timeout=1.0)
def overrun(seconds):
    time.sleep(seconds)
    return "finished"


@app.on_message
def message(conn, text):
    try:
        request = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        request = None
    if not isinstance(request, dict):
        conn.send(text)
        return
    request_id = request.get("id")
    if request.get("stats"):
        conn.send(json.dumps({"id": request_id, "stats": app.server.workers.stats()}))
        return

    def done(future):
        try:
            answer = {"id": request_id, "result": future.result()}
        except TaskError as exc:
            error = {"type": exc.type, "message": exc.message, "traceback": exc.traceback}
            answer = {"id": request_id, "error": error}
        if conn.open:
            conn.send(json.dumps(answer))

    try:
        app.submit(request["task"], *request.get("args", []), callback=done, **request.get("kwargs", {}))
    except TaskError as exc:
        conn.send(json.dumps({"id": request_id, "error": {"type": exc.type, "message": exc.message}}))
    except (TypeError, ValueError) as exc:
        conn.send(json.dumps({"id": request_id, "error": {"type": type(exc).__name__, "message": str(exc)}}))
