"""The listening socket's handler: non-blocking accept with back-off on descriptor exhaustion."""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ..proto.accel import speedups
from .loop import EVENT_READ, EventLoop

log = logging.getLogger("wsdaemon.listener")

ACCEPTS_PER_EVENT = 128
EXHAUSTED_BACKOFF = 0.5
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Listener:
    """Accepts clients and gives each one a fresh handler from ``make_handler``.

    ``admit(client, address)`` may refuse a client (it then owns the socket);
    without it every client is served.
    """

    __slots__ = (
        "loop",
        "sock",
        "make_handler",
        "admit",
        "paused",
        "_exhausted_episode",
        "_pauses",
        "_kind",
        "_nodelay",
        "_batch",
        "_full_at",
        "_accept",
        "_nonblocking",
    )

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        make_handler: Callable[[socket.socket, Any], Any],
        admit: Callable[[socket.socket, Any], bool] | None = None,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.make_handler = make_handler
        self.admit = admit
        self.paused = False
        #: Monotonic start of the current descriptor-exhaustion episode, 0.0 outside one.
        self._exhausted_episode = 0.0
        self._pauses = 0
        #: (family, type, proto) of the accepted sockets, as ints (no enum lookups per client).
        self._kind = (int(sock.family), int(sock.type), sock.proto)
        #: ``() -> (fd, address)``; an IPv4 client is accepted non-blocking at once (no FIONBIO).
        self._accept: Callable[[], tuple[int, Any]] = sock._accept  # type: ignore[attr-defined]
        self._nonblocking = speedups is not None and sock.family == socket.AF_INET
        if self._nonblocking:
            self._accept = partial(speedups.accept_nonblocking, sock)
            self._kind = (int(sock.family), int(sock.type) | socket.SOCK_NONBLOCK, sock.proto)
        #: TCP_NODELAY per client: "set" on each, "check" the first (Linux copies the listener's), or "no".
        self._nodelay = "no"
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            self._nodelay = "set"
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._nodelay = "check"
            except OSError:
                pass
        #: Accepts tried per readable event: grows while the backlog outlasts a batch, shrinks to what
        #: one held, so a lone client costs one accept and no EAGAIN.
        self._batch = 1
        self._full_at = -2

    def on_readable(self) -> None:
        iteration = self.loop.iterations
        batch = self._batch
        if self._exhausted_episode:
            batch = ACCEPTS_PER_EVENT
        elif iteration == self._full_at + 1 and batch < ACCEPTS_PER_EVENT:
            batch = self._batch = batch * 2  # readable again right after a full batch: a backlog
        accept = self._accept
        family, type_, proto = self._kind
        nonblocking = self._nonblocking
        for accepted in range(batch):
            try:
                fd, address = accept()
            except (BlockingIOError, InterruptedError):
                self._batch = accepted or 1
                if self._exhausted_episode:
                    self._end_episode()  # the backlog is drained: the episode is over
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._pause(exc)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                raise
            client = socket.socket(family, type_, proto, fd)
            if not nonblocking:
                client.setblocking(False)
            if self.admit is not None and not self.admit(client, address):
                continue
            if self._nodelay != "no":
                self._set_nodelay(client)
            handler = self.make_handler(client, address)
            try:
                self.loop.register(client, EVENT_READ, handler)
            except Exception:
                client.close()
                raise
        self._full_at = iteration

    def _set_nodelay(self, client: socket.socket) -> None:
        """TCP_NODELAY on a client, unless it came with the listener's."""
        if self._nodelay == "check":
            inherited = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            self._nodelay = "no" if inherited else "set"
        if self._nodelay == "set":
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_writable(self) -> None:  # pragma: no cover - never registered for writing
        pass

    def _pause(self, exc: OSError) -> None:
        """Out of descriptors: stop polling the listener for a moment instead of spinning.

        Logged once per episode; the episode ends when the backlog has been
        drained without running out again.
        """
        if not self._exhausted_episode:
            log.error(
                "accept failed (%s); pausing accepts, retrying every %.1fs; raise the descriptor "
                "limit (ulimit -n, LimitNOFILE) or lower --max-connections",
                exc.strerror,
                EXHAUSTED_BACKOFF,
            )
            self._exhausted_episode = time.monotonic()
            self._pauses = 0
        self._pauses += 1
        self.paused = True
        self.loop.unregister(self.sock)
        self.loop.call_later(EXHAUSTED_BACKOFF, self.resume)

    def _end_episode(self) -> None:
        log.info(
            "accepting again after descriptor exhaustion (%.1fs, %d pauses)",
            time.monotonic() - self._exhausted_episode,
            self._pauses,
        )
        self._exhausted_episode = 0.0

    def resume(self) -> None:
        if self.paused and self.sock.fileno() >= 0:
            self.paused = False
            self.loop.register(self.sock, EVENT_READ, self)

    def close(self) -> None:
        if not self.paused:
            self.loop.unregister(self.sock)
        self.paused = True
        self.sock.close()
