"""A worker process: imports the application, connects to the daemon, runs its tasks.

``wsdaemon worker --socket PATH --app mygame:app`` (started by the daemon for
``--workers N``) or ``wsdaemon worker --connect HOST:PORT --token-file F --app
mygame:app`` on another machine. Tasks run synchronously, one at a time, in the
order received; before each one the socket is checked without blocking, so a
``stop`` or a lost daemon is noticed between tasks.

A supervised worker (started by the daemon) exits when its connection ends and
ignores SIGINT (the daemon stops it). Any other worker reconnects with back-off,
and on ``restart`` re-executes itself to load the application's code again.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

from ..application import load_app
from ..proto import workerproto
from ..tasks import run_task

log = logging.getLogger("wsdaemon.worker")

#: Seconds to wait for the daemon's answer to ``hello``.
WELCOME_TIMEOUT = 30.0
RECONNECT_MIN = 0.5
RECONNECT_MAX = 10.0

EXIT_REFUSED = 3


class Lost(Exception):
    """The connection to the daemon ended."""


class Refused(Exception):
    """The daemon refused this worker (bad token, wrong version)."""


class WorkerSession:
    """One connection to the daemon, from ``hello`` until it ends; ``run()`` says how it ended."""

    def __init__(self, sock: socket.socket, app: Any, token: str, max_frame: int) -> None:
        self.sock = sock
        self.app = app
        self.token = token
        self.max_frame = max_frame
        self.decoder = workerproto.FrameDecoder(max_frame)
        self.pending: deque[dict[str, Any]] = deque()
        #: None while serving; "stop" or "restart" once the daemon asked for it.
        self.ending: str | None = None

    def run(self) -> str:
        """Serve until the daemon says ``stop``/``restart`` (returned) or the connection ends (Lost)."""
        self.send(
            {
                "type": "hello",
                "version": workerproto.PROTOCOL_VERSION,
                "token": self.token,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "tasks": sorted(self.app.tasks),
            }
        )
        self._wait_for_welcome()
        while True:
            if not self.pending:
                if self.ending:
                    return self.ending
                self._receive(block=True)
                continue
            self._receive(block=False)
            self._run_one(self.pending.popleft())

    def _wait_for_welcome(self) -> None:
        deadline = time.monotonic() + WELCOME_TIMEOUT
        welcomed = False
        while not welcomed:
            for message in self.decoder.feed(self._recv(max(0.0, deadline - time.monotonic()))):
                kind = message["type"]
                if welcomed:
                    self._handle(message)  # tasks may come in the same read as the welcome
                elif kind == "welcome":
                    welcomed = True
                elif kind == "refused":
                    raise Refused(str(message.get("reason", "")))
                else:
                    raise Lost(f"unexpected {kind!r} before welcome")

    def _recv(self, timeout: float | None) -> bytes:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            if timeout is not None and timeout > 0:
                raise Lost("the daemon did not answer")
            return b""
        try:
            data = self.sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            raise Lost(str(exc)) from None
        if not data:
            raise Lost("the daemon closed the connection")
        return data

    def _receive(self, block: bool) -> None:
        data = self._recv(None if block else 0.0)
        while data:
            try:
                messages = self.decoder.feed(data)
            except workerproto.FrameError as exc:
                raise Lost(f"protocol error: {exc}") from None
            for message in messages:
                self._handle(message)
            data = b"" if block else self._recv(0.0)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "task":
            self.pending.append(message)
        elif kind in ("stop", "restart"):
            self.ending = kind
        else:
            log.warning("unknown message type %r ignored", kind)

    def _run_one(self, message: dict[str, Any]) -> None:
        task_id = message.get("id")
        name = str(message.get("name"))
        args = message.get("args") or []
        kwargs = message.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            answer = {"type": "error", "error_type": "TypeError", "message": "bad arguments"}
        else:
            started = time.monotonic()
            answer = run_task(self.app.tasks, name, args, kwargs)
            log.debug("task %s#%s: %s in %.3f s", name, task_id, answer["type"], time.monotonic() - started)
        answer["id"] = task_id
        try:
            frame = workerproto.encode(answer, self.max_frame)
        except workerproto.FrameTooLarge as exc:
            frame = self._error_frame(task_id, "ResultTooLarge", f"result of task {name!r}: {exc}")
        except (TypeError, ValueError) as exc:
            frame = self._error_frame(
                task_id, "TypeError", f"result of task {name!r} is not JSON-serialisable: {exc}"
            )
        try:
            self.sock.sendall(frame)
        except OSError as exc:
            raise Lost(str(exc)) from None

    @staticmethod
    def _error_frame(task_id: Any, error_type: str, text: str) -> bytes:
        return workerproto.encode(
            {"type": "error", "id": task_id, "error_type": error_type, "message": text, "traceback": ""}
        )

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.sock.sendall(workerproto.encode(message, self.max_frame))
        except OSError as exc:
            raise Lost(str(exc)) from None


def connect(socket_path: str | None, address: tuple[str, int] | None) -> socket.socket:
    if socket_path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(socket_path)
        except OSError:
            sock.close()
            raise
        return sock
    assert address is not None
    sock = socket.create_connection(address, timeout=10.0)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def run_worker(
    app_spec: str,
    socket_path: str | None = None,
    address: tuple[str, int] | None = None,
    token: str = "",
    supervised: bool = False,
    max_frame: int = workerproto.DEFAULT_MAX_FRAME,
) -> int:
    """The worker's main loop; returns the process exit status."""
    if supervised:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    app = load_app(app_spec)
    where = socket_path or f"{address[0]}:{address[1]}"
    delay = RECONNECT_MIN
    while True:
        try:
            sock = connect(socket_path, address)
        except OSError as exc:
            if supervised:
                log.error("cannot connect to %s: %s", where, exc)
                return 1
            log.warning("cannot connect to %s: %s; retrying in %.1f s", where, exc, delay)
            time.sleep(delay)
            delay = min(RECONNECT_MAX, delay * 2)
            continue
        session = WorkerSession(sock, app, token, max_frame)
        try:
            ending = session.run()
        except Refused as exc:
            log.error("the daemon at %s refused this worker: %s", where, exc)
            return EXIT_REFUSED
        except Lost as exc:
            if supervised:
                log.info("connection to the daemon ended (%s); exiting", exc)
                return 0
            log.warning("connection to %s lost (%s); reconnecting in %.1f s", where, exc, delay)
            time.sleep(delay)
            delay = min(RECONNECT_MAX, delay * 2)
            continue
        finally:
            sock.close()
        delay = RECONNECT_MIN
        if ending == "restart":
            log.info("restarting to load the application again")
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
        if supervised:
            log.info("stopped by the daemon")
            return 0
        log.info("the daemon asked this worker to disconnect; reconnecting in %.1f s", delay)
        time.sleep(delay)
