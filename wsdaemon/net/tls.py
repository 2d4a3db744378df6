"""TLS on the loop: the server context and the handshake handler.

A socket accepted on a TLS port is first handled by :class:`TlsHandshake`. It
peeks at the first byte: a TLS handshake record (0x16) is wrapped with the
server's :class:`ssl.SSLContext` and handshaken without blocking (each
``SSLWantReadError``/``SSLWantWriteError`` waits for the matching readiness);
a plain HTTP request gets a short 400 in clear text; anything else is closed.
Once the handshake is done the handler hands the encrypted socket over to what
its ``make_handler`` builds (the server's makes an HTTP connection, which then
works like any other: ``wss://`` and ``https://``). The TLS and HTTP handshakes
together must finish within ``handshake_timeout``.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from .loop import EVENT_READ, EVENT_WRITE
from .refusal import RefusedConnection, plain_http_on_tls_response
from .sockets import format_address
from .stream import StreamConnection, StreamHost

log = logging.getLogger("wsdaemon.tls")

_TLS_HANDSHAKE_RECORD = 0x16


def make_server_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server context: TLS 1.2+, no renegotiation, ALPN ``http/1.1``, the given certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(certfile, keyfile or None)
    except OSError as exc:  # ssl.SSLError included
        files = f"{certfile} and {keyfile}" if keyfile else certfile
        raise ValueError(f"cannot load the TLS certificate from {files}: {exc.strerror or exc}") from None
    return ctx


class TlsHandshake(StreamConnection):
    """The first handler of a socket accepted on a TLS port."""

    __slots__ = ("context", "make_handler", "_wrapped", "_done", "_events")

    def __init__(
        self,
        host: StreamHost,
        sock: socket.socket,
        remote_address: Any,
        context: ssl.SSLContext,
        make_handler: Callable[[ssl.SSLSocket, Any], StreamConnection],
    ) -> None:
        super().__init__(host, sock, remote_address)
        self.context = context
        #: Builds what serves the socket once TLS is up: ``make_handler(ssl_sock, address)``.
        self.make_handler = make_handler
        self._wrapped = False
        self._done = False
        self._events = EVENT_READ
        self.deadline = self.loop.now + host.settings.handshake_timeout
        host.watch(self)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - reads are done here
        pass

    def on_readable(self) -> None:
        if self._done or self.transport_closed:
            return
        if not self._wrapped:
            self._sniff()
        else:
            self._step()

    def on_writable(self) -> None:
        if not self._done and not self.transport_closed and self._wrapped:
            self._step()

    def _sniff(self) -> None:
        try:
            first = self.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._give_up(f"reset before TLS handshake ({exc.strerror})")
            return
        if not first:
            self._give_up("closed before TLS handshake")
            return
        if first[0] != _TLS_HANDSHAKE_RECORD:
            if first.isalpha():
                log.info("%s: plain HTTP on the TLS port; answering 400", self)
                self._done = True
                refused = RefusedConnection(self.host, self.sock, self.remote_address)
                self.hand_over(refused)
                refused.refuse(plain_http_on_tls_response())
                return
            self._give_up(f"not a TLS client (first byte {first[0]:#04x})")
            return
        # Wrapping detaches the descriptor from the plain socket object: re-register it.
        self.loop.unregister(self.sock)
        try:
            self.sock = self.context.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:
            self._give_up(f"cannot start TLS ({exc})")
            return
        self._wrapped = True
        self._tls = True
        self.loop.register(self.sock, EVENT_READ, self)
        self._step()

    def _step(self) -> None:
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._wait_for(EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._wait_for(EVENT_READ | EVENT_WRITE)
            return
        except (ssl.SSLError, OSError) as exc:
            self._give_up(f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}")
            return
        self._done = True
        successor = self.make_handler(self.sock, self.remote_address)
        successor.deadline = self.deadline  # one budget for the TLS and the HTTP handshakes
        self.hand_over(successor)
        if successor.sock.pending():
            successor.on_readable()

    def _wait_for(self, events: int) -> None:
        if events != self._events:
            self._events = events
            self.loop.modify(self.sock, events, self)

    def _give_up(self, why: str) -> None:
        log.info("%s: %s; closing", self, why)
        self.close_transport()

    def on_deadline(self, now: float) -> None:
        self._give_up("TLS handshake not complete within the handshake timeout")

    def __repr__(self) -> str:
        return f"<TlsHandshake {format_address(self.remote_address)}>"
