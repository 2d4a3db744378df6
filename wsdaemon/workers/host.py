"""What the worker pool needs of the process that owns it (the Server satisfies it)."""

from __future__ import annotations

from typing import Protocol

from ..net.stream import StreamHost


class WorkerPoolHost(StreamHost, Protocol):
    """The loop, the live settings and the deadline service the worker connections use: a StreamHost."""
