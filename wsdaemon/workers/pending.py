"""One submitted task as the pool tracks it, from submission to its answer."""

from __future__ import annotations

import time

from ..net.loop import TimerHandle
from ..tasks import TaskFuture


class PendingTask:
    """A task queued or in flight on a worker: its encoded frame, its future, its clock."""

    __slots__ = (
        "id",
        "name",
        "frame",
        "future",
        "timeout",
        "idempotent",
        "runs",
        "queued_at",
        "started_at",
        "timer",
        "on_worker",
    )

    def __init__(
        self, id: int, name: str, frame: bytes, future: TaskFuture, timeout: float, idempotent: bool
    ) -> None:
        self.id = id
        self.name = name
        self.frame = frame
        self.future = future
        self.timeout = timeout
        self.idempotent = idempotent
        #: Times the task became the running head of a worker.
        self.runs = 0
        self.queued_at = time.monotonic()
        self.started_at = 0.0
        self.timer: TimerHandle | None = None
        #: Sent to a worker and not answered (cancelling it then no longer unqueues it).
        self.on_worker = False

    def __repr__(self) -> str:
        return f"<task {self.name}#{self.id}>"
