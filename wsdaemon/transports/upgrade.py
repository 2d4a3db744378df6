"""Which handler a complete request head belongs to, and every WebSocket upgrade.

The :class:`Router` is the switch of the swap: an upgrade request is validated
here and the :class:`~wsdaemon.transports.http.HttpConnection` hands its socket
(with every unread and unsent byte) to the dialect's connection; long-polling
paths and plain resources are answered on the HTTP connection itself.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..proto import hixie, rfc6455
from ..proto.errors import HandshakeError
from ..proto.http11 import Request
from ..proto.session import parse_session_param
from .hixie_connection import Hixie75Connection, Hixie76Connection
from .http import HttpConnection
from .rfc6455_connection import Rfc6455Connection
from .session import without_session_param
from .session_ws import SessionRfc6455Connection


class SubprotocolChooser(Protocol):
    def select_subprotocol(self, offered: list[str], request: Request) -> str | None: ...


def select_subprotocol(app: SubprotocolChooser, offered: list[str], request: Request) -> str | None:
    """The application's pick among the client's offer (None without one); 500 if it picks another."""
    if not offered:
        return None
    subprotocol = app.select_subprotocol(offered, request)
    if subprotocol is not None and subprotocol not in offered:
        raise HandshakeError("application chose a subprotocol the client did not offer", 500)
    return subprotocol


class Router:
    """The switch of the swap: which handler a complete request head belongs to.

    Other transports plug in through :attr:`upgrades` (by protocol name) and
    :attr:`prefixes` (long-polling paths); the rest is plain HTTP.
    """

    def __init__(self) -> None:
        #: protocol name -> callable(http_conn, request) taking over the socket.
        self.upgrades: dict[str, Any] = {
            "rfc6455": upgrade_rfc6455,
            "hixie-76": upgrade_hixie76,
            "hixie-75": upgrade_hixie75,
        }
        #: path prefix -> callable(http_conn, request) answering HTTP requests under it.
        self.prefixes: dict[str, Any] = {}
        #: exact path -> callable(http_conn, request) for plain HTTP resources.
        self.routes: dict[str, Any] = {}

    def route(self, conn: HttpConnection, request: Request) -> None:
        protocol = websocket_protocol(request)
        if protocol is not None:
            handler = self.upgrades.get(protocol)
            if handler is None:
                raise HandshakeError(
                    f"WebSocket protocol {protocol} is not supported",
                    426,
                    [("Sec-WebSocket-Version", "13")],
                )
            handler(conn, request)
            return
        for prefix, handler in self.prefixes.items():
            if request.path.startswith(prefix):
                handler(conn, request)
                return
        handler = self.routes.get(request.path)
        if handler is None:
            raise HandshakeError("not found", 404)
        handler(conn, request)


def websocket_protocol(request: Request) -> str | None:
    """Which WebSocket dialect a request asks for, or None for plain HTTP.

    ``Sec-WebSocket-Version`` 13/8 -> RFC 6455; another version -> ``unsupported``
    (426); ``Sec-WebSocket-Key1``/``Key2`` -> hixie-76; ``Upgrade: WebSocket``
    without either -> hixie-75.
    """
    headers = request.headers
    if "websocket" not in headers.tokens("Upgrade"):
        return None
    version = headers.get("Sec-WebSocket-Version")
    if version is not None:
        if version.strip() in rfc6455.SUPPORTED_VERSIONS:
            return "rfc6455"
        raise HandshakeError(
            f"unsupported WebSocket version {version!r}", 426, [("Sec-WebSocket-Version", "13")]
        )
    if "Sec-WebSocket-Key1" in headers and "Sec-WebSocket-Key2" in headers:
        return "hixie-76"
    if "Sec-WebSocket-Key" in headers:
        raise HandshakeError("missing Sec-WebSocket-Version", 426, [("Sec-WebSocket-Version", "13")])
    return "hixie-75"


def upgrade_rfc6455(conn: HttpConnection, request: Request) -> None:
    """Validate an RFC 6455 handshake and swap in an :class:`Rfc6455Connection`.

    With the ``wsdaemon_session`` query parameter (our JS client) the connection
    carries a resumable session instead; the application never sees the parameter.
    """
    key = rfc6455.validate_handshake(request)
    request, session_param = without_session_param(request)
    resume = None if session_param is None else parse_session_param(session_param)
    subprotocol, user = _accept(conn, request, rfc6455.offered_subprotocols(request))
    if session_param is None:
        ws: Rfc6455Connection = Rfc6455Connection(conn.host, conn.sock, request, subprotocol)
    else:
        ws = SessionRfc6455Connection(conn.host, conn.sock, request, subprotocol, resume)
    _swap(conn, ws, user, key)


def upgrade_hixie76(conn: HttpConnection, request: Request) -> None:
    """Validate a -76 request and swap in a :class:`Hixie76Connection` (which then waits for key3)."""
    hixie.validate_request(request)
    numbers = hixie.key_numbers(request)
    subprotocol, user = _accept(conn, request, hixie.offered_subprotocols(request, "Sec-WebSocket-Protocol"))
    head = hixie.response_76(request, subprotocol)
    _swap(conn, Hixie76Connection(conn.host, conn.sock, request, subprotocol), user, head, numbers)


def upgrade_hixie75(conn: HttpConnection, request: Request) -> None:
    """Validate a -75 request and swap in a :class:`Hixie75Connection`."""
    hixie.validate_request(request)
    subprotocol, user = _accept(conn, request, hixie.offered_subprotocols(request, "WebSocket-Protocol"))
    response = hixie.response_75(request, subprotocol)
    _swap(conn, Hixie75Connection(conn.host, conn.sock, request, subprotocol), user, response)


def _accept(conn: HttpConnection, request: Request, offered: list[str]) -> tuple[str | None, Any]:
    """A valid handshake passes the Origin check and ``on_connect`` (a Reject raises
    HandshakeError), then gets the application's subprotocol; returns it and the user."""
    host = conn.host
    host.check_origin(request)
    user = host.authenticate(request)
    return select_subprotocol(host.app, offered, request), user


def _swap(conn: HttpConnection, ws: Any, user: Any, *handshake: Any) -> None:
    """Hand the socket over to ``ws`` and start it with the handshake and the bytes already read."""
    ws.user = user
    leftover = conn.hand_over(ws)
    ws.start(*handshake, leftover)
