"""hixie-76 and hixie-75 connections: the old browsers' WebSocket, with the same application API.

Chosen by the HTTP request object's swap (see :func:`upgrade_hixie76` and
:func:`upgrade_hixie75`). These drafts carry text only and have no ping: a
connection that sends nothing for ``idle_timeout`` seconds is closed instead.
What ``on_close`` gets: 1000 for a clean close (-76: the ``0xFF 0x00``
handshake; -75: the client closing TCP), 1006 for a dropped connection or an
idle timeout, the code the server or application passed to ``close()`` when it
closed first, and 1007/1009/1011 when we close because of bad input or a
failing callback.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

from ..proto import hixie
from ..proto.codes import CLOSED, CLOSING, CONNECTING, OPEN, CloseCode, ConnState
from ..proto.errors import ConnectionClosedError
from ..proto.hixie import CLOSE_FRAME, KEY3_SIZE, FrameParser, encode_text
from ..proto.http11 import Request, error_response
from ..proto.rfc6455 import EV_ERROR, OP_CLOSE, OP_TEXT
from .host import TransportHost
from .websocket import WebSocketConnection

log = logging.getLogger("wsdaemon.hixie")


class HixieConnection(WebSocketConnection):
    """What the two drafts share: text frames, idle timeout, close reporting."""

    __slots__ = ("parser",)

    #: -76 and -75 frame text the same way: one encoding for both.
    wire_format = "hixie"

    #: Whether the draft has the ``0xFF 0x00`` closing handshake (-76) or closes by TCP (-75).
    closing_handshake = False

    def __init__(self, server: TransportHost, sock: Any, request: Request, subprotocol: str | None) -> None:
        super().__init__(server, sock, request, subprotocol)
        self.parser = FrameParser(server.settings.max_message_size, self.closing_handshake)

    # -- the application's API ---------------------------------------------------

    @classmethod
    def encode_message(cls, message: str | bytes) -> bytes | None:
        """The text frame for a broadcast; None for binary, which these drafts cannot carry."""
        if type(message) is str:
            return encode_text(message)
        return None

    def send_encoded(self, encoded: bytes | None) -> None:
        if encoded is not None and self.state == OPEN:
            self.write(encoded)

    def send_encoded_keyed(self, encoded: bytes | None, key: Hashable) -> None:
        if encoded is not None and self.state == OPEN:
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
        if type(message) is not str:
            if isinstance(message, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"a {self.protocol} connection carries text only (the draft has no binary "
                    f"messages): send a str, not {type(message).__name__}"
                )
            raise TypeError(f"send() takes str, not {type(message).__name__}")
        if self.state != OPEN:
            raise ConnectionClosedError(f"connection is {ConnState(self.state).label}")
        self.write(encode_text(message))

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """-75 has no closing handshake: report the close and shut TCP down after the last write."""
        if self.state == CONNECTING:
            self._deliver_close(code, reason)
            self.close_transport()
            return
        if self.state != OPEN:
            return
        self.parser.done = True
        self._deliver_close(code, reason)
        self._finish_after_flush()

    def fail(self, code: int, reason: str) -> None:
        """Close because of bad input or a failing callback; nothing more is read."""
        if self.state == CLOSED:
            return
        log.info("failing %s: %d %s", self, code, reason)
        self.parser.done = True
        self._send_close_frame()
        self._deliver_close(code, reason)
        self._finish_after_flush()

    def _send_close_frame(self) -> None:
        """The closing handshake frame; -75 has none."""

    def _finish_after_flush(self) -> None:
        """Close TCP once our last bytes are out, but give a client that reads nothing only ``close_timeout``."""
        self.deadline = self.loop.now + self.host.settings.close_timeout
        self.host.watch(self)
        self.close_after_flush()

    # -- opening -------------------------------------------------------------------

    def _open(self, leftover: bytes) -> None:
        """Deliver ``on_open``, start the idle clock, then handle bytes that came along."""
        self._deliver_open()
        if self.state != OPEN:
            return
        self._arm_idle_timer()
        if leftover:
            self.feed(leftover)

    def _arm_idle_timer(self) -> None:
        idle = self.host.settings.idle_timeout
        if idle > 0:
            self.deadline = self.last_seen + idle
            self.host.watch(self)

    # -- inbound -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        on_message = self.host.app.message_handler
        events = self.parser.feed(data)
        self._traffic[2] += len(events)
        for kind, value in events:
            if kind == OP_TEXT:
                if self.state == OPEN:
                    try:
                        on_message(self, value)
                    except Exception:
                        self._callback_failed("on_message")
                        return
            elif kind == OP_CLOSE:
                self._close_received()
                return
            elif kind == EV_ERROR:
                self.fail(value.code, value.reason)
                return

    def _close_received(self) -> None:
        """Only -76 has a closing frame."""

    def eof_received(self) -> None:
        if self.state == OPEN:
            self._deliver_close(*self._eof_close())
        elif self.state == CLOSING:
            # We sent our closing frame; the client closing TCP completes the close.
            self._deliver_close(self.close_code or CloseCode.NORMAL_CLOSURE, self.close_reason)
        self.close_transport()

    def _eof_close(self) -> tuple[int, str]:
        """Close code and reason when the client closes TCP while open."""
        return CloseCode.NORMAL_CLOSURE, ""

    def connection_lost(self, exc: BaseException | None) -> None:
        self._deliver_close(CloseCode.ABNORMAL_CLOSURE, "connection lost")

    def on_deadline(self, now: float) -> None:
        if self._draining or self._close_after_flush or self.transport_closed:
            self.close_transport()  # the drain, or a flush the client did not read, timed out
        elif self.state == CONNECTING:
            self._handshake_timeout()
        elif self.state == CLOSING:
            log.info("%s: no closing frame within %.1fs", self, self.host.settings.close_timeout)
            self._deliver_close(CloseCode.ABNORMAL_CLOSURE, "close timeout")
            self.close_transport()
        elif self.state == OPEN:
            idle = self.host.settings.idle_timeout
            if idle <= 0:
                return
            if now - self.last_seen < idle:
                self._arm_idle_timer()
                return
            log.info("%s: nothing received for %.1fs, closing", self, idle)
            self.parser.done = True
            self._send_close_frame()
            self._deliver_close(CloseCode.ABNORMAL_CLOSURE, "idle timeout")
            self._finish_after_flush()
        else:
            self.close_transport()

    def _handshake_timeout(self) -> None:
        self.close_transport()

    def on_write_overflow(self) -> None:
        """Slow consumer: drop the queued messages, keep the frame in progress, close (-76: with
        its closing frame) once that is out or after ``close_timeout``; the application sees 1008."""
        self.discard_slow_consumer_backlog()
        self.parser.done = True
        self._send_close_frame()
        self._deliver_close(CloseCode.POLICY_VIOLATION, "slow consumer")
        self._finish_after_flush()


class Hixie76Connection(HixieConnection):
    """draft-hixie-76 (old Safari, "v0"): waits for key3, then answers the challenge."""

    __slots__ = ("_head", "_numbers", "_key3", "_close_sent")

    protocol = "hixie-76"
    closing_handshake = True

    def __init__(self, server: TransportHost, sock: Any, request: Request, subprotocol: str | None) -> None:
        super().__init__(server, sock, request, subprotocol)
        self._head = b""
        self._numbers = (0, 0)
        self._key3 = b""
        self._close_sent = False

    def start(self, head: bytes, numbers: tuple[int, int], leftover: bytes) -> None:
        """Wait (up to the handshake timeout) for the 8-byte key3 that follows the request head."""
        self._head = head
        self._numbers = numbers
        self.deadline = self.loop.now + self.host.settings.handshake_timeout
        self.host.watch(self)
        if leftover:
            self.feed(leftover)

    def data_received(self, data: bytes) -> None:
        if self.state == CONNECTING:
            if self.transport_closed or self._close_after_flush:
                return
            need = KEY3_SIZE - len(self._key3)
            self._key3 += data[:need]
            if len(self._key3) < KEY3_SIZE:
                return
            self.host.unwatch(self)
            self.write(self._head + hixie.challenge_answer(*self._numbers, self._key3))
            self._head = b""
            self._deliver_open()
            if self.state != OPEN:
                return
            self._arm_idle_timer()
            data = data[need:]
            if not data:
                return
        super().data_received(data)

    def _handshake_timeout(self) -> None:
        log.info("%s: key3 not complete within the handshake timeout", self)
        self.write(error_response(408, "request timeout: the 8-byte key3 did not arrive"))
        self._finish_after_flush()

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Send ``0xFF 0x00`` and wait (up to ``close_timeout``) for the client's."""
        if self.state == CONNECTING:
            super().close(code, reason)
            return
        if self.state != OPEN or self._close_sent:
            return
        self.state = CLOSING
        self.close_code = code
        self.close_reason = reason
        self._send_close_frame()
        self.deadline = self.loop.now + self.host.settings.close_timeout
        self.host.watch(self)

    def _send_close_frame(self) -> None:
        if not self._close_sent and self.state in (OPEN, CLOSING):
            self._close_sent = True
            self.write(CLOSE_FRAME)

    def _close_received(self) -> None:
        if self._close_sent:
            # The answer to our closing frame: report the code we closed with.
            self._deliver_close(self.close_code or CloseCode.NORMAL_CLOSURE, self.close_reason)
        else:
            self._send_close_frame()
            self._deliver_close(CloseCode.NORMAL_CLOSURE, "")
        self._finish_after_flush()

    def _eof_close(self) -> tuple[int, str]:
        return CloseCode.ABNORMAL_CLOSURE, "connection closed without a closing handshake"


class Hixie75Connection(HixieConnection):
    """draft-hixie-75 ("ve"): no challenge, no closing handshake."""

    __slots__ = ()

    protocol = "hixie-75"

    def start(self, response: bytes, leftover: bytes) -> None:
        self.write(response)
        self._open(leftover)
