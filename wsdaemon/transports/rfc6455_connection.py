"""An RFC 6455 connection (versions 13 and 8): handshake reply, frames, pings, closing handshake."""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable
from typing import Any

from ..proto import rfc6455
from ..proto.codes import CLOSED, CLOSING, CONNECTING, OPEN, CloseCode, ConnState
from ..proto.errors import ConnectionClosedError
from ..proto.http11 import Request
from ..proto.rfc6455 import (
    EV_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    binary_frame,
    encode_close,
    encode_frame,
    text_frame,
)
from .host import TransportHost
from .websocket import WebSocketConnection

log = logging.getLogger("wsdaemon.rfc6455")


class Rfc6455Connection(WebSocketConnection):
    """A client speaking RFC 6455; created by the HTTP request object's swap."""

    __slots__ = (
        "parser",
        "_ping_sent_at",
        "_close_sent",
    )

    protocol = "rfc6455"
    #: The ``Sec-WebSocket-Extensions`` answer of the handshake (None: no extension).
    extensions_header: str | None = None
    #: Connections with the same wire format share one encoding of a broadcast or publish.
    wire_format = "rfc6455"

    def __init__(self, server: TransportHost, sock: Any, request: Request, subprotocol: str | None) -> None:
        super().__init__(server, sock, request, subprotocol)
        self.parser = self._new_parser(server.settings)
        self._ping_sent_at = 0.0
        self._close_sent = False

    def _new_parser(self, settings: Any) -> FrameParser:
        return FrameParser(settings.max_message_size, max_frames_per_message=settings.max_frames_per_message)

    def start(self, key: str, leftover: bytes) -> None:
        """Send the 101 response, open, then handle bytes that came with the request."""
        self.write(rfc6455.accept_response(key, self.subprotocol, self.extensions_header))
        self._deliver_open()
        if leftover and self.state in (OPEN, CLOSING):
            self.feed(leftover)

    # -- the application's API ---------------------------------------------------

    @classmethod
    def encode_message(cls, message: str | bytes) -> bytes:
        if type(message) is str:
            return text_frame(message.encode("utf-8"))
        return binary_frame(bytes(message))

    def send_encoded(self, encoded: bytes) -> None:
        if self.state == OPEN:
            self.write(encoded)

    def send_encoded_keyed(self, encoded: bytes, key: Hashable) -> None:
        if self.state == OPEN:
            self.write_keyed(encoded, key)

    def send(
        self,
        message: str | bytes,
        *,
        key: Hashable | None = None,
        volatile: bool = False,
        compress: bool | None = None,
    ) -> None:
        if key is not None or volatile:
            return self._send_flagged(message, key, volatile)
        if self.state != OPEN:
            raise ConnectionClosedError(f"connection is {ConnState(self.state).label}")
        if type(message) is str:
            self.write(text_frame(message.encode("utf-8")))
        elif isinstance(message, (bytes, bytearray, memoryview)):
            self.write(binary_frame(bytes(message)))
        else:
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")

    def ping(self, payload: bytes = b"") -> None:
        if self.state == OPEN:
            self.write(encode_frame(OP_PING, payload))

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Server-initiated close: send a close frame and wait for the client's, up to a timeout."""
        if self.state not in (OPEN, CONNECTING) or self._close_sent:
            return
        self.state = CLOSING
        self.close_code = code
        self.close_reason = reason
        self._close_sent = True
        self.write(encode_close(code, reason))
        self.deadline = self.loop.now + self.host.settings.close_timeout
        self.host.watch(self)

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): send a close frame, stop reading, drop TCP."""
        if self.state == CLOSED:
            return
        if code != CloseCode.NORMAL_CLOSURE:
            log.info("failing %s: %d %s", self, code, reason)
        if not self._close_sent:
            self._close_sent = True
            self.write(encode_close(code, reason))
        self.parser.done = True
        self._deliver_close(code, reason)
        self.close_after_flush()

    # -- inbound -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        events = self.parser.feed(data)
        self._traffic[2] += len(events)
        self._ping_sent_at = 0.0
        on_message = self._message_handler()
        for kind, value in events:
            if kind == OP_TEXT or kind == OP_BINARY:
                if self.state == OPEN:
                    try:
                        on_message(self, value)
                    except Exception:
                        self._callback_failed("on_message")
                        return
            elif self._control_event(kind, value):
                return

    def _control_event(self, kind: int, value: Any) -> bool:
        """A ping, pong, close or parse error from the parser; True when nothing may follow it."""
        if kind == OP_PING:
            if not self._close_sent:
                self.write(encode_frame(OP_PONG, value))
        elif kind == OP_CLOSE:
            self._close_received(*value)
            return True
        elif kind == EV_ERROR:
            self.fail(value.code, value.reason)
            return True
        return False

    def _message_handler(self) -> Any:
        """``fn(conn, message)`` for each message: the application's (a session carrier decodes first)."""
        return self.host.app.handle_message

    def _close_received(self, code: int, reason: str) -> None:
        if self._close_sent:
            # The answer to our close: the handshake is complete.
            self._deliver_close(self.close_code or code, self.close_reason if self.close_code else reason)
        else:
            self._close_sent = True
            echo = code if code != CloseCode.NO_STATUS_RCVD else None
            self.write(encode_close(echo, reason))
            self._deliver_close(code, reason)
        self.close_after_flush()

    def eof_received(self) -> None:
        self._deliver_close(CloseCode.ABNORMAL_CLOSURE, "connection closed without a close frame")
        self.close_transport()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._deliver_close(CloseCode.ABNORMAL_CLOSURE, "connection lost")

    def on_deadline(self, now: float) -> None:
        if self.state == CLOSING:
            log.info("%s: no close frame within %.1fs", self, self.host.settings.close_timeout)
            self._deliver_close(CloseCode.ABNORMAL_CLOSURE, "close timeout")
        self.close_transport()

    def on_write_overflow(self) -> None:
        """Slow consumer: drop the queued messages, end with a 1008 close frame, free the buffer.

        The frame being sent is finished first so the close frame starts on a
        frame boundary; the client reads it whenever it reads again, or is
        dropped after ``close_timeout``.
        """
        self.discard_slow_consumer_backlog()
        self.parser.done = True
        if not self._close_sent:
            self._close_sent = True
            self.write(encode_close(CloseCode.POLICY_VIOLATION, "slow consumer"))
        self._deliver_close(CloseCode.POLICY_VIOLATION, "slow consumer")
        self.deadline = self.loop.now + self.host.settings.close_timeout
        self.host.watch(self)
        self.close_after_flush()

    def check_idle(self, now: float, limit: float) -> None:
        """Close (1001 "idle timeout") a peer that has sent nothing for ``limit`` seconds.

        Only without keepalive pings: with them, a peer that answers is alive and
        one that does not is dropped after ``ping_timeout``.
        """
        if self.host.settings.ping_interval > 0:
            return
        if self.state == OPEN and now - self.last_seen > limit:
            log.info("%s: nothing received for %.1fs, closing", self, now - self.last_seen)
            self.close(CloseCode.GOING_AWAY, "idle timeout")

    def check_keepalive(self, now: float, interval: float, timeout: float) -> None:
        """Ping an idle peer; drop one that has not answered within ``timeout``."""
        if self.state != OPEN:
            return
        if self._ping_sent_at:
            if now - self._ping_sent_at > timeout:
                log.info("%s: no pong within %.1fs, closing", self, timeout)
                self._deliver_close(CloseCode.ABNORMAL_CLOSURE, "ping timeout")
                self.abort(None)
        elif now - self.last_seen >= interval:
            self._ping_sent_at = now
            self.write(encode_frame(OP_PING, os.urandom(4)))
