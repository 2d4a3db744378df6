"""What the worker pool needs of the process that owns it (the Server satisfies it)."""

from __future__ import annotations

from typing import Any, Protocol

from ..net.loop import EventLoop
from ..settings import Settings


class WorkerPoolHost(Protocol):
    """The loop, the live settings and the deadline service the worker connections use.

    The members of net's ``StreamHost``: once it is declared there this becomes
    ``class WorkerPoolHost(StreamHost, Protocol)`` with nothing added.
    """

    loop: EventLoop
    #: Read live: a reload (SIGHUP) replaces them.
    settings: Settings

    def watch(self, conn: Any) -> None:
        """Have ``conn.on_deadline(now)`` called once ``conn.deadline`` has passed."""

    def unwatch(self, conn: Any) -> None: ...

    def client_closed(self, fileno: int) -> None: ...
