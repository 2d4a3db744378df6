"""What the transports need of the server that owns them (the Server satisfies it; tests may stub it)."""

from __future__ import annotations

from typing import Any, Protocol

from ..net.stream import StreamHost
from ..proto.http11 import Request


class TransportHost(StreamHost, Protocol):
    """The application's callbacks, the Origin check, the open-connection registry and the router."""

    #: The Application: ``handle_open``, ``message_handler``, ``handle_close``, ``select_subprotocol``.
    app: Any
    #: True once a shutdown began: keep-alive ends, new sessions are refused.
    stopping: bool
    #: The Origin policy (long-polling answers CORS with it).
    origin_policy: Any
    #: The ``--trusted-proxies`` (a ProxyTrust; None when empty): whose forwarding headers count.
    proxy_trust: Any
    #: The per-connection open/close log lines (a ConnectionLog, rate-limited).
    connection_log: Any
    #: The Router the HTTP connections hand complete request heads to.
    router: Any
    #: The resumable sessions (a SessionManager): created, found for a resume, forgotten.
    sessions: Any

    #: The rooms (:class:`~wsdaemon.transports.rooms.RoomRegistry`) connections join and leave.
    room_registry: Any

    def authenticate(self, request: Request) -> Any:
        """The application's ``on_connect``: the user for the connection, or a HandshakeError
        (the status and reason of a Reject, 500 for a failing handler)."""

    def check_origin(self, request: Request) -> None:
        """Raise a 403 HandshakeError when the request's Origin is not allowed."""

    def connection_opened(self, conn: Any) -> None:
        """``conn`` is open (``on_open`` follows): it counts among the open connections."""

    def connection_closed(self, conn: Any) -> None:
        """``conn`` is closed (``on_close`` follows if it was open)."""
