"""The HTTP request object: reads a request head, then decides what the socket is.

A new client socket is handled by :class:`HttpConnection`. When a request head
is complete it either answers it (static files, status, errors) or *swaps
itself* in the selector map for the protocol's connection object, handing over
the socket, the parsed request and every byte received after the head.
"""

from __future__ import annotations

import logging
from typing import Any

from . import rfc6455
from .connection import StreamConnection, format_address
from .errors import HandshakeError, ProtocolError
from .hixie_connection import upgrade_hixie75, upgrade_hixie76
from .http11 import HttpRequestParser, Request, error_response
from .loop import EVENT_READ, EVENT_WRITE
from .rfc6455_connection import Rfc6455Connection

log = logging.getLogger("wsdaemon.http")


class HttpConnection(StreamConnection):
    """Parses requests on a fresh socket until one of them turns it into something else."""

    __slots__ = ("parser", "handed_over", "secure")

    def __init__(self, server: Any, sock: Any, remote_address: Any, secure: bool = False) -> None:
        super().__init__(server, sock, remote_address)
        settings = server.settings
        self.parser = HttpRequestParser(settings.max_header_bytes, settings.max_headers)
        self.handed_over = False
        self.secure = secure
        self.deadline = self.loop.now + settings.handshake_timeout
        server.watch(self)

    def data_received(self, data: bytes) -> None:
        if self.handed_over or self._close_after_flush:
            return
        try:
            request = self.parser.feed(data)
            while request is not None:
                request.remote_address = self.remote_address
                request.secure = self.secure
                self.server.router.route(self, request)
                if self.handed_over or self._close_after_flush or self.transport_closed:
                    return
                # keep-alive: the next request may already be buffered
                self.deadline = self.loop.now + self.server.settings.handshake_timeout
                request = self.parser.feed()
        except HandshakeError as exc:
            log.info("%s: handshake refused: %d %s", self, exc.status, exc.reason)
            self.respond_error(exc.status, exc.reason, exc.headers)
        except ProtocolError as exc:
            log.info("%s: bad request: %d %s", self, exc.status, exc.reason)
            self.respond_error(exc.status, exc.reason)

    def respond(self, data: bytes, keep_alive: bool = False) -> None:
        self.write(data)
        if not keep_alive:
            self.server.unwatch(self)
            self.close_after_flush()

    def respond_error(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.respond(error_response(status, message, headers))

    def on_deadline(self, now: float) -> None:
        if self._draining:
            self.close_transport()
        elif self.parser.buffer:
            log.info("%s: request head not complete within the handshake timeout", self)
            self.respond_error(408, "request timeout")
        else:
            self.close_transport()  # idle keep-alive connection

    def hand_over(self, new_handler: StreamConnection) -> bytes:
        """Swap ``new_handler`` into the selector map for this socket; return the unconsumed bytes."""
        self.handed_over = True
        self.server.unwatch(self)
        events = EVENT_READ | (EVENT_WRITE if self._write_registered else 0)
        new_handler._write_registered = self._write_registered
        self.loop.modify(self.sock, events, new_handler)
        leftover = bytes(self.parser.buffer)
        self.parser.buffer.clear()
        return leftover

    def __repr__(self) -> str:
        return f"<HttpConnection {format_address(self.remote_address)}>"


class Router:
    """The switch of the swap: which handler a complete request head belongs to.

    Other transports plug in through :attr:`upgrades` (by protocol name) and
    :attr:`prefixes` (long-polling paths); the rest is plain HTTP.
    """

    def __init__(self, server: Any) -> None:
        self.server = server
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
    """Validate an RFC 6455 handshake and swap in an :class:`Rfc6455Connection`."""
    server = conn.server
    key = rfc6455.validate_handshake(request)
    server.check_origin(request)
    offered = rfc6455.offered_subprotocols(request)
    subprotocol = server.app.select_subprotocol(offered, request) if offered else None
    if subprotocol is not None and subprotocol not in offered:
        raise HandshakeError("application chose a subprotocol the client did not offer", 500)
    ws = Rfc6455Connection(server, conn.sock, request, subprotocol)
    leftover = conn.hand_over(ws)
    ws.start(key, leftover)
