"""An RFC 6455 connection that carries a resumable session (the JS client asked for one).

The handshake is the ordinary one; the request's ``wsdaemon_session`` parameter
says "new" or names the session to resume. After the ``101`` the server sends
the hello (``!h{...}``), then numbered messages (see :mod:`wsdaemon.proto.session`).
A drop without a close frame (EOF, reset, ping timeout) suspends the session;
a close frame ends it.
"""

from __future__ import annotations

import logging
from typing import Any

from ..net.sockets import format_address
from ..proto import rfc6455
from ..proto.codes import CLOSED, OPEN, CloseCode
from ..proto.errors import ProtocolError
from ..proto.http11 import Request
from ..proto.rfc6455 import OP_TEXT, binary_frame, encode_close, encode_frame, text_frame
from ..proto.session import (
    B36_PAIRS,
    B36_SHORT,
    NOT_RECOVERED,
    NOT_RECOVERED_REASON,
    Close,
    ResumeRequest,
    base36,
    decode_binary,
    decode_text,
    encode_ack,
    encode_binary,
    encode_hello,
)
from .host import TransportHost
from .rfc6455_connection import Rfc6455Connection

log = logging.getLogger("wsdaemon.session")


class SessionRfc6455Connection(Rfc6455Connection):
    """The WebSocket carrier of a :class:`~wsdaemon.transports.session.Session`."""

    __slots__ = ("session", "resume")

    def __init__(
        self,
        server: TransportHost,
        sock: Any,
        request: Request,
        subprotocol: str | None,
        resume: ResumeRequest | None,
    ) -> None:
        super().__init__(server, sock, request, subprotocol)
        self.session: Any = None
        self.resume = resume

    def start(self, key: str, leftover: bytes) -> None:
        """The 101, then a new session (``on_open``) or the resumed one (replay, ``on_resume``)."""
        self.write(rfc6455.accept_response(key, self.subprotocol))
        self.state = OPEN
        manager = self.host.sessions
        window = self.host.settings.resume_window
        if self.resume is None:
            session = manager.create(self.request, self.subprotocol)
            session.user = self.user  # what on_connect returned
            session.carrier = self
            session.last_protocol = self.protocol
            self.session = session
            self._write_text(encode_hello(session.id, session.token, 0, False, window))
            session._deliver_open()
        else:
            session = manager.find(self.resume)
            if session is None:
                log.info(
                    "%s: session %s not recovered",
                    format_address(self.remote_address),
                    self.resume.session_id[:8],
                )
                self.close(NOT_RECOVERED, NOT_RECOVERED_REASON)
            else:
                replay = session.attach(self, self.resume.ack)
                self.session = session
                self._write_text(
                    encode_hello(session.id, session.token, session.proto.received_seq, True, window)
                )
                for seq, message in replay:
                    self.carry(seq, message)
                if replay:
                    session.proto.carried(replay[-1][0])
                session.resumed()
        if leftover and self.state != CLOSED:
            self.feed(leftover)

    def _write_text(self, text: str) -> None:
        self.write(encode_frame(OP_TEXT, text.encode("utf-8")))

    # -- the carrier's API ---------------------------------------------------------

    def carry(self, seq: int, message: Any) -> bool:
        if self.state != OPEN:
            return False
        if type(message) is str:
            # base 36 inline for the first 1.6 million numbers: this runs once per message
            digits = (
                B36_SHORT[seq]
                if seq < 1296
                else B36_SHORT[seq // 1296] + B36_PAIRS[seq % 1296]
                if seq < 1679616
                else base36(seq)
            )
            self.write(text_frame((digits + ":" + message).encode("utf-8")))
        elif type(message) is Close:
            session = self.session
            if session is not None and session.state == CLOSED:
                # The session ended already (an error): the close goes out and the transport ends.
                self.session = None
                self.fail(message.code or CloseCode.NORMAL_CLOSURE, message.reason)
            else:
                self.close(message.code or CloseCode.NORMAL_CLOSURE, message.reason)
        else:
            self.write(binary_frame(encode_binary(seq, message)))
        return True

    def carry_ack(self, seq: int) -> None:
        if self.state == OPEN:
            self._write_text(encode_ack(seq))

    def detach(self) -> None:
        """Another transport resumed the session: this one ends with 4001 and tells nobody."""
        self.session = None
        if self.state == CLOSED:
            return
        self.parser.done = True
        if not self._close_sent:
            self._close_sent = True
            self.write(encode_close(4001, "session resumed elsewhere"))
        self.state = CLOSED
        self.close_after_flush()

    # -- inbound: the envelope ------------------------------------------------------

    def _message_handler(self) -> Any:
        return self._on_envelope

    def _on_envelope(self, _conn: Any, value: str | bytes) -> None:
        session = self.session
        if session is None:
            return
        try:
            if type(value) is str:
                digits, colon, text = value.partition(":")
                if colon and digits.isalnum() and len(digits) < 13 and digits.isascii():  # the common case
                    session.message_received(int(digits, 36), text)
                    return
                seq, message = decode_text(value)
                if message is None:
                    session.ack_received(seq)
                    return
                session.message_received(seq, message)
            else:
                seq, data = decode_binary(value)
                session.message_received(seq, data)
        except ProtocolError as exc:
            self.fail(CloseCode.PROTOCOL_ERROR, exc.reason)

    def _deliver_close(self, code: int, reason: str) -> None:
        """The transport ended: the session decides (suspend on 1006, close otherwise)."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.close_code = code
        self.close_reason = reason
        session, self.session = self.session, None
        if session is not None:
            session.transport_closed(self, code, reason)
