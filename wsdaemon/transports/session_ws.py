"""An RFC 6455 connection that carries a resumable session (the JS client asked for one).

The handshake is the ordinary one; the request's ``wsdaemon_session`` parameter
says "new" or names the session to resume. After the ``101`` the server sends
the hello (``!h{...}``), which names the first number of each direction; after it
every message is numbered by its place on the connection, so the application's
bytes go out as they are (see :mod:`wsdaemon.proto.session`).
A drop without a close frame (EOF, reset, ping timeout) suspends the session;
a close frame ends it.
"""

from __future__ import annotations

import logging
from typing import Any

from ..net.sockets import format_address
from ..proto import rfc6455
from ..proto.codes import CLOSED, OPEN, CloseCode
from ..proto.http11 import Request
from ..proto.permessage_deflate import DeflateParams, DeflatePolicy, PerMessageDeflate
from ..proto.rfc6455 import OP_BINARY, OP_TEXT, encode_close, encode_frame, message_frame
from ..proto.session import (
    NOT_RECOVERED,
    NOT_RECOVERED_REASON,
    Close,
    ResumeRequest,
    encode_ack,
    encode_hello,
    escape_text,
    rfc6455_frame,
    rfc6455_frames,
)
from .host import TransportHost
from .rfc6455_connection import Rfc6455Connection
from .rfc6455_deflate import CompressingFrames

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
        self.write(rfc6455.accept_response(key, self.subprotocol, self.extensions_header))
        self.state = OPEN
        manager = self.host.sessions
        window = self.host.settings.resume_window
        if self.resume is None:
            session = manager.create(self.request, self.subprotocol)
            session.user = self.user  # what on_connect returned
            session.carrier = self
            session.last_protocol = self.protocol
            self.session = session
            self._write_text(encode_hello(session.id, session.token, 0, 1, False, window))
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
                proto = session.proto
                next_seq = replay[0][0] if replay else proto.sent_seq + 1
                self._write_text(
                    encode_hello(session.id, session.token, proto.received_seq, next_seq, True, window)
                )
                for seq, message in replay:
                    self.carry(seq, message)
                if replay:
                    session.proto.carried(replay[-1][0])
                session.resumed()
        if leftover and self.state != CLOSED:
            self.feed(leftover)

    #: The frame of a numbered message (str or bytes), and of a list of them joined: escaped,
    #: uncompressed, in C when it is built.
    _frame = staticmethod(rfc6455_frame)
    _frames = staticmethod(rfc6455_frames)

    def _write_text(self, text: str) -> None:
        self.write(encode_frame(OP_TEXT, text.encode("utf-8")))

    # -- the carrier's API ---------------------------------------------------------

    def carry(self, seq: int, message: Any) -> bool:
        """Send message ``seq``: its number is its place after the hello, so only a ``!`` is escaped.

        While the kernel refuses bytes the carrier takes nothing but the close: what
        the application sends waits in the session, where a keyed message is still
        replaced in place, and leaves in order when the socket drains.
        """
        if self.state != OPEN:
            return False
        if type(message) is not Close:
            if self._wbuf:
                return False  # backlogged: the session keeps it (replaceable if keyed) until on_drained
            self.write(self._frame(message))
        else:
            session = self.session
            if session is not None and session.state == CLOSED:
                # The session ended already (an error): the close goes out and the transport ends.
                self.session = None
                self.fail(message.code or CloseCode.NORMAL_CLOSURE, message.reason)
            else:
                self.close(message.code or CloseCode.NORMAL_CLOSURE, message.reason)
        return True

    def carry_many(self, start: int, messages: list[Any]) -> bool:
        """Send messages ``start``... in one write, unless backlogged (then the session keeps them)."""
        if self.state != OPEN or self._wbuf:
            return False
        self.write(self._frames(messages))
        return True

    def on_drained(self) -> None:
        session = self.session
        if session is not None and self.state == OPEN:
            session.carrier_drained(self)

    def carry_ack(self, seq: int) -> None:
        if self.state == OPEN:
            self.write(message_frame(encode_ack(seq)))  # a text frame, uncompressed, built in C

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

    def data_received(self, data: bytes) -> None:
        """The events of one read go to the session together (it numbers the messages and acks once)."""
        if self.state == CLOSED:
            return
        self._ping_sent_at = 0.0
        session = self.session
        if session is not None and self.state == OPEN:
            session.frames_carried(self, self._read_events(data))
            return
        for kind, value in self._read_events(data):  # closing: a session that moved on gets nothing
            if kind != OP_TEXT and kind != OP_BINARY and self.control_event(kind, value):
                return

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


class SessionRfc6455DeflateConnection(CompressingFrames, SessionRfc6455Connection):
    """A session's WebSocket carrier that agreed permessage-deflate (every browser offers it).

    Each numbered message is compressed for its own session: the sequence number is part of the
    payload, so a publish cannot share one compressed frame between sessions.
    """

    __slots__ = ("deflate",)

    def __init__(
        self,
        server: TransportHost,
        sock: Any,
        request: Request,
        subprotocol: str | None,
        resume: ResumeRequest | None,
        params: DeflateParams,
        policy: DeflatePolicy,
    ) -> None:
        self.deflate = PerMessageDeflate(params, policy, max_message_size=server.settings.max_message_size)
        super().__init__(server, sock, request, subprotocol, resume)

    def _frame(self, message: str | bytes) -> bytes:  # type: ignore[override]
        if type(message) is str:
            return self._text(escape_text(message).encode("utf-8"))
        return self._binary(message)

    def _frames(self, messages: list[Any]) -> bytes:  # type: ignore[override]
        return b"".join(map(self._frame, messages))
