"""The deadline service: ``conn.on_deadline(now)`` is called once ``conn.deadline`` has passed.

Handshake, body, hold, close and drain timeouts of every stream connection
share it. One periodic loop timer sweeps the watched set: the timeouts are
counted in seconds, so a quarter of a second is precise enough, and a
connection costs no timer of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from .loop import EventLoop, TimerHandle

SWEEP_INTERVAL = 0.25


class Expiring(Protocol):
    """What can be watched: a monotonic deadline and what to do when it passes."""

    deadline: float

    def on_deadline(self, now: float) -> None: ...


class Deadlines:
    """The set of watched connections and the timer that sweeps it."""

    def __init__(self, loop: EventLoop, interval: float = SWEEP_INTERVAL) -> None:
        self.loop = loop
        self.interval = interval
        self._watched: set[Expiring] = set()
        #: ``watch(conn)``: have ``conn.on_deadline`` called once ``conn.deadline`` has passed (once per
        #: watch); ``unwatch(conn)`` forgets it. The set's own methods: no Python frame per connection.
        self.watch: Callable[[Expiring], None] = self._watched.add
        self.unwatch: Callable[[Expiring], None] = self._watched.discard
        self._timer: TimerHandle | None = None

    def start(self) -> None:
        """Sweep every ``interval`` seconds from now on."""
        if self._timer is None:
            self._timer = self.loop.call_every(self.interval, self.sweep)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __contains__(self, conn: Expiring) -> bool:
        return conn in self._watched

    def __len__(self) -> int:
        return len(self._watched)

    def sweep(self) -> None:
        """Run ``on_deadline`` for every watched connection whose deadline has passed."""
        now = time.monotonic()
        for conn in [c for c in self._watched if c.deadline <= now]:
            self._watched.discard(conn)
            conn.on_deadline(now)
