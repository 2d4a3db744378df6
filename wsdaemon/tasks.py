"""Task functions as the application sees them: declare, submit, get a result or an error.

    @app.task(idempotent=True, timeout=10)
    def find_path(grid, start, goal):
        ...                       # runs in a worker process, never in the loop

    @app.on_message
    def message(conn, text):
        def done(future):
            try:
                conn.send(json.dumps(future.result()))
            except TaskError as exc:
                conn.send(f"failed: {exc.type}: {exc.message}")
        find_path.submit(grid, start, goal, callback=done)

A submission returns a :class:`TaskFuture` at once; its callbacks run later in the
loop. What is wrong at submission (unknown task, arguments that are not JSON, a full
queue, no worker pool) raises there; what goes wrong afterwards (the task raised, it
overran its timeout, its worker died) reaches the callbacks as a :class:`TaskError`.
"""

from __future__ import annotations

import builtins
import logging
import traceback
from collections.abc import Callable
from typing import Any

log = logging.getLogger("wsdaemon.tasks")

PENDING = "pending"
FINISHED = "finished"
CANCELLED = "cancelled"

#: Longest remote traceback kept, in characters (the end is kept).
MAX_TRACEBACK = 8192


class TaskError(Exception):
    """A task that did not produce a result.

    ``type`` is the name of the exception raised in the worker (``"ValueError"``,
    ``"mygame.BadMove"``) or of the daemon's reason (``"WorkerDied"``, ``"TaskTimeout"``,
    ``"TaskQueueFull"``, ...); ``message`` is its text; ``traceback`` the worker's
    traceback when there is one.
    """

    def __init__(self, type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type}: {message}" if message else type)
        self.type = type
        self.message = message
        self.traceback = traceback


class TaskTimeout(TaskError):
    """The task ran longer than its timeout; the worker running it was replaced."""

    def __init__(self, message: str) -> None:
        super().__init__("TaskTimeout", message)


class WorkerDied(TaskError):
    """The worker running the task exited, was killed or disconnected."""

    def __init__(self, message: str) -> None:
        super().__init__("WorkerDied", message)


class TaskQueueFull(TaskError):
    """Every worker is busy and the queue is at its limit: raised by ``submit``."""

    def __init__(self, message: str) -> None:
        super().__init__("TaskQueueFull", message)


class TaskCancelled(TaskError):
    """The future was cancelled, or the daemon is shutting down."""

    def __init__(self, message: str) -> None:
        super().__init__("TaskCancelled", message)


class NoWorkers(TaskError):
    """Raised by ``submit`` when the daemon runs without a worker pool."""

    def __init__(self, message: str) -> None:
        super().__init__("NoWorkers", message)


class InvalidStateError(Exception):
    """``result()`` or ``exception()`` asked of a future that is still pending."""


class TaskFuture:
    """The eventual result of one submitted task; callbacks run in the loop."""

    __slots__ = ("name", "_state", "_result", "_exception", "_callbacks", "_on_cancel")

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._state = PENDING
        self._result: Any = None
        self._exception: TaskError | None = None
        self._callbacks: list[Callable[[TaskFuture], Any]] = []
        self._on_cancel: Callable[[TaskFuture], Any] | None = None

    def done(self) -> bool:
        """True once the task has a result, an error, or was cancelled."""
        return self._state != PENDING

    def cancelled(self) -> bool:
        """True if :meth:`cancel` stopped the task before it ran."""
        return self._state == CANCELLED

    def result(self) -> Any:
        """The task's return value; raises its :class:`TaskError` if it failed."""
        if self._state == PENDING:
            raise InvalidStateError(f"task {self.name!r} is still pending")
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> TaskError | None:
        """The task's error (a TaskError), or None when it succeeded."""
        if self._state == PENDING:
            raise InvalidStateError(f"task {self.name!r} is still pending")
        return self._exception

    def add_done_callback(self, fn: Callable[[TaskFuture], Any]) -> None:
        """Call ``fn(future)`` when done (at once if it already is)."""
        if self._state == PENDING:
            self._callbacks.append(fn)
        else:
            _call(fn, self)

    def cancel(self) -> bool:
        """Give up on the result: a queued task is dropped, a running one's result ignored."""
        if self._state != PENDING:
            return False
        on_cancel, self._on_cancel = self._on_cancel, None
        if on_cancel is not None:
            on_cancel(self)
        self._finish(CANCELLED, None, TaskCancelled(f"task {self.name!r} was cancelled"))
        return True

    # -- set by the worker pool --------------------------------------------------

    def set_result(self, value: Any) -> None:
        if self._state == PENDING:
            self._finish(FINISHED, value, None)

    def set_exception(self, exc: TaskError) -> None:
        if self._state == PENDING:
            self._finish(FINISHED, None, exc)

    def _finish(self, state: str, value: Any, exc: TaskError | None) -> None:
        self._state = state
        self._result = value
        self._exception = exc
        self._on_cancel = None
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            _call(fn, self)

    def __repr__(self) -> str:
        return f"<TaskFuture {self.name} {self._state}>"


def _call(fn: Callable, future: TaskFuture) -> None:
    try:
        fn(future)
    except Exception:
        log.exception("error in done callback of task %r", future.name)


class TaskFunction:
    """A function declared with ``@app.task``: call it to run it here, ``submit`` to a worker."""

    def __init__(
        self,
        fn: Callable,
        name: str,
        idempotent: bool,
        timeout: float | None,
        app: Any,
    ) -> None:
        self.fn = fn
        self.name = name
        self.idempotent = idempotent
        #: Seconds a worker may spend on one call; ``None`` takes ``--task-timeout``.
        self.timeout = timeout
        self.app = app
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def submit(
        self,
        *args: Any,
        callback: Callable[[TaskFuture], Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> TaskFuture:
        """Run in a worker: same as ``app.submit(self.name, *args, ...)``."""
        return self.app.submit(self.name, *args, callback=callback, timeout=timeout, **kwargs)

    def __repr__(self) -> str:
        return f"<TaskFunction {self.name}>"


def exception_type_name(exc: BaseException) -> str:
    """``ValueError`` for built-in exceptions, ``module.Qualname`` for the others."""
    cls = type(exc)
    if cls.__module__ == "builtins" and getattr(builtins, cls.__qualname__, None) is cls:
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def run_task(tasks: dict[str, TaskFunction], name: str, args: list, kwargs: dict) -> dict[str, Any]:
    """Run one task here and now; the answer as a protocol message without its ``id``.

    ``{"type": "result", "value": ...}`` or ``{"type": "error", "error_type": ...,
    "message": ..., "traceback": ...}``. Never raises an ``Exception``.
    """
    task = tasks.get(name)
    if task is None:
        return {
            "type": "error",
            "error_type": "UnknownTask",
            "message": f"this worker has no task named {name!r}",
            "traceback": "",
        }
    try:
        value = task.fn(*args, **kwargs)
    except Exception as exc:
        tb = traceback.format_exc()
        return {
            "type": "error",
            "error_type": exception_type_name(exc),
            "message": str(exc),
            "traceback": tb[-MAX_TRACEBACK:],
        }
    return {"type": "result", "value": value}
