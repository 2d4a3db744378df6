"""The state every WebSocket dialect (RFC 6455, hixie-76, hixie-75) keeps for the application."""

from __future__ import annotations

from typing import Any

from ..net.stream import StreamConnection
from ..proto.http11 import Request
from .appconnection import AppConnection


class WebSocketConnection(StreamConnection, AppConnection):
    """A socket that speaks one WebSocket dialect; subclasses add its parser and framing."""

    __slots__ = ("request", "subprotocol", "state", "close_code", "close_reason", "data")

    def __init__(self, server: Any, sock: Any, request: Request, subprotocol: str | None) -> None:
        StreamConnection.__init__(self, server, sock, request.remote_address)
        self._init_app_state(request, subprotocol)
