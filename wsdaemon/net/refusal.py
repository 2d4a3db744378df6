"""Refusing a client at the door: a fixed HTTP answer, then a clean close.

Used when the daemon is at ``max_connections`` or a client address over
``max_connects_per_second`` (503), and when a client speaks
plain HTTP to the TLS port (400). The answer is written at once; the socket is
then half-closed and drained briefly, so the client reads the answer instead of
a reset caused by the request bytes we never read.
"""

from __future__ import annotations

from functools import cache

from ..proto.http11 import error_response
from .counters import count_refusal
from .stream import StreamConnection

#: Seconds a refused client gets to read the answer before its socket is closed.
REFUSE_LINGER = 1.0


class RefusedConnection(StreamConnection):
    """Writes one response, ignores whatever the client sends, and closes.

    Register (or swap in) the handler for its socket first, then call :meth:`refuse`.
    """

    __slots__ = ()

    def refuse(self, response: bytes) -> None:
        count_refusal(int(response[9:12]))
        self.deadline = self.loop.now + REFUSE_LINGER
        self.host.watch(self)
        self.write(response)
        self.close_after_flush()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        self.close_transport()


@cache
def over_capacity_response() -> bytes:
    return error_response(503, "server at its connection limit, try again", [("Retry-After", "1")])


@cache
def over_rate_response() -> bytes:
    return error_response(503, "too many connections from your address, try again", [("Retry-After", "1")])


def plain_http_on_tls_response() -> bytes:
    return error_response(400, "this port speaks TLS: use https:// or wss://")
