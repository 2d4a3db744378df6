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
from ..proto.http11 import Request, has_token, joined
from ..proto.permessage_deflate import DeflateParams, DeflatePolicy, negotiate
from ..proto.session import SESSION_PARAM, parse_session_param
from .hixie_connection import Hixie75Connection, Hixie76Connection
from .http import HttpConnection
from .rfc6455_connection import Rfc6455Connection
from .rfc6455_deflate import Rfc6455DeflateConnection
from .session import without_session_param
from .session_ws import SessionRfc6455Connection, SessionRfc6455DeflateConnection


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
        #: ``claim(http_conn, request) -> bool`` sees every head first; True: it took the request
        #: (``--processes``: a session of another process is handed over, transports/handoff.py).
        self.claim: Any = None

    def route(self, conn: HttpConnection, request: Request) -> None:
        if self.claim is not None and self.claim(conn, request):
            return
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
    headers = request.headers.index()
    if not has_token(headers.get("upgrade", ()), "websocket"):
        return None
    version = joined(headers.get("sec-websocket-version"))
    if version is not None:
        if version.strip() in rfc6455.SUPPORTED_VERSIONS:
            return "rfc6455"
        raise HandshakeError(
            f"unsupported WebSocket version {version!r}", 426, [("Sec-WebSocket-Version", "13")]
        )
    if "sec-websocket-key1" in headers and "sec-websocket-key2" in headers:
        return "hixie-76"
    if "sec-websocket-key" in headers:
        raise HandshakeError("missing Sec-WebSocket-Version", 426, [("Sec-WebSocket-Version", "13")])
    return "hixie-75"


def upgrade_rfc6455(conn: HttpConnection, request: Request) -> None:
    """Validate an RFC 6455 handshake and swap in an :class:`Rfc6455Connection`.

    A client whose permessage-deflate offer we accept gets an :class:`Rfc6455DeflateConnection`
    instead, so connections without compression keep the plain parser and ``send``. With the
    ``wsdaemon_session`` query parameter (our JS client) the connection carries a resumable
    session instead (compressed or not); the application never sees the parameter.
    """
    key = rfc6455.validate_handshake(request)
    session_param = resume = None
    if SESSION_PARAM in request.query_string:  # every raw client: no parsing, no lookup
        request, session_param = without_session_param(request)
        resume = None if session_param is None else parse_session_param(session_param)
    host = conn.host
    index = request.headers.index()
    offered = rfc6455.offered_subprotocols(request) if "sec-websocket-protocol" in index else []
    subprotocol, user = _accept(conn, request, offered)
    offers = index.get("sec-websocket-extensions")
    policy = deflate_policy(host.settings) if offers else None
    params = _negotiate_deflate(host.app, request, list(offers), policy) if policy is not None else None
    ws: Rfc6455Connection
    if session_param is None:
        if params is None:
            ws = Rfc6455Connection(host, conn.sock, request, subprotocol)
        else:
            ws = Rfc6455DeflateConnection(host, conn.sock, request, subprotocol, params, policy)
    elif params is None:
        ws = SessionRfc6455Connection(host, conn.sock, request, subprotocol, resume)
    else:
        ws = SessionRfc6455DeflateConnection(host, conn.sock, request, subprotocol, resume, params, policy)
    _swap(conn, ws, user, key)


_policy_of: tuple[Any, DeflatePolicy | None] = (None, None)


def deflate_policy(settings: Any) -> DeflatePolicy | None:
    """The permessage-deflate policy of ``settings`` (None with ``--compression off``).

    Made once per settings object: a reload's new settings apply to the connections opened after it.
    """
    global _policy_of
    cached_settings, policy = _policy_of
    if cached_settings is settings:
        return policy
    policy = None
    if settings.compression == "on":
        bits = settings.compression_window_bits
        policy = DeflatePolicy(
            server_max_window_bits=bits,
            client_max_window_bits=bits,
            mem_level=settings.compression_mem_level,
            compression_min_size=settings.compression_min_size,
            server_no_context_takeover=settings.compression_context_takeover == "off",
            client_no_context_takeover=settings.compression_context_takeover == "off",
        )
    _policy_of = (settings, policy)
    return policy


def _negotiate_deflate(
    app: Any, request: Request, offers: list[str], policy: DeflatePolicy
) -> DeflateParams | None:
    """The agreed parameters, unless the application refuses compression for this request."""
    wanted = getattr(app, "compression", True)
    if callable(wanted):
        wanted = wanted(request)
    if not wanted:
        return None
    return negotiate(offers, policy)


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
    app = host.app
    user = host.authenticate(request) if app.authenticates else None
    return (select_subprotocol(app, offered, request) if offered else None), user


def _swap(conn: HttpConnection, ws: Any, user: Any, *handshake: Any) -> None:
    """Hand the socket over to ``ws`` and start it with the handshake and the bytes already read."""
    ws.user = user
    leftover = conn.hand_over(ws)
    ws.start(*handshake, leftover)
