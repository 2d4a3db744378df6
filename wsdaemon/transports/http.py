"""The HTTP request object: reads a request head, then decides what the socket is.

A new client socket is handled by :class:`HttpConnection`. When a request head
is complete it either answers it (static files, status, errors) or *swaps
itself* in the selector map for the protocol's connection object
(:meth:`~wsdaemon.net.stream.StreamConnection.hand_over`), handing over the
socket, the parsed request, every byte received after the head and every byte
written and not sent yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..net.counters import count_refusal
from ..net.sockets import format_address
from ..net.stream import StreamConnection
from ..proto.errors import HandshakeError, ProtocolError
from ..proto.http11 import HttpRequestParser, Request, error_response
from .host import TransportHost

log = logging.getLogger("wsdaemon.http")

#: Pipelined requests are answered while less than this is waiting to be sent; past it the
#: rest wait until the client has read the answers (a read of tiny requests must not turn
#: into megabytes of responses held in memory).
PIPELINE_HIGH_WATER = 64 * 1024
#: Unparsed pipelined bytes one connection may have waiting behind unread answers.
PIPELINE_MAX_WAITING = 1024 * 1024


class HttpConnection(StreamConnection):
    """Parses requests on a fresh socket until one of them turns it into something else.

    Between request heads it can also read a ``Content-Length`` body
    (:meth:`read_body`) and hold a response open (:meth:`hold`) for a handler
    that answers later, such as a long-polling poll; keep-alive resumes after.
    """

    __slots__ = (
        "parser",
        "secure",
        "holder",
        "_body",
        "_body_wanted",
        "_body_callback",
        "_resume_scheduled",
        "_pipeline_waiting",
    )

    def __init__(self, server: TransportHost, sock: Any, remote_address: Any, secure: bool = False) -> None:
        super().__init__(server, sock, remote_address)
        settings = server.settings
        self.parser = HttpRequestParser(settings.max_header_bytes, settings.max_headers)
        self.secure = secure
        #: The handler a held response belongs to (see :meth:`hold`), else None.
        self.holder: Any = None
        self._body: bytearray | None = None
        self._body_wanted = 0
        self._body_callback: Callable[[bytes], None] | None = None
        self._resume_scheduled = False
        #: Pipelined requests wait until the answers already written have been read.
        self._pipeline_waiting = False
        self.deadline = self.loop.now + settings.handshake_timeout
        server.watch(self)

    @property
    def busy(self) -> bool:
        """True while a body is being read or a response is held: no new request is parsed."""
        return self._body_callback is not None or self.holder is not None

    def data_received(self, data: bytes) -> None:
        if self.handed_over or self._close_after_flush:
            return
        if self.holder is not None:
            # A pipelined request behind a held response waits for its turn.
            self.parser.buffer += data
            if len(self.parser.buffer) > self.parser.max_header_bytes:
                log.info("%s: too much pipelined data behind a held response", self)
                self.abort(None)
            return
        if self._pipeline_waiting:
            self.parser.buffer += data
            if len(self.parser.buffer) > PIPELINE_MAX_WAITING:
                log.info("%s: too many pipelined requests while it does not read the answers", self)
                self.abort(None)
            return
        try:
            if self._body_callback is not None:
                if not self._feed_body(data):
                    return
                data = b""
                if self.handed_over or self._close_after_flush or self.transport_closed:
                    return
            self._serve(data)
        except HandshakeError as exc:
            if exc.status == 404:
                log.debug("%s: not found: %s", self, exc.reason)
            else:
                log.info("%s: handshake refused: %d %s", self, exc.status, exc.reason)
            self._reset_body()
            self.respond_error(exc.status, exc.reason, exc.headers, exc.phrase)
        except ProtocolError as exc:
            log.info("%s: bad request: %d %s", self, exc.status, exc.reason)
            self._reset_body()
            self.respond_error(exc.status, exc.reason)

    def _serve(self, data: bytes) -> None:
        if self._body_callback is not None or self.holder is not None:  # busy
            return
        request = self.parser.feed(data)
        while request is not None:
            request.remote_address = self.remote_address
            request.secure = self.secure
            request.received_at = self.loop.now
            if self.host.proxy_trust is not None:
                self._believe_proxy(request)
            self.host.router.route(self, request)
            if self.handed_over or self._close_after_flush or self.transport_closed or self.busy:
                return
            # keep-alive: the next request may already be buffered
            self.deadline = self.loop.now + self.host.settings.handshake_timeout
            if self.parser.buffer and self.buffered_amount > PIPELINE_HIGH_WATER:
                self._pipeline_waiting = True
                self.loop.call_soon(self._pipeline_continue)
                return
            request = self.parser.feed()

    def _believe_proxy(self, request: Request) -> None:
        """Behind a trusted reverse proxy: the client and its scheme are what the proxy says."""
        forwarded = self.host.proxy_trust.client(self.remote_address, request.headers)
        if forwarded is not None:
            request.peer_address = self.remote_address
            request.remote_address = forwarded.address
            if forwarded.secure is not None:
                request.secure = forwarded.secure

    # -- request bodies ----------------------------------------------------------

    def read_body(self, request: Request, limit: int, callback: Callable[[bytes], None]) -> None:
        """Read the request's ``Content-Length`` body, then call ``callback(body)``.

        Raises :class:`HandshakeError`: 411 for ``Transfer-Encoding`` (chunked
        bodies are not supported), 400 for a malformed length, 413 above ``limit``.
        A request without ``Content-Length`` has an empty body (RFC 9112 6.3).
        """
        length = body_length(request)
        if length > limit:
            raise HandshakeError(f"request body larger than {limit} bytes", 413)
        buffered = self.parser.buffer
        if len(buffered) >= length:
            body = bytes(buffered[:length])
            del buffered[:length]
            callback(body)
            return
        if "100-continue" in request.headers.tokens("Expect"):
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._body = bytearray(buffered)
        buffered.clear()
        self._body_wanted = length
        self._body_callback = callback
        self.deadline = self.loop.now + self.host.settings.handshake_timeout
        self.host.watch(self)

    def _feed_body(self, data: bytes) -> bool:
        """Add ``data`` to the body being read; True once it was complete and delivered."""
        body = self._body
        assert body is not None
        missing = self._body_wanted - len(body)
        body += data[:missing]
        if len(data) > missing:
            self.parser.buffer += data[missing:]
        if len(body) < self._body_wanted:
            return False
        callback = self._body_callback
        assert callback is not None
        self._reset_body()
        self.deadline = self.loop.now + self.host.settings.handshake_timeout
        callback(bytes(body))
        return True

    def _reset_body(self) -> None:
        self._body = None
        self._body_wanted = 0
        self._body_callback = None

    # -- responses ---------------------------------------------------------------

    def hold(self, holder: Any, deadline: float) -> None:
        """Keep the current request unanswered until ``holder`` calls :meth:`respond`.

        ``holder.hold_expired()`` runs once ``deadline`` passes (it must respond);
        ``holder.hold_lost()`` runs if the client goes away first.
        """
        self.holder = holder
        self.deadline = deadline
        self.host.watch(self)

    def respond(self, data: bytes, keep_alive: bool = False) -> None:
        self.holder = None
        self.write(data)
        if not keep_alive or self.host.stopping:
            self.host.unwatch(self)
            self.close_after_flush()
            return
        self.deadline = self.loop.now + self.host.settings.handshake_timeout
        self.host.watch(self)
        if self.parser.buffer and not self._feeding and not self._resume_scheduled:
            # A deferred answer: requests that arrived meanwhile are served next turn.
            self._resume_scheduled = True
            self.loop.call_soon(self._resume)

    def _pipeline_continue(self) -> None:
        """Serve the pipelined requests that waited, once the answers before them have left."""
        if self.transport_closed or self.handed_over or not self._pipeline_waiting:
            return
        if self._wbuf:
            return  # on_writable calls again when the client has read them
        self._pipeline_waiting = False
        self._resume()

    def on_writable(self) -> None:
        super().on_writable()
        if self._pipeline_waiting and not self._wbuf:
            self._pipeline_continue()

    def _resume(self) -> None:
        self._resume_scheduled = False
        if self.transport_closed or self.handed_over or self.busy:
            return
        self.feed(b"")

    def respond_error(
        self,
        status: int,
        message: str,
        headers: list[tuple[str, str]] | None = None,
        phrase: str | None = None,
    ) -> None:
        count_refusal(status)
        self.respond(error_response(status, message, headers, phrase))

    def on_deadline(self, now: float) -> None:
        if self._draining:
            self.close_transport()
        elif self.holder is not None:
            self.holder.hold_expired()
        elif self._body_callback is not None:
            log.info("%s: request body not complete within the handshake timeout", self)
            self._reset_body()
            self.respond_error(408, "request timeout")
        elif self.parser.buffer:
            log.info("%s: request head not complete within the handshake timeout", self)
            self.respond_error(408, "request timeout")
        else:
            self.close_transport()  # idle keep-alive connection

    def eof_received(self) -> None:
        self.close_transport()

    def close_if_idle(self) -> None:
        """At shutdown: drop a keep-alive connection that is between requests."""
        if not (self.busy or self.parser.buffer or self.handed_over or self._close_after_flush):
            self.close_transport()

    def connection_lost(self, exc: BaseException | None) -> None:
        holder = self.holder
        if holder is not None:
            self.holder = None
            holder.hold_lost()

    def handover_bytes(self) -> tuple[bytes, bytes]:
        """For a handover to another process: the current request as read (its head and what
        followed it) and the answers written but not sent yet. Nothing is taken."""
        inbound = self.parser.last_head + b"\r\n\r\n" + bytes(self.parser.buffer)
        outbound = bytes(self._wbuf or b"") + b"".join(self._out or ())
        return inbound, outbound

    def release_socket(self) -> None:
        """The socket now belongs to another process: forget it here without ending the connection."""
        self.handed_over = self.transport_closed = True
        self.loop.unregister(self.sock)
        self.host.client_closed(self.sock.fileno())
        self.host.unwatch(self)
        self.sock.close()  # the copy in flight keeps the connection open
        self._wbuf = self._wlens = self._out = None
        self.parser.buffer.clear()

    def take_unread(self) -> bytes:
        """The bytes after the last request head: an upgrade hands them to the new connection."""
        unread = bytes(self.parser.buffer)
        self.parser.buffer.clear()
        return unread

    def __repr__(self) -> str:
        return f"<HttpConnection {format_address(self.remote_address)}>"


def body_length(request: Request) -> int:
    """The request body's length from ``Content-Length`` (411 for ``Transfer-Encoding``)."""
    if "Transfer-Encoding" in request.headers:
        raise HandshakeError("chunked request bodies are not supported; send Content-Length", 411)
    values = request.headers.get_all("Content-Length")
    if not values:
        return 0
    lengths = {v.strip() for value in values for v in value.split(",")}
    if len(lengths) != 1:
        raise HandshakeError("conflicting Content-Length values", 400)
    (text,) = lengths
    if not text.isdigit() or not text.isascii() or len(text) > 18:
        raise HandshakeError("malformed Content-Length", 400)
    return int(text)
