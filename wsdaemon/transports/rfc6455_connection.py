"""An RFC 6455 connection (versions 13 and 8): handshake reply, frames, pings, closing handshake."""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable
from typing import Any

from ..net.counters import FAIRNESS
from ..net.stream import GATHER_MIN
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
    encode_close,
    encode_frame,
    frame_head,
    message_frame,
)
from .host import TransportHost
from .websocket import WebSocketConnection

log = logging.getLogger("wsdaemon.rfc6455")

#: Close reasons of the rate limits (1008), counted by the server.
MESSAGE_RATE_REASON = "message rate limit"
CONTROL_RATE_REASON = "control frame rate limit"
_UNLIMITED = 1 << 62


class Rfc6455Connection(WebSocketConnection):
    """A client speaking RFC 6455; created by the HTTP request object's swap."""

    __slots__ = (
        "parser",
        "_ping_sent_at",
        "_close_sent",
        "_msg_count",
        "_msg_allow",
        "_msg_window",
        "_ctrl_count",
        "_ctrl_window",
    )

    protocol = "rfc6455"
    #: The ``Sec-WebSocket-Extensions`` answer of the handshake (None: no extension).
    extensions_header: str | None = None
    #: Connections with the same wire format share one encoding of a broadcast or publish.
    wire_format = "rfc6455"

    def __init__(self, server: TransportHost, sock: Any, request: Request, subprotocol: str | None) -> None:
        super().__init__(server, sock, request, subprotocol)
        settings = server.settings
        self.parser = self._new_parser(settings)
        self.parser.budget = settings.read_budget
        self._ping_sent_at = 0.0
        self._close_sent = False
        #: Events received in the current rate window, and how many it allows (see _over_message_rate).
        self._msg_count = 0
        self._msg_allow = settings.max_messages_per_second or _UNLIMITED
        self._msg_window = self.loop.now
        self._ctrl_count = 0
        self._ctrl_window = self.loop.now

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
        return message_frame(message)

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
        if type(message) is bytes and len(message) >= GATHER_MIN:
            # header and payload leave in one sendmsg: no copy of the payload into a frame
            self.write(frame_head(OP_BINARY, len(message)))
            self.write(message)
            return
        if self._corked and not self.transport_closed:
            # write()'s corked case, inline: a reply made while reading joins the turn's writes
            out = self._out
            if out is None:
                self._out = [message_frame(message)]
            else:
                out.append(message_frame(message))
            return
        self.write(message_frame(message))

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
        if code == CloseCode.POLICY_VIOLATION or self.buffered_amount:
            # A peer we gave up on, or one that does not read: not read again, dropped soon.
            self.stop_reading()
            self.deadline = self.loop.now + self.host.settings.drop_grace
            self.host.watch(self)
        self.close_after_flush()

    # -- inbound -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        # The steps of _read_events, inline: this is the hot path of every RFC 6455 read.
        parser = self.parser
        events = parser.feed(data)
        if parser.resume_at:
            self._continue_next_turn()
        count = len(events)
        self._traffic[2] += count
        self._msg_count += count
        if self._msg_count > self._msg_allow:
            events = self._over_message_rate(events)
        self._ping_sent_at = 0.0
        on_message = self.host.app.message_handler
        for kind, value in events:
            if kind == OP_TEXT or kind == OP_BINARY:
                if self.state == OPEN:
                    try:
                        on_message(self, value)
                    except Exception:
                        self._callback_failed("on_message")
                        return
            elif self.control_event(kind, value):
                return

    def _read_events(self, data: bytes) -> list:
        """The events of ``data`` within this turn's read budget, after the message rate limit."""
        parser = self.parser
        events = parser.feed(data)
        if parser.resume_at:
            self._continue_next_turn()
        count = len(events)
        self._traffic[2] += count
        self._msg_count += count
        if self._msg_count > self._msg_allow:
            return self._over_message_rate(events)
        return events

    # -- fairness: the work budget and the rate limits ---------------------------------

    def _continue_next_turn(self) -> None:
        """The read budget left frames unparsed: stop reading and parse the next slice next turn."""
        FAIRNESS["budget_deferred"] += 1
        self.pause_reading()
        self.loop.call_soon(self._next_slice)

    def _next_slice(self) -> None:
        if self.transport_closed:
            return
        self.feed(b"")
        if not self.parser.resume_at:
            self.resume_reading()

    def _over_message_rate(self, events: list) -> list:
        """The events of a read that went past --max-messages-per-second: deliver, trim or close."""
        settings = self.host.settings
        limit = settings.max_messages_per_second
        if not limit:  # turned off by a reload
            self._msg_allow = _UNLIMITED
            return events
        now = self.loop.now
        if now - self._msg_window >= 1.0:  # a new second begins with this read
            self._msg_window = now
            self._msg_count = len(events)
            self._msg_allow = limit
            if self._msg_count <= limit:
                return events
        if settings.rate_limit_action == "close":
            self.fail(CloseCode.POLICY_VIOLATION, MESSAGE_RATE_REASON)
            return []
        room = len(events) - (self._msg_count - self._msg_allow)
        self._msg_count = self._msg_allow
        kept = []
        for event in events:
            if event[0] == OP_TEXT or event[0] == OP_BINARY:
                if room <= 0:
                    FAIRNESS["rate_dropped"] += 1
                    continue
            room -= 1
            kept.append(event)
        return kept

    def control_event(self, kind: int, value: Any) -> bool:
        """A ping, pong, close or parse error from the parser; True when nothing may follow it."""
        if kind == OP_PING or kind == OP_PONG:
            self._ctrl_count += 1
            limit = self.host.settings.max_control_frames_per_second
            if limit and self._ctrl_count > limit:
                now = self.loop.now
                if now - self._ctrl_window < 1.0:
                    self.fail(CloseCode.POLICY_VIOLATION, CONTROL_RATE_REASON)
                    return True
                self._ctrl_window = now
                self._ctrl_count = 1
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

    def _close_received(self, code: int, reason: str) -> None:
        # A client sends nothing after its close frame: with nothing after it in the read, none is coming.
        self.peer_finished = not self.parser.buffered
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
        if self.state != CLOSED:
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
        self.stop_reading()  # a peer that does not read gets nothing more of our CPU
        if not self._close_sent:
            self._close_sent = True
            self.write(encode_close(CloseCode.POLICY_VIOLATION, "slow consumer"))
        self._deliver_close(CloseCode.POLICY_VIOLATION, "slow consumer")
        self.deadline = self.loop.now + self.host.settings.drop_grace
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
