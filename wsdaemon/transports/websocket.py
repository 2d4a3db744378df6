"""The state every WebSocket dialect (RFC 6455, hixie-76, hixie-75) keeps for the application."""

from __future__ import annotations

from typing import Any

from ..net.stream import StreamConnection
from ..proto.http11 import Request
from .appconnection import APP_STATE_SLOTS, AppConnection
from .host import TransportHost


class WebSocketConnection(StreamConnection, AppConnection):
    """A socket that speaks one WebSocket dialect; subclasses add its parser and framing."""

    __slots__ = APP_STATE_SLOTS

    def __init__(self, server: TransportHost, sock: Any, request: Request, subprotocol: str | None) -> None:
        StreamConnection.__init__(self, server, sock, request.remote_address)
        self._init_app_state(request, subprotocol)

    @property
    def backlogged(self) -> bool:
        """True while bytes the kernel refused are waiting in the outbound buffer."""
        return bool(self._wbuf)
