"""The application object a game developer writes callbacks for.

    app = Application()

    @app.on_message
    def message(conn, data):
        conn.send(data)

``wsdaemon run --app mygame:app`` loads it. Callbacks are plain synchronous
calls from the loop: no coroutine, future or queue per message.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from .tasks import NoWorkers, TaskFunction, TaskFuture

if TYPE_CHECKING:
    from .proto.http11 import Request


class Server(Protocol):
    """What an application may use of the running server (:class:`wsdaemon.server.Server`).

    Declared here because the server sits above the application and imports it.
    """

    connections: set[Any]

    def call_later(self, delay: float, callback: Callable, *args: Any) -> Any: ...

    def call_every(self, interval: float, callback: Callable, *args: Any) -> Any: ...

    def broadcast(self, message: str | bytes, connections: Any = None, exclude: Any = None) -> int: ...

    def publish(self, room: str, message: str | bytes, exclude: Any = None, key: Any = None) -> int: ...

    def presence(self, room: str) -> list[Any]: ...


def _ignore(*args: Any) -> None:
    return None


class Application:
    """Callbacks for open, message and close, plus the subprotocols it speaks."""

    def __init__(
        self,
        name: str = "app",
        subprotocols: Iterable[str] = (),
        *,
        compression: bool | Callable[[Request], bool] = True,
    ) -> None:
        self.name = name
        self.subprotocols: list[str] = list(subprotocols)
        #: Whether RFC 6455 clients may get permessage-deflate (when ``--compression on``):
        #: ``False`` declines every offer, a callable ``fn(request) -> bool`` decides per connection
        #: at the handshake. ``conn.compression`` then says what was agreed; ``conn.send(msg,
        #: compress=False)`` sends one message uncompressed.
        self.compression: bool | Callable[[Request], bool] = compression
        self.server: Server | None = None
        self._on_connect: Callable | None = None
        #: True once ``on_connect`` is set: a handshake without it skips the call.
        self.authenticates = False
        self._on_open: Callable = _ignore
        self._on_join: Callable = _ignore
        self._on_leave: Callable = _ignore
        #: What the transports call per message: ``on_message``'s function itself, no method around it
        #: (and under a name no method has, so the interpreter's attribute cache applies to it).
        self.message_handler: Callable[[Any, str | bytes], None] = _ignore
        self._on_close: Callable = _ignore
        self._on_resume: Callable = _ignore
        self._on_start: list[Callable] = []
        self._on_stop: list[Callable] = []
        #: Task functions declared with :meth:`task`, by name.
        self.tasks: dict[str, TaskFunction] = {}
        self._task_runner: Callable[..., TaskFuture] | None = None
        #: Pages declared with :meth:`route`: URL path -> ``fn(request)``.
        self.routes: dict[str, Callable[[Request], Any]] = {}
        #: Directories declared with :meth:`static`: (URL prefix, absolute directory).
        self.static_directories: list[tuple[str, str]] = []

    # -- decorators --------------------------------------------------------------

    def on_connect(self, fn: Callable[[Request], Any]) -> Callable:
        """``fn(request) -> user`` before any upgrade or long-polling open, on every transport.

        The return value becomes ``conn.user``; ``raise Reject(status, reason)``
        refuses the client with that HTTP status and reason (see docs/rooms.md).
        """
        self._on_connect = fn
        self.authenticates = True
        return fn

    def on_join(self, fn: Callable[[Any, str], None]) -> Callable:
        """``fn(conn, room)`` after ``conn`` joined ``room``."""
        self._on_join = fn
        return fn

    def on_leave(self, fn: Callable[[Any, str], None]) -> Callable:
        """``fn(conn, room)`` after ``conn`` left ``room`` (``leave()``, ``leave_all()`` or its close)."""
        self._on_leave = fn
        return fn

    def on_open(self, fn: Callable[[Any], None]) -> Callable:
        """``fn(conn)`` when a connection is open (after its handshake)."""
        self._on_open = fn
        return fn

    def on_message(self, fn: Callable[[Any, str | bytes], None]) -> Callable:
        """``fn(conn, message)``: ``str`` for text, ``bytes`` for binary."""
        self.message_handler = fn
        return fn

    def on_close(self, fn: Callable[[Any, int, str], None]) -> Callable:
        """``fn(conn, code, reason)`` once per opened connection."""
        self._on_close = fn
        return fn

    def on_resume(self, fn: Callable[[Any], None]) -> Callable:
        """``fn(conn)`` when a session whose transport dropped came back (instead of close + open).

        Messages sent while it was away are replayed to the client before this runs;
        see ``docs/sessions.md``.
        """
        self._on_resume = fn
        return fn

    def on_start(self, fn: Callable[[Server], None]) -> Callable:
        """``fn(server)`` when the server starts: schedule timers here."""
        self._on_start.append(fn)
        return fn

    def on_stop(self, fn: Callable[[Server], None]) -> Callable:
        """``fn(server)`` when the server stops, after the clients were closed."""
        self._on_stop.append(fn)
        return fn

    # -- HTTP pages and files (recorded here, installed by the server) --------

    def route(self, path: str) -> Callable[[Callable[[Request], Any]], Callable[[Request], Any]]:
        """Serve what ``fn(request)`` returns at ``path`` (GET and HEAD): ``@app.route("/about")``.

        As in Flask, ``fn`` returns a body (``str`` is HTML, ``bytes`` binary, a
        ``dict`` or ``list`` JSON), ``(body, status)`` or ``(body, status, headers)``.
        """
        if not path.startswith("/"):
            raise ValueError(f"route {path!r} must start with /")

        def declare(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
            if path in self.routes:
                raise ValueError(f"route {path!r} is declared twice")
            self.routes[path] = fn
            return fn

        return declare

    def static(self, url_prefix: str, directory: str) -> None:
        """Serve the files under ``directory`` at ``url_prefix`` (``app.static("/game", "static/")``).

        A relative ``directory`` is taken from the folder of the module that calls
        this, as Flask does; see :class:`wsdaemon.transports.static.StaticDirectory`.
        """
        prefix = "/" + url_prefix.strip("/")
        if prefix == "/":
            raise ValueError("serve a directory under a prefix such as /static, not at /")
        if any(prefix == known for known, _ in self.static_directories):
            raise ValueError(f"static prefix {prefix!r} is declared twice")
        if not os.path.isabs(directory):
            caller = sys._getframe(1).f_globals.get("__file__")
            base = os.path.dirname(os.path.abspath(caller)) if caller else os.getcwd()
            directory = os.path.join(base, directory)
        if not os.path.isdir(directory):
            raise ValueError(f"static directory {directory!r} does not exist")
        self.static_directories.append((prefix, os.path.realpath(directory)))

    # -- task functions (run in worker processes, see docs/workers.md) ----------

    def task(
        self,
        fn: Callable | None = None,
        *,
        name: str | None = None,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Declare a task function: ``@app.task`` or ``@app.task(name=..., idempotent=True, timeout=5)``.

        ``idempotent`` tasks are run again once on another worker when theirs dies;
        ``timeout`` (seconds) overrides ``--task-timeout`` for this task.
        """

        def declare(fn: Callable) -> TaskFunction:
            task_name = name or fn.__name__
            if task_name in self.tasks:
                raise ValueError(f"task {task_name!r} is declared twice")
            task = TaskFunction(fn, task_name, idempotent, timeout, self)
            self.tasks[task_name] = task
            return task

        return declare(fn) if fn is not None else declare

    def submit(
        self,
        name: str,
        *args: Any,
        callback: Callable[[TaskFuture], Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> TaskFuture:
        """Run task ``name`` in a worker; the future's callbacks get the result or a TaskError."""
        if self._task_runner is None:
            raise NoWorkers("no worker pool: start the daemon with --workers N or --worker-listen")
        return self._task_runner(name, args, kwargs, callback=callback, timeout=timeout)

    def bind_task_runner(self, submit: Callable[..., TaskFuture]) -> None:
        """Send :meth:`submit` to ``submit(name, args, kwargs, callback=, timeout=)``: the worker pool's.

        The server binds it when it has a pool; unbound, :meth:`submit` raises NoWorkers.
        """
        self._task_runner = submit

    # -- called by the server ----------------------------------------------------

    def handle_connect(self, request: Request) -> Any:
        """The user for a new client (None without ``on_connect``); may raise :class:`Reject`."""
        if self._on_connect is None:
            return None
        return self._on_connect(request)

    def handle_open(self, conn: Any) -> None:
        if self._on_open is not _ignore:
            self._on_open(conn)

    def handle_join(self, conn: Any, room: str) -> None:
        self._on_join(conn, room)

    def handle_leave(self, conn: Any, room: str) -> None:
        self._on_leave(conn, room)

    def handle_close(self, conn: Any, code: int, reason: str) -> None:
        if self._on_close is not _ignore:
            self._on_close(conn, code, reason)

    def handle_resume(self, conn: Any) -> None:
        self._on_resume(conn)

    def select_subprotocol(self, offered: list[str], request: Request) -> str | None:
        """The first subprotocol the client offered that this application speaks."""
        for name in offered:
            if name in self.subprotocols:
                return name
        return None

    def started(self, server: Server) -> None:
        self.server = server
        for fn in self._on_start:
            fn(server)

    def stopped(self, server: Server) -> None:
        for fn in self._on_stop:
            fn(server)


def load_app(spec: str) -> Application:
    """Import ``module:attribute`` (attribute defaults to ``app``)."""
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attr or "app")
    if isinstance(app, type) and issubclass(app, Application):
        app = app()
    if not isinstance(app, Application):
        raise TypeError(f"{spec} is not a wsdaemon.Application")
    return app
